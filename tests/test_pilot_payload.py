"""Payload control: real subprocesses in their own process groups, real limits and kills."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from pilot_agent import error_codes
from pilot_agent.monitor import group_members
from pilot_agent.payload import (
    STDERR_NAME,
    STDOUT_NAME,
    Payload,
    PayloadLimits,
    PayloadResult,
    payload_environment,
)

pytestmark = pytest.mark.timeout(30)


def python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def make_payload(workdir: Path, argv: list[str], limits: PayloadLimits | None = None, **kwargs: float) -> Payload:
    env = payload_environment(42, 1, workdir)
    options = {"monitor_interval": 0.2, "kill_grace": 1.0} | kwargs
    return Payload(argv, workdir, env, limits, **options)


def run(payload: Payload) -> PayloadResult:
    return asyncio.run(payload.run())


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# A payload that starts a grandchild in its group, writes the pids, then sleeps.
SLEEPER_WITH_CHILD = """
    import os, subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    with open("pids.json", "w") as f:
        f.write('{"root": %d, "child": %d}' % (os.getpid(), child.pid))
    time.sleep(60)
"""


def read_pids(workdir: Path) -> dict[str, int]:
    return json.loads((workdir / "pids.json").read_text())


def test_exit_zero_is_success_with_output_kept(tmp_path: Path) -> None:
    payload = make_payload(tmp_path, python("print('hello from the payload')"))
    result = run(payload)
    assert result.ok
    assert result.exit_code == 0 and result.error_code == 0 and result.error_diag == ""
    assert (tmp_path / STDOUT_NAME).read_text() == "hello from the payload\n"
    assert (tmp_path / STDERR_NAME).exists()
    assert "hello from the payload" in result.log_tail


def test_nonzero_exit_is_1305_and_tail_has_stderr(tmp_path: Path) -> None:
    code = """
        import sys
        for i in range(200):
            print("line", i)
        print("something went badly wrong", file=sys.stderr)
        sys.exit(3)
    """
    result = run(make_payload(tmp_path, python(code)))
    assert result.exit_code == 3
    assert result.error_code == error_codes.PAYLOADEXECUTIONFAILURE.code == 1305
    assert result.error_diag == "payload exited with code 3"
    assert "something went badly wrong" in result.log_tail
    # Only the tail of stdout: the last line, not the first ones.
    assert "line 199" in result.log_tail
    assert "line 100\n" not in result.log_tail
    assert len(result.log_tail.encode()) <= 16 * 1024


def test_command_not_found_is_1305_with_clear_diag(tmp_path: Path) -> None:
    result = run(make_payload(tmp_path, ["no-such-command-for-the-pilot", "x"]))
    assert result.error_code == 1305
    assert "command not found" in result.error_diag
    assert "no-such-command-for-the-pilot" in result.log_tail


def test_not_executable_is_1305(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    result = run(make_payload(tmp_path, [str(script)]))
    assert result.error_code == 1305
    assert "not executable" in result.error_diag


def test_environment_and_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PILOT_TEST_INHERITED", "from-pilot")
    env = payload_environment(1234, 3, tmp_path, {"JOB_VAR": "from-job", "PANDA_JOB_ID": "overridden?"})
    code = """
        import json, os
        keys = ["PILOT_TEST_INHERITED", "JOB_VAR", "PANDA_JOB_ID", "PANDA_ATTEMPT", "PANDA_WORKDIR"]
        print(json.dumps({"cwd": os.getcwd(), "env": {k: os.environ.get(k) for k in keys},
                          "pgid": os.getpgid(0), "pid": os.getpid()}))
    """
    result = asyncio.run(Payload(python(code), tmp_path, env, monitor_interval=0.2).run())
    assert result.ok
    seen = json.loads((tmp_path / STDOUT_NAME).read_text())
    assert Path(seen["cwd"]).resolve() == tmp_path.resolve()
    assert seen["env"] == {
        "PILOT_TEST_INHERITED": "from-pilot",
        "JOB_VAR": "from-job",
        "PANDA_JOB_ID": "1234",  # the pilot's own variables win over the job's
        "PANDA_ATTEMPT": "3",
        "PANDA_WORKDIR": str(tmp_path),
    }
    # Its own process group, led by itself.
    assert seen["pgid"] == seen["pid"] != os.getpgid(0)


def test_walltime_limit_is_1213_and_group_is_gone(tmp_path: Path) -> None:
    payload = make_payload(tmp_path, python(SLEEPER_WITH_CHILD), PayloadLimits(walltime_seconds=1.5))
    started = time.monotonic()
    result = run(payload)
    elapsed = time.monotonic() - started
    assert result.error_code == error_codes.REACHEDMAXTIME.code == 1213
    assert "walltime" in result.error_diag
    assert 1.4 < elapsed < 6
    pids = read_pids(tmp_path)
    assert group_members(pids["root"]) == []
    assert not alive(pids["child"])


def test_kill_stops_the_whole_group_even_if_it_ignores_sigterm(tmp_path: Path) -> None:
    # SIG_IGN is inherited by the grandchild too.
    code = "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + textwrap.dedent(SLEEPER_WITH_CHILD)
    payload = make_payload(tmp_path, python(code), kill_grace=0.5)

    async def scenario() -> PayloadResult:
        task = asyncio.create_task(payload.run())
        while not (tmp_path / "pids.json").exists():
            assert not task.done(), (tmp_path / STDERR_NAME).read_text()
            await asyncio.sleep(0.05)
        payload.kill(error_codes.PANDAKILL, "killed by the server")
        return await task

    result = asyncio.run(scenario())
    assert result.error_code == error_codes.PANDAKILL.code
    assert result.error_diag == "killed by the server"
    assert result.signal == signal.SIGKILL and result.exit_code == 128 + signal.SIGKILL
    pids = read_pids(tmp_path)
    assert group_members(pids["root"]) == []
    assert not alive(pids["root"]) and not alive(pids["child"])


def test_memory_limit_is_1235(tmp_path: Path) -> None:
    code = """
        import time
        block = b"x" * (300 * 1024 * 1024)  # touched pages: real RSS
        time.sleep(30)
    """
    payload = make_payload(tmp_path, python(code), PayloadLimits(memory_mb=100))
    started = time.monotonic()
    result = run(payload)
    assert result.error_code == error_codes.PAYLOADEXCEEDMAXMEM.code == 1235
    assert "100 MiB" in result.error_diag
    assert result.max_rss_mb > 100
    assert time.monotonic() - started < 10


def test_signal_death_maps_to_panda_code(tmp_path: Path) -> None:
    code = """
        import os, signal
        os.kill(os.getpid(), signal.SIGSEGV)
    """
    result = run(make_payload(tmp_path, python(code)))
    assert result.signal == signal.SIGSEGV
    assert result.error_code == error_codes.SIGSEGV.code == 1203
    assert "SIGSEGV" in result.error_diag


def test_looping_job_is_1150(tmp_path: Path) -> None:
    payload = make_payload(tmp_path, python("import time; time.sleep(30)"), PayloadLimits(looping_timeout=1))
    result = run(payload)
    assert result.error_code == error_codes.LOOPINGJOB.code == 1150


def test_cpu_time_counts_finished_children(tmp_path: Path) -> None:
    code = """
        import subprocess, sys
        burn = "import time\\nend = time.process_time() + 0.6\\nwhile time.process_time() < end: pass"
        subprocess.run([sys.executable, "-c", burn], check=True)
    """
    result = run(make_payload(tmp_path, python(code)))
    assert result.ok
    assert result.cpu_seconds >= 0.5
    assert result.max_rss_mb > 0


def test_leftover_background_process_is_stopped(tmp_path: Path) -> None:
    code = """
        import os, subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open("child.pid", "w").write(str(child.pid))
    """
    result = run(make_payload(tmp_path, python(code)))
    assert result.ok
    assert not alive(int((tmp_path / "child.pid").read_text()))


def test_the_pilots_credentials_never_reach_the_payload(monkeypatch: pytest.MonkeyPatch) -> None:
    credentials = {
        "PANDA_TOKEN": "eyJ.token", "PANDA_TOKEN_FILE": "/run/pilot/token", "PANDA_CLIENT_ID": "site-pilot",
        "PANDA_CLIENT_SECRET": "s3cret", "PANDA_X509_CERT_FILE": "/etc/pilot/cert.pem",
        "PANDA_X509_KEY_FILE": "/etc/pilot/key.pem", "PANDA_TLS_KEY_FILE": "/etc/pilot/tls.key",
        "PANDA_DATABASE_URL": "postgresql://panda:password@db/panda",
    }
    for name, value in credentials.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PANDA_SERVER", "server:25080")
    env = payload_environment(1, 1, Path("/w"), {"JOB_TOKEN": "the job's own"})
    assert not set(credentials) & set(env)
    assert (env["PANDA_SERVER"], env["JOB_TOKEN"]) == ("server:25080", "the job's own")
