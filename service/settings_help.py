"""Settings for answering `--help` only (service/manage.py): the real settings need secrets
and Redis, which help does not. Nothing here can reach Redis or sign a usable token; no
role starts with it."""

from service.logs import logging_config

SECRET_KEY = "help-only-settings-not-a-secret-and-never-used"
REDIS_URL = "redis://help-only.invalid:6379/0"
INSTALLED_APPS = ["service", "channels"]
DATABASES = {}
USE_TZ = True
LOGGING = logging_config("text", "WARNING")
