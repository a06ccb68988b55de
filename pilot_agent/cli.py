"""The pilot's command line: `add_arguments` and `run` are what `panda pilot` calls too."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from panda_runtime.client.credentials import credentials_from_settings
from pilot_agent.agent import Pilot
from pilot_agent.config import PilotConfig
from pilot_agent.logs import configure_logging
from pilot_agent.payload import PILOT_CREDENTIALS
from pilot_agent.secrecy import hide_credentials
from pilot_agent.settings import PilotSettings

__all__ = ["add_arguments", "config_from_args", "main", "run"]


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--queue", required=True, help="queue (PanDA site) to take jobs from")
    parser.add_argument(
        "--server", default=None, help="server address host:port, or file:DIR for a pilot with no network that talks "
        "through files harvester shares (default: $PANDA_SERVER, else 127.0.0.1:25080)"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where job work dirs go (default: a new temp dir under the data dir, else under /tmp)",
    )
    parser.add_argument("--cores", type=_non_negative_int, default=0, help="cores offered (default: all)")
    parser.add_argument(
        "--memory-mb", type=_non_negative_int, default=0, help="memory offered, MiB (default: the node's total)"
    )
    parser.add_argument(
        "--disk-mb", type=_non_negative_int, default=0, help="disk offered, MiB (default: free space of the work dir)"
    )
    parser.add_argument(
        "--lifetime", type=_positive_float, default=86400.0, help="pilot's own walltime, seconds (default: 86400)"
    )
    parser.add_argument(
        "--idle-timeout",
        type=_non_negative_float,
        default=300.0,
        help="exit after asking this long without getting a job, seconds (default: 300)",
    )
    parser.add_argument(
        "--heartbeat-interval",
        type=_non_negative_float,
        default=0.0,
        help="seconds between job heartbeats (default: what the server's Welcome says)",
    )
    parser.add_argument(
        "--looping-timeout",
        type=_non_negative_float,
        default=7200.0,
        help="kill a payload whose work dir saw no file change for this long, seconds; 0 = never (default: 7200)",
    )
    parser.add_argument(
        "--max-jobs", type=_non_negative_int, default=0, help="exit after this many jobs; 0 = no limit (default)"
    )
    parser.add_argument(
        "--worker-id",
        default="",
        help="id of the worker (batch job) this pilot runs in (default: PANDA_WORKER_ID)",
    )
    parser.add_argument(
        "--monitor-interval",
        type=_positive_float,
        default=5.0,
        help="seconds between measurements of the payload's memory and CPU (default: 5)",
    )
    parser.add_argument(
        "--kill-grace",
        type=_non_negative_float,
        default=10.0,
        help="seconds between SIGTERM and SIGKILL when stopping a payload (default: 10)",
    )


def _default_workdir(settings: PilotSettings) -> Path:
    # Each pilot gets its own dir, so several pilots on one node never share job dirs.
    for parent in (settings.data_dir / "pilots", None):
        try:
            if parent is not None:
                parent.mkdir(parents=True, exist_ok=True)
            return Path(tempfile.mkdtemp(prefix="pilot-", dir=parent))
        except OSError:
            continue
    raise OSError("cannot create a work dir in the data dir or the temp dir")


def config_from_args(args: argparse.Namespace) -> PilotConfig:
    settings = PilotSettings()
    return PilotConfig(
        queue=args.queue,
        server=args.server or settings.server_address,
        workdir=(args.workdir.resolve() if args.workdir else _default_workdir(settings)),
        cores=args.cores,
        memory_mb=args.memory_mb,
        disk_mb=args.disk_mb,
        lifetime=args.lifetime,
        idle_timeout=args.idle_timeout,
        heartbeat_interval=args.heartbeat_interval,
        looping_timeout=args.looping_timeout,
        max_jobs=args.max_jobs,
        worker_id=args.worker_id or settings.worker_id,
        monitor_interval=getattr(args, "monitor_interval", 5.0),
        kill_grace=getattr(args, "kill_grace", 10.0),
        tokens=credentials_from_settings(settings),
    )


def run(args: argparse.Namespace) -> int:
    """Run a pilot until it exits; the process exit code (0 ok, 2 refused by the server)."""
    pilot = Pilot(config_from_args(args))
    configure_logging(pilot.pilot_id)
    # Its payloads run as the same user: they must not read its credentials from /proc.
    hide_credentials(PILOT_CREDENTIALS)
    try:
        return asyncio.run(pilot.run())
    except KeyboardInterrupt:  # a Ctrl-C before the pilot's own handler was installed
        return 130


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pilot_agent", description="Run a PanDA mesh pilot: take jobs from a queue and run them."
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
