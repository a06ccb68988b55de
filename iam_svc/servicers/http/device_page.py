"""/device, the verification page: the person enters the code and signs in, then sees what they
approve. Every field is checked before anything else (400 naming it); sign-in failures and
unknown codes are throttled by the client's address and by the code (domain.throttle), never
by the account, so nobody can lock another person out."""

from __future__ import annotations

import asyncio
import math
import time

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from iam_svc.domain import codes, device
from iam_svc.domain.device import Decision
from iam_svc.domain.form_fields import DEVICE_PAGE_FIELDS, FieldError
from iam_svc.domain.throttle import Refusal, SignInThrottle, Throttled
from iam_svc.logic import metrics
from iam_svc.logic.provider import Provider
from iam_svc.servicers.http import pages
from iam_svc.servicers.http.forms import CSRF_COOKIE, FormGuard, parse_form, read_form
from iam_svc.servicers.http.peers import client_address
from panda_runtime.service.db import DbRunner, now

__all__ = ["PAGE_HEADERS", "DevicePages"]

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
PAGE_HEADERS = {
    **NO_STORE,
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}

_EXPIRED = "This code has expired. Run `panda login` again to get a new one."
_ALREADY_DECIDED = "This code was already approved or denied. Run `panda login` again if you need a new one."
# What the person reads when a code can no longer be decided (device.decide).
_CODE_PROBLEMS = {Decision.EXPIRED: _EXPIRED, Decision.ALREADY_DECIDED: _ALREADY_DECIDED}
_BAD_CODE = "That code is not valid. Check it against the one your terminal shows (8 letters, such as WDJB-MJHT)."
# What the person reads when throttled; {wait} is "N minutes" or "N seconds".
_THROTTLED = {
    Throttled.SIGN_IN_FAILURES: "Too many failed sign-ins from your address. Try again in {wait}.",
    Throttled.USER_CODE_MISSES: "Too many codes that do not exist were entered from your address. "
                                "Try again in {wait}.",
    Throttled.CODE_FAILURES: "Too many failed sign-ins with this code. Run `panda login` again for a new code, "
                             "or try again in {wait}.",
}


def _wait_text(refusal: Refusal) -> str:
    seconds = refusal.retry_after_seconds
    if seconds < 120:
        return f"{seconds} seconds"
    return f"{math.ceil(seconds / 60)} minutes"


class DevicePages:
    def __init__(self, db: DbRunner, provider: Provider, guard: FormGuard, throttle: SignInThrottle) -> None:
        self._db = db
        self._provider = provider
        self._guard = guard
        self._throttle = throttle
        # Behind https, the cookie never travels over plain http.
        self._secure_cookie = provider.issuer.startswith("https://")

    async def page(self, request: Request) -> Response:
        browser_id = request.cookies.get(CSRF_COOKIE) or self._guard.new_browser_id()
        try:
            if request.method == "GET":
                query = parse_form(request.scope.get("query_string", b""), DEVICE_PAGE_FIELDS)
            else:
                form = await read_form(request, DEVICE_PAGE_FIELDS)
        except FieldError as error:
            return self._html(pages.error_page("Not accepted", str(error)), browser_id, status=400)
        if request.method == "GET":
            typed = query.get("user_code", "")
            return self._html(pages.sign_in_page(csrf_token=self._guard.csrf_token(browser_id),
                                                 user_code=codes.normalize_user_code(typed) or typed), browser_id)
        if not self._guard.check_csrf(request.cookies.get(CSRF_COOKIE), form.get("csrf_token")):
            return self._html(pages.error_page(
                "Form expired", "This form has expired or did not come from this page. Reload the page and try "
                "again (cookies must be enabled)."), browser_id, status=403)
        if form.get("step") == "decide":
            return await self._decide(form, browser_id)
        return await self._sign_in(form, browser_id, client_address(request))

    async def _sign_in(self, form: dict[str, str], browser_id: str, address: str) -> Response:
        typed_code, user_name = form.get("user_code", ""), form.get("username", "").strip()
        csrf = self._guard.csrf_token(browser_id)

        def again(error: str, status: int, refusal: Refusal | None = None) -> Response:
            headers = {"Retry-After": str(refusal.retry_after_seconds)} if refusal else {}
            return self._html(pages.sign_in_page(csrf_token=csrf, user_code=typed_code, user_name=user_name,
                                                 error=error), browser_id, status=status, headers=headers)

        def throttled(refusal: Refusal) -> Response:
            metrics.sign_in_failed("throttled")
            return again(_THROTTLED[refusal.why].format(wait=_wait_text(refusal)), 429, refusal)

        refusal = self._throttle.before_code(address, time.monotonic())
        if refusal is not None:
            return throttled(refusal)
        user_code = codes.normalize_user_code(typed_code)
        found = await self._db.run(self._provider.pending_device_code, user_code) if user_code else None
        if user_code is None or found is None:
            self._throttle.unknown_code(address, time.monotonic())
            metrics.sign_in_failed("device_code")
            return again(_BAD_CODE, 400)
        problem = _CODE_PROBLEMS.get(device.decide(found, now()))
        if problem:
            return again(problem, 400)
        refusal = self._throttle.before_password(found.user_code, time.monotonic())
        if refusal is not None:
            return throttled(refusal)
        user = await asyncio.to_thread(self._provider.sign_in, user_name, form.get("password", ""))
        if user is None:
            self._throttle.sign_in_failed(address, found.user_code, time.monotonic())
            metrics.sign_in_failed("password")
            return again("Wrong username or password.", 401)
        client = await self._db.run(self._provider.find_client, found.client_id)
        return self._html(pages.consent_page(
            csrf_token=csrf, ticket=self._guard.ticket(browser_id, found.user_code, user.name),
            user_name=user.name, display_name=user.display_name, user_code=found.user_code,
            client_id=found.client_id, client_description=client.description if client else "",
            scopes=found.scope.split(), groups=user.groups), browser_id)

    async def _decide(self, form: dict[str, str], browser_id: str) -> Response:
        opened = self._guard.open_ticket(browser_id, form.get("ticket"))
        if opened is None:
            return self._html(pages.error_page("Sign-in expired", "Too much time passed since you signed in, or "
                                               "the form was altered. Sign in again."), browser_id, status=400)
        user_code, user_name = opened
        decision = form.get("decision")
        if decision not in ("approve", "deny"):
            return self._html(pages.error_page("Choose", "Choose Approve or Deny."), browser_id, status=400)
        approve = decision == "approve"
        found = await self._db.run(self._provider.pending_device_code, user_code)
        outcome = await self._db.run(self._provider.decide_device_code, user_code, user_name, approve)
        if outcome is Decision.EXPIRED:
            return self._html(pages.error_page("Code expired", _EXPIRED, retry=False), browser_id, status=400)
        if outcome is not Decision.DONE:
            return self._html(pages.error_page("Code already used", _ALREADY_DECIDED, retry=False), browser_id,
                              status=400)
        return self._html(pages.result_page(approved=approve, client_id=found.client_id if found else ""),
                          browser_id)

    def _html(self, text: str, browser_id: str, status: int = 200,
              headers: dict[str, str] | None = None) -> HTMLResponse:
        response = HTMLResponse(text, status_code=status, headers={**PAGE_HEADERS, **(headers or {})})
        # Strict: a form posted from another site arrives without it, so its CSRF check fails.
        response.set_cookie(CSRF_COOKIE, browser_id, httponly=True, samesite="strict", path="/",
                            secure=self._secure_cookie)
        return response
