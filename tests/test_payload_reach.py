"""What the payload can touch: it runs as the pilot's user, in its work dir, with the environment
the job asked for, and without the pilot's credentials: its token, the file that holds it, its
robot's client id and secret never reach the payload. A real pilot and a real payload that
prints its environment and tries to read the pilot's token file, on both databases."""

from __future__ import annotations

import os
from pathlib import Path

from panda.server.v1 import job_pb2
from tests.server_support import submit, wait_for
from tools.cluster import IdentityHandle

J = job_pb2.Job

PAYLOAD = """
echo "uid=$(id -u) cwd=$(pwd)" > "$REACH_OUT/who.txt"
env > "$REACH_OUT/env.txt"
if cat "$PANDA_TOKEN_FILE" > "$REACH_OUT/token.txt" 2>/dev/null; then echo read; else echo refused; fi \
    > "$REACH_OUT/token-read.txt"
# What a hostile payload would try next: the environment and command line of every ancestor
# (the keeper, the pilot, what started the pilot), as its own user may read them.
pid=$$
while [ "$pid" -gt 1 ]; do
    pid=$(awk '/^PPid:/ {print $2}' "/proc/$pid/status")
    { echo "== $pid"; tr '\\0' '\\n' < "/proc/$pid/environ"; tr '\\0' ' ' < "/proc/$pid/cmdline"; echo; } \
        >> "$REACH_OUT/ancestors.txt" 2>/dev/null
done
"""


def test_the_payload_gets_the_jobs_environment_and_none_of_the_pilots_credentials(  # type: ignore[no-untyped-def]
    identity: IdentityHandle, jobs_stub, local_queue, start_pilot, tmp_path: Path
) -> None:
    out = tmp_path / "reach"
    out.mkdir()
    token = identity.pilot_token()
    token_file = tmp_path / "pilot-token"
    token_file.write_text(token)
    robot = identity.robot_env("panda-pilot")
    (job,) = submit(jobs_stub, J(queue="local", command=["/bin/sh", "-c", PAYLOAD],
                                 environment={"REACH_OUT": str(out), "JOB_VAR": "from-the-job"}))
    # The pilot reads its token from the file (the robot's id and secret are there too).
    start_pilot(name="reach", env={"PANDA_TOKEN_FILE": str(token_file)})
    done = wait_for(jobs_stub, job.job_id, timeout=60)
    assert done.state == J.STATE_FINISHED, done.error_diag

    env = dict(line.split("=", 1) for line in (out / "env.txt").read_text().splitlines() if "=" in line)
    assert env["JOB_VAR"] == "from-the-job" and env["PANDA_JOB_ID"] == str(job.job_id)
    for name in ("PANDA_TOKEN", "PANDA_TOKEN_FILE", "PANDA_CLIENT_ID", "PANDA_CLIENT_SECRET"):
        assert name not in env, f"the payload sees {name}"
    seen = (out / "env.txt").read_text()
    for secret in (token, str(token_file), robot["PANDA_CLIENT_SECRET"]):
        assert secret not in seen
    # Nor in what the payload can read of its ancestors (the pilot's own environment included).
    ancestors = (out / "ancestors.txt").read_text()
    assert ancestors.count("== ") >= 2, ancestors
    for secret in (token, str(token_file), robot["PANDA_CLIENT_SECRET"]):
        assert secret not in ancestors, "an ancestor's environment or command line shows a credential"
    assert (out / "token-read.txt").read_text() == "refused\n"
    assert token not in (out / "token.txt").read_text()
    who = (out / "who.txt").read_text().split()
    workdir = tmp_path / "pilots" / "reach" / f"job_{job.job_id}_1"
    assert who == [f"uid={os.getuid()}", f"cwd={workdir}"]
