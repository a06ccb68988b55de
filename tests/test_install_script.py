"""scripts/install.sh installs only when it must: a restart of `scripts/up.sh` with nothing
changed does not reinstall. Run on a copy of the script and pyproject.toml, with the virtualenv's
python standing in for pip so that what the script asks of it is recorded."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

RECORDING_PYTHON = """#!/bin/sh
echo "$*" >> "$(dirname "$0")/../../pip-calls"
"""


def checkout(tmp_path: Path) -> Path:
    """A copy of what the script reads, with a virtualenv whose python records its calls."""
    (tmp_path / "scripts").mkdir()
    shutil.copy2(ROOT / "scripts" / "install.sh", tmp_path / "scripts" / "install.sh")
    shutil.copy2(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("python", "panda"):
        (bin_dir / name).write_text(RECORDING_PYTHON)
        (bin_dir / name).chmod(0o755)
    return tmp_path


def install(where: Path, *args: str) -> tuple[int, str, list[str]]:
    done = subprocess.run([str(where / "scripts" / "install.sh"), *args], capture_output=True, text=True,
                          timeout=60)
    calls = where / "pip-calls"
    recorded = calls.read_text().splitlines() if calls.exists() else []
    if calls.exists():
        calls.unlink()
    return done.returncode, done.stdout + done.stderr, recorded


def test_install_runs_once_until_pyproject_changes(tmp_path: Path) -> None:
    where = checkout(tmp_path)
    code, out, calls = install(where)
    assert code == 0 and "installing panda-mesh" in out
    assert calls[-1] == "-m pip install --quiet -e ."
    # Nothing changed: nothing installed (a restart of scripts/up.sh).
    code, out, calls = install(where)
    assert (code, calls) == (0, []) and "has not changed" in out
    # The test dependencies are more than was installed: installed.
    code, out, calls = install(where, "--dev")
    assert code == 0 and calls[-1] == "-m pip install --quiet -e .[dev]"
    # A dev install serves a plain one too.
    assert install(where)[2] == []
    # A changed pyproject.toml, or --force: installed again.
    with open(where / "pyproject.toml", "a") as pyproject:
        pyproject.write("\n# changed\n")
    assert install(where, "--dev")[2][-1] == "-m pip install --quiet -e .[dev]"
    assert install(where, "--dev", "--force")[2][-1] == "-m pip install --quiet -e .[dev]"
    code, out, _ = install(where, "--bogus")
    assert code == 2 and "usage: scripts/install.sh [--dev] [--force]" in out
