"""The memory tests on SQLite, the embedded default's database (``tests/apps/memory``).

A file, not ``:memory:``: the tests use threads and child processes that must share it.
"""

import os
import tempfile

from settings.env import env
from settings.local import DATABASES as LOCAL_DATABASES
from settings.test import *  # noqa: F403

_path = env("FLOWOPS_DB_PATH", default=os.path.join(tempfile.gettempdir(),
                                                      f"flowops-test-{os.getpid()}.sqlite3"))
DATABASES = {"default": {**LOCAL_DATABASES["default"], "NAME": _path,
                         "TEST": {"NAME": _path}}}
