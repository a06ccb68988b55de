"""Where `panda up`'s companions listen: their own variables when set; else beside a server at
its default address, their defaults; else 100 (JEDI), 200 (identity service) and 300 (gateway)
above the server's ports."""

from __future__ import annotations

import pytest

from panda_cli.local_mesh import gateway_endpoints, iam_endpoints, jedi_endpoints
from server_svc.settings import ServerSettings

COMPANION_VARIABLES = ("PANDA_JEDI", "PANDA_JEDI_ADDRESS", "PANDA_JEDI_METRICS_PORT", "PANDA_IAM",
                       "PANDA_IAM_ADDRESS", "PANDA_IAM_HTTP_PORT", "PANDA_IAM_METRICS_PORT", "PANDA_GATEWAY",
                       "PANDA_GATEWAY_ADDRESS", "PANDA_GATEWAY_METRICS_PORT", "PANDA_METRICS_PORT")


@pytest.fixture(autouse=True)
def no_companion_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in COMPANION_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_beside_a_server_at_its_defaults_the_companions_take_theirs() -> None:
    server = ServerSettings()
    assert jedi_endpoints(server, "127.0.0.1:25080") == ("127.0.0.1:25180", 25190)
    assert iam_endpoints(server, "127.0.0.1:25080") == ("127.0.0.1:25280", 25281, 25290)
    assert gateway_endpoints(server, "127.0.0.1:25080") == ("127.0.0.1:25380", 25390)


def test_beside_a_server_elsewhere_they_move_with_it() -> None:
    server = ServerSettings(metrics_port=31090)
    assert jedi_endpoints(server, "127.0.0.1:31080") == ("127.0.0.1:31180", 31190)
    assert iam_endpoints(server, "127.0.0.1:31080") == ("127.0.0.1:31280", 31281, 31290)
    assert gateway_endpoints(server, "127.0.0.1:31080") == ("127.0.0.1:31380", 31390)
    # Past the last port: the default.
    assert gateway_endpoints(server, "127.0.0.1:65300")[0] == "127.0.0.1:25380"


def test_their_own_variables_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PANDA_JEDI", "127.0.0.1:4001")
    monkeypatch.setenv("PANDA_JEDI_METRICS_PORT", "4002")
    monkeypatch.setenv("PANDA_IAM", "127.0.0.1:4003")
    monkeypatch.setenv("PANDA_IAM_HTTP_PORT", "4004")
    monkeypatch.setenv("PANDA_IAM_METRICS_PORT", "4005")
    monkeypatch.setenv("PANDA_GATEWAY", "127.0.0.1:4006")
    monkeypatch.setenv("PANDA_GATEWAY_METRICS_PORT", "4007")
    server = ServerSettings(metrics_port=31090)
    assert jedi_endpoints(server, "127.0.0.1:31080") == ("127.0.0.1:4001", 4002)
    assert iam_endpoints(server, "127.0.0.1:31080") == ("127.0.0.1:4003", 4004, 4005)
    assert gateway_endpoints(server, "127.0.0.1:31080") == ("127.0.0.1:4006", 4007)


def test_metrics_off_for_the_server_are_off_for_the_companions() -> None:
    server = ServerSettings(metrics_port=0)
    assert jedi_endpoints(server, "127.0.0.1:31080")[1] == 0
    assert iam_endpoints(server, "127.0.0.1:31080")[2] == 0
    assert gateway_endpoints(server, "127.0.0.1:31080")[1] == 0
