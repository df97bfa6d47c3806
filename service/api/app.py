"""The http role: gunicorn with uvicorn workers serving this ASGI application
(service/api/gunicorn.conf.py): Django's, with the publishes (POST /api/v1/publish and
/api/v1/batch) answered first on the event loop (service/api/fast_path.py)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "service.settings")
django_application = get_asgi_application()

from service import metrics  # noqa: E402
from service.api.fast_path import PublishFastPath  # noqa: E402

application = PublishFastPath(django_application)

metrics.declare_role("http")
