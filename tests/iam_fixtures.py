"""Fixtures for the identity service's tests: `panda serve iam` on a fresh SQLite file and on a
fresh PostgreSQL database, one of each per test module."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator

import pytest

from tests.iam_support import Iam, start_iam_cli
from tools.cluster import drop_database, fresh_database


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def iam(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Iam]:
    data_dir = tmp_path_factory.mktemp(f"iam-{request.param}")
    url = fresh_database(request.param, data_dir, f"panda_iam_{uuid.uuid4().hex[:10]}")
    handle = start_iam_cli(data_dir, url)
    yield handle
    handle.stop()
    handle.db().dispose()
    if handle.process is not None and handle.process.returncode not in (0, -15, None):
        print(handle.process.log()[-5000:], file=sys.stderr)
    drop_database(url)
