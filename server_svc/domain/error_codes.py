"""Error codes the server sets itself (PanDA's supervisor codes). Pilot codes: pilot_agent.error_codes."""

from __future__ import annotations

__all__ = ["HOLDING_TIMEOUT", "KILL_NOT_CONFIRMED", "LOST_HEARTBEAT", "SENT_NO_REPLY", "SERVER_ERRORS"]

LOST_HEARTBEAT = 100
SENT_NO_REPLY = 102
HOLDING_TIMEOUT = 103
KILL_NOT_CONFIRMED = 110

SERVER_ERRORS: dict[int, str] = {
    LOST_HEARTBEAT: "lost heartbeat",
    SENT_NO_REPLY: "sent to a pilot that never replied",
    HOLDING_TIMEOUT: "holding for too long",
    KILL_NOT_CONFIRMED: "killed: the pilot did not confirm within the grace period",
}
