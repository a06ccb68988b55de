"""Who a request comes from: the address of the connection's peer, or, when the peer is one of
the trusted proxies (PANDA_IAM_TRUSTED_PROXIES, none by default), the client it names in
X-Forwarded-For (uvicorn's proxy-headers middleware rewrites the peer before the app sees it;
server.py configures it)."""

from __future__ import annotations

from starlette.requests import Request

from iam_svc.domain.throttle import client_key

__all__ = ["client_address"]


def client_address(request: Request) -> str:
    """The key the throttles count this request's client under (domain.throttle.client_key)."""
    return client_key(request.client.host if request.client else None)
