"""Django's WSGI application, for tools that look for one (WSGI_APPLICATION). The http
role serves the ASGI application of service/api/app.py."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "service.settings")
application = get_wsgi_application()
