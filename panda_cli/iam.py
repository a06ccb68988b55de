"""Identity administration against the identity service (PANDA_IAM, default 127.0.0.1:25280):
`panda iam user|group|member|client|key ...`, and `panda serve iam`. Admins only, except
`panda whoami` (login.py)."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import field_mask_pb2

from panda.iam.v1 import iam_service_pb2 as pb
from panda.iam.v1 import iam_service_pb2_grpc, identity_pb2

from . import output
from .output import format_time, or_dash, render_fields, render_table
from .rpc import Client, CliError, unreachable_message
from .runners import import_component
from .settings import CliSettings

GRANT_SHORT_NAMES = {"urn:ietf:params:oauth:grant-type:device_code": "device_code"}


def iam_address(args: argparse.Namespace) -> str:
    return getattr(args, "iam", None) or CliSettings().iam_address


class IamClient(Client):
    """A channel to the identity service carrying the caller's token (see panda_runtime.client.credentials)."""

    def __init__(self, address: str) -> None:
        super().__init__(address)
        self.iam = iam_service_pb2_grpc.IamServiceStub(self.channel)

    def translate(self, error: grpc.RpcError) -> CliError:
        translated = super().translate(error)
        if translated.message == unreachable_message(self.address):
            return CliError(f"cannot reach the identity service at {self.address} (is `panda up` running? "
                            "set PANDA_IAM or --iam)", code=translated.code)
        return translated


def _call(args: argparse.Namespace, method: str, request: Any) -> Any:
    with IamClient(iam_address(args)) as client:
        return client.call(getattr(client.iam, method), request)


def _list_all(args: argparse.Namespace, method: str, request: Any, field: str) -> list[Any]:
    items: list[Any] = []
    with IamClient(iam_address(args)) as client:
        while True:
            response = client.call(getattr(client.iam, method), request)
            items.extend(getattr(response, field))
            if not response.next_page_token:
                return items
            request.page_token = response.next_page_token


def _read_password(args: argparse.Namespace) -> str | None:
    """--password-stdin reads one line; --password asks twice without echo. Never an argument:
    those show in `ps` and in shell history."""
    if getattr(args, "password_stdin", False):
        password = sys.stdin.readline().rstrip("\n")
        if not password:
            raise CliError("no password on standard input", exit_code=2)
        return password
    if getattr(args, "password", False):
        first = getpass.getpass("New password: ")
        if first != getpass.getpass("Again: "):
            raise CliError("the two passwords differ", exit_code=2)
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
    users = _list_all(args, "ListUsers", pb.ListUsersRequest(page_size=1000, group=args.group or ""), "users")
    if args.json:
        output.print_json([output.message_to_dict(u) for u in users])
        return 0
    rows = [[u.user_id, or_dash(u.display_name), or_dash(u.email), ", ".join(u.groups) or "-",
             "yes" if u.has_password else "no", _status(u.disabled)] for u in users]
    print(render_table(["USER", "NAME", "EMAIL", "GROUPS", "PASSWORD", "STATUS"], rows))
    return 0


def cmd_user_add(args: argparse.Namespace) -> int:
    user = identity_pb2.User(user_id=args.name, display_name=args.display_name or "", email=args.email or "",
                             groups=args.group or [], password=_read_password(args) or "")
    created = _call(args, "CreateUser", pb.CreateUserRequest(user=user)).user
    print(f"created user {created.user_id} (groups: {', '.join(created.groups) or 'none'})")
    return 0


def cmd_user_show(args: argparse.Namespace) -> int:
    user = _call(args, "GetUser", pb.GetUserRequest(user_id=args.name)).user
    if args.json:
        output.print_json(user)
    else:
        print(render_user(user))
    return 0


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
                       exit_code=2)
    request = pb.UpdateUserRequest(user=user, update_mask=field_mask_pb2.FieldMask(paths=paths))
    print(render_user(_call(args, "UpdateUser", request).user))
    return 0


def cmd_user_delete(args: argparse.Namespace) -> int:
    _call(args, "DeleteUser", pb.DeleteUserRequest(user_id=args.name))
    print(f"deleted user {args.name}")
    return 0


# --- groups and members ------------------------------------------------------------------


def cmd_group_list(args: argparse.Namespace) -> int:
    groups = _list_all(args, "ListGroups", pb.ListGroupsRequest(page_size=1000), "groups")
    if args.json:
        output.print_json([output.message_to_dict(g) for g in groups])
        return 0
    print(render_table(["GROUP", "MEMBERS", "DESCRIPTION"],
                       [[g.path, g.member_count, or_dash(g.description)] for g in groups], right=(1,)))
    return 0


def cmd_group_add(args: argparse.Namespace) -> int:
    group = identity_pb2.Group(path=args.path, description=args.description or "")
    created = _call(args, "CreateGroup", pb.CreateGroupRequest(group=group)).group
    print(f"created group {created.path}")
    return 0


def cmd_group_delete(args: argparse.Namespace) -> int:
    _call(args, "DeleteGroup", pb.DeleteGroupRequest(group=args.path))
    print(f"deleted group {args.path}")
    return 0


def cmd_member_add(args: argparse.Namespace) -> int:
    user = _call(args, "AddMember", pb.AddMemberRequest(user_id=args.user, group=args.group)).user
    print(f"{user.user_id} is in: {', '.join(user.groups)}")
    return 0


def cmd_member_remove(args: argparse.Namespace) -> int:
    user = _call(args, "RemoveMember", pb.RemoveMemberRequest(user_id=args.user, group=args.group)).user
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
        ("status", _status(client.disabled)),
        ("created", format_time(client.create_time)),
        ("updated", format_time(client.update_time)),
    ])


def _print_secret(client_id: str, secret: str) -> None:
    if secret:
        print(f"client secret of {client_id} (shown once; keep it where only the robot reads it):\n{secret}")


def cmd_client_list(args: argparse.Namespace) -> int:
    clients = _list_all(args, "ListClients", pb.ListClientsRequest(page_size=1000), "clients")
    if args.json:
        output.print_json([output.message_to_dict(c) for c in clients])
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
    )
    response = _call(args, "CreateClient", pb.CreateClientRequest(client=client))
    if args.json:
        output.print_json(response)
        return 0
    print(f"created {_client_type(response.client)} client {response.client.client_id}")
    _print_secret(response.client.client_id, response.client_secret)
    return 0


def cmd_client_show(args: argparse.Namespace) -> int:
    client = _call(args, "GetClient", pb.GetClientRequest(client_id=args.client_id)).client
    if args.json:
        output.print_json(client)
    else:
        print(render_client(client))
    return 0


def cmd_client_delete(args: argparse.Namespace) -> int:
    _call(args, "DeleteClient", pb.DeleteClientRequest(client_id=args.client_id))
    print(f"deleted client {args.client_id}")
    return 0


def cmd_client_reset_secret(args: argparse.Namespace) -> int:
    response = _call(args, "ResetClientSecret", pb.ResetClientSecretRequest(client_id=args.client_id))
    if args.json:
        output.print_json(response)
        return 0
    _print_secret(response.client.client_id, response.client_secret)
    return 0


# --- keys --------------------------------------------------------------------------------


def cmd_key_rotate(args: argparse.Namespace) -> int:
    response = _call(args, "RotateSigningKey", pb.RotateSigningKeyRequest())
    if args.json:
        output.print_json(response)
        return 0
    print(f"new signing key {response.active_key.kid}; the JWKS now publishes:")
    rows = [[k.kid, identity_pb2.SigningKey.State.Name(k.state).removeprefix("STATE_").lower(),
             format_time(k.create_time), format_time(k.retire_time), format_time(k.expire_time)]
            for k in response.published_keys]
    print(render_table(["KID", "STATE", "CREATED", "RETIRED", "DROPPED AFTER"], rows))
    return 0


# --- serve -------------------------------------------------------------------------------


def cmd_serve_iam(args: argparse.Namespace) -> int:
    iam_main = import_component("iam_svc.main", "the identity service")
    db = import_component("panda_runtime.service.db", "the database layer")
    not_migrated: type[Exception] = getattr(db, "DatabaseNotMigrated", RuntimeError)
    if args.iam:
        os.environ["PANDA_IAM"] = args.iam
    try:
        iam_main.run()
    except not_migrated as exc:
        raise CliError(str(exc)) from None
    return 0


# --- parser ------------------------------------------------------------------------------


def add_commands(commands: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    """`iam user|group|member|client|key ...` on the main parser; `command` is main's helper."""

    def sub(group: Any, name: str, handler: Callable[..., int], text: str, **kwargs: Any) -> argparse.ArgumentParser:
        parser = command(group, name, handler, text, **kwargs)
        parser.add_argument("--iam", metavar="ADDR", default=None,
                            help="the identity service's gRPC address (default: PANDA_IAM, else 127.0.0.1:25280)")
        return parser

    def password_options(parser: argparse.ArgumentParser) -> None:
        choice = parser.add_mutually_exclusive_group()
        choice.add_argument("--password", action="store_true", help="ask for a password (typed twice, not shown)")
        choice.add_argument("--password-stdin", action="store_true", help="read the password from standard input")

    iam = commands.add_parser("iam", help="users, groups, clients and signing keys (admins)",
                              description="identity administration (admins only)")
    areas = iam.add_subparsers(dest="iam_area", metavar="AREA", required=True)

    user = areas.add_parser("user", help="people who sign in", description="users")
    users = user.add_subparsers(dest="iam_command", metavar="COMMAND", required=True)
    p = sub(users, "list", cmd_user_list, "users, their groups and status")
    p.add_argument("--group", metavar="GROUP", help="only members of this group, e.g. /panda/production")
    p = sub(users, "add", cmd_user_add, "create a user", json_flag=False)
    p.add_argument("name", metavar="NAME", help="account name, e.g. alice (the owner of what they submit)")
    p.add_argument("--display-name", metavar="TEXT", help="full name")
    p.add_argument("--email", metavar="ADDR")
    p.add_argument("--group", action="append", metavar="GROUP", help="WLCG group, e.g. /panda (repeatable)")
    password_options(p)
    p = sub(users, "show", cmd_user_show, "one user")
    p.add_argument("name", metavar="NAME")
    p = sub(users, "set", cmd_user_set, "change a user's name, e-mail, status or password", json_flag=False)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--display-name", metavar="TEXT")
    p.add_argument("--email", metavar="ADDR")
    status = p.add_mutually_exclusive_group()
    status.add_argument("--enable", action="store_true", help="allow signing in again")
    status.add_argument("--disable", action="store_true", help="no sign-in, refresh tokens revoked")
    password_options(p)
    p.add_argument("--no-password", action="store_true", help="remove the password")
    p = sub(users, "delete", cmd_user_delete, "delete a user (their refresh tokens stop working)", json_flag=False)
    p.add_argument("name", metavar="NAME")

    group = areas.add_parser("group", help="WLCG groups (/vo, /vo/role)", description="groups")
    groups = group.add_subparsers(dest="iam_command", metavar="COMMAND", required=True)
    sub(groups, "list", cmd_group_list, "groups and their member counts")
    p = sub(groups, "add", cmd_group_add, "create a group", json_flag=False)
    p.add_argument("path", metavar="GROUP", help="e.g. /panda/higgs")
    p.add_argument("--description", metavar="TEXT")
    p = sub(groups, "delete", cmd_group_delete, "delete a group (its members and clients lose it)", json_flag=False)
    p.add_argument("path", metavar="GROUP")

    member = areas.add_parser("member", help="put users in groups and take them out", description="memberships")
    members = member.add_subparsers(dest="iam_command", metavar="COMMAND", required=True)
    for name, handler, text in [("add", cmd_member_add, "put a user in a group"),
                                ("remove", cmd_member_remove, "take a user out of a group")]:
        p = sub(members, name, handler, text, json_flag=False)
        p.add_argument("user", metavar="USER")
        p.add_argument("group", metavar="GROUP")

    client = areas.add_parser("client", help="OAuth clients: robots and programs", description="clients")
    clients = client.add_subparsers(dest="iam_command", metavar="COMMAND", required=True)
    sub(clients, "list", cmd_client_list, "clients, their grants, groups and queues")
    p = sub(clients, "add", cmd_client_add, "register a client; a robot's secret is printed once")
    p.add_argument("client_id", metavar="CLIENT_ID", help="e.g. panda-pilot-site1")
    p.add_argument("--public", action="store_true", help="a program people sign in through (no secret)")
    p.add_argument("--group", action="append", metavar="GROUP", help="its tokens' groups, e.g. /panda/pilot")
    p.add_argument("--queue", action="append", metavar="Q", help="queue its pilots may serve ('*': any)")
    p.add_argument("--grant-type", action="append", metavar="GRANT",
                   help="client_credentials, device_code or refresh_token (default: by type)")
    p.add_argument("--description", metavar="TEXT")
    p = sub(clients, "show", cmd_client_show, "one client")
    p.add_argument("client_id", metavar="CLIENT_ID")
    p = sub(clients, "delete", cmd_client_delete, "delete a client", json_flag=False)
    p.add_argument("client_id", metavar="CLIENT_ID")
    p = sub(clients, "reset-secret", cmd_client_reset_secret, "give a robot a new secret (printed once)")
    p.add_argument("client_id", metavar="CLIENT_ID")

    key = areas.add_parser("key", help="token signing keys", description="signing keys")
    keys = key.add_subparsers(dest="iam_command", metavar="COMMAND", required=True)
    sub(keys, "rotate", cmd_key_rotate, "make a new signing key; tokens signed before stay valid")


def add_serve_command(serve_commands: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    p = command(serve_commands, "iam", cmd_serve_iam, "the identity service (OIDC over HTTP, gRPC, metrics)",
                json_flag=False)
    p.add_argument("--iam", metavar="ADDR", default=None, help="gRPC address to listen on (default: PANDA_IAM)")
