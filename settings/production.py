"""Production: PostgreSQL and Redis from the environment, steps on Celery workers."""

from settings.base import *  # noqa: F403
from settings.env import env

SECRET_KEY = env("DJANGO_SECRET_KEY")  # no default: a missing secret fails at boot
DEBUG = False
DATABASES = {"default": env.db("DATABASE_URL")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DJANGO_CONN_MAX_AGE", default=60)
REDIS_URL = env("REDIS_URL")
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", default=REDIS_URL)
FLOWOPS_DRIVER = env("FLOWOPS_DRIVER", default="celery")
FLOWOPS_AI_STRICT = env.bool("FLOWOPS_AI_STRICT", default=True)

SESSION_COOKIE_SECURE = env.bool("DJANGO_SESSION_COOKIE_SECURE", default=True)
CSRF_COOKIE_SECURE = env.bool("DJANGO_CSRF_COOKIE_SECURE", default=True)
