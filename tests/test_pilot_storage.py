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
    writer_of,
)

SCOPE = "user.alice"
WRITER = "41"  # the job that stages out


@pytest.fixture
def se(tmp_path: Path) -> PosixStorageElement:
    root = tmp_path / "se"
    (root / SCOPE).mkdir(parents=True)
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

    size, adler32 = se.stage_out(produced, SCOPE, "out.root", WRITER)

    assert size == len(data)
    assert adler32 == format_adler32(zlib.adler32(data))
    assert (se.root / SCOPE / "out.root").read_bytes() == data
    # No temp file left beside the copy.
    assert sorted(p.name for p in (se.root / SCOPE).iterdir()) == ["out.root"]

    dest = tmp_path / "job" / "in.root"
    se.stage_in(SCOPE, "out.root", dest, expected_size=size, expected_adler32=adler32.upper())
    assert dest.read_bytes() == data


def test_stage_in_without_checksum_copies(se: PosixStorageElement, tmp_path: Path) -> None:
    (se.root / SCOPE / "x.txt").write_text("hello\n")
    dest = tmp_path / "x.txt"
    se.stage_in(SCOPE, "x.txt", dest)
    assert dest.read_text() == "hello\n"


def test_stage_in_wrong_adler32_is_getadmismatch(se: PosixStorageElement, tmp_path: Path) -> None:
    (se.root / SCOPE / "in.dat").write_bytes(b"some input data")
    dest = tmp_path / "in.dat"
    with pytest.raises(StorageError) as caught:
        se.stage_in(SCOPE, "in.dat", dest, expected_adler32="deadbeef")
    assert caught.value.error_code == error_codes.GETADMISMATCH.code == 1171
    assert "deadbeef" in caught.value.diag
    # A bad copy is not left where the payload would read it.
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == [se.root]


def test_stage_in_wrong_size_is_stageinfailed(se: PosixStorageElement, tmp_path: Path) -> None:
    (se.root / SCOPE / "in.dat").write_bytes(b"12345")
    with pytest.raises(StorageError) as caught:
        se.stage_in(SCOPE, "in.dat", tmp_path / "in.dat", expected_size=6)
    assert caught.value.error_code == error_codes.STAGEINFAILED.code == 1099
    assert "size mismatch" in caught.value.diag


def test_missing_input_is_missinginputfile(se: PosixStorageElement, tmp_path: Path) -> None:
    with pytest.raises(StorageError) as caught:
        se.stage_in(SCOPE, "nowhere.dat", tmp_path / "nowhere.dat")
    assert caught.value.error_code == error_codes.MISSINGINPUTFILE.code == 1331


def test_missing_output_is_missingoutputfile(se: PosixStorageElement, tmp_path: Path) -> None:
    with pytest.raises(StorageError) as caught:
        se.stage_out(tmp_path / "never-written", SCOPE, "never-written", WRITER)
    assert caught.value.error_code == error_codes.MISSINGOUTPUTFILE.code == 1165


def test_lfn_cannot_escape_the_storage_element(se: PosixStorageElement, tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_text("x")
    for lfn in ("../escape", "/etc/passwd", ""):
        with pytest.raises(StorageError) as caught:
            se.stage_out(src, SCOPE, lfn, WRITER)
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
        se.stage_out(src, SCOPE, lfn, WRITER)
    assert out.value.error_code == error_codes.STAGEOUTFAILED.code and "invalid LFN" in out.value.diag
    with pytest.raises(StorageError) as into:
        se.stage_in(SCOPE, lfn, tmp_path / "in")
    assert into.value.error_code == error_codes.STAGEINFAILED.code and "invalid LFN" in into.value.diag


def test_nothing_is_staged_through_a_link_that_leaves_the_element(se: PosixStorageElement, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_text("precious")
    (se.root / SCOPE / "passwd").symlink_to("/etc/passwd")
    (se.root / SCOPE / "victim.txt").symlink_to(victim)
    (se.root / SCOPE / "dir-out").symlink_to(outside)
    with pytest.raises(StorageError) as read:
        se.stage_in(SCOPE, "passwd", tmp_path / "stolen")
    assert read.value.error_code == error_codes.STAGEINFAILED.code
    assert "resolves to /etc/passwd, outside storage element" in read.value.diag
    assert not (tmp_path / "stolen").exists()
    src = tmp_path / "payload-output"
    src.write_text("owned")
    with pytest.raises(StorageError) as written:
        se.stage_out(src, SCOPE, "victim.txt", WRITER)
    assert written.value.error_code == error_codes.STAGEOUTFAILED.code
    assert "outside storage element" in written.value.diag
    assert victim.read_text() == "precious"
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"]


def test_a_link_that_stays_inside_the_element_is_followed(se: PosixStorageElement, tmp_path: Path) -> None:
    (se.root / SCOPE / "real.dat").write_text("data")
    (se.root / SCOPE / "alias.dat").symlink_to(se.root / SCOPE / "real.dat")
    se.stage_in(SCOPE, "alias.dat", tmp_path / "alias.dat")
    assert (tmp_path / "alias.dat").read_text() == "data"


def test_an_element_reached_through_a_link_is_still_confined(tmp_path: Path) -> None:
    real = tmp_path / "real-se"
    real.mkdir()
    (tmp_path / "se-link").symlink_to(real)
    element = open_storage_element(f"file://{tmp_path / 'se-link'}")
    src = tmp_path / "out"
    src.write_text("x")
    assert element.stage_out(src, SCOPE, "out.dat", WRITER)[0] == 1
    assert (real / SCOPE / "out.dat").read_text() == "x"


@pytest.mark.parametrize("scope", ["", ".", "..", "a/b", "x\0y"])
def test_a_scope_is_one_plain_directory_name(se: PosixStorageElement, tmp_path: Path, scope: str) -> None:
    src = tmp_path / "f"
    src.write_text("x")
    with pytest.raises(StorageError) as out:
        se.stage_out(src, scope, "f", WRITER)
    assert out.value.error_code == error_codes.STAGEOUTFAILED.code and "invalid scope" in out.value.diag


def test_a_scope_linked_out_of_the_element_is_refused(se: PosixStorageElement, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (se.root / "user.eve").symlink_to(outside)
    src = tmp_path / "f"
    src.write_text("x")
    with pytest.raises(StorageError) as out:
        se.stage_out(src, "user.eve", "f", WRITER)
    assert out.value.error_code == error_codes.STAGEOUTFAILED.code and "outside storage element" in out.value.diag
    assert list(outside.iterdir()) == []


def test_one_name_in_two_scopes_is_two_files(se: PosixStorageElement, tmp_path: Path) -> None:
    for scope, text in (("user.alice", "alice's"), ("user.bob", "bob's")):
        src = tmp_path / scope
        src.write_text(text)
        se.stage_out(src, scope, "out.txt", WRITER)
    assert [(se.root / scope / "out.txt").read_text() for scope in ("user.alice", "user.bob")] == ["alice's", "bob's"]


def test_a_file_is_replaced_only_by_the_job_that_wrote_it(se: PosixStorageElement, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_text("attempt 1")
    second.write_text("attempt 2")
    se.stage_out(first, SCOPE, "out.txt", WRITER)
    stored = se.root / SCOPE / "out.txt"
    assert writer_of(stored) == WRITER
    # Another job: refused, the file as it was.
    with pytest.raises(StorageError) as other:
        se.stage_out(second, SCOPE, "out.txt", "42")
    assert other.value.error_code == error_codes.FILEEXISTS.code == 1221
    assert f"already exists at {stored} (written by job {WRITER})" in other.value.diag
    assert stored.read_text() == "attempt 1"
    # The same job (a later attempt): replaced.
    size, adler32 = se.stage_out(second, SCOPE, "out.txt", WRITER)
    assert stored.read_text() == "attempt 2" and (size, adler32) == adler32_file(stored)
    # A file no job wrote (put there by hand, or by `panda dataset register`): never replaced.
    (se.root / SCOPE / "registered.txt").write_text("registered")
    with pytest.raises(StorageError) as unmarked:
        se.stage_out(second, SCOPE, "registered.txt", WRITER)
    assert unmarked.value.error_code == 1221 and "(written by no job)" in unmarked.value.diag
    assert (se.root / SCOPE / "registered.txt").read_text() == "registered"
    assert sorted(p.name for p in (se.root / SCOPE).iterdir()) == ["out.txt", "registered.txt"]
