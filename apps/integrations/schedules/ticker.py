"""``serve``'s schedule clock for the embedded default (production uses beat).

Every ``FLOWOPS_SCHEDULE_TICK_SECONDS`` it ticks each active schedule trigger; the tick
itself decides whether a time is due and not yet handled, so ticking often (or twice)
starts nothing extra, and a ticker that was down starts only the latest due time.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from django.conf import settings
from django.db import connection

from apps.integrations.schedules.services import schedule_tick
from apps.workflows.services.events import Accepted, triggers_active

log = logging.getLogger("flowops.schedules")


class Ticker:
    """A daemon thread that calls ``schedule_tick`` for every active schedule trigger."""

    def __init__(self, *, interval: float | None = None):
        self.interval = interval or settings.FLOWOPS_SCHEDULE_TICK_SECONDS
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="flowops-ticker", daemon=True)

    def start(self) -> Ticker:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def tick(self, now: datetime | None = None) -> list[Accepted]:
        """One round over the active schedule triggers: the events it stored."""
        try:
            ids = list(triggers_active("schedule").values_list("id", flat=True))
        except Exception:  # the database is down or restarting: try again next round
            log.exception("schedule ticker: cannot list the schedule triggers")
            return []
        accepted = []
        for trigger_id in ids:
            try:
                done = schedule_tick(trigger_id, now=now)
            except Exception:  # one trigger's failure must not stop the others
                log.exception("schedule ticker: tick of trigger %s failed", trigger_id)
                continue
            if done is not None:
                accepted.append(done)
        return accepted

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            finally:
                # A fresh connection each round: one broken by a database restart is
                # not reused, and an idle thread holds none.
                connection.close()
            self._stop.wait(self.interval)
