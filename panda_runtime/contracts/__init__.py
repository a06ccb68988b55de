"""The rules of every field of the mesh's contracts, in one place: `server` for panda.server.v1,
`jedi` for panda.jedi.v1, `iam` for panda.iam.v1, on the shared checks of `rules`. The service
that owns a contract checks its requests with them at its edge; a caller that builds requests
(JEDI making jobs for the server, the command line) checks with the same rules first, so it
never sends what the other side refuses. Pure: no I/O, no gRPC; a broken rule raises
`Violation`, naming the field."""

from panda_runtime.contracts.rules import Violation

__all__ = ["Violation"]
