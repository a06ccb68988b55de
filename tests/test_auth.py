"""Every call checked: each service refuses a bad or missing token, and each caller can do only
what its role allows — users their own jobs and tasks, production its VO's, pilots only the
dispatch stream of their queues. Real processes: the identity service, the server, JEDI."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Iterator

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import create_engine, text

from panda.iam.v1 import iam_service_pb2, iam_service_pb2_grpc
from panda.jedi.v1 import task_service_pb2, task_service_pb2_grpc
from panda.server.v1 import (
    dispatch_service_pb2,
    dispatch_service_pb2_grpc,
    job_pb2,
    job_service_pb2,
    job_service_pb2_grpc,
    queue_pb2,
    queue_service_pb2,
    queue_service_pb2_grpc,
)
from panda_runtime.client.channels import sync_channel
from panda_runtime.client.credentials import ClientCredentialsToken, StaticToken
from tests.jedi_support import JediHandle, register_dataset, task_params
from tests.server_support import get_job, submit, token_channel
from tools.cluster import IdentityHandle, ServerHandle

pytest_plugins = ["tests.jedi_fixtures"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Forger:
    """Tokens made with the identity service's own key (read from its database), or with
    something else, to show what the check refuses."""

    def __init__(self, identity: IdentityHandle) -> None:
        self.identity = identity
        engine = create_engine(identity.database_url)
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT kid, private_key_pem FROM iam_signing_keys WHERE state = 'active'")
            ).one()
        engine.dispose()
        self.kid = row.kid
        self.private_key = serialization.load_pem_private_key(row.private_key_pem.encode(), password=None)
        self.public_pem = self.private_key.public_key().public_bytes(  # type: ignore[union-attr]
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def claims(self, **overrides: object) -> dict[str, object]:
        now = int(time.time())
        claims: dict[str, object] = {
            "iss": self.identity.issuer, "sub": "alice", "aud": "panda-mesh", "iat": now, "nbf": now,
            "exp": now + 600, "jti": uuid.uuid4().hex, "scope": "openid", "wlcg.groups": ["/panda"],
        }
        claims.update(overrides)
        return claims

    def signed(self, **overrides: object) -> str:
        return jwt.encode(self.claims(**overrides), self.private_key, algorithm="RS256",  # type: ignore[arg-type]
                          headers={"kid": self.kid})

    def bad_signature(self) -> str:
        header, payload, signature = self.signed().split(".")
        flipped = _b64(bytes(b ^ 0x01 for b in base64.urlsafe_b64decode(signature + "==")))
        return f"{header}.{payload}.{flipped}"

    def alg_none(self) -> str:
        header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": self.kid}).encode())
        return f"{header}.{_b64(json.dumps(self.claims()).encode())}."

    def hs256_with_public_key(self) -> str:
        # The classic confusion: an HMAC "signed" with the issuer's public key as the secret.
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": self.kid}).encode())
        payload = _b64(json.dumps(self.claims()).encode())
        mac = hmac.new(self.public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{_b64(mac)}"

    def unknown_kid(self) -> str:
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return jwt.encode(self.claims(), stranger, algorithm="RS256", headers={"kid": "no-such-key"})


# name → (how to make it, a phrase the refusal must contain)
BAD_TOKENS: dict[str, tuple[Callable[[Forger], str | None], str]] = {
    "missing": (lambda f: None, "needs a bearer token"),
    "expired": (lambda f: f.signed(iat=int(time.time()) - 7200, nbf=int(time.time()) - 7200,
                                   exp=int(time.time()) - 3600), "expired"),
    "not yet valid": (lambda f: f.signed(nbf=int(time.time()) + 3600), "not valid yet"),
    "wrong audience": (lambda f: f.signed(aud="another-service"), "not meant for this service"),
    "untrusted issuer": (lambda f: f.signed(iss="http://127.0.0.1:9/elsewhere"), "not trusted"),
    "bad signature": (lambda f: f.bad_signature(), "signature does not verify"),
    "alg none": (lambda f: f.alg_none(), "algorithm"),
    "HS256 with the public key": (lambda f: f.hs256_with_public_key(), "algorithm"),
    "unknown kid": (lambda f: f.unknown_kid(), "does not publish"),
}


@pytest.fixture(scope="module")
def forger(identity: IdentityHandle) -> Forger:
    return Forger(identity)


def _call(address: str, token: str | None, invoke: Callable[[grpc.Channel, list[tuple[str, str]]], object]) -> None:
    metadata = [("authorization", f"Bearer {token}")] if token is not None else []
    with sync_channel(address) as channel:
        invoke(channel, metadata)


CALLS: dict[str, Callable[[grpc.Channel, list[tuple[str, str]]], object]] = {
    "server": lambda ch, md: job_service_pb2_grpc.JobServiceStub(ch).ListJobs(
        job_service_pb2.ListJobsRequest(), metadata=md, timeout=10),
    "jedi": lambda ch, md: task_service_pb2_grpc.TaskServiceStub(ch).ListTasks(
        task_service_pb2.ListTasksRequest(), metadata=md, timeout=10),
    "iam": lambda ch, md: iam_service_pb2_grpc.IamServiceStub(ch).WhoAmI(
        iam_service_pb2.WhoAmIRequest(), metadata=md, timeout=10),
}


@pytest.fixture
def services(server: ServerHandle, jedi: JediHandle, identity: IdentityHandle) -> dict[str, str]:
    return {"server": server.address, "jedi": jedi.address, "iam": identity.address}


def test_every_service_refuses_every_bad_token(services: dict[str, str], forger: Forger) -> None:
    for service, address in services.items():
        # The good token first: the refusals below are the token's fault, not the call's.
        _call(address, forger.signed(), CALLS[service])
        for name, (make, phrase) in BAD_TOKENS.items():
            with pytest.raises(grpc.RpcError) as refused:
                _call(address, make(forger), CALLS[service])
            error = refused.value
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED, (service, name, error.details())
            assert phrase in error.details(), (service, name, error.details())


def test_health_answers_without_a_token(services: dict[str, str]) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    for address in services.values():
        with sync_channel(address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


# --- roles and owners -----------------------------------------------------------------------


def _job(queue: str = "local") -> job_pb2.Job:
    return job_pb2.Job(queue=queue, command=["/bin/true"])


def test_users_see_and_act_on_their_own_jobs_only(local_queue: str, as_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob, prod = as_user("alice"), as_user("bob"), as_user("prod")
    (mine,) = submit(alice, _job())
    assert (mine.owner, mine.vo) == ("alice", "panda")
    assert get_job(alice, mine.job_id).owner == "alice"

    with pytest.raises(grpc.RpcError) as refused:
        get_job(bob, mine.job_id)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "belongs to alice" in refused.value.details()
    listed = bob.ListJobs(job_service_pb2.ListJobsRequest(), timeout=10)
    assert [j.job_id for j in listed.jobs] == [] and listed.total_size == 0
    assert [j.job_id for j in alice.ListJobs(job_service_pb2.ListJobsRequest(), timeout=10).jobs] == [mine.job_id]

    killed = bob.KillJobs(job_service_pb2.KillJobsRequest(job_ids=[mine.job_id]), timeout=10)
    assert killed.results[0].status.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert get_job(alice, mine.job_id).state == job_pb2.Job.STATE_ACTIVATED

    # Bob may not submit in Alice's name; production of the VO may act on her job.
    with pytest.raises(grpc.RpcError) as refused:
        bob.SubmitJobs(job_service_pb2.SubmitJobsRequest(jobs=[_job()], owner="alice"), timeout=10)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert len(prod.ListJobs(job_service_pb2.ListJobsRequest(), timeout=10).jobs) == 1
    killed = prod.KillJobs(job_service_pb2.KillJobsRequest(job_ids=[mine.job_id]), timeout=10)
    assert killed.results[0].status.code == 0
    assert get_job(alice, mine.job_id).state == job_pb2.Job.STATE_CANCELLED


def test_watch_shows_a_user_only_its_own_jobs(local_queue: str, as_user) -> None:  # type: ignore[no-untyped-def]
    alice, bob = as_user("alice"), as_user("bob")
    (hers,) = submit(alice, _job())
    (his,) = submit(bob, _job())
    events = bob.WatchJobs(job_service_pb2.WatchJobsRequest(), timeout=3)
    seen = set()
    with pytest.raises(grpc.RpcError):
        for response in events:
            seen.add(response.event.job_id)
    assert seen == {his.job_id} and hers.job_id not in seen


def test_only_admins_manage_queues(server: ServerHandle, identity: IdentityHandle) -> None:
    with token_channel(server.address, identity, "alice") as channel:
        queues = queue_service_pb2_grpc.QueueServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            queues.CreateQueue(queue_service_pb2.CreateQueueRequest(queue=queue_pb2.Queue(queue_id="mine")), timeout=10)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "admin" in refused.value.details()
        queues.ListQueues(queue_service_pb2.ListQueuesRequest(), timeout=10)  # reading is open to users


def test_a_pilot_token_cannot_submit_or_kill(local_queue: str, server: ServerHandle, identity: IdentityHandle,
                                             jobs_stub) -> None:  # type: ignore[no-untyped-def]
    (job,) = submit(jobs_stub, _job())
    pilot = ClientCredentialsToken(identity.issuer, "panda-pilot", identity.secrets["panda-pilot"])
    with sync_channel(server.address, pilot) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        for call in (lambda: stub.SubmitJobs(job_service_pb2.SubmitJobsRequest(jobs=[_job()]), timeout=10),
                     lambda: stub.KillJobs(job_service_pb2.KillJobsRequest(job_ids=[job.job_id]), timeout=10)):
            with pytest.raises(grpc.RpcError) as refused:
                call()
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "pilot" in refused.value.details()
    assert get_job(jobs_stub, job.job_id).state == job_pb2.Job.STATE_ACTIVATED


def _hello(channel: grpc.Channel, queue: str) -> dispatch_service_pb2.ConnectResponse:
    def requests() -> Iterator[dispatch_service_pb2.ConnectRequest]:
        yield dispatch_service_pb2.ConnectRequest(
            seq=1, hello=dispatch_service_pb2.Hello(pilot_id=f"pilot-{uuid.uuid4().hex[:6]}", queue=queue))
        time.sleep(2)

    stream = dispatch_service_pb2_grpc.DispatchServiceStub(channel).Connect(requests(), timeout=10)
    first = next(iter(stream))
    stream.cancel()
    return first


def test_a_pilot_serves_only_the_queues_its_token_names(server: ServerHandle, identity: IdentityHandle,
                                                         queues_stub) -> None:  # type: ignore[no-untyped-def]
    for name in ("local", "other"):
        queues_stub.CreateQueue(queue_service_pb2.CreateQueueRequest(
            queue=queue_pb2.Queue(queue_id=name, status=queue_pb2.Queue.STATUS_ONLINE)), timeout=10)
    forger = Forger(identity)
    only_local = forger.signed(sub="panda-pilot-local", **{"wlcg.groups": ["/panda/pilot"], "panda.queues": ["local"]})
    with sync_channel(server.address, StaticToken(only_local)) as channel:
        assert _hello(channel, "local").WhichOneof("message") == "welcome"
        with pytest.raises(grpc.RpcError) as refused:
            _hello(channel, "other")
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "may not serve queue other" in refused.value.details()
    # A person's token does not open the dispatch stream at all.
    with token_channel(server.address, identity, "alice") as channel, pytest.raises(grpc.RpcError) as refused:
        _hello(channel, "local")
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_users_see_and_command_their_own_tasks_only(jedi: JediHandle, identity: IdentityHandle, local_queue: str,
                                                     storage_dir, tasks_stub) -> None:  # type: ignore[no-untyped-def]
    with token_channel(jedi.address, identity, "alice") as alice_channel, \
            token_channel(jedi.address, identity, "bob") as bob_channel:
        from panda.jedi.v1 import dataset_service_pb2_grpc

        register_dataset(dataset_service_pb2_grpc.DatasetServiceStub(alice_channel), "alice.in", storage_dir, 2,
                         scope="user.alice")
        alice = task_service_pb2_grpc.TaskServiceStub(alice_channel)
        bob = task_service_pb2_grpc.TaskServiceStub(bob_channel)
        params = task_params("hers", ["alice.in"], "alice.out", "cat ${IN} > ${OUT}")
        task = alice.SubmitTask(task_service_pb2.SubmitTaskRequest(params=params), timeout=10).task
        assert (task.params.owner, task.params.vo) == ("alice", "panda")

        for name, call in {
            "see": lambda: bob.GetTask(task_service_pb2.GetTaskRequest(task_id=task.task_id), timeout=10),
            "kill": lambda: bob.KillTask(task_service_pb2.KillTaskRequest(task_id=task.task_id), timeout=10),
            "retry": lambda: bob.RetryTask(task_service_pb2.RetryTaskRequest(task_id=task.task_id), timeout=10),
            "priority": lambda: bob.SetTaskPriority(
                task_service_pb2.SetTaskPriorityRequest(task_id=task.task_id, priority=5), timeout=10),
        }.items():
            with pytest.raises(grpc.RpcError) as refused:
                call()
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED, name
            assert f"task {task.task_id} belongs to alice" in refused.value.details()
        assert len(bob.ListTasks(task_service_pb2.ListTasksRequest(), timeout=10).tasks) == 0
        assert [t.task_id for t in alice.ListTasks(task_service_pb2.ListTasksRequest(), timeout=10).tasks] == [
            task.task_id]
        # Her own kill works, and it is she who did it.
        killed = alice.KillTask(task_service_pb2.KillTaskRequest(task_id=task.task_id, reason="mine"), timeout=10)
        assert killed.task.task_id == task.task_id


def test_key_rotation_keeps_issued_tokens_and_new_ones_work_at_once(
    server: ServerHandle, identity: IdentityHandle, forger: Forger
) -> None:
    from iam_svc.main import IamSettings, issue_user_tokens

    def list_jobs(token: str) -> None:
        _call(server.address, token, CALLS["server"])

    list_jobs(forger.signed())  # the server now holds the issuer's keys
    with token_channel(identity.address, identity, "admin") as channel:
        rotated = iam_service_pb2_grpc.IamServiceStub(channel).RotateSigningKey(
            iam_service_pb2.RotateSigningKeyRequest(), timeout=10)
    assert rotated.active_key.kid != forger.kid
    assert forger.kid in {k.kid for k in rotated.published_keys}

    settings = IamSettings(database_url=identity.database_url, iam_issuer=identity.issuer,
                           auth_issuers=[identity.issuer])
    fresh = issue_user_tokens(settings, "alice")["access_token"]
    assert jwt.get_unverified_header(fresh)["kid"] == rotated.active_key.kid
    time.sleep(1.1)  # an issuer's keys are refetched at most once a second
    list_jobs(fresh)  # a key the server has not seen: fetched at once
    list_jobs(forger.signed())  # a new token of the retired key: still valid until its tokens expire
