"""The http role: `gunicorn service.wsgi` (see service/api/gunicorn.conf.py)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "service.settings")
application = get_wsgi_application()

from service import metrics  # noqa: E402

metrics.declare_role("http")
