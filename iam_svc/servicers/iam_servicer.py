"""IamService: checks requests, calls the stores off the event loop, maps records to messages."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime

import grpc

from iam_svc.domain import codes
from iam_svc.domain.accounts import UserChanges, check_grant_types
from iam_svc.domain.keys import SigningKey, published_until
from iam_svc.domain.names import (
    check_client_id,
    check_email,
    check_group_path,
    check_group_paths,
    check_queue_names,
    check_redirect_uris,
    check_user_name,
)
from iam_svc.domain.passwords import check_password, hash_password
from iam_svc.logic.provider import Provider
from iam_svc.servicers.convert import client_to_proto, group_to_proto, key_to_proto, user_to_proto
from iam_svc.store.identity_store import IdentityStore, group_not_found
from panda.iam.v1 import iam_service_pb2 as pb
from panda.iam.v1 import iam_service_pb2_grpc, identity_pb2
from panda_runtime.service.db import DbRunner
from panda_runtime.service.errors import FailedPrecondition, InvalidArgument
from panda_runtime.service.pagination import decode_token, encode_token, page_size
from panda_runtime.service.principals import current_principal
from panda_runtime.service.timestamps import timestamp

__all__ = ["IamServicer"]

USER_UPDATABLE = ("display_name", "email", "disabled", "password")
MAX_TEXT = 256


def _text(value: str, field: str, limit: int = MAX_TEXT) -> str:
    value = value.strip()
    if len(value) > limit:
        raise InvalidArgument(f"{field} is longer than {limit} characters", field=field)
    if "\x00" in value:
        raise InvalidArgument(f"{field} contains a NUL character", field=field)
    return value


def _next_token(keys: Sequence[str], limit: int, query: str) -> str:
    """The token of the page after this one, whose last record has the last of `keys`."""
    return encode_token({"after": keys[-1]}, query) if len(keys) == limit else ""


class IamServicer(iam_service_pb2_grpc.IamServiceServicer):
    def __init__(self, db: DbRunner, provider: Provider,
                 on_key_rotated: Callable[[], Awaitable[None]] | None = None) -> None:
        self._db = db
        self._provider = provider
        # This process's own token check, told to forget the keys it knows.
        self._on_key_rotated = on_key_rotated
        self._store: IdentityStore = provider.identities

    async def _existing_groups(self, paths: list[str]) -> list[str]:
        missing = await self._db.run(self._store.missing_groups, paths)
        if missing:
            raise group_not_found(missing[0])
        return paths

    # --- users ---------------------------------------------------------------------------

    async def CreateUser(self, request: pb.CreateUserRequest, context: grpc.aio.ServicerContext
                         ) -> pb.CreateUserResponse:
        user = request.user
        name = check_user_name(user.user_id, "user.user_id")
        groups = await self._existing_groups(check_group_paths(user.groups, "user.groups"))
        password_hash = ""
        if user.password:
            password_hash = await asyncio.to_thread(hash_password, check_password(user.password, "user.password"))
        row = await self._db.run(
            self._store.create_user, name, display_name=_text(user.display_name, "user.display_name") or name,
            email=check_email(user.email, "user.email"), password_hash=password_hash, enabled=not user.disabled,
            group_paths=groups)
        return pb.CreateUserResponse(user=user_to_proto(row))

    async def GetUser(self, request: pb.GetUserRequest, context: grpc.aio.ServicerContext) -> pb.GetUserResponse:
        row = await self._db.run(self._store.get_user, check_user_name(request.user_id))
        return pb.GetUserResponse(user=user_to_proto(row))

    async def ListUsers(self, request: pb.ListUsersRequest, context: grpc.aio.ServicerContext
                        ) -> pb.ListUsersResponse:
        limit = page_size(request.page_size)
        group = check_group_path(request.group) if request.group else ""
        position = decode_token(request.page_token, f"users|{group}", {"after": str})
        rows = await self._db.run(self._store.list_users, limit=limit, after=str(position.get("after", "")),
                                  group=group)
        return pb.ListUsersResponse(users=[user_to_proto(r) for r in rows],
                                    next_page_token=_next_token([r.name for r in rows], limit, f"users|{group}"))

    async def UpdateUser(self, request: pb.UpdateUserRequest, context: grpc.aio.ServicerContext
                         ) -> pb.UpdateUserResponse:
        user = request.user
        name = check_user_name(user.user_id, "user.user_id")
        paths = list(request.update_mask.paths)
        if not paths:
            raise InvalidArgument(f"update_mask names no field; updatable: {', '.join(USER_UPDATABLE)}",
                                  field="update_mask")
        changes = UserChanges()
        for path in paths:
            if path == "display_name":
                changes = replace(changes, display_name=_text(user.display_name, "user.display_name") or name)
            elif path == "email":
                changes = replace(changes, email=check_email(user.email, "user.email"))
            elif path == "disabled":
                changes = replace(changes, enabled=not user.disabled)
            elif path == "password":
                changes = replace(changes, password_hash=(
                    await asyncio.to_thread(hash_password, check_password(user.password, "user.password"))
                    if user.password else ""))
            else:
                raise InvalidArgument(f"field {path!r} cannot be updated; updatable: {', '.join(USER_UPDATABLE)} "
                                      "(groups: AddMember and RemoveMember)", field="update_mask")
        row = await self._db.run(self._store.update_user, name, changes)
        return pb.UpdateUserResponse(user=user_to_proto(row))

    async def DeleteUser(self, request: pb.DeleteUserRequest, context: grpc.aio.ServicerContext
                         ) -> pb.DeleteUserResponse:
        name = check_user_name(request.user_id)
        if name == current_principal().subject:
            raise FailedPrecondition("you cannot delete your own account", subject=f"users/{name}")
        await self._db.run(self._store.delete_user, name)
        return pb.DeleteUserResponse()

    # --- groups --------------------------------------------------------------------------

    async def CreateGroup(self, request: pb.CreateGroupRequest, context: grpc.aio.ServicerContext
                          ) -> pb.CreateGroupResponse:
        path = check_group_path(request.group.path, "group.path")
        row = await self._db.run(self._store.create_group, path,
                                 _text(request.group.description, "group.description", 4000))
        return pb.CreateGroupResponse(group=group_to_proto(row))

    async def ListGroups(self, request: pb.ListGroupsRequest, context: grpc.aio.ServicerContext
                         ) -> pb.ListGroupsResponse:
        limit = page_size(request.page_size)
        position = decode_token(request.page_token, "groups", {"after": str})
        rows = await self._db.run(self._store.list_groups, limit=limit, after=str(position.get("after", "")))
        return pb.ListGroupsResponse(groups=[group_to_proto(r) for r in rows],
                                     next_page_token=_next_token([r.path for r in rows], limit, "groups"))

    async def DeleteGroup(self, request: pb.DeleteGroupRequest, context: grpc.aio.ServicerContext
                          ) -> pb.DeleteGroupResponse:
        await self._db.run(self._store.delete_group, check_group_path(request.group))
        return pb.DeleteGroupResponse()

    async def AddMember(self, request: pb.AddMemberRequest, context: grpc.aio.ServicerContext
                        ) -> pb.AddMemberResponse:
        row = await self._db.run(self._store.add_member, check_user_name(request.user_id),
                                 check_group_path(request.group))
        return pb.AddMemberResponse(user=user_to_proto(row))

    async def RemoveMember(self, request: pb.RemoveMemberRequest, context: grpc.aio.ServicerContext
                           ) -> pb.RemoveMemberResponse:
        row = await self._db.run(self._store.remove_member, check_user_name(request.user_id),
                                 check_group_path(request.group))
        return pb.RemoveMemberResponse(user=user_to_proto(row))

    # --- clients -------------------------------------------------------------------------

    async def CreateClient(self, request: pb.CreateClientRequest, context: grpc.aio.ServicerContext
                           ) -> pb.CreateClientResponse:
        client = request.client
        client_id = check_client_id(client.client_id, "client.client_id")
        public = client.type == identity_pb2.Client.TYPE_PUBLIC
        redirect_uris = check_redirect_uris(client.redirect_uris, "client.redirect_uris")
        grant_types = check_grant_types(client.grant_types, public, redirect_uris=redirect_uris)
        groups = await self._existing_groups(check_group_paths(client.groups, "client.groups"))
        secret = "" if public else codes.new_client_secret()
        row = await self._db.run(
            self._store.create_client, client_id, description=_text(client.description, "client.description", 4000),
            public=public, secret_hash=codes.digest(secret) if secret else "", grant_types=grant_types,
            group_paths=groups, queues=check_queue_names(client.queues, "client.queues"), enabled=not client.disabled,
            redirect_uris=redirect_uris)
        return pb.CreateClientResponse(client=client_to_proto(row), client_secret=secret)

    async def GetClient(self, request: pb.GetClientRequest, context: grpc.aio.ServicerContext
                        ) -> pb.GetClientResponse:
        row = await self._db.run(self._store.get_client, check_client_id(request.client_id))
        return pb.GetClientResponse(client=client_to_proto(row))

    async def ListClients(self, request: pb.ListClientsRequest, context: grpc.aio.ServicerContext
                          ) -> pb.ListClientsResponse:
        limit = page_size(request.page_size)
        position = decode_token(request.page_token, "clients", {"after": str})
        rows = await self._db.run(self._store.list_clients, limit=limit, after=str(position.get("after", "")))
        return pb.ListClientsResponse(clients=[client_to_proto(r) for r in rows],
                                      next_page_token=_next_token([r.client_id for r in rows], limit, "clients"))

    async def DeleteClient(self, request: pb.DeleteClientRequest, context: grpc.aio.ServicerContext
                           ) -> pb.DeleteClientResponse:
        await self._db.run(self._store.delete_client, check_client_id(request.client_id))
        return pb.DeleteClientResponse()

    async def ResetClientSecret(self, request: pb.ResetClientSecretRequest, context: grpc.aio.ServicerContext
                                ) -> pb.ResetClientSecretResponse:
        secret = codes.new_client_secret()
        row = await self._db.run(self._store.set_client_secret, check_client_id(request.client_id),
                                 codes.digest(secret))
        return pb.ResetClientSecretResponse(client=client_to_proto(row), client_secret=secret)

    # --- keys and the caller -------------------------------------------------------------

    async def RotateSigningKey(self, request: pb.RotateSigningKeyRequest, context: grpc.aio.ServicerContext
                               ) -> pb.RotateSigningKeyResponse:
        active, published = await self._db.run(self._provider.rotate_signing_key)
        if self._on_key_rotated is not None:
            await self._on_key_rotated()
        longest = self._provider.longest_token_seconds

        def expiry(key: SigningKey) -> datetime | None:
            return published_until(key.retire_time, longest) if key.retire_time else None

        return pb.RotateSigningKeyResponse(
            active_key=key_to_proto(active), published_keys=[key_to_proto(k, expiry(k)) for k in published])

    async def WhoAmI(self, request: pb.WhoAmIRequest, context: grpc.aio.ServicerContext) -> pb.WhoAmIResponse:
        principal = current_principal()
        response = pb.WhoAmIResponse(
            subject=principal.subject, issuer=principal.issuer, client_id=principal.client_id,
            groups=list(principal.groups), roles=sorted(principal.roles),
            grants=sorted(f"{vo}/{role}" for vo, role in principal.grants), queues=sorted(principal.queues),
            expire_time=timestamp(datetime.fromtimestamp(principal.expires_at, UTC)) if principal.expires_at else None,
        )
        return response
