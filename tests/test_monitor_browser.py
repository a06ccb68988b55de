"""The web monitor in a real browser (Debian's chromium, driven by Playwright) against a real
server, JEDI, identity service, gateway and pilot: signing in on the identity service's page,
the dashboard, a filtered task list shared as a link, a task and a job, a job changing state
live without a reload, killing one's own job and failing to kill another's, and the errors
summary after a failing task. A screenshot of every page is saved under `artifacts/monitor/`
(or PANDA_TEST_ARTIFACTS)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from panda.iam.v1 import iam_service_pb2, iam_service_pb2_grpc, identity_pb2
from panda.jedi.v1 import dataset_service_pb2_grpc, task_pb2, task_service_pb2_grpc
from panda.server.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from tests.jedi_support import register_dataset, submit_task, task_params, wait_task
from tests.monitor_support import running_site
from tests.server_support import submit, token_channel, wait_for
from tools.cluster import (
    GatewayHandle,
    IdentityHandle,
    ServerHandle,
)

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("PANDA_TEST_ARTIFACTS", Path(__file__).resolve().parent.parent / "artifacts"))


@dataclass
class Site:
    identity: IdentityHandle
    server: ServerHandle
    gateway: GatewayHandle
    jedi_address: str
    se_dir: Path
    shots: Path


def _register_monitor_client(identity: IdentityHandle, client_id: str, gateway: GatewayHandle) -> None:
    """The monitor's public client, its redirect URI at this gateway's address."""
    with grpc.insecure_channel(identity.address) as channel:
        stub = iam_service_pb2_grpc.IamServiceStub(channel)
        stub.CreateClient(iam_service_pb2.CreateClientRequest(client=identity_pb2.Client(
            client_id=client_id, type=identity_pb2.Client.TYPE_PUBLIC,
            grant_types=["authorization_code", "refresh_token"],
            redirect_uris=[f"{gateway.url}/monitor/auth/callback"])),
            metadata=(("authorization", f"Bearer {identity.token('admin')}"),), timeout=10)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, identity: IdentityHandle) -> Iterator[Site]:
    client_id = f"monitor-{uuid.uuid4().hex[:8]}"
    with running_site(tmp_path_factory.mktemp("monitor-browser"), "sqlite", identity, gateway_env={
            "PANDA_IAM_ISSUER": identity.issuer, "PANDA_GATEWAY_MONITOR_CLIENT_ID": client_id}) as running:
        _register_monitor_client(identity, client_id, running.gateway)
        shots = ARTIFACTS / "monitor"
        shots.mkdir(parents=True, exist_ok=True)
        yield Site(identity, running.server, running.gateway, running.jedi.address, running.se_dir, shots)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield launched
        launched.close()


def _sign_in(browser: Browser, site: Site, user: str, path: str) -> Page:
    """A new browser (no cookie) opens `path`, is sent to the identity service's page, signs in,
    and comes back to `path`."""
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(f"{site.gateway.url}{path}")
    page.wait_for_url(f"{site.identity.issuer}/**")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", f"{user}-password")
    page.click("button[type=submit]")
    page.wait_for_url(f"{site.gateway.url}{path}")
    return page


def _shot(page: Page, site: Site, name: str) -> None:
    page.screenshot(path=str(site.shots / f"{name}.png"), full_page=True)


def test_signing_in_opens_the_dashboard(browser: Browser, site: Site) -> None:
    page = _sign_in(browser, site, "alice", "/monitor/")
    expect(page.locator("h1")).to_have_text("Dashboard")
    expect(page.locator("table.list").first).to_contain_text("local")
    _shot(page, site, "dashboard")
    # On a phone: the page fits the screen's width (wide tables scroll within themselves).
    page.set_viewport_size({"width": 390, "height": 844})
    for path, name in (("/monitor/", "dashboard-phone"), ("/monitor/jobs", "jobs-phone")):
        page.goto(f"{site.gateway.url}{path}")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), name
        _shot(page, site, name)
    # Signing out forgets the session: the next page asks to sign in again.
    page.click("text=Sign out")
    page.goto(f"{site.gateway.url}/monitor/jobs")
    page.wait_for_url(f"{site.identity.issuer}/**")


def test_a_filtered_task_list_is_a_link_to_share(browser: Browser, site: Site) -> None:
    with token_channel(site.jedi_address, site.identity, "alice") as alice:
        register_dataset(dataset_service_pb2_grpc.DatasetServiceStub(alice), "browser.in", site.se_dir, 2,
                         scope="user.alice")
        task = submit_task(task_service_pb2_grpc.TaskServiceStub(alice), task_params(
            "browser.task", ["browser.in"], "browser.out", "cat ${IN} > ${OUT}",
            split_rule=task_pb2.SplitRule(files_per_job=1), scout_jobs=1, queues=["local"]))
        assert wait_task(task_service_pb2_grpc.TaskServiceStub(alice), task.task_id).state == task_pb2.Task.STATE_DONE
    page = _sign_in(browser, site, "alice", "/monitor/tasks")
    page.click("section.summary a:text('done')")
    expect(page.locator(".filters")).to_contain_text("state=done")
    shared = page.url
    rows = page.locator("table.list tbody tr")
    expect(rows.first).to_contain_text("browser.task")
    _shot(page, site, "tasks-filtered")
    # Someone else opens the link in their own browser: after signing in, the same view.
    other = _sign_in(browser, site, "alice", shared.removeprefix(site.gateway.url))
    expect(other.locator(".filters")).to_contain_text("state=done")
    expect(other.locator("table.list tbody tr").first).to_contain_text("browser.task")
    # The task's page, then one of its jobs.
    other.click(f"a[href='/monitor/tasks/{task.task_id}']")
    expect(other.locator("h1")).to_contain_text(f"Task {task.task_id}")
    expect(other.locator("svg.stacked")).to_be_visible()
    expect(other.locator("body")).to_contain_text("browser.out")
    _shot(other, site, "task")
    other.locator("table.list[data-live-jobs] tbody a").first.click()
    expect(other.locator("h1")).to_contain_text("Job ")
    expect(other.locator("h1 .state")).to_have_text("finished")
    _shot(other, site, "job")


def test_a_job_changes_state_live_without_a_reload(browser: Browser, site: Site) -> None:
    page = _sign_in(browser, site, "alice", "/monitor/")
    with token_channel(site.server.address, site.identity, "alice") as alice:
        jobs = job_service_pb2_grpc.JobServiceStub(alice)
        (job,) = submit(jobs, job_pb2.Job(queue="local", command=["sleep", "4"]))
        page.goto(f"{site.gateway.url}/monitor/jobs/{job.job_id}")
        page.evaluate("window.__notReloaded = true")
        expect(page.locator("body[data-live=on]")).to_have_count(1)
        expect(page.locator("h1 .state")).to_have_text("finished", timeout=60_000)
        assert page.evaluate("window.__notReloaded") is True
        assert wait_for(jobs, job.job_id).state == job_pb2.Job.STATE_FINISHED
    expect(page.locator("[data-history-job] tbody tr").last).to_contain_text("finished")
    _shot(page, site, "job-live")


_HIDE = """hidden => {
  Object.defineProperty(document, "hidden", {configurable: true, get: () => hidden});
  Object.defineProperty(document, "visibilityState", {configurable: true, get: () => hidden ? "hidden" : "visible"});
  document.dispatchEvent(new Event("visibilitychange"));
}"""


def test_a_hidden_tab_stops_following_and_catches_up_when_shown(browser: Browser, site: Site) -> None:
    page = _sign_in(browser, site, "alice", "/monitor/")
    with token_channel(site.server.address, site.identity, "alice") as alice:
        jobs = job_service_pb2_grpc.JobServiceStub(alice)
        (job,) = submit(jobs, job_pb2.Job(queue="local", command=["sleep", "3"]))
        page.goto(f"{site.gateway.url}/monitor/jobs/{job.job_id}")
        expect(page.locator("body[data-live=on]")).to_have_count(1)
        page.evaluate(_HIDE, True)
        # Hidden: its stream is closed, and the job's end does not reach the page.
        expect(page.locator("body[data-live=paused]")).to_have_count(1)
        assert wait_for(jobs, job.job_id).state == job_pb2.Job.STATE_FINISHED
        page.wait_for_timeout(1000)
        expect(page.locator("h1 .state")).not_to_have_text("finished")
        # Shown again: it follows again, from the last event it saw, and catches up.
        page.evaluate(_HIDE, False)
        expect(page.locator("body[data-live=on]")).to_have_count(1)
        expect(page.locator("h1 .state")).to_have_text("finished", timeout=20_000)


def test_an_owner_kills_a_job_and_nobody_else_can(browser: Browser, site: Site) -> None:
    with token_channel(site.server.address, site.identity, "bob") as bob:
        (bobs,) = submit(job_service_pb2_grpc.JobServiceStub(bob), job_pb2.Job(queue="idle",
                                                                                 command=["true"]))
    with token_channel(site.server.address, site.identity, "alice") as alice:
        (alices,) = submit(job_service_pb2_grpc.JobServiceStub(alice), job_pb2.Job(queue="idle",
                                                                                     command=["true"]))
    page = _sign_in(browser, site, "alice", f"/monitor/jobs/{alices.job_id}")
    page.on("dialog", lambda dialog: dialog.accept())
    page.fill("form.action input[name=reason]", "not needed after all")
    page.click("form.action button")
    expect(page.locator("h1 .state")).to_have_text("cancelled", timeout=20_000)
    expect(page.locator("body")).to_contain_text("not needed after all")
    _shot(page, site, "job-killed")
    # Bob's job: alice cannot see it, and a kill sent for it anyway is refused by the server.
    response = page.goto(f"{site.gateway.url}/monitor/jobs/{bobs.job_id}")
    assert response is not None and response.status in (403, 404)
    page.goto(f"{site.gateway.url}/monitor/jobs/{alices.job_id}")
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    refused = page.request.post(f"{site.gateway.url}/monitor/jobs/{bobs.job_id}/kill",
                                form={"csrf": csrf or "", "reason": "not mine"}, max_redirects=0)
    assert refused.status in (403, 404)
    with token_channel(site.server.address, site.identity, "bob") as bob:
        assert job_service_pb2_grpc.JobServiceStub(bob).GetJob(
            job_service_pb2.GetJobRequest(job_id=bobs.job_id), timeout=10).job.state != job_pb2.Job.STATE_CANCELLED
    # A form sent without its token (as another site would) is refused.
    forged = page.request.post(f"{site.gateway.url}/monitor/jobs/{alices.job_id}/kill",
                               form={"reason": "forged"}, max_redirects=0)
    assert forged.status == 403


def test_the_errors_summary_after_a_failing_task(browser: Browser, site: Site) -> None:
    with token_channel(site.jedi_address, site.identity, "alice") as alice:
        register_dataset(dataset_service_pb2_grpc.DatasetServiceStub(alice), "failing.in", site.se_dir, 1,
                         scope="user.alice")
        task = submit_task(task_service_pb2_grpc.TaskServiceStub(alice), task_params(
            "failing.task", ["failing.in"], "failing.out", "exit 3", max_attempts=1,
            split_rule=task_pb2.SplitRule(files_per_job=1), scout_jobs=1, queues=["local"]))
        wait_task(task_service_pb2_grpc.TaskServiceStub(alice), task.task_id)
    page = _sign_in(browser, site, "alice", f"/monitor/tasks/{task.task_id}")
    _shot(page, site, "task-failed")
    # Broken (no scout succeeded), and why, at a glance; a broken task takes no command: none offered.
    expect(page.locator("h1 .state")).to_have_text("broken")
    expect(page.locator(".reason")).to_contain_text("no scout succeeded")
    expect(page.locator("form.action")).to_have_count(0)
    page.goto(f"{site.gateway.url}/monitor/errors?hours=1")
    row = page.locator("table.errors tbody tr").first
    expect(row).to_contain_text(str(task.task_id))
    _shot(page, site, "errors")
    row.locator("td").first.locator("a").click()
    expect(page.locator(".filters")).to_contain_text("state=failed")
    expect(page.locator("table.list[data-live-jobs] tbody tr").first).to_contain_text("failed")
    _shot(page, site, "jobs-failed")
    for path, name in (("/monitor/queues", "queues"), ("/monitor/users", "users"),
                       ("/monitor/datasets", "datasets"), ("/monitor/jobs", "jobs")):
        page.goto(f"{site.gateway.url}{path}")
        expect(page.locator("h1")).to_be_visible()
        _shot(page, site, name)
