"""What a dataset's files must be to be registered, without a database or a server."""

from __future__ import annotations

import pytest

from jedi_svc.domain.datasets import MAX_FILES, FileSpec, check_files, check_replicas
from panda_runtime.service.errors import InvalidArgument


def spec(lfn: str = "a.root", **fields: object) -> FileSpec:
    values: dict[str, object] = {"size_bytes": 10, "adler32": "0000abcd", "events": 5,
                                 "storage_elements": ["se"]}
    values.update(fields)
    return FileSpec(lfn, **values)  # type: ignore[arg-type]  # each test gives the fields it breaks


def test_files_are_stored_with_their_checksum_padded_and_each_storage_element_once() -> None:
    (checked,) = check_files([spec(adler32=" ABCD ", storage_elements=[" se ", "", "se"])])
    assert checked.adler32 == "0000abcd" and checked.storage_elements == ["se"]
    assert (checked.lfn, checked.size_bytes, checked.events) == ("a.root", 10, 5)


@pytest.mark.parametrize(("files", "field", "message"), [
    ([], "files", "at least one file"),
    ([spec("dir/a")], "files[0].lfn", "not a logical file name"),
    ([spec(".hidden")], "files[0].lfn", "not a logical file name"),
    ([spec("a"), spec("a")], "files[1].lfn", "listed twice"),
    ([spec(size_bytes=-1)], "files[0]", "must not be negative"),
    ([spec(adler32="xyz")], "files[0].adler32", "is not 8 hex digits"),
    ([spec(storage_elements=[" "])], "files[0].storage_elements", "at least one storage element"),
    # Replicas name configured storage elements by id, never by URL or path.
    ([spec(storage_elements=["/data/se"])], "files[0].storage_elements", "not a URL"),
    ([spec(storage_elements=["file:///etc"])], "files[0].storage_elements", "not a URL"),
    ([spec(storage_elements=["a b"])], "files[0].storage_elements", "is not a storage element id"),
])
def test_the_first_file_at_fault_is_named(files: list[FileSpec], field: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message) as raised:
        check_files(files)
    (bad_request,) = raised.value.details
    assert [v.field for v in bad_request.field_violations] == [field]


def test_a_dataset_holds_at_most_max_files() -> None:
    with pytest.raises(InvalidArgument, match=f"at most {MAX_FILES}"):
        check_files([spec(f"f{i}") for i in range(MAX_FILES + 1)])


def test_replicas_must_be_on_configured_storage_elements() -> None:
    check_replicas([spec(storage_elements=["se", "other"])], ["other", "se"])
    with pytest.raises(InvalidArgument, match="storage element nowhere is not configured") as raised:
        check_replicas([spec(), spec("b.root", storage_elements=["se", "nowhere"])], ["se"])
    (bad_request,) = raised.value.details
    assert [v.field for v in bad_request.field_violations] == ["files[1].storage_elements"]
