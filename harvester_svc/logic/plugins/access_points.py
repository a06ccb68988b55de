"""A worker's access point (its own directory on this machine: batch files, the shared-file
messenger's files), removed when the worker is cleaned."""

from __future__ import annotations

import contextlib
import os
import shutil

__all__ = ["remove_access_point"]


def remove_access_point(path: str) -> None:
    """Remove the directory and everything in it; a directory already gone is no error. A path
    that cannot be a worker's own directory (relative, the root, or just below it) is refused."""
    normalized = os.path.normpath(path)
    if not os.path.isabs(normalized) or os.path.dirname(normalized) == os.sep:
        raise OSError(f"refusing to remove {path!r}: not a worker's directory")
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(normalized)
