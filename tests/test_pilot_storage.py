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


@pytest.mark.parametrize("lfn", ["", ".", "..", "a/b", "../x", "/etc/passwd", "x\0y"])
def test_an_lfn_is_one_plain_file_name(se: PosixStorageElement, tmp_path: Path, lfn: str) -> None:
    src = tmp_path / "f"
    src.write_text("x")
    with pytest.raises(StorageError) as out:
        se.stage_out(src, lfn)
    assert out.value.error_code == error_codes.STAGEOUTFAILED.code and "invalid LFN" in out.value.diag
    with pytest.raises(StorageError) as into:
        se.stage_in(lfn, tmp_path / "in")
    assert into.value.error_code == error_codes.STAGEINFAILED.code and "invalid LFN" in into.value.diag


def test_nothing_is_staged_through_a_link_that_leaves_the_element(se: PosixStorageElement, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_text("precious")
    (se.root / "passwd").symlink_to("/etc/passwd")
    (se.root / "victim.txt").symlink_to(victim)
    (se.root / "dir-out").symlink_to(outside)
    with pytest.raises(StorageError) as read:
        se.stage_in("passwd", tmp_path / "stolen")
    assert read.value.error_code == error_codes.STAGEINFAILED.code
    assert "resolves to /etc/passwd, outside storage element" in read.value.diag
    assert not (tmp_path / "stolen").exists()
    src = tmp_path / "payload-output"
    src.write_text("owned")
    with pytest.raises(StorageError) as written:
        se.stage_out(src, "victim.txt")
    assert written.value.error_code == error_codes.STAGEOUTFAILED.code
    assert "outside storage element" in written.value.diag
    assert victim.read_text() == "precious"
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"]


def test_a_link_that_stays_inside_the_element_is_followed(se: PosixStorageElement, tmp_path: Path) -> None:
    (se.root / "real.dat").write_text("data")
    (se.root / "alias.dat").symlink_to(se.root / "real.dat")
    se.stage_in("alias.dat", tmp_path / "alias.dat")
    assert (tmp_path / "alias.dat").read_text() == "data"


def test_an_element_reached_through_a_link_is_still_confined(tmp_path: Path) -> None:
    real = tmp_path / "real-se"
    real.mkdir()
    (tmp_path / "se-link").symlink_to(real)
    element = open_storage_element(f"file://{tmp_path / 'se-link'}")
    src = tmp_path / "out"
    src.write_text("x")
    assert element.stage_out(src, "out.dat")[0] == 1
    assert (real / "out.dat").read_text() == "x"
