"""Who may call which IamService method: any signed-in caller may ask who it is; everything
else manages identities and is for admins."""

from __future__ import annotations

from panda_runtime.service.principals import ADMIN, AUTHENTICATED, AccessTable

_SERVICE = "/panda.iam.v1.IamService/"
_ADMIN_METHODS = (
    "CreateUser", "GetUser", "ListUsers", "UpdateUser", "DeleteUser",
    "CreateGroup", "ListGroups", "DeleteGroup", "AddMember", "RemoveMember",
    "CreateClient", "GetClient", "ListClients", "DeleteClient", "ResetClientSecret",
    "RotateSigningKey",
)

__all__ = ["ACCESS"]

ACCESS = AccessTable({
    f"{_SERVICE}WhoAmI": {AUTHENTICATED},
    **{f"{_SERVICE}{method}": {ADMIN} for method in _ADMIN_METHODS},
})
