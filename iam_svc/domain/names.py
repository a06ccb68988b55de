"""What a valid user name, group path, client id and queue name look like."""

from __future__ import annotations

from collections.abc import Iterable

from panda_runtime.contracts import Violation
from panda_runtime.contracts import iam as contract
from panda_runtime.service.errors import InvalidArgument
from panda_runtime.service.principals import ROLES

__all__ = [
    "ANY_QUEUE", "DEFAULT_VO", "check_client_id", "check_email", "check_group_path", "check_group_paths",
    "check_queue_names", "check_redirect_uris", "check_user_name", "default_groups", "group_resource_name",
]

# The VO of the embedded provider's own groups.
DEFAULT_VO = "panda"

ANY_QUEUE = contract.ANY_QUEUE


def check_user_name(name: str, field: str = "user_id") -> str:
    name = name.removeprefix("users/")
    try:
        return contract.check_user_name(name, field)
    except Violation as violation:
        raise InvalidArgument(violation.description, field=field) from None


def check_client_id(client_id: str, field: str = "client_id") -> str:
    client_id = client_id.removeprefix("clients/")
    try:
        return contract.check_client_id(client_id, field)
    except Violation as violation:
        raise InvalidArgument(violation.description, field=field) from None


def check_group_path(path: str, field: str = "group") -> str:
    """A WLCG group such as "/panda/production"; "groups/panda/production" is accepted too."""
    if path.startswith("groups/"):
        path = "/" + path.removeprefix("groups/")
    path = path.rstrip("/") if path != "/" else path
    try:
        return contract.check_group_path(path, field)
    except Violation as violation:
        raise InvalidArgument(violation.description, field=field) from None


def check_group_paths(paths: Iterable[str], field: str = "groups") -> list[str]:
    return list(dict.fromkeys(check_group_path(p, field) for p in paths if p.strip()))


def check_queue_names(queues: Iterable[str], field: str = "queues") -> list[str]:
    checked = []
    for queue in queues:
        queue = queue.strip()
        try:
            checked.append(contract.check_queue_name(queue, field))
        except Violation as violation:
            raise InvalidArgument(violation.description, field=field) from None
    return list(dict.fromkeys(checked))


def check_redirect_uris(uris: Iterable[str], field: str = "redirect_uris") -> list[str]:
    """Absolute https URLs, or http on the loopback (contract.check_redirect_uri)."""
    try:
        return contract.check_redirect_uris(uris, field)
    except Violation as violation:
        raise InvalidArgument(violation.description, field=violation.field) from None


def check_email(email: str, field: str = "email") -> str:
    email = email.strip()
    try:
        return contract.check_email(email, field)
    except Violation as violation:
        raise InvalidArgument(violation.description, field=field) from None


def group_resource_name(path: str) -> str:
    return "groups/" + path.lstrip("/")


def default_groups(vo: str = DEFAULT_VO) -> list[str]:
    """The VO itself and one group per role, so a new installation can grant every role."""
    return [f"/{vo}", *(f"/{vo}/{role}" for role in sorted(ROLES - {"user"}))]
