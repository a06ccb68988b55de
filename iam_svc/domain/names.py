"""What a valid user name, group path, client id and queue name look like."""

from __future__ import annotations

import re
from collections.abc import Iterable

from panda_runtime.service.errors import InvalidArgument
from panda_runtime.service.principals import ROLES

__all__ = [
    "ANY_QUEUE", "DEFAULT_VO", "check_client_id", "check_email", "check_group_path", "check_group_paths",
    "check_queue_names", "check_user_name", "default_groups", "group_resource_name",
]

# The VO of the embedded provider's own groups.
DEFAULT_VO = "panda"

# Lower case, since a user name is the owner of jobs and tasks and must not differ by case alone.
_USER_NAME = re.compile(r"^[a-z][a-z0-9._-]{0,63}$")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_GROUP_PATH = re.compile(r"^(/[A-Za-z0-9][A-Za-z0-9._-]{0,63}){1,8}$")
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
ANY_QUEUE = "*"


def check_user_name(name: str, field: str = "user_id") -> str:
    name = name.removeprefix("users/")
    if not _USER_NAME.match(name):
        raise InvalidArgument(
            f"{name!r} is not a user name: lower-case letters, digits, '.', '_' and '-', starting with a letter, "
            "at most 64 characters", field=field)
    return name


def check_client_id(client_id: str, field: str = "client_id") -> str:
    client_id = client_id.removeprefix("clients/")
    if not _CLIENT_ID.match(client_id):
        raise InvalidArgument(
            f"{client_id!r} is not a client id: letters, digits, '.', '_' and '-', at most 64 characters",
            field=field)
    return client_id


def check_group_path(path: str, field: str = "group") -> str:
    """A WLCG group such as "/panda/production"; "groups/panda/production" is accepted too."""
    if path.startswith("groups/"):
        path = "/" + path.removeprefix("groups/")
    path = path.rstrip("/") if path != "/" else path
    if not _GROUP_PATH.match(path):
        raise InvalidArgument(
            f"{path!r} is not a group: a path such as /panda or /panda/production (letters, digits, '.', '_', '-')",
            field=field)
    return path


def check_group_paths(paths: Iterable[str], field: str = "groups") -> list[str]:
    return list(dict.fromkeys(check_group_path(p, field) for p in paths if p.strip()))


def check_queue_names(queues: Iterable[str], field: str = "queues") -> list[str]:
    checked = []
    for queue in queues:
        queue = queue.strip()
        if queue != ANY_QUEUE and not _QUEUE_NAME.match(queue):
            raise InvalidArgument(f"{queue!r} is not a queue name (or '*' for any)", field=field)
        checked.append(queue)
    return list(dict.fromkeys(checked))


def check_email(email: str, field: str = "email") -> str:
    email = email.strip()
    if email and (len(email) > 256 or not _EMAIL.match(email)):
        raise InvalidArgument(f"{email!r} is not an e-mail address", field=field)
    return email


def group_resource_name(path: str) -> str:
    return "groups/" + path.lstrip("/")


def default_groups(vo: str = DEFAULT_VO) -> list[str]:
    """The VO itself and one group per role, so a new installation can grant every role."""
    return [f"/{vo}", *(f"/{vo}/{role}" for role in sorted(ROLES - {"user"}))]
