"""One line per event on stderr, each naming the pilot and (when there is one) the job."""

from __future__ import annotations

import contextvars
import logging
import sys
from typing import TextIO

__all__ = ["LOG_FORMAT", "PilotContextFilter", "configure_logging", "current_job", "name_pilot"]

# The job the current task works for; asyncio tasks inherit it from the task that made them.
current_job: contextvars.ContextVar[int] = contextvars.ContextVar("pilot_job_id", default=0)

LOG_FORMAT = "%(asctime)s %(levelname)s pilot=%(pilot_id)s job=%(job_id)s %(message)s"


class PilotContextFilter(logging.Filter):
    """Adds pilot_id and job_id to every record (a record's own `extra` job_id wins)."""

    def __init__(self, pilot_id: str) -> None:
        super().__init__()
        self.pilot_id = pilot_id

    def filter(self, record: logging.LogRecord) -> bool:
        record.pilot_id = self.pilot_id
        if not hasattr(record, "job_id"):
            record.job_id = current_job.get() or "-"
        return True


class _PilotHandler(logging.StreamHandler[TextIO]):
    """The handler configure_logging installs (and replaces when called again)."""


def configure_logging(pilot_id: str, level: int = logging.INFO) -> None:
    """Send the pilot's logs to stderr; replaces a handler an earlier call installed."""
    logger = logging.getLogger("pilot_agent")
    for handler in list(logger.handlers):
        if isinstance(handler, _PilotHandler):
            logger.removeHandler(handler)
    handler = _PilotHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(PilotContextFilter(pilot_id))
    logger.addHandler(handler)
    logger.setLevel(level)
    # Our handler prints these; the root logger would print them a second time.
    logger.propagate = False


def name_pilot(pilot_id: str) -> None:
    """From now on the log lines name the pilot `pilot_id` (the id the server issued it)."""
    for handler in logging.getLogger("pilot_agent").handlers:
        for log_filter in handler.filters:
            if isinstance(log_filter, PilotContextFilter):
                log_filter.pilot_id = pilot_id
