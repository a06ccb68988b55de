"""`panda login`, `panda logout` and `panda whoami`."""

from __future__ import annotations

from panda_cli import login
from panda_cli.arguments import Commands, iam_address_option

__all__ = ["register"]


def register(commands: Commands) -> None:
    p = commands.command("login", login.cmd_login,
                         "sign in through the browser (device code); saves your tokens", json_flag=False)
    p.add_argument("--issuer", metavar="URL",
                   help="the identity service (default: the first of PANDA_AUTH_ISSUERS, else PANDA_IAM_ISSUER)")
    commands.command("logout", login.cmd_logout, "sign out: revoke the sign-in and delete the saved tokens",
                     json_flag=False)
    commands.with_options(iam_address_option()).command(
        "whoami", login.cmd_whoami, "who the services take you for: subject, groups, roles, expiry")
