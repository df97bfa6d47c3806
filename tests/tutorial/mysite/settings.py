# mysite/settings.py: the tutorial's project settings, trimmed to what the chat app uses.
import json
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "tutorial-only-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "daphne",
    "chat",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "mysite.urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("TUTORIAL_DB", BASE_DIR / "db.sqlite3"),
    }
}
USE_TZ = True

# Channels (tutorial part 2): BACKEND and CONFIG as the docs show them, from the
# environment so the test can run the app on either layer.
ASGI_APPLICATION = "mysite.asgi.application"
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": os.environ.get("TUTORIAL_LAYER", "channels_redis.core.RedisChannelLayer"),
        "CONFIG": json.loads(os.environ.get("TUTORIAL_LAYER_CONFIG", '{"hosts": [["127.0.0.1", 6379]]}')),
    },
}
