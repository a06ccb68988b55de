"""The payload's keeper: a small process between the pilot and the payload that makes sure no
process of the payload outlives the pilot.

The pilot starts it (`python -I -S keeper.py PILOT_PID STATUS_FD LC_CTYPE -- COMMAND...`) in a
session of its own; the keeper starts the payload in a process group of its own and waits for it.
Linux does the rest:

- PR_SET_CHILD_SUBREAPER: a process of the payload whose parent dies (a daemon that forked
  twice, one that called setsid) becomes the keeper's child, not init's, so the keeper can find
  every process the payload started, whatever session or group it is in;
- PR_SET_PDEATHSIG: when the pilot dies (SIGKILL included) the kernel sends the keeper SIGTERM,
  and the keeper SIGKILLs every process of the payload, then exits. The payload itself gets
  SIGKILL should the keeper die.

When the payload exits, the keeper stops whatever it left running (SIGTERM, then SIGKILL after
a grace period) and exits as the payload did (its code, or its signal), so the pilot reads the
payload's status from the keeper's. On STATUS_FD it tells the pilot `started <pid>` (the
payload's pid, its process group too), `exec-failed <errno>` (the command could not be run) and
`leftovers <n>`. LC_CTYPE is the payload's own value (`=VALUE`, or `-` for none): Python may
have set it in the keeper's environment (PEP 538).

Only the standard library, and started with -I -S: the job's PYTHON* variables and the pilot's
site-packages play no part, and it starts in about 10 ms.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import resource
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
LEFTOVER_GRACE_SECONDS = 2.0
# Signals that, sent to the keeper, stop the payload's whole tree (SIGTERM is the one the pilot's
# death brings).
_STOPPING = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
# Ignored in the keeper by Python or by us; the payload starts with every signal at its default.
_RESET = (*_STOPPING, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGUSR1, signal.SIGUSR2)

_libc = ctypes.CDLL(None, use_errno=True)


def prctl(option: int, value: int) -> None:
    if _libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option})")


def _tell(fd: int, line: str) -> None:
    with contextlib.suppress(OSError):  # the pilot is gone: nobody to tell
        os.write(fd, f"{line}\n".encode())


def _descendants(root: int) -> list[int]:
    """Live processes under `root`, read from /proc (zombies left out: they are dead)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != b"Z":
            children.setdefault(int(fields[1]), []).append(int(name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _reap() -> None:
    """Collect every child that has ended (the payload's orphans come to us)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if not pid:
            return


def _signal_all(signum: int) -> int:
    """Send `signum` to every live process under the keeper; how many there were."""
    pids = _descendants(os.getpid())
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signum)
    return len(pids)


def _kill_all() -> None:
    """SIGKILL every process under the keeper until none is left (a process may fork while we
    look: its child comes to us and the next look finds it)."""
    deadline = time.monotonic() + 5.0
    while _signal_all(signal.SIGKILL) and time.monotonic() < deadline:
        _reap()
        time.sleep(0.005)
    _reap()


def _stop_leftovers() -> int:
    """After the payload ended: SIGTERM what it left running, SIGKILL what is still there after
    the grace period; how many processes there were."""
    count = _signal_all(signal.SIGTERM)
    deadline = time.monotonic() + LEFTOVER_GRACE_SECONDS
    while _descendants(os.getpid()) and time.monotonic() < deadline:
        _reap()
        time.sleep(0.02)
    _kill_all()
    return count


def _exit_as(status: int) -> None:
    """Exit as the payload did: with its code, or killed by its signal."""
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the payload dumped its core, if any
        with contextlib.suppress(OSError, ValueError):  # SIGKILL, SIGSTOP: default already
            signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        os._exit(128 + signum)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


def _stop(signum: int, _frame: object) -> None:
    # The pilot died (or someone stopped the keeper): nothing of the payload may go on.
    _kill_all()
    os._exit(128 + signum)


def _exec_payload(command: list[str], status_fd: int, keeper: int) -> None:
    """In the forked child: become the payload (or tell why not)."""
    try:
        os.setpgid(0, 0)
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != keeper:  # the keeper died before the line above
            os._exit(128 + signal.SIGKILL)
        for signum in _RESET:
            signal.signal(signum, signal.SIG_DFL)
        os.execvp(command[0], command)
    except OSError as error:
        _tell(status_fd, f"exec-failed {error.errno or errno.EIO}")
        os._exit(127 if error.errno == errno.ENOENT else 126)
    except BaseException:
        os._exit(126)


def main(argv: list[str]) -> None:
    pilot, status_fd, lc_ctype, separator, *command = argv[1:]
    if separator != "--" or not command:
        sys.exit("usage: keeper.py PILOT_PID STATUS_FD LC_CTYPE -- COMMAND...")
    status = int(status_fd)
    os.set_inheritable(status, False)  # the payload's exec closes it
    for signum in _STOPPING:
        signal.signal(signum, _stop)
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(pilot):  # the pilot died before the line above
        sys.exit(128 + signal.SIGTERM)
    if lc_ctype == "-":
        os.environ.pop("LC_CTYPE", None)
    else:
        os.environ["LC_CTYPE"] = lc_ctype.removeprefix("=")
    keeper = os.getpid()
    payload = os.fork()
    if payload == 0:
        _exec_payload(command, status, keeper)
    # As the child does, whichever runs first (it may have exec'd, or ended, already).
    with contextlib.suppress(OSError):
        os.setpgid(payload, payload)
    _tell(status, f"started {payload}")
    while True:
        pid, payload_status = os.waitpid(-1, 0)
        if pid == payload:
            break
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:  # nothing left behind: the usual case, and no /proc to read
        _exit_as(payload_status)
    leftovers = _stop_leftovers()
    if leftovers:
        _tell(status, f"leftovers {leftovers}")
    _exit_as(payload_status)


if __name__ == "__main__":
    main(sys.argv)
