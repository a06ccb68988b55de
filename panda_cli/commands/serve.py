"""`panda serve server|jedi|iam|gateway|harvester`: a service in the foreground, in this process."""

from __future__ import annotations

from panda_cli import runners
from panda_cli.arguments import (
    SERVER_LISTEN_HELP,
    Commands,
    iam_address_option,
    jedi_address_option,
    server_address_option,
)
from panda_runtime.settings import DEFAULT_GATEWAY_ADDRESS, DEFAULT_HARVESTER_ADDRESS

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
    # The gateway calls the server, JEDI and the identity service.
    p = serve.with_options(server_address_option()).with_options(jedi_address_option()).with_options(
        iam_address_option()).command(
        "gateway", runners.cmd_serve_gateway,
        "the HTTP/JSON gateway (the server's, JEDI's and the identity service's APIs over HTTP, "
        "/openapi.json, the API page /docs, metrics)", json_flag=False)
    p.add_argument("--gateway", metavar="ADDR", default=None,
                   help=f"the HTTP address to listen on (default: PANDA_GATEWAY, else the settings file's, "
                   f"else {DEFAULT_GATEWAY_ADDRESS})")
    # Harvester calls the server.
    p = serve.with_options(server_address_option()).command(
        "harvester", runners.cmd_serve_harvester,
        "harvester: provisions pilots (workers) for the queues of its configuration (gRPC health, metrics)",
        json_flag=False)
    p.add_argument("--harvester", metavar="ADDR", default=None,
                   help=f"the gRPC address to listen on (default: PANDA_HARVESTER_ADDRESS, else "
                   f"{DEFAULT_HARVESTER_ADDRESS})")
    p.add_argument("--queue-config", metavar="FILE", default=None,
                   help="the queue configuration, JSON (default: PANDA_HARVESTER_QUEUE_CONFIG, else "
                   "queueconfig.json in the data dir)")
    p.add_argument("--harvester-id", metavar="ID", default=None,
                   help="this instance's id (default: PANDA_HARVESTER_ID, else `harvester`)")
