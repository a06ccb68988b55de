"""The contracts' field rules (panda_runtime.contracts) without a server: what each side checks
before it stores or sends. The services' tests show the same rules at their edges."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from panda_runtime.contracts import Violation, iam, jedi, rules, server

JOB = server.JobFields(queue="local", command=["echo", "hi"], environment={"LC_ALL": "C"}, label="sort",
                       files=[server.JobFileFields("in.txt", "input", 10, "0000abcd", "se1"),
                              server.JobFileFields("out.txt", "output")])


def job(**changes: object) -> server.JobFields:
    values = {name: getattr(JOB, name) for name in server.JobFields.__dataclass_fields__}
    values.update(changes)
    return server.JobFields(**values)  # type: ignore[arg-type]  # each test changes what it breaks


def violation_of(check, *args: object) -> Violation:  # type: ignore[no-untyped-def]
    with pytest.raises(Violation) as raised:
        check(*args)
    return raised.value


def test_a_good_job_passes() -> None:
    server.check_job(JOB, "jobs[0]")


@pytest.mark.parametrize(("changes", "field", "words"), [
    ({"queue": "no queue"}, "jobs[0].queue", "not a queue id"),
    ({"command": []}, "jobs[0].command", "command is empty"),
    ({"command": ["ec\x00ho"]}, "jobs[0].command[0]", "NUL"),
    ({"command": ["echo", "x" * (server.MAX_ARGUMENT_LENGTH + 1)]}, "jobs[0].command[1]", "at most 131072"),
    ({"label": "x" * 300}, "jobs[0].label", "300 characters long; at most 256"),
    ({"label": "a\x00b"}, "jobs[0].label", "NUL"),
    ({"environment": {"A=B": "c"}}, "jobs[0].environment", "not an environment variable name"),
    ({"environment": {"1A": "c"}}, "jobs[0].environment", "not an environment variable name"),
    ({"environment": {"A": "b\x00"}}, "jobs[0].environment[A]", "NUL"),
    ({"files": [server.JobFileFields(".", "output")]}, "jobs[0].files[0].lfn", "'.' or '..'"),
    ({"files": [server.JobFileFields("..", "input")]}, "jobs[0].files[0].lfn", "'.' or '..'"),
    ({"files": [server.JobFileFields("a b", "input")]}, "jobs[0].files[0].lfn", "logical file name"),
    ({"files": [server.JobFileFields("a" * 256, "input")]}, "jobs[0].files[0].lfn", "longer than 255"),
    ({"files": [server.JobFileFields("a", "input", storage_element="x" * 65)]},
     "jobs[0].files[0].storage_element", "not a storage element id"),
    ({"files": [server.JobFileFields("a", "input", storage_element="file:///etc")]},
     "jobs[0].files[0].storage_element", "not by a URL"),
    ({"files": [server.JobFileFields("a", "input", -1)]}, "jobs[0].files[0].size_bytes", "negative"),
    ({"files": [server.JobFileFields("a", "input", adler32="XYZ")]}, "jobs[0].files[0].adler32", "8 lower-case"),
    ({"files": [server.JobFileFields("a", "sideways")]}, "jobs[0].files[0].kind", "input, output or log"),
    ({"files": [server.JobFileFields("a", "input"), server.JobFileFields("a", "input")]},
     "jobs[0].files[1].lfn", "listed twice"),
    ({"cores": -1}, "jobs[0].resources.cores", "negative"),
    ({"max_attempts": 101}, "jobs[0].max_attempts", "between 0 and 100"),
    ({"task_id": -3}, "jobs[0].task_id", "between 0 and"),
])
def test_each_rule_of_a_job_names_its_field(changes: dict[str, object], field: str, words: str) -> None:
    refused = violation_of(server.check_job, job(**changes), "jobs[0]")
    assert refused.field == field
    assert words in refused.description
    assert str(refused).startswith(field)


def test_job_ids_are_positive_each_once_and_bounded() -> None:
    assert server.check_job_ids([3, 3, 1]) == [3, 1]
    assert violation_of(server.check_job_ids, [0]).field == "job_ids"
    assert "at most 10,000" in violation_of(server.check_job_ids, range(1, 100_002)).description
    assert server.check_job_ids([], required=False) == []


@pytest.mark.parametrize(("kind", "value", "words"), [
    ("size", math.nan, "finite"),
    ("size", math.inf, "finite"),
    ("size", -1.0, "positive"),
    ("size", 0.0, "positive"),
    ("size", 2e6, "between"),
    ("files", 2.5, "whole number"),
    ("files", -1, "positive"),
    ("events", 2.0**63, "between"),
    ("events", math.nan, "finite"),
    ("sideways", 1, "unknown split rule"),
])
def test_split_rules_refuse_what_cannot_cut_files(kind: str, value: float, words: str) -> None:
    assert words in violation_of(jedi.check_split_rule, kind, value).description


def test_good_split_rules_pass() -> None:
    jedi.check_split_rule("size", 2.5)
    jedi.check_split_rule("files", 10)
    jedi.check_split_rule("events", 1000.0)


def test_numbers_of_a_task() -> None:
    assert "finite" in violation_of(jedi.check_failure_rate, math.nan).description
    assert "between" in violation_of(jedi.check_failure_rate, -0.5).description
    assert jedi.check_failure_rate(1.0) == 1.0
    assert violation_of(jedi.check_resources, 1, -5, 0, 0).field == "params.resources.memory_mb"
    assert "±100000" in violation_of(jedi.check_priority, 100_001).description
    assert violation_of(jedi.check_task_name, "  ").description == "task_name is required"
    assert "NUL" in violation_of(jedi.check_task_name, "a\x00").description


def test_dataset_files_follow_the_servers_file_names() -> None:
    jedi.check_dataset_file("events.0001.root", 10, 5, ["se1"], "files[0]")
    assert violation_of(jedi.check_dataset_file, "a b", 1, 0, ["se1"], "files[0]").field == "files[0].lfn"
    assert violation_of(jedi.check_dataset_file, "a", -1, 0, ["se1"], "files[0]").field == "files[0]"
    refused = violation_of(jedi.check_dataset_file, "a", 1, 0, ["se1\x00"], "files[0]")
    assert refused.field == "files[0].storage_elements[0]"


def test_output_patterns_may_pad_but_not_blow_up() -> None:
    jedi.check_output_file_pattern("{dataset}._{serial}.{task_id:08d}.root")
    refused = violation_of(jedi.check_output_file_pattern, "{dataset}.{task_id:>999999999}._{serial}")
    assert "width of at most two digits" in refused.description


def test_iam_names() -> None:
    assert iam.check_user_name("alice") == "alice"
    assert "not a user name" in violation_of(iam.check_user_name, "Alice").description
    assert "not a group" in violation_of(iam.check_group_path, "/panda/\x00").description
    assert iam.check_queue_name("*") == "*"
    assert "not an e-mail address" in violation_of(iam.check_email, "a\x00@b").description
    assert "NUL" in violation_of(iam.check_description, "x\x00", "group.description").description


def test_text_and_numbers() -> None:
    assert rules.check_request_id("r" * 64) == "r" * 64
    assert violation_of(rules.check_request_id, "r" * 65).field == "request_id"
    assert "NUL" in violation_of(rules.check_request_id, "r\x00").description
    assert "finite" in violation_of(rules.check_finite, None, "x").description  # type: ignore[arg-type]
    assert "finite" in violation_of(rules.check_finite, True, "x").description


def _detailed_check_passes(fields: server.JobFields) -> bool:
    """check_job's own path, past its quick answer."""
    try:
        server.check_queue_id(fields.queue)
        rules.check_range(fields.task_id, "task_id")
        rules.check_range(fields.max_attempts, "max_attempts", maximum=server.MAX_ATTEMPTS)
        server.check_command(fields.command)
        server.check_environment(fields.environment)
        assert min(fields.cores, fields.memory_mb, fields.walltime_seconds, fields.disk_mb) >= 0
        assert len({(f.kind, f.lfn) for f in fields.files}) == len(fields.files)
        for file in fields.files:
            server.check_job_file(file, "file")
        server.check_label(fields.label)
    except (Violation, AssertionError):
        return False
    return True


_texts = st.one_of(st.sampled_from(["", "local", "a b", ".", "..", "A=B", "x\x00", "LC_ALL", "in.txt", "x" * 300]),
                   st.text(max_size=8))
_numbers = st.integers(-2, 2**63)


@settings(max_examples=150, deadline=None)
@given(queue=_texts, command=st.lists(_texts, max_size=3), environment=st.dictionaries(_texts, _texts, max_size=2),
       label=_texts, task_id=_numbers, max_attempts=st.integers(-1, 102), cores=st.integers(-1, 2),
       files=st.lists(st.builds(server.JobFileFields, _texts, st.sampled_from(["input", "output", "x"]),
                                st.integers(-1, 5), st.sampled_from(["", "0000abcd", "XYZ"]), _texts), max_size=3))
def test_the_quick_answer_agrees_with_the_detailed_check(**values: object) -> None:
    fields = job(**values)
    try:
        server.check_job(fields, "job")
        passed = True
    except Violation:
        passed = False
    assert passed == _detailed_check_passes(fields)
