"""What the tests of harvester's registry share: the harvester APIs as one caller, a channel
calling as a robot, and a queue configuration and a worker as an instance reports them."""

from __future__ import annotations

from datetime import datetime

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import status_pb2

from panda.common.v1 import resources_pb2
from panda.harvester.v1 import (
    harvester_service_pb2,
    harvester_service_pb2_grpc,
    instance_service_pb2,
    instance_service_pb2_grpc,
    worker_pb2,
)
from panda_runtime.client.channels import sync_channel
from panda_runtime.client.credentials import ClientCredentialsToken
from tools.cluster import IdentityHandle

__all__ = ["Stubs", "config", "robot_channel", "ts", "worker"]

W = worker_pb2.Worker
QC = worker_pb2.QueueConfig
H = harvester_service_pb2
I = instance_service_pb2  # noqa: E741  # the InstanceService's messages, as H is HarvesterService's


def robot_channel(address: str, identity: IdentityHandle, robot: str = "panda-harvester") -> grpc.Channel:
    """A channel whose calls carry a token of the robot `robot` (client credentials)."""
    return sync_channel(address, ClientCredentialsToken(identity.issuer, robot, identity.secrets[robot]))


class Stubs:
    """The harvester APIs as one caller: a robot (harvester instances) or a person."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.channel = channel
        self.instances = instance_service_pb2_grpc.InstanceServiceStub(channel)
        self.harvester = harvester_service_pb2_grpc.HarvesterServiceStub(channel)

    def register(self, harvester_id: str, *configs: worker_pb2.QueueConfig) -> I.RegisterInstanceResponse:
        return self.instances.RegisterInstance(I.RegisterInstanceRequest(
            harvester_id=harvester_id, version="1.2.3", host="harvester.example", queue_configs=list(configs)),
            timeout=10)

    def report(self, harvester_id: str, *workers: worker_pb2.Worker) -> list[status_pb2.Status]:
        request = I.ReportWorkersRequest(harvester_id=harvester_id, workers=list(workers))
        return list(self.instances.ReportWorkers(request, timeout=10).results)

    def heartbeat(self, harvester_id: str) -> list[worker_pb2.HarvesterCommand]:
        return list(self.instances.Heartbeat(I.HeartbeatRequest(harvester_id=harvester_id), timeout=10).commands)

    def worker(self, worker_id: str) -> worker_pb2.Worker:
        return self.harvester.GetWorker(H.GetWorkerRequest(worker_id=worker_id), timeout=10).worker

    def workers(self, **request: object) -> H.ListWorkersResponse:
        return self.harvester.ListWorkers(H.ListWorkersRequest(**request), timeout=10)  # type: ignore[arg-type]


def config(queue_id: str = "local", **fields: object) -> worker_pb2.QueueConfig:
    values: dict[str, object] = {
        "queue_id": queue_id, "online": True, "map_type": QC.MAP_TYPE_PULL, "messenger": QC.MESSENGER_GRPC,
        "plugin": "local", "max_workers": 10, "queue_limit_workers": 4, "max_new_workers_per_cycle": 2,
        "resources": resources_pb2.Resources(cores=1, memory_mb=2000, walltime_seconds=3600),
        "plugin_parameters": {"slots": "4"}, "worker_queued_timeout_seconds": 600,
        "worker_heartbeat_timeout_seconds": 1800, **fields,
    }
    return QC(**values)  # type: ignore[arg-type]


def ts(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def worker(worker_id: str, state: int = W.STATE_SUBMITTED, queue: str = "local", **fields: object) -> worker_pb2.Worker:
    return W(worker_id=worker_id, queue=queue, state=state, **{"plugin": "local", **fields})  # type: ignore[arg-type]
