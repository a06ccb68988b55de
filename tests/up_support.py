"""`panda up` as a process the tests start, watch and clean up after: its children found with
psutil and signalled only by their PIDs or the process groups `panda up` made."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import psutil

from panda_cli import launcher, up
from tools.cluster import free_port

READY = "PanDA mesh is up. Ctrl-C stops it."
# What UpProcess sets to give `panda up` its ports.
PORT_VARIABLES = ("PANDA_SERVER", "PANDA_METRICS_PORT", "PANDA_JEDI", "PANDA_JEDI_METRICS_PORT", "PANDA_IAM",
                  "PANDA_IAM_HTTP_PORT", "PANDA_IAM_METRICS_PORT", "PANDA_GATEWAY", "PANDA_GATEWAY_METRICS_PORT",
                  "PANDA_HARVESTER_ADDRESS", "PANDA_HARVESTER_METRICS_PORT")
SUMMARY_END = "  panda queue list"


class UpProcess:
    """`panda up ...` in its own session, its stdout and stderr in files; `panda` is the command
    that runs the command line (this checkout's, by default)."""

    def __init__(self, data_dir: Path, *extra: str, panda: Sequence[str] = (sys.executable, "-m", "panda_cli.main"),
                 cwd: Path | None = None, through_tee: bool = False, ports_of: UpProcess | None = None) -> None:
        """`through_tee`: its stdout piped into a real `tee` (`self.tee`), as in `panda up | tee
        log`; `ports_of`: on the ports another one had."""
        self.data_dir = data_dir
        self.address = f"127.0.0.1:{free_port()}"
        self.metrics_port = free_port()
        # As on a fresh machine: no database, token or trusted issuer from the test session.
        env = {k: v for k, v in os.environ.items() if k != "PANDA_DATABASE_URL" and k not in up.IDENTITY_VARIABLES}
        self.config_home = data_dir.parent / f"{data_dir.name}-config"
        # Every port from the test's free ones: ports `panda up` would derive from the server's
        # (100, 200 and 300 above) may be another test's (local_mesh's own tests cover that rule).
        env.update(
            XDG_CONFIG_HOME=str(self.config_home),
            PANDA_SERVER=self.address,
            PANDA_METRICS_PORT=str(self.metrics_port),
            PANDA_JEDI=f"127.0.0.1:{free_port()}",
            PANDA_JEDI_METRICS_PORT=str(free_port()),
            PANDA_IAM=f"127.0.0.1:{free_port()}",
            PANDA_IAM_HTTP_PORT=str(free_port()),
            PANDA_IAM_METRICS_PORT=str(free_port()),
            PANDA_GATEWAY=f"127.0.0.1:{free_port()}",
            PANDA_GATEWAY_METRICS_PORT=str(free_port()),
            PANDA_HARVESTER_ADDRESS=f"127.0.0.1:{free_port()}",
            PANDA_HARVESTER_METRICS_PORT=str(free_port()),
            PANDA_DATA_DIR=str(data_dir),
            PYTHONUNBUFFERED="1",
        )
        if ports_of is not None:
            env.update({name: value for name, value in ports_of.env.items() if name in PORT_VARIABLES})
            self.address, self.metrics_port = ports_of.address, ports_of.metrics_port
        self.env = env
        data_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = data_dir.parent / f"{data_dir.name}-up.out"
        self.stderr_path = data_dir.parent / f"{data_dir.name}-up.err"
        self.tee: subprocess.Popen[bytes] | None = None
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                [*panda, "up", "--data-dir", str(data_dir), *extra],
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if through_tee else out,
                stderr=err,
                env=env,
                start_new_session=True,
            )
        if through_tee:
            assert self.process.stdout is not None
            self.tee = subprocess.Popen(["tee", str(self.stdout_path)], stdin=self.process.stdout,
                                        stdout=subprocess.DEVNULL, start_new_session=True)
            self.process.stdout.close()  # tee holds the pipe's only reading end
        self.children: list[psutil.Process] = []  # every process seen under it, for cleanup

    @property
    def out(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def err(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.out:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"panda up exited with {self.process.returncode} before printing {text!r}:\n"
                    f"{self.out}\n{self.err}\n{self.logs()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"panda up did not print {text!r} in {timeout} s:\n{self.out}\n{self.err}")
            time.sleep(0.1)

    def wait_ready(self) -> None:
        self.wait_for_output(READY)
        self.wait_for_output(SUMMARY_END)
        self.track()

    def track(self) -> list[psutil.Process]:
        """Every process now under `panda up` (server, pilots, payloads), remembered for cleanup."""
        try:
            now = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            now = []
        known = {p.pid for p in self.children}
        self.children += [p for p in now if p.pid not in known]
        return now

    def direct_children(self) -> dict[str, psutil.Process]:
        """The server, the gateway and harvester, by the names `panda up` gives them."""
        named = {}
        for child in psutil.Process(self.process.pid).children():
            argv = child.cmdline()
            for component in (launcher.SERVER, launcher.GATEWAY, launcher.HARVESTER):
                if argv[1:3] == ["-m", component.module]:
                    named[component.name] = child
        return named

    def pilots(self) -> list[psutil.Process]:
        """The pilots running now (harvester's workers), under `panda up`."""
        try:
            below = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        found = []
        for process in below:
            try:
                if process.cmdline()[1:3] == ["-m", launcher.PILOT.module]:
                    found.append(process)
            except psutil.Error:
                continue
        return found

    def iam_address(self) -> str:
        """The identity service's address, as `panda up` printed it."""
        marker = "identity service ready at "
        line = next(line for line in self.out.splitlines() if line.startswith(marker))
        return line.removeprefix(marker).split(",")[0]

    def gateway_url(self) -> str:
        """The gateway's URL, as `panda up` printed it in its summary."""
        marker = "  gateway   "
        line = next(line for line in self.out.splitlines() if line.startswith(marker))
        return line.removeprefix(marker).split()[0]

    def exit_code(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"panda up still running {timeout} s later:\n{self.out}\n{self.err}") from None

    def logs(self) -> str:
        logs = self.data_dir / "logs"
        if not logs.is_dir():
            return ""
        return "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(logs.glob("*.log")))

    def cleanup(self) -> None:
        """Whatever a failed test left running: `panda up` by its group, its children by theirs."""
        if self.tee is not None and self.tee.poll() is None:
            self.tee.kill()
            self.tee.wait(10)
        if self.process.poll() is None:
            self.track()
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        for child in self.children:
            if alive(child):
                child.send_signal(signal.SIGCONT)
                try:
                    os.killpg(child.pid, signal.SIGKILL)
                except ProcessLookupError:  # not a group leader (e.g. a payload)
                    child.kill()


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def assert_all_gone(processes: list[psutil.Process], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in processes) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [(p.pid, p.cmdline()) for p in processes if alive(p)]
    assert not left, f"still running: {left}"
