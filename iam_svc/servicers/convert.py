"""The identity stores' records to IamService messages."""

from __future__ import annotations

from datetime import datetime

from iam_svc.domain.accounts import Client, Group, User
from iam_svc.domain.keys import ACTIVE, SigningKey
from iam_svc.domain.names import group_resource_name
from panda.iam.v1 import identity_pb2
from panda_runtime.service.timestamps import timestamp

__all__ = ["client_to_proto", "group_to_proto", "key_to_proto", "user_to_proto"]


def user_to_proto(user: User) -> identity_pb2.User:
    return identity_pb2.User(
        name=f"users/{user.name}", user_id=user.name, display_name=user.display_name, email=user.email,
        disabled=not user.enabled, groups=user.groups, has_password=bool(user.password_hash),
        create_time=timestamp(user.create_time), update_time=timestamp(user.update_time),
    )


def group_to_proto(group: Group) -> identity_pb2.Group:
    return identity_pb2.Group(
        name=group_resource_name(group.path), path=group.path, description=group.description,
        member_count=group.member_count, create_time=timestamp(group.create_time),
    )


def client_to_proto(client: Client) -> identity_pb2.Client:
    kind = identity_pb2.Client.TYPE_PUBLIC if client.public else identity_pb2.Client.TYPE_CONFIDENTIAL
    return identity_pb2.Client(
        name=f"clients/{client.client_id}", client_id=client.client_id, description=client.description, type=kind,
        grant_types=client.grant_types, groups=client.groups, queues=client.queues, disabled=not client.enabled,
        create_time=timestamp(client.create_time), update_time=timestamp(client.update_time),
        redirect_uris=client.redirect_uris,
    )


def key_to_proto(key: SigningKey, expire_time: datetime | None = None) -> identity_pb2.SigningKey:
    state = identity_pb2.SigningKey.STATE_ACTIVE if key.state == ACTIVE else identity_pb2.SigningKey.STATE_RETIRED
    return identity_pb2.SigningKey(
        kid=key.kid, state=state, algorithm=key.algorithm, create_time=timestamp(key.create_time),
        retire_time=timestamp(key.retire_time), expire_time=timestamp(expire_time),
    )
