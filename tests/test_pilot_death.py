"""No attempt runs twice at once: a pilot killed with SIGKILL takes its payload with it, every
process the payload started included (one in a session of its own, one orphaned by its parent),
so the server's retry of the job never overlaps the first attempt. Real server, real pilot
processes, real payloads, on both databases."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import psutil

from panda.server.v1 import job_pb2
from tests.server_support import submit, wait_for

J = job_pb2.Job

# Every process of the payload appends "<attempt> <time>" to ticks.txt every 50 ms while it
# lives; the first attempt's payload writes its processes' pids and runs until killed.
PAYLOAD = r'''
import json, os, subprocess, sys, time
attempt, out = os.environ["PANDA_ATTEMPT"], os.environ["DEATH_TEST_DIR"]
TICK = f"""
import time
while True:
    with open({out!r} + "/ticks.txt", "a") as ticks:
        ticks.write("{attempt} %f\\n" % time.time())
    time.sleep(0.05)
"""
child = subprocess.Popen([sys.executable, "-c", TICK])
session = subprocess.Popen([sys.executable, "-c", TICK], start_new_session=True)
read, write = os.pipe()
if os.fork() == 0:  # a process whose parent exits at once: its child is an orphan
    orphan = subprocess.Popen([sys.executable, "-c", TICK])
    os.write(write, str(orphan.pid).encode())
    os._exit(0)
os.wait()
orphan = int(os.read(read, 32))
pids = {"payload": os.getpid(), "child": child.pid, "new session": session.pid, "orphan": orphan}
with open(f"{out}/pids.{attempt}.json", "w") as f:
    json.dump(pids, f)
end = time.time() + (300 if attempt == "1" else 1)
while time.time() < end:
    with open(out + "/ticks.txt", "a") as ticks:
        ticks.write(f"{attempt} {time.time():f}\n")
    time.sleep(0.05)
'''


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_for_file(path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.exists(), f"{path} never written"


def test_a_pilot_killed_mid_payload_leaves_nothing_running_and_the_retry_never_overlaps(  # type: ignore[no-untyped-def]
    jobs_stub, local_queue, start_pilot, tmp_path: Path
) -> None:
    out = tmp_path / "payload-out"
    out.mkdir()
    script = tmp_path / "payload.py"
    script.write_text(PAYLOAD)
    (job,) = submit(jobs_stub, J(queue="local", command=[sys.executable, str(script)], max_attempts=2,
                                 environment={"DEATH_TEST_DIR": str(out)}))
    doomed = start_pilot(name="doomed")
    _wait_for_file(out / "pids.1.json", 30)
    time.sleep(0.3)  # every process has ticked
    pids = json.loads((out / "pids.1.json").read_text())
    assert all(_running(pid) for pid in pids.values()), pids
    assert os.getsid(pids["new session"]) != os.getsid(pids["payload"])

    os.kill(doomed.pid, signal.SIGKILL)  # the pilot alone: nothing of it can clean up
    killed = time.monotonic()
    while any(_running(pid) for pid in pids.values()) and time.monotonic() - killed < 1.0:
        time.sleep(0.01)
    survivors = {name: pid for name, pid in pids.items() if _running(pid)}
    for pid in survivors.values():  # the test's own processes: not left behind when it fails
        os.kill(pid, signal.SIGKILL)
    assert not survivors, f"still running {time.monotonic() - killed:.2f} s after the pilot died: {survivors}"
    doomed.wait(10)

    # The server fails the silent attempt (lost heartbeat) and another pilot runs the retry.
    retried = wait_for(jobs_stub, job.job_id, lambda j: j.attempt == 2, 30, "attempt 2")
    assert [e.error_code for e in retried.history if e.state == J.STATE_FAILED] == [100]
    start_pilot(name="rescuer")
    done = wait_for(jobs_stub, job.job_id, timeout=60)
    assert (done.state, done.attempt) == (J.STATE_FINISHED, 2), done.error_diag
    ticks = [line.split() for line in (out / "ticks.txt").read_text().splitlines() if line]
    first = [float(at) for attempt, at in ticks if attempt == "1"]
    second = [float(at) for attempt, at in ticks if attempt == "2"]
    assert first and second
    assert max(first) < min(second), "the two attempts ran at the same time"
