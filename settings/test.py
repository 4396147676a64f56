"""Tests: real PostgreSQL and Redis (``make test`` makes sure they are there)."""

from settings.base import *  # noqa: F403
from settings.env import env

SECRET_KEY = "flowops-test-key"
DEBUG = False
DATABASES = {
    "default": env.db("DATABASE_URL",
                      default="postgres://postgres@127.0.0.1:5432/flowops_test"),
}
REDIS_URL = env("REDIS_URL", default="redis://127.0.0.1:6379/15")
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
FLOWOPS_DRIVER = env("FLOWOPS_DRIVER", default="embedded")
FLOWOPS_RECOVERY_INTERVAL = 2.0
# No paid request by accident: providers may only call local fake servers.
FLOWOPS_AI_ALLOWED_HOSTS = ["127.0.0.1", "localhost", "::1"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
