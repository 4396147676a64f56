"""Settings shared by every deployment. ``local``, ``production`` and ``test`` extend it."""

from settings.env import BASE_DIR, env

SECRET_KEY = env("DJANGO_SECRET_KEY", default="")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "apps.core",
    "apps.workflows",
    "apps.runs",
    "apps.memory",
    "apps.integrations",
    "django_celery_beat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "apps.core.middleware.BodyLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "settings.urls"
WSGI_APPLICATION = "settings.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# -- REST API (apps/*/apis.py) ------------------------------------------------------------
REST_FRAMEWORK = {
    # Token first: DRF answers 401 (not 403) when the first class names a challenge.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.BasicAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Denied by default: every endpoint names the permission it needs.
    "DEFAULT_PERMISSION_CLASSES": ["apps.core.api.DenyAll"],
    "EXCEPTION_HANDLER": "apps.core.api.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "FlowOps API",
    "DESCRIPTION": "Workflows (start runs, upload source), runs (status, steps, spend; "
                   "resume, cancel, approve, reject) and memory tables (the no-code DB). "
                   "Authenticate with `Authorization: Token <key>` (POST /api/auth/token/) "
                   "or a session cookie. Errors are JSON: `{message, errors}` for refused "
                   "requests, `{detail}` for authentication and lookups.",
    "VERSION": "0.1.0",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "RunStatusEnum": "apps.runs.models.Run.Status",
        "StepRunStatusEnum": "apps.runs.models.StepRun.Status",
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"flowops": {"handlers": ["stderr"], "propagate": False,
                            "level": env("FLOWOPS_LOG_LEVEL", default="WARNING")}},
}

# -- FlowOps knobs ---------------------------------------------------------------------
# "embedded": a loop over ready steps in this process; "celery": chains and chords on workers.
FLOWOPS_DRIVER = env("FLOWOPS_DRIVER", default="embedded")
FLOWOPS_MAX_STEP_ATTEMPTS = env.int("FLOWOPS_MAX_STEP_ATTEMPTS", default=3)
FLOWOPS_STEP_HEARTBEAT_TIMEOUT = env.float("FLOWOPS_STEP_HEARTBEAT_TIMEOUT", default=60.0)
FLOWOPS_MAX_STEP_SECONDS = env.int("FLOWOPS_MAX_STEP_SECONDS", default=6 * 3600)
FLOWOPS_EMBEDDED_THREADS = env.int("FLOWOPS_EMBEDDED_THREADS", default=4)
FLOWOPS_RECOVERY_INTERVAL = env.float("FLOWOPS_RECOVERY_INTERVAL", default=30.0)
# False: on PostgreSQL a step's checkpoint commits without waiting for the disk (about 1 ms
# less per step). A database crash can then lose the last ~0.6 s of checkpoints; those
# steps run again (journaled effects are still not repeated: their commits wait).
FLOWOPS_DURABLE_CHECKPOINTS = env.bool("FLOWOPS_DURABLE_CHECKPOINTS", default=True)
# A Celery step task runs the next steps of its chain itself (no broker hop) while it has
# run for less than this; 0 sends every step through the broker.
FLOWOPS_INLINE_SECONDS = env.float("FLOWOPS_INLINE_SECONDS", default=1.0)
# Slack: the app's signing secret and bot token; SLACK_API_URL points tests at a fake.
SLACK_SIGNING_SECRET = env("SLACK_SIGNING_SECRET", default="")
SLACK_BOT_TOKEN = env("SLACK_BOT_TOKEN", default="")
SLACK_API_URL = env("SLACK_API_URL", default="https://slack.com/api/")
# Webhook secrets are derived from this key (never stored); changing it changes them all.
FLOWOPS_WEBHOOK_KEY = env("FLOWOPS_WEBHOOK_KEY", default="")  # empty: SECRET_KEY
FLOWOPS_WEBHOOK_MAX_BYTES = env.int("FLOWOPS_WEBHOOK_MAX_BYTES", default=1024 * 1024)
# Directories of workflow scripts that `serve` and `register_workflow` (no paths) register.
FLOWOPS_WORKFLOW_DIRS = env.list("FLOWOPS_WORKFLOW_DIRS", default=[])
# How often `serve`'s ticker looks for due schedules (embedded default; production: beat).
FLOWOPS_SCHEDULE_TICK_SECONDS = env.float("FLOWOPS_SCHEDULE_TICK_SECONDS", default=15.0)
# An openai: model without OPENAI_API_KEY: False answers offline with a warning, True fails.
FLOWOPS_AI_STRICT = env.bool("FLOWOPS_AI_STRICT", default=False)
# Hosts a provider may call; None means any. Tests allow loopback only.
FLOWOPS_AI_ALLOWED_HOSTS = None

# -- Celery (CONTRACTS.md §6) ------------------------------------------------------------
REDIS_URL = env("REDIS_URL", default="redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL)
# Chords count their header in the result backend; results themselves stay tiny (ids only).
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", default=REDIS_URL)
CELERY_RESULT_EXPIRES = 24 * 3600
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = FLOWOPS_MAX_STEP_SECONDS
# kombu redelivers an unacked message only after this; FlowOps recovers sooner by itself.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": FLOWOPS_MAX_STEP_SECONDS + 3600}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"visibility_timeout": FLOWOPS_MAX_STEP_SECONDS + 3600}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Celery's Django fixup otherwise closes the database connection around every task, and a
# new PostgreSQL connection per step cost more than the step itself (benchmarks/RESULTS.md:
# 30 -> 19 ms per chain link).
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)
CELERY_BEAT_SCHEDULE = {
    "flowops-recover-stuck-runs": {
        "task": "flowops.recover_stuck",
        "schedule": FLOWOPS_RECOVERY_INTERVAL,
    },
}
