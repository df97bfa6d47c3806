"""The http role: `gunicorn service.wsgi` (see service/api/gunicorn.conf.py)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "service.settings")
django_application = get_wsgi_application()

from service import metrics  # noqa: E402
from service.api.fast_path import PublishFastPath  # noqa: E402

# POST /api/v1/publish skips Django's handler and middleware (service/api/fast_path.py).
application = PublishFastPath(django_application)

metrics.declare_role("http")
