"""A real one-node Slurm (scripts/slurm.sh, deploy/slurm/slurm.conf.in), in a directory of its
own with its own ports and munge, so test sessions running side by side (xdist workers, two
checkouts) each have theirs. Tests call Slurm's commands with `cluster.environment` (SLURM_CONF
names the cluster) or `cluster.run`."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["PARTITION", "SlurmCluster", "running_slurm", "slurm_cluster"]

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "slurm.sh"
PARTITION = "panda"


@dataclass(frozen=True)
class SlurmCluster:
    directory: Path
    conf: Path
    partition: str

    @property
    def environment(self) -> dict[str, str]:
        """This process's environment with SLURM_CONF naming the cluster, for sbatch, squeue…"""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """A Slurm command against the cluster; fails the test when it fails."""
        return subprocess.run(command, env=self.environment, capture_output=True, text=True, timeout=timeout,
                              check=True)


@contextmanager
def running_slurm(directory: Path, min_job_age_seconds: int = 300) -> Iterator[SlurmCluster]:
    """A cluster started in `directory` for the block, stopped after it (its jobs cancelled)."""
    missing = [name for name in ("sbatch", "squeue", "sacct", "scancel", "slurmctld", "slurmd", "munged")
               if shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin") is None]
    assert not missing, f"Slurm is missing ({', '.join(missing)}): scripts/test.sh installs it (Debian's slurmctld, " \
                        "slurmd, slurm-client and munge)"
    settings = {"PANDA_SLURM_PARTITION": PARTITION, "PANDA_SLURM_MIN_JOB_AGE": str(min_job_age_seconds)}
    started = subprocess.run([str(SCRIPT), "start", str(directory)], capture_output=True, text=True, timeout=180,
                             env={**os.environ, **settings})
    if started.returncode != 0:
        raise RuntimeError(f"scripts/slurm.sh start failed ({started.returncode}):\n{started.stdout}{started.stderr}")
    printed = dict(line.split("=", 1) for line in started.stdout.splitlines() if "=" in line)
    try:
        yield SlurmCluster(directory=directory, conf=Path(printed["SLURM_CONF"]), partition=PARTITION)
    finally:
        subprocess.run([str(SCRIPT), "stop", str(directory)], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """One cluster for the session, with Slurm's own MinJobAge (300 s)."""
    with running_slurm(tmp_path_factory.mktemp("slurm")) as cluster:
        yield cluster
