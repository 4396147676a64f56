"""The embedded default: one SQLite file, no servers, runs execute in this process."""

from settings.base import *  # noqa: F403
from settings.env import BASE_DIR, env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY = env("DJANGO_SECRET_KEY", default="flowops-local-insecure-key")  # local only

FLOWOPS_DB_PATH = env("FLOWOPS_DB_PATH", default=str(BASE_DIR / "flowops.sqlite3"))

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": FLOWOPS_DB_PATH,
        # Without WAL, IMMEDIATE transactions and a busy timeout a second process
        # (serve beside runflow, the embedded thread pool) gets "database is locked".
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }
}

FLOWOPS_DRIVER = env("FLOWOPS_DRIVER", default="embedded")
