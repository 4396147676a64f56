"""The Celery app. Settings come from Django's (``CELERY_`` namespace)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings.local")

app = Celery("flowops", task_cls="workers.base:FlowOpsTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers.executor", "workers.orchestrator"], related_name=None)
