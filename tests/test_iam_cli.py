"""Signing in and managing identities from the command line, as a person does it: `panda login`
(a real subprocess) approved in the browser through the device page, the token file it leaves,
`panda whoami`, `panda logout`, and the `panda iam` admin commands with what they print."""

from __future__ import annotations

import io
import json
import os
import queue
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
import pytest
from sqlalchemy import text

from panda_cli.main import main
from tests.cli_support import Result
from tests.iam_support import USER_CODE, Browser, Iam, sign_in_and_decide, verify

pytest_plugins = ["tests.iam_fixtures"]

TOKEN_FILE_KEYS = {"issuer", "client_id", "access_token", "refresh_token", "expires_at", "token_type"}




Panda = Callable[..., Result]


@pytest.fixture
def config_home(tmp_path: Path) -> Path:
    return tmp_path / "config"


@pytest.fixture
def panda(iam: Iam, config_home: Path, monkeypatch: pytest.MonkeyPatch,
          capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """`panda ARGS...` in-process against this instance; `as_user` gives it that user's token,
    None the signed-in user's file (if any)."""

    def run(*argv: str, as_user: str | None = "admin", stdin: str = "") -> Result:
        for key, value in iam.cli_env(config_home, iam.token(as_user) if as_user else "").items():
            monkeypatch.setenv(key, value)
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        capsys.readouterr()
        code = main(list(argv))
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


class Login:
    """`panda login` as a subprocess in its own process group; its output read as it comes."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "panda_cli.main", "login"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True, env={**os.environ, **env},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.out: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def code_and_url(self, timeout: float = 30.0) -> tuple[str, str]:
        """The user code and the complete verification URL, as the person reads them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.out.append(self.lines.get(timeout=0.2))
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            text_so_far = "".join(self.out)
            code, url = USER_CODE.search(text_so_far), re.search(r"or open (http\S+) ", text_so_far)
            if code and url and "Waiting for you to approve" in text_so_far:
                return code.group(1), url.group(1)
        raise AssertionError(f"panda login printed no code: {''.join(self.out)!r} {self.stderr()!r}")

    def finish(self, timeout: float = 30.0) -> Result:
        code = self.process.wait(timeout)
        time.sleep(0.05)
        while not self.lines.empty():
            self.out.append(self.lines.get())
        return Result(code, "".join(self.out), self.stderr())

    def stderr(self) -> str:
        if self.process.poll() is None or self.process.stderr is None:
            return ""
        return self.process.stderr.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


@pytest.fixture
def start_login(iam: Iam, config_home: Path) -> Iterator[Callable[[], Login]]:
    started: list[Login] = []

    def start() -> Login:
        login = Login(iam.cli_env(config_home))
        started.append(login)
        return login

    yield start
    for login in started:
        login.stop()


def test_login_whoami_logout(iam: Iam, start_login: Callable[[], Login], panda: Panda, config_home: Path) -> None:
    login = start_login()
    user_code, url = login.code_and_url()
    assert f"{iam.issuer}/device" in login.out[0] and url == f"{iam.issuer}/device?user_code={user_code}"
    consent, done = sign_in_and_decide(url, "alice", "alice-password")
    assert "panda-cli" in consent.text and user_code in consent.text and "Approved" in done.text
    result = login.finish()
    assert result.code == 0, result.err
    token_path = config_home / "panda-mesh" / "token.json"
    assert f"Signed in as alice (groups: /panda, /panda/production). Token saved in {token_path}." in result.out

    assert stat.S_IMODE(token_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(token_path.parent.stat().st_mode) == 0o700
    record = json.loads(token_path.read_text())
    assert set(record) == TOKEN_FILE_KEYS
    assert (record["issuer"], record["client_id"], record["token_type"]) == (iam.issuer, "panda-cli", "Bearer")
    assert abs(record["expires_at"] - (time.time() + 24 * 3600)) < 60
    assert verify(iam, record["access_token"]).subject == "alice"

    whoami = panda("whoami", as_user=None)
    assert whoami.code == 0, whoami.err
    fields = dict(re.findall(r"^(\w+):\s+(.*)$", whoami.out, flags=re.M))
    assert fields["subject"] == "alice" and fields["issuer"] == iam.issuer and fields["client"] == "panda-cli"
    assert fields["groups"] == "/panda, /panda/production" and fields["roles"] == "production, user"
    assert "(in 23h59m" in fields["expires"] or "(in 1d" in fields["expires"]
    as_json = json.loads(panda("whoami", "--json", as_user=None).out)
    assert as_json["subject"] == "alice" and as_json["groups"] == ["/panda", "/panda/production"]

    logout = panda("logout", as_user=None)
    assert logout.code == 0 and logout.out == f"Signed out (the sign-in is revoked): removed {token_path}.\n"
    assert not token_path.exists()
    refresh = httpx.post(f"{iam.issuer}/token", data={"grant_type": "refresh_token", "client_id": "panda-cli",
                                                      "refresh_token": record["refresh_token"]})
    assert refresh.status_code == 400 and refresh.json()["error"] == "invalid_grant"
    signed_out = panda("whoami", as_user=None)
    assert signed_out.code == 4 and "UNAUTHENTICATED" in signed_out.err and "panda login" in signed_out.err
    assert panda("logout", as_user=None).out == "not signed in\n"


def test_login_denied_or_expired(iam: Iam, start_login: Callable[[], Login], config_home: Path) -> None:
    login = start_login()
    _, url = login.code_and_url()
    _, done = sign_in_and_decide(url, "bob", "bob-password", decision="deny")
    assert "Denied" in done.text
    result = login.finish()
    assert result.code == 4
    assert result.err == "panda: sign-in denied: the request was denied in the browser; nothing was saved\n"
    assert not (config_home / "panda-mesh" / "token.json").exists()

    login = start_login()
    user_code, url = login.code_and_url()
    with iam.db().begin() as conn:
        conn.execute(text("UPDATE iam_device_codes SET expire_time = :t WHERE user_code = :c"),
                     {"t": datetime.now(UTC) - timedelta(seconds=1), "c": user_code})
    result = login.finish()
    assert result.code == 4
    assert result.err == "panda: sign-in expired: the code was not approved in time; run `panda login` again\n"
    browser = Browser()
    late = browser.submit(browser.open(url), {"username": "bob", "password": "bob-password"})
    assert late.status == 400 and "This code has expired. Run `panda login` again" in late.text
    browser.close()


def sign_in_works(iam: Iam, user: str, password: str) -> bool:
    """Whether `user` gets past the device page's sign-in (to the approval step)."""
    start = httpx.post(f"{iam.issuer}/device_authorization", data={"client_id": "panda-cli"}).json()
    browser = Browser()
    try:
        page = browser.submit(browser.open(start["verification_uri_complete"]),
                              {"username": user, "password": password})
        return "Approve this sign-in?" in page.text
    finally:
        browser.close()


def test_iam_admin_commands(iam: Iam, panda: Panda) -> None:
    missing = panda("iam", "user", "add", "carol", "--group", "/panda/nope")
    assert missing.code == 3
    assert missing.err == ("panda: NOT_FOUND: group /panda/nope does not exist "
                           "(create it first: panda iam group add /panda/nope)\n")
    bad = panda("iam", "user", "add", "Carol!")
    assert bad.code == 1 and bad.err.startswith("panda: INVALID_ARGUMENT: 'Carol!' is not a user name")

    added = panda("iam", "group", "add", "/panda/higgs", "--description", "Higgs analyses")
    assert added.out == "created group /panda/higgs\n"
    created = panda("iam", "user", "add", "carol", "--display-name", "Carol Chen", "--email", "carol@example.org",
                    "--group", "/panda", "--password-stdin", stdin="carol-password\n")
    assert created.code == 0, created.err
    assert created.out == "created user carol (groups: /panda)\n"
    assert panda("iam", "member", "add", "carol", "/panda/higgs").out == "carol is in: /panda, /panda/higgs\n"

    listed = panda("iam", "user", "list")
    assert listed.out.splitlines()[0].split() == ["USER", "NAME", "EMAIL", "GROUPS", "PASSWORD", "STATUS"]
    carol_row = next(re.split(r"\s{2,}", line) for line in listed.out.splitlines() if line.startswith("carol "))
    assert carol_row == ["carol", "Carol Chen", "carol@example.org", "/panda, /panda/higgs", "yes", "enabled"]
    shown = json.loads(panda("iam", "user", "show", "carol", "--json").out)
    assert shown["user_id"] == "carol" and shown["has_password"] and "password" not in shown
    groups = panda("iam", "group", "list").out
    assert re.search(r"^/panda/higgs\s+1\s+Higgs analyses$", groups, flags=re.M)
    assert re.search(r"^/panda/admin\s+1\s+-$", groups, flags=re.M)

    assert sign_in_works(iam, "carol", "carol-password")
    disabled = panda("iam", "user", "set", "carol", "--disable")
    assert re.search(r"^status:\s+disabled$", disabled.out, flags=re.M)
    assert not sign_in_works(iam, "carol", "carol-password")
    panda("iam", "user", "set", "carol", "--enable", "--password-stdin", stdin="new-carol-password\n")
    assert sign_in_works(iam, "carol", "new-carol-password") and not sign_in_works(iam, "carol", "carol-password")

    assert panda("iam", "member", "remove", "carol", "/panda/higgs").out == "carol is in: /panda\n"
    assert panda("iam", "group", "delete", "/panda/higgs").out == "deleted group /panda/higgs\n"
    assert panda("iam", "user", "delete", "carol").out == "deleted user carol\n"
    gone = panda("iam", "user", "show", "carol")
    assert gone.code == 3 and gone.err == "panda: NOT_FOUND: user carol not found\n"


def test_iam_client_and_key_commands(iam: Iam, panda: Panda) -> None:
    added = panda("iam", "client", "add", "site2-pilot", "--group", "/panda/pilot", "--queue", "local")
    assert added.code == 0, added.err
    lines = added.out.splitlines()
    assert lines[0] == "created confidential client site2-pilot"
    assert lines[1] == "client secret of site2-pilot (shown once; keep it where only the robot reads it):"
    secret = lines[2]

    def token(client_secret: str) -> httpx.Response:
        return httpx.post(f"{iam.issuer}/token", data={"grant_type": "client_credentials"},
                          auth=("site2-pilot", client_secret))

    robot = verify(iam, token(secret).json()["access_token"])
    assert robot.subject == "site2-pilot" and robot.queues == {"local"} and robot.grants == {("panda", "pilot")}

    reset = panda("iam", "client", "reset-secret", "site2-pilot")
    new_secret = reset.out.splitlines()[-1]
    assert new_secret != secret
    assert token(secret).status_code == 401 and token(new_secret).status_code == 200

    listed = panda("iam", "client", "list").out
    assert re.search(r"^panda-cli\s+public\s+device_code, refresh_token\s+-\s+-\s+enabled$", listed, flags=re.M)
    assert re.search(r"^site2-pilot\s+confidential\s+client_credentials\s+/panda/pilot\s+local\s+enabled$",
                     listed, flags=re.M)
    shown = panda("iam", "client", "show", "panda-cli").out
    assert re.search(r"^type:\s+public$", shown, flags=re.M)
    public = panda("iam", "client", "reset-secret", "panda-cli")
    assert public.code == 1 and "FAILED_PRECONDITION: client panda-cli is public: it has no secret" in public.err
    assert panda("iam", "client", "delete", "site2-pilot").out == "deleted client site2-pilot\n"
    assert token(new_secret).status_code == 401

    before = jwt.get_unverified_header(iam.token("bob"))["kid"]
    rotated = panda("iam", "key", "rotate")
    assert rotated.code == 0, rotated.err
    new_kid = re.match(r"new signing key (\S+); the JWKS now publishes:", rotated.out)
    assert new_kid and new_kid.group(1) != before
    assert re.search(rf"^{re.escape(new_kid.group(1))}\s+active\s", rotated.out, flags=re.M)
    assert re.search(rf"^{re.escape(before)}\s+retired\s", rotated.out, flags=re.M)
    assert panda("whoami", as_user="bob").code == 0  # a token signed before the rotation still works


def test_iam_commands_need_an_admin(panda: Panda) -> None:
    refused = panda("iam", "user", "list", as_user="alice")
    assert refused.code == 4
    assert refused.err == ("panda: PERMISSION_DENIED: alice may not call ListUsers: it needs one of the roles "
                           "admin (holds: production, user)\n")
    anonymous = panda("iam", "key", "rotate", as_user=None)
    assert anonymous.code == 4 and anonymous.err.startswith("panda: UNAUTHENTICATED: ")
    assert "sign in with `panda login`" in anonymous.err
