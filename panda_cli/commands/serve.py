"""`panda serve server|jedi|iam`: a service in the foreground, in this process."""

from __future__ import annotations

from panda_cli import runners
from panda_cli.arguments import SERVER_LISTEN_HELP, Commands, server_address_option

__all__ = ["register"]


def register(commands: Commands) -> None:
    serve = commands.group("serve", "run a service in the foreground", "services", dest="serve_command",
                           metavar="SERVICE")
    serve.with_options(server_address_option(SERVER_LISTEN_HELP)).command(
        "server", runners.cmd_serve_server, "the job server (gRPC and metrics)", json_flag=False)
    # JEDI calls the server.
    p = serve.with_options(server_address_option()).command(
        "jedi", runners.cmd_serve_jedi, "JEDI, the task engine (gRPC and metrics)", json_flag=False)
    p.add_argument("--jedi", metavar="ADDR", default=None, help="address to listen on (default: PANDA_JEDI)")
    p = serve.command("iam", runners.cmd_serve_iam, "the identity service (OIDC over HTTP, gRPC, metrics)",
                      json_flag=False)
    p.add_argument("--iam", metavar="ADDR", default=None, help="gRPC address to listen on (default: PANDA_IAM)")
