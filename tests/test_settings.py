"""Settings per part: the README documents every variable; the settings file is read beside
the environment, the environment winning; each part holds only its own settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from jedi_svc.settings import JediSettings
from panda_cli.main import main as panda
from panda_cli.settings import CliSettings
from panda_runtime.settings import SettingsFileError
from pilot_agent.settings import PilotSettings
from server_svc.settings import ServerSettings
from tools import settings_doc


def test_the_readme_table_is_made_from_the_settings_classes() -> None:
    readme = settings_doc.README.read_text()
    assert settings_doc.with_table(readme) == readme, "run `python -m tools.settings_doc --write`"
    for variable in ("PANDA_METRICS_HOST", "PANDA_MAX_SUBMIT_BATCH", "PANDA_DISPATCH_POLL_SECONDS", "PANDA_WORKER_ID"):
        assert f"`{variable}`" in settings_doc.table()


def test_each_part_reads_only_its_own_settings() -> None:
    assert "heartbeat_timeout_seconds" not in PilotSettings.model_fields
    assert "database_url" not in PilotSettings.model_fields
    assert "jedi_submit_batch" not in ServerSettings.model_fields
    assert "heartbeat_timeout_seconds" not in JediSettings.model_fields
    assert "auth_mode" not in CliSettings.model_fields


@pytest.fixture
def settings_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "panda.toml"
    monkeypatch.setenv("PANDA_CONFIG_FILE", str(path))
    for name in ("PANDA_HEARTBEAT_TIMEOUT_SECONDS", "PANDA_DATABASE_URL", "PANDA_SERVER", "PANDA_SERVER_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    return path


def test_the_file_sets_what_the_environment_does_not(settings_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings_file.write_text(
        'database_url = "postgresql://panda@db/panda"\n'
        "heartbeat_timeout_seconds = 100\n"
        'server_address = "files.example:1"\n'
        "[server]\nheartbeat_timeout_seconds = 200\n"
        "[jedi]\njedi_submit_batch = 7\n"
    )
    server = ServerSettings()
    assert server.database_url == "postgresql://panda@db/panda"
    assert server.heartbeat_timeout_seconds == 200  # the part's section beats the top level
    assert server.server_address == "files.example:1"
    assert JediSettings().jedi_submit_batch == 7
    assert JediSettings().database_url == "postgresql://panda@db/panda"
    monkeypatch.setenv("PANDA_HEARTBEAT_TIMEOUT_SECONDS", "300")
    monkeypatch.setenv("PANDA_SERVER", "env.example:2")
    server = ServerSettings()
    assert server.heartbeat_timeout_seconds == 300  # the environment wins
    assert server.server_address == "env.example:2"


def test_a_key_the_section_does_not_know_is_named(settings_file: Path) -> None:
    settings_file.write_text("[server]\nheartbeat_timeout = 10\n")
    with pytest.raises(SettingsFileError, match=r"\[server\] has no setting heartbeat_timeout"):
        ServerSettings()


def test_the_command_line_says_what_is_wrong_with_the_file(
    settings_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings_file.write_text("[cli]\nserver = 1\nnonsense = true\n")
    assert panda(["jobs"]) == 1
    assert "[cli] has no setting nonsense" in capsys.readouterr().err


def test_a_named_file_that_is_missing_is_an_error(settings_file: Path) -> None:
    with pytest.raises(SettingsFileError, match="no such file"):
        PilotSettings()


def test_the_pilot_and_the_command_line_import_no_database_layer_and_no_service() -> None:
    code = (
        "import sys, pilot_agent.cli, panda_cli.main; panda_cli.main.build_parser(); "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('sqlalchemy', 'alembic', 'psycopg', 'server_svc', 'jedi_svc', 'iam_svc') "
        "or m.startswith('panda_runtime.service')); print(bad)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
