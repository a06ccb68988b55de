"""Storage elements: where a job's inputs come from and its outputs go.

The server gives the pilot a storage element's URL with each file; its scheme picks the
implementation from a registry, so a new protocol (xrootd, S3...) is one class and one
`register_scheme` call. A file is known by its scope and LFN. The methods are blocking; the
pilot calls them through `asyncio.to_thread`.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import uuid
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from pilot_agent import error_codes
from pilot_agent.error_codes import ErrorCode

__all__ = [
    "CHUNK_BYTES", "WRITER_ATTRIBUTE", "PosixStorageElement", "StorageElement", "StorageError", "adler32_file",
    "check_lfn", "check_scope", "format_adler32", "inside", "normalize_adler32", "open_storage_element",
    "register_scheme", "registered_schemes", "writer_of",
]

log = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024
# The extended attribute that marks a file on a storage element with the job that wrote it: only
# that job (a later attempt of it) may replace the file.
WRITER_ATTRIBUTE = "user.panda.writer"


class StorageError(Exception):
    """A failed transfer, with the pilot error code the job reports."""

    def __init__(self, error: ErrorCode, diag: str) -> None:
        super().__init__(diag)
        self.error = error
        self.diag = diag

    @property
    def error_code(self) -> int:
        return self.error.code


def format_adler32(value: int) -> str:
    """Adler-32 as PanDA writes it: 8 lower-case hex digits, zero-padded."""
    return f"{value & 0xFFFFFFFF:08x}"


def normalize_adler32(text: str) -> str:
    """A checksum as given by a job, in the canonical form (or "" when unknown)."""
    text = text.strip().lower()
    return text.zfill(8) if text else ""


def adler32_file(path: Path) -> tuple[int, str]:
    """Size and adler32 of a file, read in chunks."""
    value = zlib.adler32(b"")
    size = 0
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK_BYTES):
            value = zlib.adler32(chunk, value)
            size += len(chunk)
    return size, format_adler32(value)


def _copy_with_adler32(src: Path, dst: Path) -> tuple[int, str]:
    """Copy src to a new file dst, fsynced; size and adler32 of what was read."""
    value = zlib.adler32(b"")
    size = 0
    with open(src, "rb") as reader, open(dst, "xb") as writer:
        while chunk := reader.read(CHUNK_BYTES):
            value = zlib.adler32(chunk, value)
            size += len(chunk)
            writer.write(chunk)
        writer.flush()
        os.fsync(writer.fileno())
    return size, format_adler32(value)


def _temp_beside(path: Path) -> Path:
    # Same directory, so the final rename is atomic; hidden so nobody mistakes it for the file.
    return path.with_name(f".{path.name}.part-{uuid.uuid4().hex[:12]}")


def _fsync_dir(path: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _check_name(value: str, what: str, failure: ErrorCode) -> PurePosixPath:
    if value in ("", ".", "..") or "/" in value or "\0" in value:
        raise StorageError(failure, f"invalid {what} {value!r}: must be a file name (not '.' or '..', no '/' or NUL)")
    return PurePosixPath(value)


def check_lfn(lfn: str, failure: ErrorCode) -> PurePosixPath:
    """An LFN as one file name, which cannot leave the directory it is joined to: not empty, not
    '.' or '..', without '/' or NUL."""
    return _check_name(lfn, "LFN", failure)


def check_scope(scope: str, failure: ErrorCode) -> PurePosixPath:
    """A scope as one directory name, by the LFN's rules."""
    return _check_name(scope, "scope", failure)


def writer_of(path: Path) -> str:
    """The job that wrote a file on a storage element (its WRITER_ATTRIBUTE), or ""."""
    try:
        return os.getxattr(path, WRITER_ATTRIBUTE, follow_symlinks=False).decode(errors="replace")
    except OSError:
        return ""


def _mark(path: Path, writer: str) -> None:
    try:
        os.setxattr(path, WRITER_ATTRIBUTE, writer.encode())
    except OSError as exc:
        if exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        # A file system without user attributes: the file is written unmarked, and so can never
        # be replaced, not even by a later attempt of the same job.
        log.warning("cannot mark %s with its writer (%s): a retry of this job cannot replace it", path, exc)


def inside(root: Path, path: Path) -> bool:
    """Whether `path` is `root` or below it (both resolved)."""
    return path == root or root in path.parents


class StorageElement(ABC):
    """One storage element. Implementations raise StorageError with the right code."""

    def __init__(self, url: str) -> None:
        self.url = url

    @abstractmethod
    def stage_in(
        self, scope: str, lfn: str, dest_path: Path, expected_size: int = 0, expected_adler32: str = ""
    ) -> None:
        """Copy `scope:lfn` to `dest_path`, verifying size and adler32 where given (0 / "" = unknown)."""

    @abstractmethod
    def stage_out(self, src_path: Path, scope: str, lfn: str, writer: str) -> tuple[int, str]:
        """Copy `src_path` to the element as `scope:lfn`, atomically; return its size and adler32.
        A file already there is never replaced (FILEEXISTS), unless `writer` (the job) wrote it."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


_REGISTRY: dict[str, Callable[[str], StorageElement]] = {}


def register_scheme(scheme: str, factory: Callable[[str], StorageElement]) -> None:
    """Make URLs with `scheme` open with `factory(url)`."""
    _REGISTRY[scheme.lower()] = factory


def registered_schemes() -> list[str]:
    return sorted(_REGISTRY)


def open_storage_element(url: str) -> StorageElement:
    """The storage element for a URL; ValueError when the URL is empty or its scheme unknown."""
    if not url:
        raise ValueError("no storage element given")
    scheme = urlsplit(url).scheme.lower()
    factory = _REGISTRY.get(scheme)
    if factory is None:
        known = ", ".join(registered_schemes()) or "none"
        raise ValueError(f"unsupported storage element {url!r} (scheme {scheme or '?'!r}; known: {known})")
    return factory(url)


class PosixStorageElement(StorageElement):
    """A directory on a shared or local file system: `file:///abs/path`, files at
    `<path>/<scope>/<lfn>`. Every path is resolved (symbolic links followed) before it is used,
    and one that does not resolve inside the element's own resolved directory is refused. What
    a job writes carries the job's id (WRITER_ATTRIBUTE), set before the file appears under its
    name."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        parts = urlsplit(url)
        if parts.scheme.lower() != "file" or parts.netloc not in ("", "localhost"):
            raise ValueError(f"not a local file URL: {url!r} (expected file:///absolute/path)")
        root = unquote(parts.path)
        if not root.startswith("/"):
            raise ValueError(f"storage element path must be absolute: {url!r}")
        self.root = Path(root)

    def path_of(self, scope: str, lfn: str, failure: ErrorCode) -> Path:
        """Where `scope:lfn` is, resolved; StorageError(failure) when that is outside the element."""
        name = check_scope(scope, failure) / check_lfn(lfn, failure)
        root = Path(os.path.realpath(self.root))
        path = Path(os.path.realpath(root / name))
        if path == root or not inside(root, path):
            raise StorageError(
                failure, f"{scope}:{lfn} resolves to {path}, outside storage element {self.url} ({root}): refused"
            )
        return path

    def stage_in(
        self, scope: str, lfn: str, dest_path: Path, expected_size: int = 0, expected_adler32: str = ""
    ) -> None:
        source = self.path_of(scope, lfn, error_codes.STAGEINFAILED)
        if not source.is_file():
            raise StorageError(error_codes.MISSINGINPUTFILE, f"input {lfn} not found at {source}")
        temp = _temp_beside(dest_path)
        try:
            dest_path.parent.mkdir(parents=True, exist_ok=True)
            size, adler32 = _copy_with_adler32(source, temp)
            if expected_size > 0 and size != expected_size:
                raise StorageError(
                    error_codes.STAGEINFAILED,
                    f"size mismatch on input {lfn}: expected {expected_size} bytes, got {size}",
                )
            expected = normalize_adler32(expected_adler32)
            if expected and adler32 != expected:
                raise StorageError(
                    error_codes.GETADMISMATCH,
                    f"adler32 mismatch on input {lfn}: expected {expected}, got {adler32}",
                )
            os.replace(temp, dest_path)
        except OSError as exc:
            raise StorageError(error_codes.STAGEINFAILED, f"stage-in of {lfn} from {source} failed: {exc}") from exc
        finally:
            temp.unlink(missing_ok=True)

    def stage_out(self, src_path: Path, scope: str, lfn: str, writer: str) -> tuple[int, str]:
        dest = self.path_of(scope, lfn, error_codes.STAGEOUTFAILED)
        if not src_path.is_file():
            raise StorageError(error_codes.MISSINGOUTPUTFILE, f"output {lfn} not found at {src_path}")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._failed(dest, scope, lfn, exc) from exc
        # Resolved again now that the scope's directory exists (a link made meanwhile shows here).
        dest = self.path_of(scope, lfn, error_codes.STAGEOUTFAILED)
        replacing = self._ours(dest, scope, lfn, writer)
        temp = _temp_beside(dest)
        try:
            size, adler32 = _copy_with_adler32(src_path, temp)
            # Read the copy back: what was written must be what was read.
            copy_size, copy_adler32 = adler32_file(temp)
            if copy_size != size:
                raise StorageError(
                    error_codes.STAGEOUTFAILED,
                    f"size mismatch on output {lfn}: wrote {size} bytes, copy has {copy_size}",
                )
            if copy_adler32 != adler32:
                raise StorageError(
                    error_codes.PUTADMISMATCH,
                    f"adler32 mismatch on output {lfn}: source {adler32}, copy {copy_adler32}",
                )
            _mark(temp, writer)
            if replacing:
                os.replace(temp, dest)
            else:
                # A link, not a rename: it fails if the name was taken since we looked.
                os.link(temp, dest, follow_symlinks=False)
            _fsync_dir(dest.parent)
        except FileExistsError as exc:
            raise self._exists(dest, scope, lfn) from exc
        except OSError as exc:
            raise self._failed(dest, scope, lfn, exc) from exc
        finally:
            temp.unlink(missing_ok=True)
        return size, adler32

    def _ours(self, dest: Path, scope: str, lfn: str, writer: str) -> bool:
        """Whether a file is at `dest` that `writer` wrote (so it may replace it); FILEEXISTS when
        one is there that it did not write."""
        try:
            found = os.lstat(dest)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StorageError(error_codes.STAGEOUTFAILED, f"cannot look at {dest}: {exc}") from exc
        if stat.S_ISREG(found.st_mode) and writer and writer_of(dest) == writer:
            return True
        raise self._exists(dest, scope, lfn)

    @staticmethod
    def _failed(dest: Path, scope: str, lfn: str, error: OSError) -> StorageError:
        return StorageError(error_codes.STAGEOUTFAILED, f"stage-out of {scope}:{lfn} to {dest} failed: {error}")

    @staticmethod
    def _exists(dest: Path, scope: str, lfn: str) -> StorageError:
        by = writer_of(dest)
        return StorageError(
            error_codes.FILEEXISTS,
            f"output {scope}:{lfn} already exists at {dest} (written by {f'job {by}' if by else 'no job'}): "
            "a file is never overwritten",
        )


register_scheme("file", PosixStorageElement)
