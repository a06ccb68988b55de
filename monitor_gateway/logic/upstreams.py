"""The services behind the gateway: one channel per address, and one callable per route, made
once, that sends the request message as it is and reads the response into its own type."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc

from monitor_gateway.domain.requests import message_class
from monitor_gateway.domain.routes import Route
from panda_runtime.client.channels import aio_channel

__all__ = ["Upstreams"]


class Upstreams:
    """`addresses`: a contracts package prefix (`panda.server.`) → the address serving its services."""

    def __init__(self, addresses: Mapping[str, str], *, max_message_bytes: int) -> None:
        self._addresses = dict(addresses)
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._callables: dict[tuple[str, bool], Any] = {}
        self._options = [("grpc.max_receive_message_length", max_message_bytes)]

    def address_of(self, service: str) -> str | None:
        """The address serving `service` (a full name), or None when no setting names one."""
        matches = [prefix for prefix in self._addresses if service.startswith(prefix)]
        return self._addresses[max(matches, key=len)] if matches else None

    def _channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            # No token of its own: each call carries its caller's, and the service decides. Its
            # calls count in the grpc_client_* metrics.
            channel = self._channels[address] = aio_channel(address, options=self._options, metrics=True)
        return channel

    def channel_for(self, service: str) -> grpc.aio.Channel | None:
        """The channel to the address serving `service` (a full name), or None when none does."""
        address = self.address_of(service)
        return self._channel(address) if address is not None else None

    def callable_for(self, route: Route) -> Any:
        """The route's multicallable (unary-unary or unary-stream) on its service's channel."""
        key = (route.rpc, route.server_streaming)
        found = self._callables.get(key)
        if found is not None:
            return found
        address = self.address_of(route.service)
        if address is None:
            raise LookupError(f"no address serves {route.service}")
        channel = self._channel(address)
        serialize = message_class(route.request_type).SerializeToString
        deserialize = message_class(route.response_type).FromString
        make = channel.unary_stream if route.server_streaming else channel.unary_unary
        found = self._callables[key] = make(route.rpc, request_serializer=serialize,
                                            response_deserializer=deserialize)
        return found

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        self._callables.clear()
