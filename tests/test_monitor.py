"""The web monitor in front of a real server, JEDI, identity service and pilot, over real sockets,
on SQLite and PostgreSQL: every page as HTML and as JSON, filters in the URL, the attribute
summary and the errors summary as the services count them, paging and sorting, what each
person may see and do, and refusals that name what is wrong."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from panda.jedi.v1 import dataset_service_pb2_grpc, task_pb2, task_service_pb2_grpc
from panda.server.v1 import job_pb2, job_service_pb2_grpc
from tests.jedi_support import JediHandle, register_dataset, submit_task, task_params, wait_task
from tests.monitor_support import running_site
from tests.server_support import submit, token_channel, wait_for
from tools.cluster import (
    GatewayHandle,
    IdentityHandle,
    ServerHandle,
)

pytestmark = pytest.mark.e2e


@dataclass
class Site:
    identity: IdentityHandle
    server: ServerHandle
    jedi: JediHandle
    gateway: GatewayHandle
    # What the module's fixture ran: alice's finished and failed jobs, bob's job, alice's task.
    finished: list[int]
    failed: list[int]
    bobs: int
    task_id: int

    def http(self, user: str | None = "alice", **headers: str) -> httpx.Client:
        auth = {"Authorization": f"Bearer {self.identity.token(user)}"} if user else {}
        return httpx.Client(base_url=self.gateway.url, headers={**auth, **headers}, timeout=30,
                            follow_redirects=False)

    def page(self, path: str, user: str = "alice", **params: Any) -> dict[str, Any]:
        with self.http(user) as http:
            response = http.get(path, params={**params, "json": "1"})
        assert response.status_code == 200, response.text
        document: dict[str, Any] = response.json()
        return document


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
         identity: IdentityHandle) -> Iterator[Site]:
    with running_site(tmp_path_factory.mktemp(f"monitor-{request.param}"), request.param, identity) as running:
        server, jedi, se_dir = running.server, running.jedi, running.se_dir
        with token_channel(server.address, identity, "alice") as alice, \
                token_channel(server.address, identity, "bob") as bob, \
                token_channel(jedi.address, identity, "alice") as alice_at_jedi:
            jobs = job_service_pb2_grpc.JobServiceStub(alice)
            finished = [job.job_id for job in submit(jobs, *[job_pb2.Job(queue="local", command=["true"])
                                                             for _ in range(3)])]
            failed = [job.job_id for job in submit(jobs, *[job_pb2.Job(queue="local", command=["false"],
                                                                       max_attempts=1) for _ in range(2)])]
            (bobs,) = submit(job_service_pb2_grpc.JobServiceStub(bob),
                             job_pb2.Job(queue="idle", command=["sleep", "600"]))
            tasks = task_service_pb2_grpc.TaskServiceStub(alice_at_jedi)
            register_dataset(dataset_service_pb2_grpc.DatasetServiceStub(alice_at_jedi), "monitor.in", se_dir, 2,
                             scope="user.alice")
            task = submit_task(tasks, task_params("monitor.task", ["monitor.in"], "monitor.out",
                                                  "cat ${IN} > ${OUT}", split_rule=task_pb2.SplitRule(files_per_job=1),
                                                  scout_jobs=1, queues=["local"]))
            for job_id in finished:
                assert wait_for(jobs, job_id).state == job_pb2.Job.STATE_FINISHED
            for job_id in failed:
                assert wait_for(jobs, job_id).state == job_pb2.Job.STATE_FAILED
            assert wait_task(tasks, task.task_id).state == task_pb2.Task.STATE_DONE
        yield Site(identity, server, jedi, running.gateway, finished, failed, bobs.job_id, task.task_id)


def _counts(groups: list[dict[str, Any]]) -> dict[str, int]:
    return {"/".join(group["values"]): int(group["count"]) for group in groups}


def test_the_jobs_page_lists_a_persons_jobs_with_the_attribute_summary(site: Site) -> None:
    document = site.page("/monitor/jobs", state="finished|failed", task_id="0")
    assert {int(job["jobId"]) for job in document["jobs"]} == set(site.finished + site.failed)
    assert int(document["totalSize"]) == 5
    assert _counts(document["summary"]["state"]) == {"STATE_FINISHED": 3, "STATE_FAILED": 2}
    assert _counts(document["summary"]["queue"]) == {"local": 5}
    assert _counts(document["summary"]["owner"]) == {"alice": 5}
    assert set(_counts(document["summary"]["error_code"])) == {"0", next(iter(
        set(_counts(document["summary"]["error_code"])) - {"0"}))}


def test_a_person_sees_only_what_the_api_lets_them_see(site: Site) -> None:
    bobs_view = site.page("/monitor/jobs", user="bob")
    assert [int(job["jobId"]) for job in bobs_view["jobs"]] == [site.bobs]
    assert _counts(bobs_view["summary"]["owner"]) == {"bob": 1}
    with site.http("bob") as http:
        other = http.get(f"/monitor/jobs/{site.finished[0]}", params={"json": "1"})
    assert other.status_code in (403, 404)
    assert set(other.json()) == {"error"}


def test_negation_wildcards_and_time_windows_filter_the_list(site: Site) -> None:
    assert {int(job["jobId"]) for job in site.page("/monitor/jobs", state="!finished", task_id="0")["jobs"]} == \
        set(site.failed)
    assert int(site.page("/monitor/jobs", queue="loc*", task_id="0")["totalSize"]) == 5
    assert int(site.page("/monitor/jobs", queue="elsewhere*")["totalSize"]) == 0
    assert int(site.page("/monitor/jobs", hours="1", task_id="0")["totalSize"]) == 5
    assert int(site.page("/monitor/jobs", to="2001-01-01")["totalSize"]) == 0


def test_the_list_is_paginated_and_sorted_through_the_url(site: Site) -> None:
    mine = sorted(site.finished + site.failed, reverse=True)
    first = site.page("/monitor/jobs", task_id="0", sort="-job_id", page_size="2")
    assert [int(job["jobId"]) for job in first["jobs"]] == mine[:2]
    second = site.page("/monitor/jobs", task_id="0", sort="-job_id", page_size="2",
                       page_token=first["nextPageToken"])
    assert [int(job["jobId"]) for job in second["jobs"]] == mine[2:4]
    ascending = site.page("/monitor/jobs", task_id="0", sort="job_id")
    assert [int(job["jobId"]) for job in ascending["jobs"]] == sorted(mine)


def test_the_errors_summary_groups_failures_by_code_queue_and_task(site: Site) -> None:
    document = site.page("/monitor/errors")
    (code,) = _counts(document["byCode"])
    assert _counts(document["byCode"]) == {code: 2}
    assert _counts(document["byCodeAndQueue"]) == {f"{code}/local": 2}
    assert _counts(document["byCodeAndTask"]) == {f"{code}/0": 2}
    assert document["meanings"][code]
    assert document["rows"] == [{"code": code, "count": "2", "meaning": document["meanings"][code],
                                 "queues": [{"value": "local", "count": "2"}],
                                 "tasks": [{"value": "0", "count": "2"}]}]
    assert document["leftOff"] == {"byCode": "0", "byCodeAndQueue": "0", "byCodeAndTask": "0"}
    with site.http() as http:
        page = http.get("/monitor/errors")
    assert page.status_code == 200
    assert f"/monitor/jobs?state=failed&amp;error_code={code}" in page.text


def test_the_task_page_shows_progress_history_output_and_jobs(site: Site) -> None:
    document = site.page(f"/monitor/tasks/{site.task_id}")
    task = document["task"]
    assert task["state"] == "STATE_DONE"
    assert task["progress"]["filesFinished"] == "2"
    assert any(event["state"] == "STATE_DONE" for event in task["history"])
    assert int(document["output"]["dataset"]["fileCount"]) == 2
    assert all(file["adler32"] for file in document["output"]["files"])
    assert int(document["jobs"]["totalSize"]) == 2
    assert _counts(document["jobs"]["summary"]["state"]) == {"STATE_FINISHED": 2}
    with site.http() as http:
        page = http.get(f"/monitor/tasks/{site.task_id}")
    assert page.status_code == 200 and "monitor.task" in page.text and "monitor.out" in page.text
    # A done task takes no command: none is offered.
    assert f'action="/monitor/tasks/{site.task_id}/' not in page.text


def test_the_job_page_shows_the_error_with_its_meaning_and_history(site: Site) -> None:
    document = site.page(f"/monitor/jobs/{site.failed[0]}")
    job = document["job"]
    assert job["state"] == "STATE_FAILED" and job["errorCode"] != 0
    assert document["errorMeaning"]
    assert [event["state"] for event in job["history"]][-1] == "STATE_FAILED"
    with site.http() as http:
        page = http.get(f"/monitor/jobs/{site.failed[0]}")
    assert page.status_code == 200
    assert document["errorMeaning"] in page.text and f"Job {site.failed[0]}" in page.text


def test_every_page_renders_for_a_signed_in_person(site: Site) -> None:
    with site.http() as http:
        for path in ("/monitor/", "/monitor/tasks", "/monitor/jobs", "/monitor/errors", "/monitor/queues",
                     "/monitor/queues/local", "/monitor/users", "/monitor/datasets", "/monitor/datasets/monitor.in",
                     f"/monitor/jobs/{site.finished[0]}", f"/monitor/tasks/{site.task_id}"):
            page = http.get(path)
            assert page.status_code == 200, (path, page.text[:500])
            assert page.headers["content-type"].startswith("text/html")
            assert "script-src 'self'" in page.headers["content-security-policy"]
            assert re.search(r"<h1>", page.text), path


def test_the_dashboard_counts_jobs_per_queue_tasks_and_failures(site: Site) -> None:
    document = site.page("/monitor/", user="admin")
    (local,) = [queue for queue in document["queues"] if queue["queueId"] == "local"]
    assert int(local["jobCounts"]["finished"]) >= 5
    assert int(local["connectedPilots"]) == 1
    assert document["pilotsConnected"] >= 1
    assert _counts(document["tasksByState"]).get("STATE_DONE", 0) >= 1
    assert sum(_counts(document["failuresByCode"]).values()) == 2


def test_users_page_counts_each_persons_work(site: Site) -> None:
    document = site.page("/monitor/users", user="admin")
    jobs = _counts(document["jobs"])
    assert jobs["alice/STATE_FINISHED"] >= 3 and jobs["alice/STATE_FAILED"] == 2
    assert _counts(document["tasks"])["alice/STATE_DONE"] == 1
    # Sorted and paged: the one with the most jobs first, one a page.
    busiest = site.page("/monitor/users", user="admin", sort="-jobs", page_size="1")
    most = max(document["users"], key=lambda person: person["jobsTotal"])
    assert [person["owner"] for person in busiest["users"]] == [most["owner"]]
    assert busiest["nextPageToken"] == "1" and int(busiest["totalSize"]) == len(document["users"])
    second = site.page("/monitor/users", user="admin", sort="-jobs", page_size="1", page_token="1")
    assert second["users"][0]["owner"] != most["owner"]


def test_the_queue_list_sorts_by_its_live_figures(site: Site) -> None:
    by_pilots = site.page("/monitor/queues", user="admin", sort="-pilots")
    assert [queue["queueId"] for queue in by_pilots["queues"]][:1] == ["local"]
    by_name = site.page("/monitor/queues", user="admin", sort="-queue_id", page_size="1")
    assert [queue["queueId"] for queue in by_name["queues"]] == ["local"] and by_name["nextPageToken"] == "1"
    with site.http("admin") as http:
        assert http.get("/monitor/queues", params={"sort": "description", "json": "1"}).status_code == 400


def test_bad_input_is_a_clear_error_naming_the_parameter(site: Site) -> None:
    with site.http() as http:
        for params, parameter in (({"state": "flying"}, "state"), ({"page_size": "0"}, "page_size"),
                                  ({"sort": "command"}, "sort"), ({"hours": "soon"}, "hours")):
            as_json = http.get("/monitor/jobs", params={**params, "json": "1"})
            assert as_json.status_code == 400
            assert as_json.json()["error"]["field"] == parameter
            as_page = http.get("/monitor/jobs", params=params)
            assert as_page.status_code == 400 and parameter in as_page.text
        missing = http.get("/monitor/jobs/999999999", params={"json": "1"})
        assert missing.status_code == 404
        not_an_id = http.get("/monitor/jobs/abc", params={"json": "1"})
        assert not_an_id.status_code == 400 and not_an_id.json()["error"]["field"] == "job_id"


def test_without_a_token_json_is_refused_and_a_page_asks_to_sign_in(site: Site) -> None:
    with site.http(user=None) as http:
        assert http.get("/monitor/jobs", params={"json": "1"}).status_code == 401
        page = http.get("/monitor/jobs", params={"state": "failed"})
        assert page.status_code == 303
        assert page.headers["location"].startswith("/monitor/auth/login?next=%2Fmonitor%2Fjobs%3Fstate%3Dfailed")


def test_actions_are_refused_by_the_api_to_those_it_does_not_let_act(site: Site) -> None:
    with site.http("alice") as alice:
        refused = alice.post(f"/monitor/jobs/{site.bobs}/kill", data={"reason": "not mine"})
    assert refused.status_code in (403, 404)
    # The kill button is offered to the job's owner, not to others.
    with site.http("bob") as bob:
        assert f'action="/monitor/jobs/{site.bobs}/kill"' in bob.get(f"/monitor/jobs/{site.bobs}").text
    with site.http("alice") as alice:
        page = alice.get(f"/monitor/jobs/{site.failed[0]}")
        assert page.status_code == 200 and "/kill" not in page.text
    with site.http("bob") as bob:
        done = bob.post(f"/monitor/jobs/{site.bobs}/kill", data={"reason": "changed my mind"})
    assert done.status_code == 303 and done.headers["location"] == f"/monitor/jobs/{site.bobs}"
    killed = site.page(f"/monitor/jobs/{site.bobs}", user="bob")["job"]
    assert killed["history"][-1]["reason"].endswith("changed my mind") or any(
        "changed my mind" in event["reason"] for event in killed["history"])


def test_an_owner_reassigns_a_waiting_job_to_another_queue(site: Site) -> None:
    with token_channel(site.server.address, site.identity, "alice") as alice:
        jobs = job_service_pb2_grpc.JobServiceStub(alice)
        (job,) = submit(jobs, job_pb2.Job(queue="idle", command=["true"]))
        with site.http("alice") as http:
            assert f'action="/monitor/jobs/{job.job_id}/reassign"' in http.get(f"/monitor/jobs/{job.job_id}").text
            nowhere = http.post(f"/monitor/jobs/{job.job_id}/reassign", data={"queue": "nowhere"},
                                params={"json": "1"})
            assert nowhere.status_code in (400, 404) and "nowhere" in nowhere.json()["error"]["message"]
            moved = http.post(f"/monitor/jobs/{job.job_id}/reassign", data={"queue": "local"})
            assert moved.status_code == 303
        # On `local`, its pilot runs it.
        assert wait_for(jobs, job.job_id).state == job_pb2.Job.STATE_FINISHED
        assert site.page(f"/monitor/jobs/{job.job_id}")["job"]["queue"] == "local"
