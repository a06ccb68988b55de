"""What the token check costs.

1. In process: `TokenAuthenticator.verify` against a real identity service's JWKS (fetched once,
   then cached): a token seen for the first time (signature and claims checked) and a token seen
   before (the verified-token cache), in microseconds per call.
2. Over gRPC: unary calls (QueueService.ListQueues, one client, one at a time, the same token
   on both) against a server that checks tokens and against one that does not, in microseconds
   per call.

The effect on dispatch throughput is measured by `bench/dispatch.py --auth token|none`.

    python bench/auth.py [--tokens 2000] [--cached-calls 200000] [--rpcs 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _mint(identity, count: int) -> list[str]:  # type: ignore[no-untyped-def]
    from iam_svc.main import IamSettings, issue_user_tokens

    settings = IamSettings(database_url=identity.database_url, iam_issuer=identity.issuer,
                           auth_issuers=[identity.issuer])
    return [issue_user_tokens(settings, "alice")["access_token"] for _ in range(count)]


async def _in_process(issuer: str, tokens: list[str], cached_calls: int) -> tuple[float, float]:
    from panda_runtime.service.auth import TokenAuthenticator

    check = TokenAuthenticator([issuer], audience="panda-mesh", cache_size=len(tokens) + 10)
    try:
        await check.verify(tokens[0])  # fetches discovery and JWKS once
        started = time.perf_counter()
        for token in tokens[1:]:
            await check.verify(token)
        first_seen = (time.perf_counter() - started) / (len(tokens) - 1)
        started = time.perf_counter()
        for _ in range(cached_calls):
            await check.verify(tokens[1])
        cached = (time.perf_counter() - started) / cached_calls
    finally:
        await check.close()
    return first_seen * 1e6, cached * 1e6


def _rpc_cost(data_dir: Path, env: dict[str, str], token: str, calls: int) -> float:
    from panda.server.v1 import queue_service_pb2, queue_service_pb2_grpc
    from panda_runtime.client.channels import sync_channel
    from panda_runtime.client.credentials import StaticToken
    from tools.cluster import fresh_database, start_server

    data_dir.mkdir(parents=True)
    server = start_server(data_dir, fresh_database("sqlite", data_dir, ""), {"PANDA_METRICS_PORT": "0", **env})
    try:
        with sync_channel(server.address, StaticToken(token) if token else None) as channel:
            stub = queue_service_pb2_grpc.QueueServiceStub(channel)
            request = queue_service_pb2.ListQueuesRequest(page_size=1)
            for _ in range(200):  # warm up: connection, caches
                stub.ListQueues(request, timeout=10)
            started = time.perf_counter()
            for _ in range(calls):
                stub.ListQueues(request, timeout=10)
            return (time.perf_counter() - started) / calls * 1e6
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=2000, help="distinct tokens verified once each")
    parser.add_argument("--cached-calls", type=int, default=200_000)
    parser.add_argument("--rpcs", type=int, default=3000, help="unary calls per server")
    args = parser.parse_args()

    from tools.cluster import start_iam

    data_dir = Path(tempfile.mkdtemp(prefix="panda-bench-auth-"))
    identity = start_iam(data_dir / "iam")
    try:
        print(f"minting {args.tokens} tokens ...", flush=True)
        tokens = _mint(identity, args.tokens)
        first_seen_us, cached_us = asyncio.run(_in_process(identity.issuer, tokens, args.cached_calls))
        print(f"verify, token seen first: {first_seen_us:.1f} us; seen before: {cached_us:.2f} us", flush=True)
        checked = _rpc_cost(data_dir / "checked", identity.trust_env(), identity.token("admin"), args.rpcs)
        # The same token on the same kind of channel, so only the server's work differs.
        open_ = _rpc_cost(data_dir / "open", {"PANDA_AUTH_MODE": "none"}, identity.token("admin"), args.rpcs)
        print(f"unary call: {checked:.0f} us with the check, {open_:.0f} us without", flush=True)
        print(f"check_first_seen_us={first_seen_us:.1f} check_cached_us={cached_us:.2f} "
              f"rpc_checked_us={checked:.0f} rpc_open_us={open_:.0f} rpc_overhead_us={checked - open_:.0f}",
              flush=True)
        return 0
    finally:
        identity.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
