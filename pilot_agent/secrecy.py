"""The pilot's credentials kept from its payloads, which run as the same Unix user: what such a
process can read of the pilot is its original environment (`/proc/<pid>/environ`), and, while
the pilot is dumpable, its memory (ptrace). Linux only."""

from __future__ import annotations

import logging
from collections.abc import Collection

from pilot_agent.keeper import prctl

__all__ = ["hide_credentials"]

log = logging.getLogger("panda.pilot")

PR_SET_DUMPABLE = 4
# /proc/<pid>/stat fields (1-based) of the environment block's start and end addresses.
_ENV_START_FIELD, _ENV_END_FIELD = 50, 51


def hide_credentials(names: Collection[str]) -> list[str]:
    """Blank the values of the variables `names` in this process's original environment block
    (os.environ, a copy, keeps them for the pilot) and make the process non-dumpable, so that
    processes of the same user cannot read them or attach to it. Returns the variables blanked."""
    blanked: list[str] = []
    try:
        blanked = _blank_environment_block(frozenset(names))
    except (OSError, ValueError, IndexError) as error:
        log.warning("cannot hide the pilot's credentials from /proc/self/environ: %s", error)
    try:
        prctl(PR_SET_DUMPABLE, 0)
    except OSError as error:
        log.warning("cannot make the pilot non-dumpable: %s", error)
    return blanked


def _blank_environment_block(names: frozenset[str]) -> list[str]:
    with open("/proc/self/stat", "rb") as stat_file:
        stat = stat_file.read()
    # Fields after the command name (which may hold spaces) start with field 3.
    fields = stat[stat.rindex(b")") + 2:].split()
    start, end = int(fields[_ENV_START_FIELD - 3]), int(fields[_ENV_END_FIELD - 3])
    with open("/proc/self/mem", "r+b", buffering=0) as memory:
        memory.seek(start)
        block = bytearray(memory.read(end - start))
        blanked: list[str] = []
        offset = 0
        for entry in bytes(block).split(b"\0"):
            name, equals, value = entry.partition(b"=")
            if equals and value and name.decode(errors="replace") in names:
                value_start = offset + len(name) + 1
                block[value_start:value_start + len(value)] = b"\0" * len(value)
                blanked.append(name.decode())
            offset += len(entry) + 1
        if blanked:
            memory.seek(start)
            memory.write(bytes(block))
    return blanked
