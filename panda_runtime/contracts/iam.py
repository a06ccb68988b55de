"""The rules of panda.iam.v1's fields: user names, client ids, group paths, the queues a pilot
client may serve, and the free text of users, groups and clients."""

from __future__ import annotations

import re

from panda_runtime.contracts.rules import Violation, check_name, check_text

__all__ = [
    "ANY_QUEUE", "CLIENT_ID", "EMAIL", "GROUP_PATH", "MAX_DESCRIPTION_LENGTH", "MAX_TEXT_LENGTH", "QUEUE_NAME",
    "USER_NAME", "check_client_id", "check_description", "check_email", "check_group_path", "check_queue_name",
    "check_text_field", "check_user_name",
]

# Lower case, since a user name is the owner of jobs and tasks and must not differ by case alone.
USER_NAME = re.compile(r"[a-z][a-z0-9._-]{0,63}")
CLIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
GROUP_PATH = re.compile(r"(/[A-Za-z0-9][A-Za-z0-9._-]{0,63}){1,8}")
QUEUE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# Something@somewhere, no spaces or control characters, a column's length at most.
EMAIL = re.compile(r"[^@\s\x00-\x1f]+@[^@\s\x00-\x1f]+")
ANY_QUEUE = "*"
# Display names and e-mail addresses; descriptions of groups and clients.
MAX_TEXT_LENGTH = 256
MAX_DESCRIPTION_LENGTH = 4000


def check_user_name(name: str, field: str = "user_id") -> str:
    return check_name(name, field, USER_NAME, "a user name: lower-case letters, digits, '.', '_' and '-', "
                                              "starting with a letter, at most 64 characters")


def check_client_id(client_id: str, field: str = "client_id") -> str:
    return check_name(client_id, field, CLIENT_ID, "a client id: letters, digits, '.', '_' and '-', "
                                                   "at most 64 characters")


def check_group_path(path: str, field: str = "group") -> str:
    return check_name(path, field, GROUP_PATH, "a group: a path such as /panda or /panda/production "
                                               "(letters, digits, '.', '_', '-')")


def check_queue_name(queue: str, field: str = "queues") -> str:
    if queue != ANY_QUEUE and not QUEUE_NAME.fullmatch(queue):
        raise Violation(field, f"{queue[:80]!r} is not a queue name (or '*' for any)")
    return queue


def check_email(email: str, field: str = "email") -> str:
    """Empty, or an address."""
    if email and (len(email) > MAX_TEXT_LENGTH or not EMAIL.fullmatch(email)):
        raise Violation(field, f"{email[:80]!r} is not an e-mail address")
    return email


def check_text_field(value: str, field: str) -> str:
    return check_text(value, field, max_length=MAX_TEXT_LENGTH)


def check_description(value: str, field: str) -> str:
    return check_text(value, field, max_length=MAX_DESCRIPTION_LENGTH)
