"""The sign-in pages (the device verification page, the authorization endpoint's sign-in):
plain server-rendered HTML, no script, nothing fetched from elsewhere, one column that fits a
phone. Every value from a user or the database goes through html.escape."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

__all__ = ["authorize_error_page", "authorize_page", "consent_page", "error_page", "result_page", "sign_in_page"]

SCOPE_MEANINGS = {
    "openid": "know who you are (your user name)",
    "profile": "see your name",
    "email": "see your e-mail address",
    "offline_access": "stay signed in: renew its access without asking you again",
    "wlcg": "use tokens of the WLCG profile",
    "wlcg.groups": "act with your groups",
}

_STYLE = """
body{font-family:system-ui,sans-serif;background:#f4f5f7;color:#1d2330;margin:0}
main{max-width:28rem;margin:3rem auto;background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 4px #0002}
h1{font-size:1.1rem;color:#556;margin:0 0 1rem}h2{font-size:1.4rem;margin:0 0 1rem}
label{display:block;margin:.8rem 0}input{display:block;width:100%;box-sizing:border-box;padding:.5rem;
font-size:1rem;margin-top:.3rem}button{font-size:1rem;padding:.55rem 1.2rem;margin:1rem .5rem 0 0;cursor:pointer}
@media (max-width:30rem){main{margin:0;border-radius:0;box-shadow:none;padding:1.2rem}
button{width:100%;margin:.6rem 0 0}}
.muted{color:#667;font-size:.9rem;word-break:break-all}
.error{background:#fde8e8;color:#8a1c1c;padding:.7rem;border-radius:4px}
.ok{background:#e6f4ea;color:#1e4620;padding:.7rem;border-radius:4px}
.code{font-family:monospace;font-size:1.2rem;letter-spacing:.1rem}
"""


def page(title: str, body: str) -> str:
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
        f"<title>{escape(title)} · PanDA mesh</title><style>{_STYLE}</style></head>"
        f"<body><main><h1>PanDA mesh sign-in</h1>{body}</main></body></html>\n"
    )


def _hidden(name: str, value: str) -> str:
    return f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'


def sign_in_page(*, csrf_token: str, user_code: str = "", user_name: str = "", error: str = "") -> str:
    message = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    return page("Sign in", (
        "<h2>Sign in to approve a device</h2>"
        f"{message}"
        "<p>Enter the code your terminal shows, then sign in.</p>"
        '<form method="post" action="device">'
        f"{_hidden('step', 'sign_in')}{_hidden('csrf_token', csrf_token)}"
        '<label>Code <input name="user_code" class="code" autocomplete="off" autocapitalize="characters" '
        f'placeholder="WDJB-MJHT" required value="{escape(user_code)}"></label>'
        '<label>Username <input name="username" autocomplete="username" autocapitalize="none" required '
        f'value="{escape(user_name)}"></label>'
        '<label>Password <input type="password" name="password" autocomplete="current-password" required></label>'
        '<button type="submit">Sign in</button></form>'
    ))


def consent_page(*, csrf_token: str, ticket: str, user_name: str, display_name: str, user_code: str,
                 client_id: str, client_description: str, scopes: Sequence[str], groups: Sequence[str]) -> str:
    who = escape(user_name) + (f" ({escape(display_name)})" if display_name and display_name != user_name else "")
    client = f"<b>{escape(client_id)}</b>" + (f" ({escape(client_description)})" if client_description else "")
    wanted = "".join(f"<li>{escape(SCOPE_MEANINGS.get(s, s))} <small>({escape(s)})</small></li>" for s in scopes)
    group_list = ", ".join(escape(g) for g in groups) or "none"
    return page("Approve", (
        "<h2>Approve this sign-in?</h2>"
        f"<p>Signed in as <b>{who}</b>.</p>"
        f"<p>{client} asks, for the device showing code <span class=\"code\">{escape(user_code)}</span>, to:</p>"
        f"<ul>{wanted}</ul>"
        f"<p>Your groups, which decide what it may do: {group_list}.</p>"
        "<p>Approve only if you started this yourself (for example with <code>panda login</code>) and the code "
        "matches the one your terminal shows.</p>"
        '<form method="post" action="device">'
        f"{_hidden('step', 'decide')}{_hidden('csrf_token', csrf_token)}{_hidden('ticket', ticket)}"
        '<button type="submit" name="decision" value="approve">Approve</button>'
        '<button type="submit" name="decision" value="deny">Deny</button></form>'
    ))


def result_page(*, approved: bool, client_id: str) -> str:
    if approved:
        body = ('<h2>Approved</h2><p class="ok">The device is signed in. You can close this page and go back to '
                f"your terminal: {escape(client_id)} now has its tokens.</p>")
    else:
        body = ('<h2>Denied</h2><p class="ok">Nothing was signed in. The program that asked will stop waiting.</p>')
    return page("Done", body)


def error_page(title: str, message: str, *, retry: bool = True) -> str:
    again = '<p><a href="device">Start again</a></p>' if retry else ""
    return page(title, f'<h2>{escape(title)}</h2><p class="error" role="alert">{escape(message)}</p>{again}')


def authorize_page(*, csrf_token: str, request: Mapping[str, str], client_id: str, client_description: str,
                   return_to: str, user_name: str = "", error: str = "") -> str:
    """The authorization endpoint's sign-in: the authorization request rides along in hidden
    fields (it is checked anew when the form comes back); Cancel sends the person back to the
    client with access_denied."""
    message = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    client = escape(client_description or client_id)
    hidden = "".join(_hidden(name, value) for name, value in request.items())
    return page("Sign in", (
        f"<h2>Sign in to {client}</h2>"
        f"{message}"
        '<form method="post" action="authorize">'
        f"{hidden}{_hidden('csrf_token', csrf_token)}"
        '<label>Username <input name="username" autocomplete="username" autocapitalize="none" '
        f'autocorrect="off" spellcheck="false" required autofocus value="{escape(user_name)}"></label>'
        '<label>Password <input type="password" name="password" autocomplete="current-password" required></label>'
        '<button type="submit" name="decision" value="sign_in">Sign in</button>'
        '<button type="submit" name="decision" value="cancel" formnovalidate>Cancel</button></form>'
        f'<p class="muted">You will be sent back to {escape(return_to)}</p>'
    ))


def authorize_error_page(title: str, message: str) -> str:
    """An authorization request that cannot go back to its client (unknown client, redirect URI
    not registered): the person reads why, and is sent nowhere."""
    return page(title, f'<h2>{escape(title)}</h2><p class="error" role="alert">{escape(message)}</p>'
                       "<p>Go back to the page you came from and try again, or tell its administrators.</p>")
