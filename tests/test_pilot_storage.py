"""POSIX storage element: real files, real copies, checksums checked against zlib."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest

from pilot_agent import error_codes
from pilot_agent.storage import (
    PosixStorageElement,
    StorageError,
    adler32_file,
    format_adler32,
    open_storage_element,
)


@pytest.fixture
def se(tmp_path: Path) -> PosixStorageElement:
    root = tmp_path / "se"
    root.mkdir()
    element = open_storage_element(f"file://{root}")
    assert isinstance(element, PosixStorageElement)
    return element


def test_adler32_matches_zlib_zero_padded(tmp_path: Path) -> None:
    # Adler-32 of b"a" is 0x00620062: the leading zeros must be kept.
    assert format_adler32(zlib.adler32(b"a")) == "00620062"
    assert format_adler32(zlib.adler32(b"")) == "00000001"
    data = os.urandom(3 * 1024 * 1024 + 17)  # spans several read chunks
    path = tmp_path / "data"
    path.write_bytes(data)
    size, adler32 = adler32_file(path)
    assert size == len(data)
    assert adler32 == f"{zlib.adler32(data):08x}"
    assert len(adler32) == 8 and adler32 == adler32.lower()


def test_stage_out_then_stage_in_round_trip(se: PosixStorageElement, tmp_path: Path) -> None:
    data = os.urandom(2 * 1024 * 1024 + 5)
    produced = tmp_path / "work" / "out.root"
    produced.parent.mkdir()
    produced.write_bytes(data)

    size, adler32 = se.stage_out(produced, "out.root")

    assert size == len(data)
    assert adler32 == format_adler32(zlib.adler32(data))
    assert (se.root / "out.root").read_bytes() == data
    # No temp file left beside the copy.
    assert sorted(p.name for p in se.root.iterdir()) == ["out.root"]

    dest = tmp_path / "job" / "in.root"
    se.stage_in("out.root", dest, expected_size=size, expected_adler32=adler32.upper())
    assert dest.read_bytes() == data


def test_stage_in_without_checksum_copies(se: PosixStorageElement, tmp_path: Path) -> None:
    (se.root / "x.txt").write_text("hello\n")
    dest = tmp_path / "x.txt"
    se.stage_in("x.txt", dest)
    assert dest.read_text() == "hello\n"


def test_stage_in_wrong_adler32_is_getadmismatch(se: PosixStorageElement, tmp_path: Path) -> None:
    (se.root / "in.dat").write_bytes(b"some input data")
    dest = tmp_path / "in.dat"
    with pytest.raises(StorageError) as caught:
        se.stage_in("in.dat", dest, expected_adler32="deadbeef")
    assert caught.value.error_code == error_codes.GETADMISMATCH.code == 1171
    assert "deadbeef" in caught.value.diag
    # A bad copy is not left where the payload would read it.
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == [se.root]


def test_stage_in_wrong_size_is_stageinfailed(se: PosixStorageElement, tmp_path: Path) -> None:
    (se.root / "in.dat").write_bytes(b"12345")
    with pytest.raises(StorageError) as caught:
        se.stage_in("in.dat", tmp_path / "in.dat", expected_size=6)
    assert caught.value.error_code == error_codes.STAGEINFAILED.code == 1099
    assert "size mismatch" in caught.value.diag


def test_missing_input_is_missinginputfile(se: PosixStorageElement, tmp_path: Path) -> None:
    with pytest.raises(StorageError) as caught:
        se.stage_in("nowhere.dat", tmp_path / "nowhere.dat")
    assert caught.value.error_code == error_codes.MISSINGINPUTFILE.code == 1331


def test_missing_output_is_missingoutputfile(se: PosixStorageElement, tmp_path: Path) -> None:
    with pytest.raises(StorageError) as caught:
        se.stage_out(tmp_path / "never-written", "never-written")
    assert caught.value.error_code == error_codes.MISSINGOUTPUTFILE.code == 1165


def test_lfn_cannot_escape_the_storage_element(se: PosixStorageElement, tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_text("x")
    for lfn in ("../escape", "/etc/passwd", ""):
        with pytest.raises(StorageError) as caught:
            se.stage_out(src, lfn)
        assert caught.value.error_code == error_codes.STAGEOUTFAILED.code
    assert not (tmp_path / "escape").exists()


def test_unknown_scheme_and_empty_url_are_refused() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        open_storage_element("srm://example/path")
    with pytest.raises(ValueError, match="no storage element"):
        open_storage_element("")
    with pytest.raises(ValueError, match="absolute"):
        PosixStorageElement("file:relative/dir")
