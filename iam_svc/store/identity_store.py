"""Users, groups, memberships and clients."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from iam_svc.domain import refresh, revocation
from iam_svc.domain.accounts import Client, Group, User, UserChanges, ends_sign_ins
from iam_svc.domain.names import group_resource_name
from iam_svc.domain.revocation import Revocation
from iam_svc.store.tables import clients, groups, memberships, refresh_tokens, revocations, users
from panda_runtime.service.db import Store, aware, now
from panda_runtime.service.errors import AlreadyExists, FailedPrecondition, NotFound

__all__ = ["IdentityStore", "client_not_found", "group_not_found", "user_not_found"]


def user_not_found(name: str) -> NotFound:
    return NotFound(f"user {name} not found", resource_type="user", resource_name=f"users/{name}")


def group_not_found(path: str) -> NotFound:
    return NotFound(
        f"group {path} does not exist (create it first: panda iam group add {path})",
        resource_type="group", resource_name=group_resource_name(path),
    )


def client_not_found(client_id: str) -> NotFound:
    return NotFound(f"client {client_id} not found", resource_type="client", resource_name=f"clients/{client_id}")


def _times(row: Any) -> tuple[datetime, datetime]:
    create_time, update_time = aware(row.create_time), aware(row.update_time)
    assert create_time is not None and update_time is not None
    return create_time, update_time


def _user_record(row: Any, group_paths: Sequence[str]) -> User:
    create_time, update_time = _times(row)
    return User(name=row.name, display_name=row.display_name, email=row.email, password_hash=row.password_hash,
                enabled=row.enabled, groups=tuple(group_paths), create_time=create_time, update_time=update_time)


def _client_record(row: Any) -> Client:
    create_time, update_time = _times(row)
    return Client(client_id=row.client_id, description=row.description, public=row.public,
                  secret_hash=row.secret_hash, grant_types=tuple(row.grant_types), groups=tuple(row.groups),
                  queues=tuple(row.queues), enabled=row.enabled, create_time=create_time, update_time=update_time,
                  redirect_uris=tuple(row.redirect_uris or ()))


def _revocation_record(row: Any) -> Revocation:
    revoke_time = aware(row.revoke_time)
    assert revoke_time is not None
    return Revocation(kind=row.kind, name=row.name, revoke_time=revoke_time)


def _group_record(row: Any) -> Group:
    create_time = aware(row.create_time)
    assert create_time is not None
    return Group(path=row.path, description=row.description, member_count=int(row.member_count),
                 create_time=create_time)


class IdentityStore(Store):
    """`keep_revocations`: how long a revocation is kept (revocation.retention); older ones are
    deleted as new ones are recorded."""

    def __init__(self, engine: Engine, *, keep_revocations: timedelta) -> None:
        super().__init__(engine)
        self._keep_revocations = keep_revocations

    # --- users ---------------------------------------------------------------------------

    def create_user(self, name: str, *, display_name: str, email: str, password_hash: str, enabled: bool,
                    group_paths: Sequence[str], create_missing_groups: bool = False) -> User:
        try:
            with self._engine.begin() as conn:
                if conn.execute(select(users.c.user_row).where(users.c.name == name)).first() is not None:
                    raise AlreadyExists(f"user {name} already exists")
                at = now()
                user_row = conn.execute(insert(users).values(
                    name=name, display_name=display_name, email=email, password_hash=password_hash,
                    enabled=enabled, create_time=at, update_time=at,
                ).returning(users.c.user_row)).scalar_one()
                self._set_memberships(conn, user_row, group_paths, create_missing_groups)
                return self._user(conn, name)
        except IntegrityError as error:
            # Two creations racing on PostgreSQL: the loser sees the unique index.
            raise AlreadyExists(f"user {name} already exists") from error

    def get_user(self, name: str) -> User:
        with self._engine.connect() as conn:
            return self._user(conn, name)

    def find_user(self, name: str) -> User | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.name == name)).first()
            return None if row is None else _user_record(row, self._groups_of(conn, row.user_row))

    def list_users(self, *, limit: int, after: str = "", group: str = "") -> list[User]:
        with self._engine.connect() as conn:
            query = select(users).where(users.c.name > after).order_by(users.c.name).limit(limit)
            if group:
                query = query.where(users.c.user_row.in_(
                    select(memberships.c.user_row).join(groups, groups.c.group_row == memberships.c.group_row)
                    .where(groups.c.path == group)
                ))
            rows = conn.execute(query).all()
            group_map = self._groups_of_many(conn, [r.user_row for r in rows])
            return [_user_record(r, group_map.get(r.user_row, [])) for r in rows]

    def update_user(self, name: str, changes: UserChanges) -> User:
        values = {key: value for key, value in ((f.name, getattr(changes, f.name)) for f in fields(changes))
                  if value is not None}
        with self._engine.begin() as conn:
            self._user_row(conn, name, lock=True)
            if values:
                conn.execute(update(users).where(users.c.name == name).values(**values, update_time=now()))
            if ends_sign_ins(changes):
                self._revoke_refresh_tokens(conn, users_named=name)
            if revocation.revokes_tokens(changes):
                self._record_revocation(conn, revocation.SUBJECT, name)
            return self._user(conn, name)

    def set_password_hash(self, name: str, password_hash: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(update(users).where(users.c.name == name).values(password_hash=password_hash))

    def delete_user(self, name: str) -> None:
        with self._engine.begin() as conn:
            user_row = self._user_row(conn, name, lock=True)
            conn.execute(delete(memberships).where(memberships.c.user_row == user_row))
            conn.execute(delete(users).where(users.c.user_row == user_row))
            self._revoke_refresh_tokens(conn, users_named=name)
            self._record_revocation(conn, revocation.SUBJECT, name)

    def set_memberships(self, name: str, group_paths: Sequence[str], *, create_missing_groups: bool) -> None:
        with self._engine.begin() as conn:
            user_row = self._user_row(conn, name, lock=True)
            self._set_memberships(conn, user_row, group_paths, create_missing_groups)

    def add_member(self, name: str, path: str) -> User:
        with self._engine.begin() as conn:
            user_row = self._user_row(conn, name, lock=True)
            group_row = self._group_row(conn, path)
            exists = conn.execute(select(memberships.c.user_row).where(
                memberships.c.user_row == user_row, memberships.c.group_row == group_row)).first()
            if exists is None:
                conn.execute(insert(memberships).values(user_row=user_row, group_row=group_row))
                conn.execute(update(users).where(users.c.user_row == user_row).values(update_time=now()))
            return self._user(conn, name)

    def remove_member(self, name: str, path: str) -> User:
        with self._engine.begin() as conn:
            user_row = self._user_row(conn, name, lock=True)
            group_row = self._group_row(conn, path)
            removed = conn.execute(delete(memberships).where(
                memberships.c.user_row == user_row, memberships.c.group_row == group_row)).rowcount
            if not removed:
                raise FailedPrecondition(f"user {name} is not in group {path}", subject=f"users/{name}")
            conn.execute(update(users).where(users.c.user_row == user_row).values(update_time=now()))
            return self._user(conn, name)

    # --- groups --------------------------------------------------------------------------

    def create_group(self, path: str, description: str = "") -> Group:
        try:
            with self._engine.begin() as conn:
                if conn.execute(select(groups.c.group_row).where(groups.c.path == path)).first() is not None:
                    raise AlreadyExists(f"group {path} already exists")
                conn.execute(insert(groups).values(path=path, description=description, create_time=now()))
                return self._group(conn, path)
        except IntegrityError as error:
            raise AlreadyExists(f"group {path} already exists") from error

    def ensure_groups(self, paths: Sequence[str]) -> None:
        with self._engine.begin() as conn:
            self._ensure_groups(conn, paths)

    def list_groups(self, *, limit: int, after: str = "") -> list[Group]:
        with self._engine.connect() as conn:
            rows = conn.execute(self._groups_query().where(groups.c.path > after)
                                .order_by(groups.c.path).limit(limit)).all()
            return [_group_record(r) for r in rows]

    def delete_group(self, path: str) -> None:
        """Users leave it (the cascade) and clients stop carrying it."""
        with self._engine.begin() as conn:
            group_row = self._group_row(conn, path)
            conn.execute(delete(memberships).where(memberships.c.group_row == group_row))
            conn.execute(delete(groups).where(groups.c.group_row == group_row))
            for row in conn.execute(self._locked(select(clients.c.client_row, clients.c.groups))).all():
                if path in row.groups:
                    conn.execute(update(clients).where(clients.c.client_row == row.client_row).values(
                        groups=[g for g in row.groups if g != path], update_time=now()))

    def missing_groups(self, paths: Sequence[str]) -> list[str]:
        with self._engine.connect() as conn:
            known = set(conn.execute(select(groups.c.path).where(groups.c.path.in_(list(paths)))).scalars())
            return [p for p in paths if p not in known]

    # --- clients -------------------------------------------------------------------------

    def create_client(self, client_id: str, *, description: str, public: bool, secret_hash: str,
                      grant_types: Sequence[str], group_paths: Sequence[str], queues: Sequence[str],
                      enabled: bool = True, redirect_uris: Sequence[str] = ()) -> Client:
        try:
            with self._engine.begin() as conn:
                if self._find_client(conn, client_id) is not None:
                    raise AlreadyExists(f"client {client_id} already exists")
                at = now()
                conn.execute(insert(clients).values(
                    client_id=client_id, description=description, public=public, secret_hash=secret_hash,
                    grant_types=list(grant_types), groups=list(group_paths), queues=list(queues),
                    enabled=enabled, create_time=at, update_time=at, redirect_uris=list(redirect_uris),
                ))
                return self._client(conn, client_id)
        except IntegrityError as error:
            raise AlreadyExists(f"client {client_id} already exists") from error

    def upsert_client(self, client_id: str, *, public: bool, secret_hash: str, grant_types: Sequence[str],
                      group_paths: Sequence[str], queues: Sequence[str], enabled: bool = True,
                      description: str | None = None, redirect_uris: Sequence[str] = ()) -> Client:
        """Creates the client or overwrites these fields (provisioning); a description of None
        leaves an existing client's as it is."""
        values: dict[str, Any] = {
            "public": public, "secret_hash": secret_hash, "grant_types": list(grant_types),
            "groups": list(group_paths), "queues": list(queues), "enabled": enabled,
            "redirect_uris": list(redirect_uris),
        }
        if description is not None:
            values["description"] = description
        with self._engine.begin() as conn:
            at = now()
            if self._find_client(conn, client_id, lock=True) is None:
                conn.execute(insert(clients).values(client_id=client_id, **{"description": "", **values},
                                                    create_time=at, update_time=at))
            else:
                conn.execute(update(clients).where(clients.c.client_id == client_id).values(**values, update_time=at))
            return self._client(conn, client_id)

    def get_client(self, client_id: str) -> Client:
        with self._engine.connect() as conn:
            return self._client(conn, client_id)

    def find_client(self, client_id: str) -> Client | None:
        with self._engine.connect() as conn:
            row = self._find_client(conn, client_id)
            return None if row is None else _client_record(row)

    def list_clients(self, *, limit: int, after: str = "") -> list[Client]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(clients).where(clients.c.client_id > after)
                                .order_by(clients.c.client_id).limit(limit)).all()
            return [_client_record(r) for r in rows]

    def set_client_secret(self, client_id: str, secret_hash: str) -> Client:
        with self._engine.begin() as conn:
            row = self._find_client(conn, client_id, lock=True)
            if row is None:
                raise client_not_found(client_id)
            if row.public:
                raise FailedPrecondition(f"client {client_id} is public: it has no secret",
                                         subject=f"clients/{client_id}")
            conn.execute(update(clients).where(clients.c.client_id == client_id)
                         .values(secret_hash=secret_hash, update_time=now()))
            return self._client(conn, client_id)

    def delete_client(self, client_id: str) -> None:
        with self._engine.begin() as conn:
            if not conn.execute(delete(clients).where(clients.c.client_id == client_id)).rowcount:
                raise client_not_found(client_id)
            conn.execute(update(refresh_tokens).where(refresh_tokens.c.client_id == client_id,
                                                      refresh_tokens.c.state == refresh.ACTIVE)
                         .values(state=refresh.REVOKED))
            self._record_revocation(conn, revocation.CLIENT, client_id)

    # --- revocations ---------------------------------------------------------------------

    def revocations(self) -> list[Revocation]:
        """The revocations still kept, oldest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(revocations).where(revocations.c.revoke_time >= now() - self._keep_revocations)
                                .order_by(revocations.c.revoke_time)).all()
        return [_revocation_record(r) for r in rows]

    # --- inside a transaction ------------------------------------------------------------

    def _user_row(self, conn: Connection, name: str, *, lock: bool = False) -> int:
        query = select(users.c.user_row).where(users.c.name == name)
        user_row = conn.execute(self._locked(query) if lock else query).scalar()
        if user_row is None:
            raise user_not_found(name)
        return int(user_row)

    def _user(self, conn: Connection, name: str) -> User:
        row = conn.execute(select(users).where(users.c.name == name)).first()
        if row is None:
            raise user_not_found(name)
        return _user_record(row, self._groups_of(conn, row.user_row))

    def _groups_of(self, conn: Connection, user_row: int) -> list[str]:
        return self._groups_of_many(conn, [user_row]).get(user_row, [])

    def _groups_of_many(self, conn: Connection, user_rows: list[int]) -> dict[int, list[str]]:
        found: dict[int, list[str]] = {}
        if not user_rows:
            return found
        query = (select(memberships.c.user_row, groups.c.path)
                 .join(groups, groups.c.group_row == memberships.c.group_row)
                 .where(memberships.c.user_row.in_(user_rows)).order_by(groups.c.path))
        for user_row, path in conn.execute(query).all():
            found.setdefault(user_row, []).append(path)
        return found

    def _set_memberships(self, conn: Connection, user_row: int, paths: Sequence[str], create_missing: bool) -> None:
        if create_missing:
            self._ensure_groups(conn, paths)
        rows = {path: self._group_row(conn, path) for path in paths}
        conn.execute(delete(memberships).where(memberships.c.user_row == user_row))
        if rows:
            conn.execute(insert(memberships), [{"user_row": user_row, "group_row": g} for g in rows.values()])

    def _ensure_groups(self, conn: Connection, paths: Sequence[str]) -> None:
        if not paths:
            return
        known = set(conn.execute(select(groups.c.path).where(groups.c.path.in_(list(paths)))).scalars())
        for path in paths:
            if path not in known:
                conn.execute(insert(groups).values(path=path, description="", create_time=now()))
                known.add(path)

    def _group_row(self, conn: Connection, path: str) -> int:
        group_row = conn.execute(select(groups.c.group_row).where(groups.c.path == path)).scalar()
        if group_row is None:
            raise group_not_found(path)
        return int(group_row)

    def _groups_query(self) -> Any:
        counts = (select(memberships.c.group_row, func.count().label("member_count"))
                  .group_by(memberships.c.group_row).subquery())
        return (select(groups, func.coalesce(counts.c.member_count, 0).label("member_count"))
                .outerjoin(counts, counts.c.group_row == groups.c.group_row))

    def _group(self, conn: Connection, path: str) -> Group:
        row = conn.execute(self._groups_query().where(groups.c.path == path)).first()
        if row is None:
            raise group_not_found(path)
        return _group_record(row)

    def _find_client(self, conn: Connection, client_id: str, *, lock: bool = False) -> Any:
        query = select(clients).where(clients.c.client_id == client_id)
        return conn.execute(self._locked(query) if lock else query).first()

    def _client(self, conn: Connection, client_id: str) -> Client:
        row = self._find_client(conn, client_id)
        if row is None:
            raise client_not_found(client_id)
        return _client_record(row)

    def _record_revocation(self, conn: Connection, kind: str, name: str) -> None:
        at = now()
        conn.execute(insert(revocations).values(kind=kind, name=name, revoke_time=at))
        conn.execute(delete(revocations).where(revocations.c.revoke_time < at - self._keep_revocations))

    @staticmethod
    def _revoke_refresh_tokens(conn: Connection, *, users_named: str) -> None:
        conn.execute(update(refresh_tokens).where(refresh_tokens.c.user_name == users_named,
                                                  refresh_tokens.c.state == refresh.ACTIVE)
                         .values(state=refresh.REVOKED))
