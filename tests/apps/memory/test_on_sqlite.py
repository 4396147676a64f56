"""The memory tests again on SQLite, the embedded default's database: same behaviour on
both (run from the PostgreSQL suite, in a child pytest against ``settings.test_sqlite``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(settings.BASE_DIR)


@pytest.mark.skipif("sqlite" in settings.DATABASES["default"]["ENGINE"],
                    reason="this is the SQLite run")
def test_the_memory_tests_pass_on_sqlite(tmp_path):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "settings.test_sqlite",
           "FLOWOPS_DB_PATH": str(tmp_path / "memory.sqlite3")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/apps/memory",
         "tests/flowops/test_memory_sdk.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)

    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout
