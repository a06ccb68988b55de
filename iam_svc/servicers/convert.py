"""Rows of the identity stores to IamService messages."""

from __future__ import annotations

from typing import Any

from iam_svc.domain.keys import ACTIVE
from iam_svc.domain.names import group_resource_name
from panda.iam.v1 import identity_pb2
from panda_runtime.service.timestamps import timestamp


def user_to_proto(row: dict[str, Any]) -> identity_pb2.User:
    return identity_pb2.User(
        name=f"users/{row['name']}", user_id=row["name"], display_name=row["display_name"], email=row["email"],
        disabled=not row["enabled"], groups=row["groups"], has_password=bool(row["password_hash"]),
        create_time=timestamp(row["create_time"]), update_time=timestamp(row["update_time"]),
    )


def group_to_proto(row: dict[str, Any]) -> identity_pb2.Group:
    return identity_pb2.Group(
        name=group_resource_name(row["path"]), path=row["path"], description=row["description"],
        member_count=int(row.get("member_count", 0)), create_time=timestamp(row["create_time"]),
    )


def client_to_proto(row: dict[str, Any]) -> identity_pb2.Client:
    kind = identity_pb2.Client.TYPE_PUBLIC if row["public"] else identity_pb2.Client.TYPE_CONFIDENTIAL
    return identity_pb2.Client(
        name=f"clients/{row['client_id']}", client_id=row["client_id"], description=row["description"], type=kind,
        grant_types=row["grant_types"], groups=row["groups"], queues=row["queues"], disabled=not row["enabled"],
        create_time=timestamp(row["create_time"]), update_time=timestamp(row["update_time"]),
    )


def key_to_proto(row: dict[str, Any], expire_time: Any = None) -> identity_pb2.SigningKey:
    state = identity_pb2.SigningKey.STATE_ACTIVE if row["state"] == ACTIVE else identity_pb2.SigningKey.STATE_RETIRED
    return identity_pb2.SigningKey(
        kid=row["kid"], state=state, algorithm=row["algorithm"], create_time=timestamp(row["create_time"]),
        retire_time=timestamp(row["retire_time"]), expire_time=timestamp(expire_time),
    )
