"""Error codes the server sets itself (PanDA's supervisor codes), as numbers for the rules. The
codes and what they mean are the mesh's one table, `panda_runtime.contracts.error_codes`."""

from __future__ import annotations

from panda_runtime.contracts import error_codes as table

__all__ = ["HOLDING_TIMEOUT", "KILL_NOT_CONFIRMED", "LOST_HEARTBEAT", "SENT_NO_REPLY", "SERVER_ERRORS"]

LOST_HEARTBEAT = table.LOST_HEARTBEAT.code
SENT_NO_REPLY = table.SENT_NO_REPLY.code
HOLDING_TIMEOUT = table.HOLDING_TIMEOUT.code
KILL_NOT_CONFIRMED = table.KILL_NOT_CONFIRMED.code

# What each code means, as a job's diagnosis says it.
SERVER_ERRORS: dict[int, str] = {
    error.code: error.meaning for error in table.ALL if error.source is table.Source.SERVER
}
