"""Queue names, in one place (they are wire format)."""

import enum


class Queue(enum.StrEnum):
    STEPS = "celery"  # the default queue, so a plain `celery -A workers worker` serves it
