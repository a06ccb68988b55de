"""Admitting a pilot's stream: a new identity issued, or an issued one resumed (see
`domain.pilots`); a refusal is logged with its reason, which the pilot is not told."""

from __future__ import annotations

import logging

from panda_runtime.service.db import DbRunner
from panda_runtime.service.db import now as utc_now
from panda_runtime.service.errors import Unavailable
from server_svc.domain.pilots import Admission, PilotClaim, PilotRefused, new_identity, resumes
from server_svc.store.pilots import PilotStore

__all__ = ["PilotRegistry"]

log = logging.getLogger("panda.dispatch")

# A new id collides with an issued one once in 2^32 (its random suffix): a few tries are plenty.
_ISSUE_TRIES = 5


class PilotRegistry:
    def __init__(self, db: DbRunner, store: PilotStore) -> None:
        self._db = db
        self._store = store

    async def admit(self, claim: PilotClaim) -> Admission:
        """The identity the claim's stream speaks as; PilotRefused (PERMISSION_DENIED) for a
        claim to an issued identity without its secret or under another subject."""
        try:
            resumed = resumes(claim, await self._db.run(self._store.get, claim.pilot_id))
        except PilotRefused as refused:
            log.warning("refused a stream of %s (queue %s, node %s) claiming pilot %s: %s", claim.subject,
                        claim.queue, claim.node, claim.pilot_id, refused.reason)
            raise
        if resumed:
            await self._db.run(self._store.resumed, claim.pilot_id, claim.queue, claim.node, utc_now())
            return Admission(claim.pilot_id, claim.resume_secret, resumed=True)
        for _ in range(_ISSUE_TRIES):
            identity, secret = new_identity(claim, utc_now())
            if await self._db.run(self._store.create, identity):
                return Admission(identity.pilot_id, secret, resumed=False)
        raise Unavailable("could not issue a pilot id; try again")
