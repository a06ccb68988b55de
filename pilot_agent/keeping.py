"""The pilot's side of the payload's keeper (`pilot_agent/keeper.py`, a script of its own): the
command that starts it, and what it says on its status pipe."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["KeeperStatus", "keeper_command"]

# Run as a script by the interpreter the pilot runs on (-I -S: nothing of the job's PYTHON*
# variables or of site-packages).
_KEEPER = [sys.executable, "-I", "-S", str(Path(__file__).with_name("keeper.py"))]


def keeper_command(status_fd: int, env: Mapping[str, str], argv: Sequence[str]) -> list[str]:
    """The keeper of a payload `argv` whose environment is `env`, telling this process (its
    parent, whose death ends the payload) on `status_fd`."""
    # Python may set LC_CTYPE in the keeper's environment (PEP 538): the payload gets its own back.
    lc_ctype = f"={env['LC_CTYPE']}" if "LC_CTYPE" in env else "-"
    return [*_KEEPER, str(os.getpid()), str(status_fd), lc_ctype, "--", *argv]


class KeeperStatus:
    """What the keeper says on its status pipe (`started <pid>`, `exec-failed <errno>`,
    `leftovers <n>`), read as it comes; the pipe's end is the keeper's end, so waiting for it
    also waits for the payload without polling."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._loop = asyncio.get_running_loop()
        self._said = b""
        self._changed = asyncio.Event()
        self.ended = False
        os.set_blocking(fd, False)
        self._loop.add_reader(fd, self._read)

    def _read(self) -> bool:
        """Read what is there; whether there was anything (its end included)."""
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return False
        self._said += data
        if not data:
            self.ended = True
            self._loop.remove_reader(self._fd)
        self._changed.set()
        return True

    def said(self, word: str) -> int | None:
        """The number the keeper wrote after `word`, if it did."""
        for line in self._said.decode(errors="replace").splitlines():
            said, _, number = line.partition(" ")
            if said == word and number.isdigit():
                return int(number)
        return None

    async def change(self, timeout: float) -> None:
        """Until the keeper says something or ends, at most `timeout` seconds."""
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    def read_to_end(self) -> None:
        """Once the keeper has exited: the rest of what it said."""
        while not self.ended and self._read():
            pass

    def close(self) -> None:
        if not self.ended:
            self._loop.remove_reader(self._fd)
        os.close(self._fd)
