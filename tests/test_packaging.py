"""A wheel built from the repository, installed in a fresh virtualenv away from the checkout,
migrates a database and runs `panda up` with real work: the migrations, the generated code and
every part ship inside it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from panda_cli import up
from tests.up_support import UpProcess

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ directory of a fresh virtualenv with the wheel (and its dependencies) installed."""
    where = tmp_path_factory.mktemp("wheel")
    # Built from a copy of the files git would commit: a build/ left in the checkout by an
    # earlier build must not slip files into the wheel that the packaging rules leave out.
    source = where / "source"
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", str(source), "-w", str(where)],
                   check=True, capture_output=True, cwd=where)
    (wheel,) = where.glob("panda_mesh-*.whl")
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, cwd=where)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
                   check=True, capture_output=True, cwd=where)
    return venv / "bin"


def _clean_env(**extra: str) -> dict[str, str]:
    """No path back to the checkout, no database or identity of the test session."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PANDA_DATABASE_URL", "VIRTUAL_ENV") and k not in up.IDENTITY_VARIABLES}
    env.update(extra)
    return env


def test_the_installed_wheel_migrates_a_database(installed: Path, tmp_path: Path) -> None:
    database = tmp_path / "db" / "panda.db"
    result = subprocess.run(
        [str(installed / "panda"), "db", "upgrade", "--database-url", f"sqlite:///{database}"],
        capture_output=True, text=True, cwd=tmp_path, env=_clean_env(), timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "created at revision" in result.stdout and database.exists()
    # The package's own code ran, not the checkout's.
    where = subprocess.run([str(installed / "python"), "-c", "import panda_migrations, server_svc; "
                            "print(panda_migrations.__file__, server_svc.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, env=_clean_env(), check=True)
    assert str(ROOT) not in where.stdout and "site-packages" in where.stdout


@pytest.fixture
def installed_up(installed: Path, tmp_path: Path) -> Iterator[UpProcess]:
    # Started away from the checkout, so nothing of it is importable from the working directory.
    process = UpProcess(tmp_path / "panda", "--pilots", "1", panda=[str(installed / "panda")], cwd=tmp_path)
    yield process
    process.cleanup()


def test_the_installed_wheel_runs_panda_up_and_a_job(installed: Path, installed_up: UpProcess, tmp_path: Path) -> None:
    installed_up.wait_ready()
    env = _clean_env(XDG_CONFIG_HOME=str(installed_up.config_home), PANDA_SERVER=installed_up.address,
                     PANDA_IAM=installed_up.iam_address())
    submitted = subprocess.run(
        [str(installed / "panda"), "submit", "--queue", "local", "--output", "hello.txt", "--",
         "/bin/sh", "-c", "echo hello from the wheel > hello.txt"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60,
    )
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    watched = subprocess.run([str(installed / "panda"), "job", "watch", job_id],
                             capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert watched.returncode == 0, watched.stdout + watched.stderr + installed_up.logs()
    stored = next((tmp_path / "panda" / "se" / "local").glob("user.*/hello.txt"))
    assert stored.read_text() == "hello from the wheel\n"
    installed_up.process.send_signal(signal.SIGINT)
    assert installed_up.exit_code(timeout=60) == 0
