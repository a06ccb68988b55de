"""uvicorn serving a service's HTTP endpoints (the identity service's OIDC endpoints, the
HTTP/JSON gateway) as a task of the service's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator, Sequence

import uvicorn
from starlette.applications import Starlette

__all__ = ["HttpServer"]


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: this process stops on its gRPC server's
    signal handlers and then tells uvicorn to exit."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _listen(host: str, port: int) -> socket.socket:
    """Binds the HTTP port here, so a port in use is a clear error rather than uvicorn's exit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise SystemExit(f"cannot listen for HTTP on {host}:{port}: {error}") from None
    # Accepted connections inherit it: without it, a keep-alive connection's second response
    # waited for the client's delayed ACK (about 40 ms on Linux) before its body went out.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.listen(128)
    sock.setblocking(False)
    return sock


class HttpServer:
    """`trusted_proxies`: addresses or networks whose X-Forwarded-For names the client; with none
    (the default), X-Forwarded-For is ignored, whoever sends it (uvicorn would otherwise trust
    it from loopback)."""

    def __init__(self, app: Starlette, host: str, port: int, trusted_proxies: Sequence[str] = ()) -> None:
        self._host, self._port = host, port
        self._server = _Server(uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="off", server_header=False,
            proxy_headers=bool(trusted_proxies), forwarded_allow_ips=list(trusted_proxies)))
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listens, and returns once uvicorn serves."""
        sock = _listen(self._host, self._port)
        self._task = task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if task.done():
                task.result()
                raise SystemExit(f"HTTP on {self._host}:{self._port} did not start")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task
