"""Benchmark-only settings: ``settings.production`` plus ``CELERY_DB_REUSE_MAX``.

Without it, Celery's Django fixup closes every database connection before and after each
task, so every FlowOps step task opens a new PostgreSQL connection (a backend fork on the
server). ``bench_distributed.py --variant db-reuse`` measures the difference; nothing in
the project uses this module.
"""

from settings.production import *  # noqa: F403

CELERY_DB_REUSE_MAX = 1000  # close connections every 1000 tasks (per pool process)
