"""What every server offers besides its API: refusal of an un-migrated database, health,
reflection and Prometheus metrics."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from panda.server.v1 import dispatch_service_pb2 as dispatch_pb2
from panda.server.v1 import job_pb2
from tests.pilot_stream import PilotStream
from tests.server_support import submit
from tools.cluster import free_port, server_env


def test_server_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    env = server_env(tmp_path, f"sqlite:///{tmp_path / 'empty.db'}", f"127.0.0.1:{free_port()}", 0)
    result = subprocess.run(
        [sys.executable, "-m", "server_svc"], env={**env, "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "is empty (never migrated)" in result.stderr
    assert "run `panda db upgrade`" in result.stderr
    assert "Traceback" not in result.stderr


def test_health_and_reflection(server, channel) -> None:  # type: ignore[no-untyped-def]
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "panda.server.v1.JobService", "panda.server.v1.DispatchService"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                              timeout=5)
    names = {s.name for reply in replies for s in reply.list_services_response.service}
    assert {"panda.server.v1.JobService", "panda.server.v1.QueueService",
            "panda.server.v1.DispatchService", "grpc.health.v1.Health"} <= names
    # What grpcurl's `describe` asks: the file defining a symbol, with the files it imports.
    replies = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol="panda.server.v1.JobService")]),
        timeout=5)
    files = {descriptor_pb2.FileDescriptorProto.FromString(raw).name
             for reply in replies for raw in reply.file_descriptor_response.file_descriptor_proto}
    assert "panda/server/v1/job_service.proto" in files
    # Health answers anyone; reflection describes every method, so it needs a token.
    with grpc.insecure_channel(server.address) as anonymous:
        health_pb2_grpc.HealthStub(anonymous).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        refused = reflection_pb2_grpc.ServerReflectionStub(anonymous).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
        with pytest.raises(grpc.RpcError) as error:
            list(refused)
        assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_metrics_for_prometheus(server, channel, jobs_stub, local_queue) -> None:  # type: ignore[no-untyped-def]
    (job,) = submit(jobs_stub, job_pb2.Job(queue="local", command=["true"]))
    pilot = PilotStream(channel, "metrics-pilot")
    pilot.request_jobs(1)
    assert pilot.next_job().job_id == job.job_id
    pilot.update(job.job_id, 1, job_pb2.Job.STATE_RUNNING)
    pilot.update(job.job_id, 1, job_pb2.Job.STATE_FINISHED)
    pilot.next_ack()
    body = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).read().decode()
    pilot.close()
    unary = 'grpc_method="SubmitJobs",grpc_service="panda.server.v1.JobService",grpc_type="unary"'
    assert f'grpc_server_handled_total{{grpc_code="OK",{unary}}} 1.0' in body
    # A unary call's request and response are messages too.
    assert f"grpc_server_msg_received_total{{{unary}}} 1.0" in body
    assert f"grpc_server_msg_sent_total{{{unary}}} 1.0" in body
    assert 'grpc_server_started_total{grpc_method="Connect"' in body
    assert "grpc_server_handling_seconds_bucket" in body
    assert 'grpc_server_msg_received_total{grpc_method="Connect"' in body
    assert 'panda_pilots_connected{queue="local"} 1.0' in body
    assert "panda_dispatch_latency_seconds_count 1.0" in body
    assert 'panda_jobs{queue="local",state="finished"} 1.0' in body
    assert 'panda_jobs{queue="local",state="activated"} 0.0' in body  # every state, 0 when empty
    assert 'panda_build_info{component="server",version="' in body
    assert 'panda_db_statement_seconds_count{statement="select"}' in body


def test_metrics_only_on_their_path(server) -> None:  # type: ignore[no-untyped-def]
    for path in ("/", "/favicon.ico", "/metrics/extra", "/jobs/1"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}{path}", timeout=10)
        assert refused.value.code == 404, path


def test_welcome_states_the_heartbeat_interval(channel, local_queue) -> None:  # type: ignore[no-untyped-def]
    pilot = PilotStream(channel, "welcome-pilot")
    welcome = pilot.next("welcome").welcome
    assert isinstance(welcome, dispatch_pb2.Welcome)
    assert welcome.heartbeat_interval_seconds == 1 and welcome.session_id
    pilot.close()
