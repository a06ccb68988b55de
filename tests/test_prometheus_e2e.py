"""A real Prometheus (Debian's `prometheus`, started here in a temporary directory with its own
configuration, a free port, a 1 s scrape and evaluation interval and the repository's rules, and
stopped by its PID) scrapes every part while a task's jobs and a plain job run through real
pilots: the server, JEDI, the identity service and the HTTP gateway. What it gathered is read
back through its HTTP API (`/api/v1/query`): gRPC calls handled on both sides, jobs by queue and
state (every state there, 0 included), tasks, tokens issued, the identity service's HTTP
requests by route, the gateway's requests by route template and its calls to the services, and
recording rules of deploy/prometheus/rules.yml evaluated on them.

Another part is scraped by adding one line to `scrape_targets` below."""

from __future__ import annotations

import json
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from panda.jedi.v1 import task_pb2
from panda.server.v1 import job_pb2
from panda_cli.launcher import Process, spawn
from tests.jedi_support import JediHandle, new_jedi, register_dataset, submit_task, task_params, wait_task
from tests.server_support import get_job, submit, wait_for
from tools.cluster import GatewayHandle, IdentityHandle, ServerHandle, free_port, start_gateway

pytest_plugins = ["tests.jedi_fixtures"]

RULES = Path(__file__).resolve().parent.parent / "deploy" / "prometheus" / "rules.yml"


def scrape_targets(server: ServerHandle, jedi: JediHandle, identity: IdentityHandle,
                   gateway: GatewayHandle) -> dict[str, str]:
    """Each part's scrape job (named as deploy/prometheus/prometheus.yml names it) and the
    address of its /metrics."""
    return {
        "panda-server": f"127.0.0.1:{server.metrics_port}",
        "panda-jedi": f"127.0.0.1:{jedi.env['PANDA_JEDI_METRICS_PORT']}",
        "panda-iam": f"127.0.0.1:{identity.metrics_port}",
        "panda-gateway": f"127.0.0.1:{gateway.env['PANDA_GATEWAY_METRICS_PORT']}",
    }


@dataclass
class Prometheus:
    process: Process
    url: str

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector `expr` evaluates to now."""
        address = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        with urllib.request.urlopen(address, timeout=10) as response:
            answer = json.load(response)
        assert answer["status"] == "success", answer
        return list(answer["data"]["result"])

    def value(self, expr: str) -> float | None:
        """The single value of `expr`, None while it has none."""
        result = self.query(expr)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, expr: str, check: Callable[[float], bool], what: str, timeout: float = 60,
                 meanwhile: Callable[[], object] | None = None) -> float:
        """The value of `expr` once `check` accepts it (Prometheus scrapes and evaluates every
        second), or an error with what it still was after `timeout` seconds; `meanwhile` runs
        before every look."""
        deadline = time.monotonic() + timeout
        while True:
            if meanwhile is not None:
                meanwhile()
            value = self.value(expr)
            if value is not None and check(value):
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{expr} is {value}, not {what}, after {timeout} s\n{self.process.log()[-3000:]}")
            time.sleep(0.5)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_prometheus(directory: Path, targets: dict[str, str]) -> Prometheus:
    """Prometheus scraping `targets` (job name → address) every second, with the repository's
    rules evaluated every second, listening on a free port of 127.0.0.1."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: scripts/test.sh installs it (Debian's prometheus package)"
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [address]}]}
                           for job, address in targets.items()],
    }
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = spawn("prometheus", [
        binary, f"--config.file={directory / 'prometheus.yml'}", f"--storage.tsdb.path={directory / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
    ], {}, directory / "prometheus.log")
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not _ready(url):
        if not process.alive() or time.monotonic() > deadline:
            process.stop()
            raise AssertionError(f"prometheus did not start:\n{process.log()[-3000:]}")
        time.sleep(0.2)
    return Prometheus(process, url)


@pytest.fixture
def jedi(server: ServerHandle, tmp_path: Path, identity: IdentityHandle) -> Iterator[JediHandle]:
    """JEDI as tests/jedi_fixtures.py starts it, with its /metrics on."""
    handle = new_jedi(server, tmp_path / "logs", **identity.robot_env("panda-jedi"),
                      PANDA_JEDI_METRICS_PORT=str(free_port()))
    handle.start()
    yield handle
    handle.stop()
    if handle.process is not None and handle.process.returncode not in (0, -15, None):
        print(handle.log()[-5000:], file=sys.stderr)


@pytest.fixture
def gateway(
    server: ServerHandle, jedi: JediHandle, identity: IdentityHandle, tmp_path: Path
) -> Iterator[GatewayHandle]:
    """The HTTP/JSON gateway in front of the three, with its /metrics on."""
    handle = start_gateway(tmp_path / "gateway", server_address=server.address, iam_address=identity.address,
                           jedi_address=jedi.address, extra_env={"PANDA_GATEWAY_METRICS_PORT": str(free_port())})
    yield handle
    handle.stop()


@pytest.fixture
def prometheus(
    server: ServerHandle, jedi: JediHandle, identity: IdentityHandle, gateway: GatewayHandle, tmp_path: Path
) -> Iterator[Prometheus]:
    running = start_prometheus(tmp_path / "prometheus", scrape_targets(server, jedi, identity, gateway))
    yield running
    running.process.stop()


def _through_gateway(gateway: GatewayHandle, path: str, token: str, method: str = "GET") -> int:
    request = urllib.request.Request(f"{gateway.url}{path}", headers={"Authorization": f"Bearer {token}"},
                                     method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def test_prometheus_scrapes_every_part_while_jobs_run(  # type: ignore[no-untyped-def]
    prometheus: Prometheus, gateway: GatewayHandle, identity: IdentityHandle, jobs_stub, tasks_stub, datasets_stub,
    local_queue, storage_dir, start_pilot
) -> None:
    for job in ("panda-server", "panda-jedi", "panda-iam", "panda-gateway"):
        prometheus.wait_for(f'up{{job="{job}"}}', lambda up: up == 1, "1 (scraped)")

    # Work for every part: a task through JEDI (which submits its jobs to the server) and a
    # plain job, run by a real pilot; the pilot and JEDI sign in at the identity service.
    register_dataset(datasets_stub, "metrics.in", storage_dir, 2)
    task = submit_task(tasks_stub, task_params("metrics.task", ["metrics.in"], "metrics.out", "cat ${IN} > ${OUT}",
                                               split_rule=task_pb2.SplitRule(files_per_job=1), scout_jobs=1))
    (job,) = submit(jobs_stub, job_pb2.Job(queue="local", command=["true"]))
    start_pilot()
    assert wait_for(jobs_stub, job.job_id).state == job_pb2.Job.STATE_FINISHED
    assert wait_task(tasks_stub, task.task_id).state == task_pb2.Task.STATE_DONE
    # Someone reads the job over HTTP, twice, and asks for one that is not there.
    for path, status in ((f"/v1/jobs/{job.job_id}", 200), (f"/v1/jobs/{job.job_id}", 200), ("/v1/jobs/999999", 404)):
        assert _through_gateway(gateway, path, identity.token("admin")) == status
    # ... and sends a method the job's route does not take.
    assert _through_gateway(gateway, f"/v1/jobs/{job.job_id}", identity.token("admin"), "PUT") == 405

    # gRPC on the server's side, and the unary messages that come with it.
    prometheus.wait_for('sum(grpc_server_handled_total{job="panda-server",grpc_service="panda.server.v1.JobService",'
                        'grpc_method="SubmitJobs",grpc_code="OK"})', lambda n: n >= 2, "2 or more (JEDI's and ours)")
    prometheus.wait_for('sum(grpc_server_msg_sent_total{job="panda-server",grpc_type="unary"})', lambda n: n > 0,
                        "above 0")
    prometheus.wait_for('sum(grpc_server_handled_total{job="panda-jedi",grpc_method="SubmitTask",grpc_code="OK"})',
                        lambda n: n == 1, "1")
    # gRPC on the client's side: JEDI calling the server.
    prometheus.wait_for('sum(grpc_client_handled_total{job="panda-jedi",grpc_service="panda.server.v1.JobService",'
                        'grpc_method="SubmitJobs",grpc_code="OK"})', lambda n: n >= 1, "1 or more")
    # Jobs by queue and state, every state there: 3 finished (the task's 2 and ours), none throttled.
    prometheus.wait_for('panda_jobs{job="panda-server",queue="local",state="finished"}', lambda n: n == 3, "3")
    assert prometheus.value('panda_jobs{job="panda-server",queue="local",state="throttled"}') == 0
    states = {r["metric"]["state"] for r in prometheus.query('panda_jobs{job="panda-server",queue="local"}')}
    assert {"defined", "activated", "sent", "running", "finished", "failed", "cancelled"} <= states
    prometheus.wait_for('panda_oldest_activated_job_age_seconds{queue="local"}', lambda age: age == 0, "0 (none waits)")
    prometheus.wait_for('panda_tasks{job="panda-jedi",state="done"}', lambda n: n == 1, "1")
    # The identity service: tokens issued to the robots, its HTTP endpoints by route template.
    prometheus.wait_for('sum(panda_iam_tokens_issued_total{job="panda-iam",grant="client_credentials"})',
                        lambda n: n >= 2, "2 or more")
    prometheus.wait_for('sum(panda_http_requests_total{job="panda-iam",route="/token",method="POST",code="200"})',
                        lambda n: n >= 2, "2 or more")
    # The gateway: its requests by route template (never by path), and its calls to the server.
    prometheus.wait_for('sum(panda_http_requests_total{job="panda-gateway",route="/v1/jobs/{job_id}",method="GET",'
                        'code="200"})', lambda n: n == 2, "2")
    prometheus.wait_for('sum(panda_http_requests_total{job="panda-gateway",route="/v1/jobs/{job_id}",code="404"})',
                        lambda n: n == 1, "1")
    # A method a route does not take counts under the route its path matched.
    prometheus.wait_for('sum(panda_http_requests_total{job="panda-gateway",route="/v1/jobs/{job_id}",method="PUT",'
                        'code="405"})', lambda n: n == 1, "1")
    prometheus.wait_for('sum(grpc_client_handled_total{job="panda-gateway",grpc_method="GetJob",grpc_code="NotFound"})',
                        lambda n: n == 1, "1")
    assert not prometheus.query('panda_http_requests_total{job="panda-gateway",route=~"/v1/jobs/[0-9]+"}')
    # Every part says what it is.
    builds = {r["metric"]["component"] for r in prometheus.query('panda_build_info == 1')}
    assert builds == {"server", "jedi", "iam", "gateway"}
    # Recording rules, evaluated by Prometheus on what it scraped.
    prometheus.wait_for('queue_state:panda_jobs:max{queue="local",state="finished"}', lambda n: n == 3, "3")
    # A rate over the last minute: calls keep coming while it is read.
    prometheus.wait_for('sum(job_grpc_code:grpc_server_handled:rate1m{job="panda-server",grpc_code="OK"})',
                        lambda rate: rate > 0, "above 0", meanwhile=lambda: get_job(jobs_stub, job.job_id))
