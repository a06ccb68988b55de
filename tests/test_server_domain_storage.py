"""Storage elements and scopes, with no database: what an element's URL may be, who may use an
element, which scope a file is in and who may write it, and that no output name is taken twice."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from panda_runtime.service.errors import AlreadyExists, InvalidArgument, PermissionDenied
from panda_runtime.service.principals import Principal, grants_from_groups
from panda_runtime.service.scopes import user_scope, writable_scopes
from server_svc.domain.job_specs import FileSpec, JobSpec
from server_svc.domain.outputs import assign_scopes, check_names_free, output_names
from server_svc.domain.storage import (
    StorageElement,
    check_file_storage,
    check_no_overlap,
    check_storage_element_id,
    check_url,
    reassign_problem,
)

_T = datetime(2026, 1, 1, tzinfo=UTC)


def element(element_id: str, url: str = "", *, queues: list[str] | None = None,
            vos: list[str] | None = None) -> StorageElement:
    return StorageElement(element_id, url or f"file:///se/{element_id}", queues or [], vos or [], "", _T, _T)


def spec(*files: FileSpec, queue: str = "local") -> JobSpec:
    values: dict[str, Any] = {"queue": queue, "command": ["x"], "environment": {}, "cores": 1, "memory_mb": 1,
                              "walltime_seconds": 0, "disk_mb": 0, "priority": 0, "max_attempts": 1}
    return JobSpec(**values, files=list(files))


def caller(*groups: str) -> Principal:
    return Principal(subject="alice", grants=grants_from_groups(groups))


@pytest.mark.parametrize(("url", "canonical"), [
    ("file:///data/se/a", "file:///data/se/a"), ("file:///data/se/a/", "file:///data/se/a"),
    ("file://localhost/data/se", "file:///data/se"), ("file:///data/my%20se", "file:///data/my%20se"),
])
def test_a_storage_url_is_kept_in_one_form(url: str, canonical: str) -> None:
    assert check_url(url, "storage_element.url") == canonical


@pytest.mark.parametrize("url", [
    "http://host/se", "file://host/se", "file:relative", "file:///", "file:///a/../b", "file:///a/./b",
    "file:///a//b", "file:///a%2F..%2Fb/..", "file:///a?x=1", "file:///a#b", "file:///a%0Ab", "file:///" + "a" * 1100,
])
def test_a_storage_url_is_a_plain_absolute_directory(url: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        check_url(url, "storage_element.url")
    assert "storage_element.url" in str(refused.value.to_status())


def test_an_element_is_named_by_an_id_never_a_url() -> None:
    assert check_storage_element_id("local-b", "f") == "local-b"
    for value, text in [("file:///etc", "not by a URL"), ("/etc", "not by a URL"), ("a b", "not a storage element id"),
                        ("x" * 65, "not a storage element id")]:
        with pytest.raises(InvalidArgument, match=text):
            check_storage_element_id(value, "f")


def test_elements_neither_share_nor_nest_a_directory() -> None:
    others = [element("a", "file:///se/a"), element("b", "file:///se/b")]
    check_no_overlap("c", "file:///se/c", others, "url")
    check_no_overlap("c", "file:///se/ab", others, "url")
    check_no_overlap("a", "file:///se/a", others, "url")  # itself
    for url in ("file:///se/a", "file:///se/a/x", "file:///se", "file:///"):
        with pytest.raises(InvalidArgument, match="overlaps storage element"):
            check_no_overlap("c", url, others, "url")


def test_a_file_takes_its_queues_element_which_must_serve_its_queue_and_vo() -> None:
    elements = {"local": element("local"), "b-only": element("b-only", queues=["b"]),
                "atlas": element("atlas", vos=["atlas"])}
    check_file_storage([spec(FileSpec("x", "input"), FileSpec("y", "output", storage_element="atlas"))],
                       {"local": "local"}, elements, "atlas")
    cases: list[tuple[Any, type[Exception], str]] = [
        (spec(FileSpec("x", "input", storage_element="nowhere")), InvalidArgument, "nowhere is not configured"),
        (spec(FileSpec("x", "input", storage_element="b-only")), InvalidArgument, "does not serve queue local"),
        (spec(FileSpec("x", "input", storage_element="atlas")), PermissionDenied, "not open to VO panda"),
        (spec(FileSpec("x", "input"), queue="bare"), InvalidArgument, "queue bare has no storage element"),
    ]
    for job, error, text in cases:
        with pytest.raises(error, match=text) as refused:
            check_file_storage([spec(), job], {"local": "local", "bare": ""}, elements, "panda")
        assert "jobs[1].files[0].storage_element" in str(refused.value)


def test_a_job_moves_only_where_its_files_can_be_read_and_written() -> None:
    elements = {"a": element("a"), "b": element("b", vos=["atlas"]), "c": element("c", queues=["q1"])}
    assert reassign_problem("q2", "a", [("input", "a"), ("output", "x")], "panda", elements) == ""
    assert "not open to VO panda" in reassign_problem("q2", "b", [("output", "a")], "panda", elements)
    assert "does not serve queue q2" in reassign_problem("q2", "a", [("input", "c")], "panda", elements)
    assert "has no storage element" in reassign_problem("q2", "", [("log", "a")], "panda", elements)


def test_a_user_writes_its_own_scope_production_also_its_vos() -> None:
    assert user_scope("alice") == "user.alice"
    assert writable_scopes(caller("/panda"), "alice", "panda") == {"user.alice"}
    assert writable_scopes(caller("/panda", "/panda/production"), "bob", "panda") == {"user.bob", "panda"}
    assert writable_scopes(caller("/panda/admin"), "bob", "panda") == {"user.bob", "panda"}
    # The service role acts for an owner, in the owner's scope.
    assert writable_scopes(caller("/panda/service"), "bob", "panda") == {"user.bob"}
    assert writable_scopes(caller("/atlas/production"), "bob", "panda") == {"user.bob"}


def test_files_take_the_owners_scope_and_outputs_go_only_where_it_may_write() -> None:
    job = spec(FileSpec("in", "input", scope="user.bob"), FileSpec("out", "output"), FileSpec("log", "log"))
    assign_scopes([job], "user.alice", frozenset({"user.alice"}), "alice")
    assert [f.scope for f in job.files] == ["user.bob", "user.alice", "user.alice"]
    for scope, error in (("user.bob", PermissionDenied), ("panda", PermissionDenied), ("../x", InvalidArgument),
                         ("a/b", InvalidArgument), ("a:b", InvalidArgument), (".hidden", InvalidArgument)):
        with pytest.raises(error) as refused:
            assign_scopes([spec(), spec(FileSpec("o", "output", scope=scope))], "user.alice",
                          frozenset({"user.alice"}), "alice")
        assert "jobs[1].files[0].scope" in str(refused.value)


def test_an_output_name_is_taken_once() -> None:
    jobs = [spec(FileSpec("same", "input", scope="s"), FileSpec("out", "output", scope="s")),
            spec(FileSpec("out", "output", scope="t"), FileSpec("log", "log", scope="s"))]
    names = output_names(jobs)
    assert names == {("s", "out"): "jobs[0].files[1].lfn", ("t", "out"): "jobs[1].files[0].lfn",
                     ("s", "log"): "jobs[1].files[1].lfn"}
    with pytest.raises(AlreadyExists, match=r"jobs\[1\].files\[0\].lfn: s:out is also written by jobs\[0\]"):
        output_names([jobs[0], spec(FileSpec("out", "log", scope="s"))])
    check_names_free(names, [])
    with pytest.raises(AlreadyExists, match=r"jobs\[1\].files\[0\].lfn: t:out is already registered or about to be, "
                                            r"by job 7"):
        check_names_free(names, [(("t", "out"), 7)])
