"""Clients of PanDA mesh services: one channel each, built from a `ConnectConfig`, with the
services' typed stubs as attributes, so every call is a stub method
(`client.jobs.SubmitJobs(request)`), never an RPC named by a string.

Every channel made here has the options of `channels.CHANNEL_OPTIONS`, the caller's bearer token
on every call (renewed by its `TokenSource`), the config's deadline on every unary call that
names none, and gRPC's own retry policy for the RPCs that are safe to repeat (see
`_service_config`): no caller writes a retry loop.

A sync flavour (`ServiceClient`: the command line) and an asyncio one (`AsyncServiceClient`:
services calling services) share the configuration. Used in a `with` (`async with`) block, a
client closes its channel at the end, and a failed call that escapes the block leaves it as a
`ServiceError`; inside the block, calls raise gRPC's own errors, for callers that handle some
codes themselves (`translate` gives the `ServiceError` of one)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from types import TracebackType
from typing import Any, ClassVar, Protocol, Self, cast

import grpc
from google.protobuf.descriptor import FileDescriptor, ServiceDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc

from panda.harvester.v1 import (
    harvester_service_pb2,
    harvester_service_pb2_grpc,
    instance_service_pb2,
    instance_service_pb2_grpc,
)
from panda.iam.v1 import iam_service_pb2, iam_service_pb2_grpc
from panda.jedi.v1 import dataset_service_pb2, dataset_service_pb2_grpc, task_service_pb2, task_service_pb2_grpc
from panda.server.v1 import (
    job_service_pb2,
    job_service_pb2_grpc,
    queue_service_pb2,
    queue_service_pb2_grpc,
    storage_service_pb2,
    storage_service_pb2_grpc,
)
from panda_runtime.client._service_config import retry_options
from panda_runtime.client.channels import aio_channel, sync_channel
from panda_runtime.client.config import ConnectConfig
from panda_runtime.client.errors import ServiceError, _never_connected, _service_error, _unreachable

__all__ = [
    "REACHABILITY_PROBE_SECONDS",
    "AsyncHealthStub",
    "AsyncServerClient",
    "AsyncServiceClient",
    "HealthStub",
    "IamClient",
    "JediClient",
    "ServerClient",
    "ServiceClient",
]

# How long to let the channel try to connect when telling "nothing answers" from an UNAVAILABLE
# the service itself returned (e.g. its database is away).
REACHABILITY_PROBE_SECONDS = 2.0


def _services_of(*files: FileDescriptor) -> tuple[ServiceDescriptor, ...]:
    return tuple(service for file in files for service in file.services_by_name.values())


# The server also serves harvester's registry (panda.harvester.v1).
_SERVER_API = _services_of(job_service_pb2.DESCRIPTOR, queue_service_pb2.DESCRIPTOR, storage_service_pb2.DESCRIPTOR,
                           harvester_service_pb2.DESCRIPTOR, instance_service_pb2.DESCRIPTOR)
_JEDI_API = _services_of(task_service_pb2.DESCRIPTOR, dataset_service_pb2.DESCRIPTOR)
_IAM_API = _services_of(iam_service_pb2.DESCRIPTOR)


class HealthStub(Protocol):
    """The standard health check's stub, typed (typeshed's declares no methods)."""

    Check: grpc.UnaryUnaryMultiCallable[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse]


class AsyncHealthStub(Protocol):
    Check: grpc.aio.UnaryUnaryMultiCallable[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse]


def _channel_arguments(config: ConnectConfig, services: Iterable[ServiceDescriptor]) -> dict[str, Any]:
    return {
        "tls": config.tls.credentials() if config.tls else None,
        "options": [*retry_options(services, config.retry), *config.options],
        "deadline": config.deadline,
        "metrics": config.metrics,
    }


class _Client:
    """What both flavours share: the configuration, and errors for people."""

    # Who is at the address, for "cannot reach <target> at <address>".
    target: ClassVar[str] = "the service"
    # The API whose safe RPCs gRPC retries.
    api: ClassVar[tuple[ServiceDescriptor, ...]] = ()

    def __init__(self, config: ConnectConfig) -> None:
        self.config = config

    @property
    def address(self) -> str:
        return self.config.address

    def unreachable(self) -> ServiceError:
        """The error a person reads when nothing answers at the address."""
        return _unreachable(target=self.target, address=self.address, hint=self.config.unreachable_hint,
                            code=grpc.StatusCode.UNAVAILABLE)

    def _error(self, error: grpc.RpcError, *, unreachable: bool) -> ServiceError:
        return _service_error(error, target=self.target, address=self.address, hint=self.config.unreachable_hint,
                              unreachable=unreachable)


class ServiceClient(_Client):
    """A blocking channel to one service; every service answers the standard health check
    (`health`). Subclasses add the stubs of their service's API."""

    def __init__(self, config: ConnectConfig) -> None:
        super().__init__(config)
        self.channel = sync_channel(config.address, config.tokens, **_channel_arguments(config, self.api))
        self.health = cast(HealthStub, health_pb2_grpc.HealthStub(self.channel))

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        try:
            if isinstance(exc, grpc.RpcError):
                raise self.translate(exc) from None
        finally:
            self.close()

    def translate(self, error: grpc.RpcError) -> ServiceError:
        """`error` for people; asks the channel whether it connects when the code cannot tell."""
        never_connected = _never_connected(error)
        return self._error(error, unreachable=not self.reachable() if never_connected is None else never_connected)

    def reachable(self, timeout: float = REACHABILITY_PROBE_SECONDS) -> bool:
        """Whether the channel connects within `timeout` seconds."""
        try:
            grpc.channel_ready_future(self.channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            return False
        return True


class AsyncServiceClient(_Client):
    """An asyncio channel to one service; as `ServiceClient`, with `async with`."""

    def __init__(self, config: ConnectConfig) -> None:
        super().__init__(config)
        self.channel = aio_channel(config.address, config.tokens, **_channel_arguments(config, self.api))
        self.health = cast(AsyncHealthStub, health_pb2_grpc.HealthStub(self.channel))

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        try:
            if isinstance(exc, grpc.RpcError):
                raise await self.translate(exc) from None
        finally:
            await self.close()

    async def translate(self, error: grpc.RpcError) -> ServiceError:
        never_connected = _never_connected(error)
        return self._error(error, unreachable=not await self.reachable() if never_connected is None
                           else never_connected)

    async def reachable(self, timeout: float = REACHABILITY_PROBE_SECONDS) -> bool:
        try:
            await asyncio.wait_for(self.channel.channel_ready(), timeout)
        except TimeoutError:
            return False
        return True


# --- the services ------------------------------------------------------------------------


class ServerClient(ServiceClient):
    """The job server: jobs, queues, storage elements, and harvester's workers and instances."""

    target = "the server"
    api = _SERVER_API

    def __init__(self, config: ConnectConfig) -> None:
        super().__init__(config)
        self.jobs = job_service_pb2_grpc.JobServiceStub(self.channel)
        self.queues = queue_service_pb2_grpc.QueueServiceStub(self.channel)
        self.storage = storage_service_pb2_grpc.StorageServiceStub(self.channel)
        self.harvester = harvester_service_pb2_grpc.HarvesterServiceStub(self.channel)


class AsyncServerClient(AsyncServiceClient):
    """The job server, from a service (JEDI, a harvester: `instances` is what an instance calls)."""

    target = "the server"
    api = _SERVER_API

    def __init__(self, config: ConnectConfig) -> None:
        super().__init__(config)
        self.jobs = job_service_pb2_grpc.JobServiceStub(self.channel)
        self.queues = queue_service_pb2_grpc.QueueServiceStub(self.channel)
        self.storage = storage_service_pb2_grpc.StorageServiceStub(self.channel)
        self.harvester = harvester_service_pb2_grpc.HarvesterServiceStub(self.channel)
        self.instances = instance_service_pb2_grpc.InstanceServiceStub(self.channel)


class JediClient(ServiceClient):
    """JEDI: tasks and datasets."""

    target = "JEDI"
    api = _JEDI_API

    def __init__(self, config: ConnectConfig) -> None:
        super().__init__(config)
        self.tasks = task_service_pb2_grpc.TaskServiceStub(self.channel)
        self.datasets = dataset_service_pb2_grpc.DatasetServiceStub(self.channel)


class IamClient(ServiceClient):
    """The identity service: users, groups, clients, signing keys, and who the caller is."""

    target = "the identity service"
    api = _IAM_API

    def __init__(self, config: ConnectConfig) -> None:
        super().__init__(config)
        self.iam = iam_service_pb2_grpc.IamServiceStub(self.channel)
