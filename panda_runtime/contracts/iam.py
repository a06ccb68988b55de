"""The rules of panda.iam.v1's fields: user names, client ids, group paths, the queues a pilot
client may serve, and the free text of users, groups and clients."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from panda_runtime.contracts.rules import Violation, check_name, check_text

__all__ = [
    "ANY_QUEUE",
    "CLIENT_ID",
    "EMAIL",
    "GROUP_PATH",
    "MAX_DESCRIPTION_LENGTH",
    "MAX_REDIRECT_URIS",
    "MAX_REDIRECT_URI_LENGTH",
    "MAX_TEXT_LENGTH",
    "QUEUE_NAME",
    "USER_NAME",
    "check_client_id",
    "check_description",
    "check_email",
    "check_group_path",
    "check_queue_name",
    "check_redirect_uri",
    "check_redirect_uris",
    "check_text_field",
    "check_user_name",
    "is_loopback_host",
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
# Redirect URIs of a client (authorization_code grant): how many, and how long each.
MAX_REDIRECT_URIS = 10
MAX_REDIRECT_URI_LENGTH = 2000
# What a redirect URI may hold: printable ASCII without spaces, quotes, backslashes or angle
# brackets (anything else is percent-encoded), so it goes into a Location header and an OAuth
# error as it is.
_URI_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")


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


def is_loopback_host(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1 (RFC 8252 §7.3: where plain http stays on the machine)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_redirect_uri(uri: str, field: str = "redirect_uris") -> str:
    """An absolute https URL, or http on a loopback host; no fragment (RFC 6749 §3.1.2), no
    user and password, nothing a Location header could not carry."""
    shown = uri if len(uri) <= 80 else uri[:77] + "..."
    if len(uri) > MAX_REDIRECT_URI_LENGTH:
        raise Violation(field, f"a redirect URI has at most {MAX_REDIRECT_URI_LENGTH} characters")
    if not _URI_CHARACTERS.fullmatch(uri):
        raise Violation(field, f"{shown!r} is not a URL (spaces, quotes and characters beyond ASCII are "
                               "percent-encoded)")
    try:
        parts = urlsplit(uri)
        host = parts.hostname or ""
        parts.port  # noqa: B018  # a port that is not a number raises here
    except ValueError:
        raise Violation(field, f"{shown!r} is not a URL") from None
    if parts.scheme not in ("https", "http") or not host:
        raise Violation(field, f"{shown!r} is not an absolute https URL")
    if parts.scheme == "http" and not is_loopback_host(host):
        raise Violation(field, f"{shown!r} uses plain http on a host other than the loopback: use https")
    if "#" in uri:
        raise Violation(field, f"{shown!r} has a fragment, which a redirect URI may not have")
    if parts.username is not None or parts.password is not None:
        raise Violation(field, f"{shown!r} holds a user name or password")
    return uri


def check_redirect_uris(uris: Iterable[str], field: str = "redirect_uris") -> list[str]:
    """Each a redirect URI (`field[i]`), at most MAX_REDIRECT_URIS, duplicates dropped."""
    checked = [check_redirect_uri(uri, f"{field}[{index}]") for index, uri in enumerate(uris)]
    if len(checked) > MAX_REDIRECT_URIS:
        raise Violation(field, f"a client has at most {MAX_REDIRECT_URIS} redirect URIs")
    return list(dict.fromkeys(checked))
