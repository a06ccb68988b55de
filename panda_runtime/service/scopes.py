"""File scopes, as PanDA and Rucio have them: a file is known by (scope, lfn), so two users' files
of the same name are two files. A user's files are in the scope `user.<name>`, production's in
its VO's scope (the VO's name). Anyone may read any scope; who may write which is here. No I/O:
the server (jobs) and JEDI (datasets) both decide with these."""

from __future__ import annotations

import re

from panda_runtime.service.errors import InvalidArgument, PermissionDenied
from panda_runtime.service.principals import ADMIN, PRODUCTION, Principal

__all__ = ["SCOPE", "USER_SCOPE_PREFIX", "check_scope", "check_writable", "user_scope", "writable_scopes"]

# One directory name on a storage element: no '/', not '.' or '..', no ':' (the separator of
# `scope:lfn`).
SCOPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
USER_SCOPE_PREFIX = "user."


def user_scope(owner: str) -> str:
    """The scope of `owner`'s own files."""
    return USER_SCOPE_PREFIX + owner


def check_scope(scope: str, field: str) -> str:
    """`scope`, or INVALID_ARGUMENT naming `field`."""
    if not SCOPE.match(scope):
        raise InvalidArgument(
            f"{field}: {scope[:80]!r} is not a scope: 1-128 letters, digits, '_', '-' or '.', starting with a "
            "letter or digit", field=field)
    return scope


def writable_scopes(caller: Principal, owner: str, vo: str) -> frozenset[str]:
    """The scopes what `caller` submits or registers for `owner` in `vo` may write: the owner's
    own, and the VO's when the caller holds production in that VO (or is an admin). The service
    role acts for an owner, with the owner's scope."""
    scopes = {user_scope(owner)}
    if vo and (caller.has_role(PRODUCTION, vo) or caller.has_role(ADMIN)):
        scopes.add(vo)
    return frozenset(scopes)


def check_writable(scope: str, writable: frozenset[str], owner: str, field: str) -> None:
    """PERMISSION_DENIED (naming `field`) unless `scope` is among `writable`."""
    if scope not in writable:
        raise PermissionDenied(
            f"{field}: files of {owner} may not be written in scope {scope} (only in {', '.join(sorted(writable))})"
        )
