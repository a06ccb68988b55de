"""`panda up`'s supervision with stand-in children (plain shell processes): each in its own
process group, a death noticed, and stop in order with SIGKILL for whatever ignores SIGTERM."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from panda_cli import up


def sh(script: str) -> list[str]:
    return ["/bin/sh", "-c", script]


def test_children_get_their_own_process_group(tmp_path: Path) -> None:
    supervisor = up.Supervisor(stop_timeout=5)
    try:
        child = supervisor.start("pilot-1", sh("echo hello; exec sleep 60"), dict(os.environ), tmp_path / "p.log")
        assert os.getpgid(child.pid) == child.pid != os.getpgid(0)
        assert supervisor.dead_child() is None
    finally:
        supervisor.stop_all()
    assert not child.alive()
    log = (tmp_path / "p.log").read_text()
    assert "panda up: starting pilot-1" in log and "hello" in log


def test_a_dead_child_is_noticed(tmp_path: Path) -> None:
    supervisor = up.Supervisor(stop_timeout=5)
    try:
        supervisor.start("server", sh("exec sleep 60"), dict(os.environ), tmp_path / "s.log")
        pilot = supervisor.start("pilot-1", sh("exit 3"), dict(os.environ), tmp_path / "p.log")
        deadline = time.monotonic() + 5
        while supervisor.dead_child() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert supervisor.dead_child() is pilot
        assert pilot.process is not None and pilot.process.returncode == 3
    finally:
        supervisor.stop_all()


def test_stop_terminates_pilots_before_the_server_and_kills_the_stubborn(tmp_path: Path) -> None:
    order = tmp_path / "order"
    supervisor = up.Supervisor(stop_timeout=1.0)
    # The server notes when it got SIGTERM; the pilot ignores SIGTERM and must be killed.
    server = supervisor.start(
        "server",
        sh(f"trap 'echo server >> {order}; exit 0' TERM; while :; do sleep 0.1; done"),
        dict(os.environ),
        tmp_path / "s.log",
    )
    pilot = supervisor.start(
        "pilot-1",
        sh(f"trap 'echo pilot >> {order}' TERM; while :; do sleep 0.1; done"),
        dict(os.environ),
        tmp_path / "p.log",
    )
    time.sleep(0.3)  # let the shells install their traps
    started = time.monotonic()
    supervisor.stop_all()
    elapsed = time.monotonic() - started
    assert not server.alive() and not pilot.alive()
    assert order.read_text().split() == ["pilot", "server"]
    assert pilot.process is not None and pilot.process.returncode == -9  # SIGKILL after the timeout
    assert server.process is not None and server.process.returncode == 0
    assert 1.0 <= elapsed < 5


def test_pilot_options_are_found_by_name() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queue")
    parser.add_argument("--max-idle-seconds", type=float)
    parser.add_argument("--server")
    assert up.find_option(parser, "idle") == "--max-idle-seconds"
    assert up.find_option(parser, "nothing") is None


def test_up_refuses_when_a_server_already_answers(tmp_path: Path, monkeypatch, capsys) -> None:
    from panda_cli.main import main

    monkeypatch.setattr(up, "health_status", lambda address, timeout=1.0: 1)
    assert main(["--server", "127.0.0.1:1", "up", "--data-dir", str(tmp_path / "d"), "--pilots", "0"]) == 1
    assert "a server already answers at 127.0.0.1:1" in capsys.readouterr().err


def test_log_tail(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_text("\n".join(f"line {i}" for i in range(40)))
    tail = up.log_tail(path, lines=3).splitlines()
    assert [t.strip() for t in tail] == ["line 37", "line 38", "line 39"]
    assert up.log_tail(tmp_path / "missing.log") == ""
