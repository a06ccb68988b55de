"""Harvester's relay key: made once, kept in a file only its owner reads, so the tokens of the
workers it started stay valid across restarts."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["load_or_create_key"]


def load_or_create_key(path: Path) -> bytes:
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(32)
        # Created with its final mode: never readable by others, not even for a moment.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(key)
        return key
    if len(key) < 32:
        raise ValueError(f"the relay key {path} is shorter than 32 bytes")
    return key
