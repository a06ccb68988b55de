"""Identity administration against the identity service (PANDA_IAM, default 127.0.0.1:25280):
`panda iam user|group|member|client|key ...`. Admins only, except `panda whoami` (login.py).
The parsers are in commands/iam.py."""

from __future__ import annotations

import argparse
import getpass
import sys

from google.protobuf import field_mask_pb2

from panda.iam.v1 import iam_service_pb2 as pb
from panda.iam.v1 import identity_pb2

from . import output
from .clients import all_pages, iam_client
from .errors import CliError, ExitCode
from .output import format_time, or_dash, render_fields, render_table

__all__ = [
    "GRANT_SHORT_NAMES", "cmd_client_add", "cmd_client_delete", "cmd_client_list", "cmd_client_reset_secret",
    "cmd_client_show", "cmd_group_add", "cmd_group_delete", "cmd_group_list", "cmd_key_rotate", "cmd_member_add",
    "cmd_member_remove", "cmd_user_add", "cmd_user_delete", "cmd_user_list", "cmd_user_set", "cmd_user_show",
    "render_client", "render_user",
]

GRANT_SHORT_NAMES = {"urn:ietf:params:oauth:grant-type:device_code": "device_code"}


def _read_password(args: argparse.Namespace) -> str | None:
    """--password-stdin reads one line; --password asks twice without echo. Never an argument:
    those show in `ps` and in shell history."""
    if getattr(args, "password_stdin", False):
        password = sys.stdin.readline().rstrip("\n")
        if not password:
            raise CliError("no password on standard input", ExitCode.USAGE)
        return password
    if getattr(args, "password", False):
        first = getpass.getpass("New password: ")
        if first != getpass.getpass("Again: "):
            raise CliError("the two passwords differ", ExitCode.USAGE)
        return first
    return None


# --- users -------------------------------------------------------------------------------


def _status(disabled: bool) -> str:
    return "disabled" if disabled else "enabled"


def render_user(user: identity_pb2.User) -> str:
    return render_fields([
        ("user", user.user_id),
        ("name", user.display_name),
        ("email", user.email),
        ("groups", ", ".join(user.groups)),
        ("password", "set" if user.has_password else "none (cannot sign in with a password)"),
        ("status", _status(user.disabled)),
        ("created", format_time(user.create_time)),
        ("updated", format_time(user.update_time)),
    ])


def cmd_user_list(args: argparse.Namespace) -> int:
    with iam_client(args) as client:
        request = pb.ListUsersRequest(page_size=1000, group=args.group or "")
        users = [user for page in all_pages(client.iam.ListUsers, request) for user in page.users]
    if args.json:
        output.print_list_json("users", users)
        return 0
    rows = [[u.user_id, or_dash(u.display_name), or_dash(u.email), ", ".join(u.groups) or "-",
             "yes" if u.has_password else "no", _status(u.disabled)] for u in users]
    print(render_table(["USER", "NAME", "EMAIL", "GROUPS", "PASSWORD", "STATUS"], rows))
    return 0


def cmd_user_add(args: argparse.Namespace) -> int:
    user = identity_pb2.User(user_id=args.name, display_name=args.display_name or "", email=args.email or "",
                             groups=args.group or [], password=_read_password(args) or "")
    with iam_client(args) as client:
        created = client.iam.CreateUser(pb.CreateUserRequest(user=user)).user
    print(f"created user {created.user_id} (groups: {', '.join(created.groups) or 'none'})")
    return 0


def cmd_user_show(args: argparse.Namespace) -> int:
    with iam_client(args) as client:
        user = client.iam.GetUser(pb.GetUserRequest(user_id=args.name)).user
    return output.show(user, render_user, as_json=args.json)


def cmd_user_set(args: argparse.Namespace) -> int:
    user = identity_pb2.User(user_id=args.name)
    paths = []
    if args.display_name is not None:
        user.display_name = args.display_name
        paths.append("display_name")
    if args.email is not None:
        user.email = args.email
        paths.append("email")
    if args.enable or args.disable:
        user.disabled = bool(args.disable)
        paths.append("disabled")
    password = _read_password(args)
    if password is not None or args.no_password:
        user.password = password or ""
        paths.append("password")
    if not paths:
        raise CliError("nothing to change: give --display-name, --email, --enable/--disable or a password option",
                       ExitCode.USAGE)
    request = pb.UpdateUserRequest(user=user, update_mask=field_mask_pb2.FieldMask(paths=paths))
    with iam_client(args) as client:
        updated = client.iam.UpdateUser(request).user
    print(render_user(updated))
    return 0


def cmd_user_delete(args: argparse.Namespace) -> int:
    with iam_client(args) as client:
        client.iam.DeleteUser(pb.DeleteUserRequest(user_id=args.name))
    print(f"deleted user {args.name}")
    return 0


# --- groups and members ------------------------------------------------------------------


def cmd_group_list(args: argparse.Namespace) -> int:
    with iam_client(args) as client:
        pages = all_pages(client.iam.ListGroups, pb.ListGroupsRequest(page_size=1000))
        groups = [group for page in pages for group in page.groups]
    if args.json:
        output.print_list_json("groups", groups)
        return 0
    print(render_table(["GROUP", "MEMBERS", "DESCRIPTION"],
                       [[g.path, g.member_count, or_dash(g.description)] for g in groups], right=(1,)))
    return 0


def cmd_group_add(args: argparse.Namespace) -> int:
    group = identity_pb2.Group(path=args.path, description=args.description or "")
    with iam_client(args) as client:
        created = client.iam.CreateGroup(pb.CreateGroupRequest(group=group)).group
    print(f"created group {created.path}")
    return 0


def cmd_group_delete(args: argparse.Namespace) -> int:
    with iam_client(args) as client:
        client.iam.DeleteGroup(pb.DeleteGroupRequest(group=args.path))
    print(f"deleted group {args.path}")
    return 0


def cmd_member_add(args: argparse.Namespace) -> int:
    with iam_client(args) as client:
        user = client.iam.AddMember(pb.AddMemberRequest(user_id=args.user, group=args.group)).user
    print(f"{user.user_id} is in: {', '.join(user.groups)}")
    return 0


def cmd_member_remove(args: argparse.Namespace) -> int:
    with iam_client(args) as client:
        user = client.iam.RemoveMember(pb.RemoveMemberRequest(user_id=args.user, group=args.group)).user
    print(f"{user.user_id} is in: {', '.join(user.groups) or 'no group'}")
    return 0


# --- clients -----------------------------------------------------------------------------


def _client_type(client: identity_pb2.Client) -> str:
    return "public" if client.type == identity_pb2.Client.TYPE_PUBLIC else "confidential"


def _grants(client: identity_pb2.Client) -> str:
    return ", ".join(GRANT_SHORT_NAMES.get(g, g) for g in client.grant_types)


def render_client(client: identity_pb2.Client) -> str:
    return render_fields([
        ("client", client.client_id),
        ("description", client.description),
        ("type", _client_type(client)),
        ("grant types", _grants(client)),
        ("groups", ", ".join(client.groups)),
        ("queues", ", ".join(client.queues)),
        ("redirect URIs", ", ".join(client.redirect_uris)),
        ("status", _status(client.disabled)),
        ("created", format_time(client.create_time)),
        ("updated", format_time(client.update_time)),
    ])


def _print_secret(client_id: str, secret: str) -> None:
    if secret:
        print(f"client secret of {client_id} (shown once; keep it where only the robot reads it):\n{secret}")


def cmd_client_list(args: argparse.Namespace) -> int:
    with iam_client(args) as client:
        pages = all_pages(client.iam.ListClients, pb.ListClientsRequest(page_size=1000))
        clients = [found for page in pages for found in page.clients]
    if args.json:
        output.print_list_json("clients", clients)
        return 0
    rows = [[c.client_id, _client_type(c), _grants(c), ", ".join(c.groups) or "-", ", ".join(c.queues) or "-",
             _status(c.disabled)] for c in clients]
    print(render_table(["CLIENT", "TYPE", "GRANTS", "GROUPS", "QUEUES", "STATUS"], rows))
    return 0


def cmd_client_add(args: argparse.Namespace) -> int:
    client = identity_pb2.Client(
        client_id=args.client_id, description=args.description or "",
        type=identity_pb2.Client.TYPE_PUBLIC if args.public else identity_pb2.Client.TYPE_CONFIDENTIAL,
        grant_types=args.grant_type or [], groups=args.group or [], queues=args.queue or [],
        redirect_uris=args.redirect_uri or [],
    )
    with iam_client(args) as service:
        response = service.iam.CreateClient(pb.CreateClientRequest(client=client))
    if args.json:
        output.print_json(response)
        return 0
    print(f"created {_client_type(response.client)} client {response.client.client_id}")
    _print_secret(response.client.client_id, response.client_secret)
    return 0


def cmd_client_show(args: argparse.Namespace) -> int:
    with iam_client(args) as service:
        client = service.iam.GetClient(pb.GetClientRequest(client_id=args.client_id)).client
    return output.show(client, render_client, as_json=args.json)


def cmd_client_delete(args: argparse.Namespace) -> int:
    with iam_client(args) as client:
        client.iam.DeleteClient(pb.DeleteClientRequest(client_id=args.client_id))
    print(f"deleted client {args.client_id}")
    return 0


def cmd_client_reset_secret(args: argparse.Namespace) -> int:
    with iam_client(args) as client:
        response = client.iam.ResetClientSecret(pb.ResetClientSecretRequest(client_id=args.client_id))
    if args.json:
        output.print_json(response)
        return 0
    _print_secret(response.client.client_id, response.client_secret)
    return 0


# --- keys --------------------------------------------------------------------------------


def cmd_key_rotate(args: argparse.Namespace) -> int:
    with iam_client(args) as client:
        response = client.iam.RotateSigningKey(pb.RotateSigningKeyRequest())
    if args.json:
        output.print_json(response)
        return 0
    print(f"new signing key {response.active_key.kid}; the JWKS now publishes:")
    rows = [[k.kid, output.enum_name(identity_pb2.SigningKey.State, k.state, "STATE_"),
             format_time(k.create_time), format_time(k.retire_time), format_time(k.expire_time)]
            for k in response.published_keys]
    print(render_table(["KID", "STATE", "CREATED", "RETIRED", "DROPPED AFTER"], rows))
    return 0
