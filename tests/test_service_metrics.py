"""The domain metrics of real services, read from their /metrics: failed attempts by error code
and the watchdogs' actions (the server), calls refused by the token check by reason (every
service), refused sign-ins and HTTP requests by route template (the identity service)."""

from __future__ import annotations

import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from panda.server.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from panda_runtime.client.channels import sync_channel
from tests.pilot_stream import PilotStream
from tests.server_support import submit, wait_for
from tools.cluster import IdentityHandle, ServerHandle

J = job_pb2.Job


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the /metrics on `port`, by name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def sample(port: int, name: str, **labels: str) -> float | None:
    return scrape(port).get((name, frozenset(labels.items())))


def eventually(read: Callable[[], float | None], check: Callable[[float], bool], what: str,
               timeout: float = 30) -> float:
    deadline = time.monotonic() + timeout
    value = read()
    while value is None or not check(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"still {value}, not {what}, after {timeout} s")
        time.sleep(0.2)
        value = read()
    return value


def test_failed_attempts_by_error_code_and_the_watchdogs_actions(  # type: ignore[no-untyped-def]
    server: ServerHandle, channel, jobs_stub, local_queue
) -> None:
    port = server.metrics_port
    # Every rule's series is there from the start, at 0.
    for rule, code in (("sent", "102"), ("heartbeat", "100"), ("holding", "103"), ("kill", "110")):
        assert sample(port, "panda_watchdog_actions_total", rule=rule, error_code=code) == 0
    assert sample(port, "panda_watchdog_sweep_failures_total") == 0

    failing, abandoned = submit(jobs_stub, J(queue="local", command=["x"], max_attempts=1),
                                J(queue="local", command=["y"], max_attempts=2))
    pilot = PilotStream(channel, "metrics-failures")
    pilot.request_jobs(2)
    got: set[int] = set()
    while len(got) < 2:
        got.update(job.job_id for job in pilot.next("job_assignments").job_assignments.jobs)
    assert got == {failing.job_id, abandoned.job_id}
    pilot.update(failing.job_id, 1, J.STATE_RUNNING)
    pilot.update(failing.job_id, 1, J.STATE_FAILED, error_code=1305, error_diag="payload failed")
    pilot.next_ack()
    pilot.update(abandoned.job_id, 1, J.STATE_RUNNING)
    wait_for(jobs_stub, abandoned.job_id, lambda j: j.state == J.STATE_RUNNING, 30, "running")
    pilot.close()  # no more heartbeats: the watchdog fails the attempt (code 100) and retries the job

    assert eventually(lambda: sample(port, "panda_job_failures_total", queue="local", error_code="1305"),
                      lambda n: n == 1, "1") == 1
    retried = wait_for(jobs_stub, abandoned.job_id, lambda j: j.attempt == 2, 30, "attempt 2")
    assert retried.state == J.STATE_ACTIVATED
    assert eventually(lambda: sample(port, "panda_watchdog_actions_total", rule="heartbeat", error_code="100"),
                      lambda n: n == 1, "1") == 1
    assert sample(port, "panda_job_failures_total", queue="local", error_code="100") == 1
    # The retried job waits for a pilot: its queue's oldest activated job has an age.
    eventually(lambda: sample(port, "panda_oldest_activated_job_age_seconds", queue="local"), lambda age: age > 0,
               "above 0")
    assert sample(port, "panda_jobs", queue="local", state="failed") == 1


def _refused_with(address: str, metadata: tuple[tuple[str, str], ...]) -> grpc.StatusCode:
    with sync_channel(address) as chan:
        stub = job_service_pb2_grpc.JobServiceStub(chan)
        with pytest.raises(grpc.RpcError) as refused:
            stub.GetJob(job_service_pb2.GetJobRequest(job_id=1), timeout=10, metadata=metadata)
    return refused.value.code()


@pytest.mark.parametrize(("metadata", "reason"), [
    ((), "no_credentials"),
    ((("authorization", "Basic abc"),), "malformed"),
    ((("authorization", "Bearer not-a-jwt"),), "malformed"),
])
def test_calls_the_token_check_refuses_are_counted_by_reason(  # type: ignore[no-untyped-def]
    server: ServerHandle, metadata: tuple[tuple[str, str], ...], reason: str
) -> None:
    before = sample(server.metrics_port, "panda_auth_failures_total", reason=reason)
    assert before is not None  # every reason is there from the start
    assert _refused_with(server.address, metadata) == grpc.StatusCode.UNAUTHENTICATED
    assert sample(server.metrics_port, "panda_auth_failures_total", reason=reason) == before + 1
    assert (sample(server.metrics_port, "grpc_server_handled_total", grpc_type="unary",
                   grpc_service="panda.server.v1.JobService", grpc_method="GetJob", grpc_code="Unauthenticated")
            or 0) >= 1


def _post(url: str, form: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=urllib.parse.urlencode(form).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def test_the_identity_service_counts_refused_sign_ins_and_its_requests_by_route(identity: IdentityHandle) -> None:
    port = identity.metrics_port

    def counts() -> dict[str, float]:
        samples = scrape(port)

        def get(name: str, **labels: str) -> float:
            return samples.get((name, frozenset(labels.items())), 0.0)

        return {
            "client": get("panda_iam_sign_in_failures_total", reason="client"),
            "access_token": get("panda_iam_sign_in_failures_total", reason="access_token"),
            "issued": get("panda_iam_tokens_issued_total", grant="client_credentials"),
            "token 401": get("panda_http_requests_total", route="/token", method="POST", code="401"),
            "token 200": get("panda_http_requests_total", route="/token", method="POST", code="200"),
            "userinfo 401": get("panda_http_requests_total", route="/userinfo", method="GET", code="401"),
            "unmatched 404": get("panda_http_requests_total", route="unmatched", method="GET", code="404"),
        }

    before = counts()
    token_url = f"{identity.issuer}/token"
    assert _post(token_url, {"grant_type": "client_credentials", "client_id": "panda-pilot",
                             "client_secret": "not-the-secret"}) == 401
    assert _post(token_url, {"grant_type": "client_credentials", "client_id": "panda-pilot",
                             "client_secret": identity.secrets["panda-pilot"]}) == 200
    assert _get(f"{identity.issuer}/userinfo") == 401
    assert _get(f"{identity.issuer}/users/alice/secrets") == 404
    expected = {"client": 1, "access_token": 1, "issued": 1, "token 401": 1, "token 200": 1, "userinfo 401": 1,
                "unmatched 404": 1}
    # A request is counted once its response has gone out: the client may read the response first.
    deadline = time.monotonic() + 5
    while True:
        after = counts()
        changes = {key: after[key] - before[key] for key in after}
        if changes == expected or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert changes == expected
    assert sample(port, "panda_http_requests_total", route="/users/alice/secrets", method="GET", code="404") is None
