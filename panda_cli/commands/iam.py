"""`panda iam user|group|member|client|key ...` (identity administration, admins only)."""

from __future__ import annotations

import argparse

from panda_cli import iam
from panda_cli.arguments import Commands, iam_address_option

__all__ = ["register"]


def _password_options(parser: argparse.ArgumentParser) -> None:
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--password", action="store_true", help="ask for a password (typed twice, not shown)")
    choice.add_argument("--password-stdin", action="store_true", help="read the password from standard input")


def register(commands: Commands) -> None:
    areas = commands.with_options(iam_address_option()).group(
        "iam", "users, groups, clients and signing keys (admins)", "identity administration (admins only)",
        dest="iam_area", metavar="AREA")

    users = areas.group("user", "people who sign in", "users", dest="iam_command")
    p = users.command("list", iam.cmd_user_list, "users, their groups and status")
    p.add_argument("--group", metavar="GROUP", help="only members of this group, e.g. /panda/production")
    p = users.command("add", iam.cmd_user_add, "create a user", json_flag=False)
    p.add_argument("name", metavar="NAME", help="account name, e.g. alice (the owner of what they submit)")
    p.add_argument("--display-name", metavar="TEXT", help="full name")
    p.add_argument("--email", metavar="ADDR")
    p.add_argument("--group", action="append", metavar="GROUP", help="WLCG group, e.g. /panda (repeatable)")
    _password_options(p)
    p = users.command("show", iam.cmd_user_show, "one user")
    p.add_argument("name", metavar="NAME")
    p = users.command("set", iam.cmd_user_set, "change a user's name, e-mail, status or password", json_flag=False)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--display-name", metavar="TEXT")
    p.add_argument("--email", metavar="ADDR")
    status = p.add_mutually_exclusive_group()
    status.add_argument("--enable", action="store_true", help="allow signing in again")
    status.add_argument("--disable", action="store_true", help="no sign-in, refresh tokens revoked")
    _password_options(p)
    p.add_argument("--no-password", action="store_true", help="remove the password")
    p = users.command("delete", iam.cmd_user_delete, "delete a user (their refresh tokens stop working)",
                      json_flag=False)
    p.add_argument("name", metavar="NAME")

    groups = areas.group("group", "WLCG groups (/vo, /vo/role)", "groups", dest="iam_command")
    groups.command("list", iam.cmd_group_list, "groups and their member counts")
    p = groups.command("add", iam.cmd_group_add, "create a group", json_flag=False)
    p.add_argument("path", metavar="GROUP", help="e.g. /panda/higgs")
    p.add_argument("--description", metavar="TEXT")
    p = groups.command("delete", iam.cmd_group_delete, "delete a group (its members and clients lose it)",
                       json_flag=False)
    p.add_argument("path", metavar="GROUP")

    members = areas.group("member", "put users in groups and take them out", "memberships", dest="iam_command")
    for name, handler, text in [("add", iam.cmd_member_add, "put a user in a group"),
                                ("remove", iam.cmd_member_remove, "take a user out of a group")]:
        p = members.command(name, handler, text, json_flag=False)
        p.add_argument("user", metavar="USER")
        p.add_argument("group", metavar="GROUP")

    clients = areas.group("client", "OAuth clients: robots and programs", "clients", dest="iam_command")
    clients.command("list", iam.cmd_client_list, "clients, their grants, groups and queues")
    p = clients.command("add", iam.cmd_client_add, "register a client; a robot's secret is printed once")
    p.add_argument("client_id", metavar="CLIENT_ID", help="e.g. panda-pilot-site1")
    p.add_argument("--public", action="store_true", help="a program people sign in through (no secret)")
    p.add_argument("--group", action="append", metavar="GROUP", help="its tokens' groups, e.g. /panda/pilot")
    p.add_argument("--queue", action="append", metavar="Q", help="queue its pilots may serve ('*': any)")
    p.add_argument("--grant-type", action="append", metavar="GRANT",
                   help="authorization_code, client_credentials, device_code or refresh_token (default: by type, "
                        "and authorization_code for a public client with a redirect URI)")
    p.add_argument("--redirect-uri", action="append", metavar="URL",
                   help="where a sign-in in the browser comes back (authorization_code): https, or http on loopback")
    p.add_argument("--description", metavar="TEXT")
    p = clients.command("show", iam.cmd_client_show, "one client")
    p.add_argument("client_id", metavar="CLIENT_ID")
    p = clients.command("delete", iam.cmd_client_delete, "delete a client", json_flag=False)
    p.add_argument("client_id", metavar="CLIENT_ID")
    p = clients.command("reset-secret", iam.cmd_client_reset_secret, "give a robot a new secret (printed once)")
    p.add_argument("client_id", metavar="CLIENT_ID")

    keys = areas.group("key", "token signing keys", "signing keys", dest="iam_command")
    keys.command("rotate", iam.cmd_key_rotate, "make a new signing key; tokens signed before stay valid")
