"""The ``flowops`` command: ``flowops run PATH --input X`` and the other run verbs.

It is ``manage.py`` with the embedded settings by default (``DJANGO_SETTINGS_MODULE``
picks others) and ``run`` as another name for ``runflow``.
"""

from __future__ import annotations

import sys

VERBS = {"run": "runflow"}
HELP = """usage: flowops VERB [ARGS]

verbs:
  run PATH [--input TEXT | --input-json JSON] [--context JSON] [--run-id ID] [--json] [--no-wait]
  resume RUN_ID | --stuck
  approve RUN_ID [--input-json JSON] | --reject TEXT
  cancel RUN_ID
  lens [RUN_ID] [--json]
  validate PATH
  serve, migrate, createsuperuser and every other manage.py command

`flowops VERB --help` explains one verb.
"""


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(HELP)
        return 0 if args else 2
    from flowops._django import ensure_django

    ensure_django()
    from django.core.management import execute_from_command_line

    execute_from_command_line(["flowops", VERBS.get(args[0], args[0]), *args[1:]])
    return 0


if __name__ == "__main__":
    sys.exit(main())
