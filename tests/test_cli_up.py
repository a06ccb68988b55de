"""`panda up` for real: a subprocess that starts a real server, the gateway and real pilots on
SQLite in a data dir, runs the demo jobs into its storage element, serves metrics and the HTTP
API, and stops everything on SIGINT; a child that dies or will not stop is dealt with. Processes
are found with psutil as children of `panda up` and signalled only by their PIDs."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from harvester_svc.domain.queue_config import load_queue_config
from panda_cli import launcher, local_mesh, up
from panda_cli.main import main
from tests.up_support import SUMMARY_END, UpProcess, assert_all_gone
from tools.cluster import ServerHandle, free_port, start_gateway


@pytest.fixture
def start_up(tmp_path: Path) -> Iterator[Callable[..., UpProcess]]:
    started: list[UpProcess] = []

    def start(*extra: str) -> UpProcess:
        process = UpProcess(tmp_path / "panda", *extra)
        started.append(process)
        return process

    yield start
    for process in started:
        process.cleanup()


def panda(panda_up: UpProcess, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """The command line of the user who ran `panda up`: signed in by it, nothing else set."""
    with pytest.MonkeyPatch.context() as env:
        for name in up.IDENTITY_VARIABLES:
            env.delenv(name, raising=False)
        env.setenv("XDG_CONFIG_HOME", str(panda_up.config_home))
        env.setenv("PANDA_IAM", panda_up.iam_address())
        # Not --server: not every command takes it (whoami calls the identity service).
        env.setenv("PANDA_SERVER", panda_up.address)
        capsys.readouterr()
        code = main(list(argv))
        return code, capsys.readouterr().out


def demo_job_ids(summary: str) -> dict[int, str]:
    lines = summary.splitlines()
    start = lines.index("demo jobs:") + 1
    jobs = {}
    for line in lines[start:]:
        if not line.strip():
            break
        job_id, text = line.split(maxsplit=1)
        jobs[int(job_id)] = text
    return jobs


def metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def port_is_free(url: str) -> bool:
    """Whether a new listener could take the port of `url` (as the gateway binds it)."""
    host, port = httpx.URL(url).host, httpx.URL(url).port
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port or 80))
        except OSError:
            return False
    return True


def assert_gateway_serves(panda_up: UpProcess) -> str:
    """The gateway `panda up` printed: where it was told to listen, ready, and calling the
    server with the token `panda up` wrote for its user. Its URL."""
    url = panda_up.gateway_url()
    assert url == f"http://{panda_up.env['PANDA_GATEWAY']}"
    assert launcher.http_ready(url)
    token = json.loads((panda_up.config_home / "panda-mesh" / "token.json").read_text())["access_token"]
    answer = httpx.get(f"{url}/v1/queues", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert {queue["queueId"] for queue in answer.json()["queues"]} == {"local", "local-b", "local-small"}
    # The web monitor's client sends people back to this gateway, at the address it really has.
    callback = f"{url}/monitor/auth/callback"
    monitor = httpx.get(f"{url}/v1/clients/panda-monitor", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert monitor.status_code == 200 and monitor.json()["client"]["redirectUris"] == [callback], monitor.text
    issuer = jwt.decode(token, options={"verify_signature": False})["iss"]
    sign_in = httpx.get(f"{issuer}/authorize", timeout=10, params={
        "response_type": "code", "client_id": "panda-monitor", "redirect_uri": callback, "state": "s",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "S256"})
    assert sign_in.status_code == 200 and "Sign in to" in sign_in.text, sign_in.text
    # The monitor sends a browser with no session to sign in there, as that client, with PKCE.
    with httpx.Client(base_url=url, timeout=10, follow_redirects=False) as browser:
        page = browser.get("/monitor/jobs")
        assert page.status_code == 303 and page.headers["location"].startswith("/monitor/auth/login?next=")
        start = browser.get(page.headers["location"])
        assert start.status_code == 302 and start.headers["location"].startswith(f"{issuer}/authorize?"), start.text
        assert "client_id=panda-monitor" in start.headers["location"]
        assert "code_challenge_method=S256" in start.headers["location"]
    return url


def test_up_runs_the_demo_and_stops_on_sigint(start_up, capsys) -> None:  # type: ignore[no-untyped-def]
    panda_up = start_up("--pilots", "2", "--demo")
    panda_up.wait_ready()
    out = panda_up.out
    assert f"server ready at {panda_up.address}" in out
    assert "pilots start as work arrives, up to 2 on queue local, 1 on local-b, 1 on local-small" in out
    assert f"  metrics   http://127.0.0.1:{panda_up.metrics_port}/metrics" in out
    assert f"  database  sqlite:///{panda_up.data_dir}/panda.db" in out

    named = panda_up.direct_children()
    assert sorted(named) == ["gateway", "harvester", "server"]
    for child in named.values():
        # Each child leads a process group of its own: a terminal's Ctrl-C reaches only `panda up`.
        assert os.getpgid(child.pid) == child.pid != os.getpgid(panda_up.process.pid)
    assert f"server ready at {panda_up.address} (pid {named['server'].pid})" in out

    # The gateway, after the services it calls, answering on the address it was given.
    gateway = assert_gateway_serves(panda_up)
    assert f"gateway ready at {gateway} (pid {named['gateway'].pid})" in out
    assert out.index("JEDI ready at") < out.index("gateway ready at") < out.index("harvester ready at")
    harvester = panda_up.env["PANDA_HARVESTER_ADDRESS"]
    assert f"harvester ready at {harvester} (pid {named['harvester'].pid})" in out
    gateway_metrics = int(panda_up.env["PANDA_GATEWAY_METRICS_PORT"])
    assert (f"  gateway   {gateway} (HTTP/JSON; API page: /docs; http://127.0.0.1:{gateway_metrics}/metrics)"
            in out)
    assert f"  monitor   {gateway}/monitor/ (the web monitor: sign in in the browser)" in out
    assert "# HELP" in metrics_text(gateway_metrics)
    assert httpx.get(f"{gateway}/docs", timeout=10).status_code == 200

    # The user who ran it is signed in as its admin: a private token file, and it works.
    token_file = panda_up.config_home / "panda-mesh" / "token.json"
    assert token_file.stat().st_mode & 0o777 == 0o600
    code, me = panda(panda_up, capsys, "whoami", "--json")
    assert code == 0, me
    assert "admin" in json.loads(me)["roles"] and json.loads(me)["subject"] == local_mesh.local_user_name()
    assert f"signed in as {local_mesh.local_user_name()} (admin): token in {token_file}" in out

    demo = demo_job_ids(out)
    assert sorted(demo.values()) == ["sleep 20", "writes demo.out"]
    for job_id in demo:
        code, watched = panda(panda_up, capsys, "job", "watch", str(job_id))
        assert code == 0, watched
        assert watched.splitlines()[-1].split()[3] == "finished"
    writer = next(job_id for job_id, text in demo.items() if text == "writes demo.out")
    code, shown = panda(panda_up, capsys, "job", "show", str(writer), "--json")
    files = json.loads(shown)["files"]
    assert [(f["lfn"], f["status"]) for f in files] == [("demo.out", "STATUS_READY")]
    # Harvester started the pilots that ran them, for the work that arrived.
    code, workers = panda(panda_up, capsys, "workers", "--json")
    assert code == 0, workers
    ran = {json.loads(shown)["worker_id"]}
    assert ran <= {worker["worker_id"] for worker in json.loads(workers)["workers"]}
    se = panda_up.data_dir / "se" / "local" / f"user.{local_mesh.local_user_name()}"
    assert [p.name for p in se.glob("demo*.out")] == ["demo.out"]
    assert (se / "demo.out").read_text() == "hello from PanDA mesh\n"

    deadline = time.monotonic() + 20
    metrics = metrics_text(panda_up.metrics_port)
    while 'panda_jobs{queue="local",state="finished"} 2.0' not in metrics and time.monotonic() < deadline:
        time.sleep(0.5)
        metrics = metrics_text(panda_up.metrics_port)
    assert "grpc_server_handled_total{" in metrics
    assert 'panda_jobs{queue="local",state="finished"} 2.0' in metrics

    everything = panda_up.track()
    started = time.monotonic()
    panda_up.process.send_signal(signal.SIGINT)
    assert panda_up.exit_code(timeout=30) == 0, panda_up.err
    assert time.monotonic() - started < 30
    assert_all_gone(everything)
    assert not launcher.http_ready(gateway) and port_is_free(gateway)
    out = panda_up.out
    tail = out[out.index(SUMMARY_END) :]
    steps = ["SIGINT: stopping", "stopping the gateway...", "stopping harvester and its pilots...",
             "stopping the server...",
             "stopping the identity service...", "stopped"]
    positions = [tail.find(step) for step in steps]
    assert -1 not in positions and positions == sorted(positions), tail
    assert "did not stop in time" not in out
    assert "Traceback" not in panda_up.err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_up_piped_into_tee_stops_every_child_when_tee_is_gone(tmp_path: Path, signum: signal.Signals) -> None:
    """`panda up | tee log`: Ctrl-C (SIGINT to both), a hang-up (SIGHUP to both) or a SIGTERM after
    tee ended leave panda up writing into a closed pipe; it still stops every child, the gateway
    too, and a second `panda up` on the same ports starts."""
    first = UpProcess(tmp_path / "panda", "--pilots", "1", through_tee=True)
    second: UpProcess | None = None
    try:
        first.wait_ready()
        children = first.track()
        assert len(children) >= 5, children  # the identity service, the server, JEDI, the gateway, the pilots
        gateway = first.gateway_url()
        assert launcher.http_ready(gateway)
        assert first.tee is not None
        first.tee.send_signal(signal.SIGINT if signum == signal.SIGTERM else signum)
        first.tee.wait(10)
        first.process.send_signal(signum)
        assert first.exit_code(timeout=60) == 0, first.err
        assert_all_gone(children)
        assert not launcher.http_ready(gateway) and port_is_free(gateway)
        assert "Traceback" not in first.err and "BrokenPipeError" not in first.err, first.err
        second = UpProcess(tmp_path / "again", "--pilots", "0", ports_of=first)
        second.wait_ready()
        assert second.gateway_url() == gateway and launcher.http_ready(gateway)
        second.process.send_signal(signal.SIGINT)
        assert second.exit_code(timeout=60) == 0, second.err
    finally:
        first.cleanup()
        if second is not None:
            second.cleanup()


@pytest.mark.parametrize("victim", ["server", "gateway"])
def test_a_dead_child_is_noticed(start_up, victim: str) -> None:  # type: ignore[no-untyped-def]
    panda_up = start_up("--pilots", "2")
    panda_up.wait_ready()
    named = panda_up.direct_children()
    dead = named.pop(victim)
    everything = panda_up.track()
    dead.send_signal(signal.SIGKILL)
    assert panda_up.exit_code(timeout=30) == 1
    assert f"panda: {victim} (pid {dead.pid}) was killed by SIGKILL unexpectedly; stopping everything." in panda_up.err
    assert f"last lines of {panda_up.data_dir / 'logs' / f'{victim}.log'}:" in panda_up.err
    assert "stopping harvester and its pilots..." in panda_up.out
    assert_all_gone([*named.values(), *everything])


def test_up_refuses_when_a_gateway_already_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    gateway = start_gateway(tmp_path / "gateway", server_address=nowhere, iam_address=nowhere)
    try:
        for name, value in (("PANDA_GATEWAY", gateway.address), ("PANDA_JEDI", f"127.0.0.1:{free_port()}"),
                            ("PANDA_IAM", f"127.0.0.1:{free_port()}")):
            monkeypatch.setenv(name, value)
        data_dir = tmp_path / "up"
        code = main(["--server", f"127.0.0.1:{free_port()}", "up", "--data-dir", str(data_dir), "--pilots", "0"])
        assert code == 1
        assert capsys.readouterr().err == (f"panda: a gateway already answers at {gateway.url}: stop it first, "
                                           "or set PANDA_GATEWAY to another address\n")
        assert not (data_dir / "panda.db").exists() and not (data_dir / "logs" / "server.log").exists()
        assert gateway.process is not None and gateway.process.alive()
    finally:
        gateway.stop()


def test_a_child_that_does_not_stop_is_killed(start_up) -> None:  # type: ignore[no-untyped-def]
    panda_up = start_up("--pilots", "2", "--stop-timeout", "2")
    panda_up.wait_ready()
    named = panda_up.direct_children()
    stuck = named["harvester"]
    stuck.suspend()  # SIGSTOP: a hung harvester; SIGTERM cannot end it
    panda_up.track()
    started = time.monotonic()
    panda_up.process.send_signal(signal.SIGINT)
    assert panda_up.exit_code(timeout=30) == 0, panda_up.err
    elapsed = time.monotonic() - started
    assert f"harvester (pid {stuck.pid}) did not stop in time: killing it" in panda_up.out
    assert "gateway (pid" not in panda_up.out.split(SUMMARY_END)[1]
    assert "server (pid" not in panda_up.out.split(SUMMARY_END)[1]
    assert 2.0 <= elapsed < 20
    assert_all_gone(list(named.values()))


def test_up_refuses_when_a_server_already_answers(server: ServerHandle, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    data_dir = tmp_path / "second"
    code = main(["--server", server.address, "up", "--data-dir", str(data_dir), "--pilots", "0"])
    assert code == 1
    captured = capsys.readouterr()
    assert captured.err == (
        f"panda: a server already answers at {server.address}: stop it first, or use --server for another address\n"
    )
    assert not (data_dir / "panda.db").exists() and not (data_dir / "logs" / "server.log").exists()
    assert server.process is not None and server.process.alive()


# --- helpers that need no server ---------------------------------------------------------


def test_the_queue_configuration_up_writes_is_one_harvester_takes() -> None:
    queues = load_queue_config(json.dumps(up.harvester_queue_config(3, 2, 8000)))
    assert sorted(queues) == ["local", "local-b", "local-small"]
    assert (queues["local"].max_workers, queues["local-b"].max_workers, queues["local-small"].max_workers) == (3, 1, 1)
    assert queues["local"].resources.memory_mb == 8000 and queues["local-small"].resources.memory_mb == 1000
    assert queues["local"].resources.cores == 2
    assert all(queue.max_workers == 0 for queue in load_queue_config(
        json.dumps(up.harvester_queue_config(0, 2, 8000))).values())


def test_log_tail(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_text("\n".join(f"line {i}" for i in range(40)))
    tail = launcher.log_tail(path, lines=3).splitlines()
    assert [t.strip() for t in tail] == ["line 37", "line 38", "line 39"]
    assert launcher.log_tail(tmp_path / "missing.log") == ""
