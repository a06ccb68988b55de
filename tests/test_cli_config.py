"""The command line's settings file, `~/.config/panda-mesh/config.toml` (`panda.toml`, its former
name, still read with a notice): flags win over the environment, which wins over the file;
`panda config show` says each value and where it came from; the file's default queue and output
format are what commands use when no flag says otherwise (against a real server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from panda.server.v1 import queue_pb2, queue_service_pb2
from panda_cli.main import main
from tests.server_support import QueueStubs
from tools.cluster import ServerHandle

# Settings a developer's or the fixtures' environment might set, which these tests set themselves.
OWN_VARIABLES = ("PANDA_CONFIG_FILE", "PANDA_SERVER", "PANDA_SERVER_ADDRESS", "PANDA_JEDI", "PANDA_JEDI_ADDRESS",
                 "PANDA_IAM", "PANDA_IAM_ADDRESS", "PANDA_GATEWAY", "PANDA_GATEWAY_ADDRESS", "PANDA_DEFAULT_QUEUE",
                 "PANDA_OUTPUT_FORMAT", "PANDA_DATA_DIR")


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The configuration directory, empty; the settings file goes in it."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in OWN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    directory = tmp_path / "config" / "panda-mesh"
    directory.mkdir(parents=True)
    return directory


def panda(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def shown(out: str) -> dict[str, dict[str, str]]:
    """`panda config show --json`'s settings by name."""
    return {s["name"]: s for s in json.loads(out)["settings"]}


def table_rows(out: str) -> dict[str, list[str]]:
    """`panda config show`'s table: setting -> [value, from]."""
    rows = {}
    for line in out.splitlines()[2:]:
        name, rest = line.split(maxsplit=1) if " " in line else (line, "")
        value, _, source = rest.rpartition("  ")
        rows[name] = [value.strip(), source.strip()]
    return rows


def test_config_show_says_each_value_and_where_it_came_from(
    config_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_dir / "config.toml"
    config.write_text(
        'server_address = "file.example:1"\n'
        "[cli]\n"
        'jedi_address = "file.example:2"\n'
        'iam_address = "file.example:3"\n'
        'default_queue = "local-b"\n'
        'output_format = "json"\n'
    )
    monkeypatch.setenv("PANDA_IAM", "env.example:4")
    monkeypatch.setenv("PANDA_TOKEN", "a-secret-token")

    # The file says json: no --json needed.
    code, out, err = panda(capsys, "config", "show", "--server", "flag.example:5")
    assert (code, err) == (0, "")
    assert json.loads(out)["settings_file"] == str(config)
    settings = shown(out)
    expected = {
        "server_address": ("flag.example:5", "flag", "--server"),
        "jedi_address": ("file.example:2", "file", "[cli]"),
        "iam_address": ("env.example:4", "environment", "PANDA_IAM"),
        "default_queue": ("local-b", "file", "[cli]"),
        "output_format": ("json", "file", "[cli]"),
        "token": ("(set)", "environment", "PANDA_TOKEN"),
        "client_secret": ("", "default", ""),
        "data_dir": (str(Path.home() / ".local" / "share" / "panda-mesh"), "default", ""),
    }
    for name, (value, source, origin) in expected.items():
        assert (name, settings[name]["value"], settings[name]["source"], settings[name]["origin"]) == (
            name, value, source, origin)
    assert "a-secret-token" not in out

    # The environment wins over the file, a flag over both; --no-json over the file's json.
    monkeypatch.setenv("PANDA_SERVER", "env.example:6")
    code, out, err = panda(capsys, "--no-json", "config", "show")
    assert code == 0, err
    assert out.splitlines()[0] == f"settings file: {config}"
    rows = table_rows(out)
    assert rows["server_address"] == ["env.example:6", "environment PANDA_SERVER"]
    assert rows["output_format"] == ["table", "flag --no-json"]
    assert rows["jedi_address"] == ["file.example:2", "file [cli]"]
    assert rows["default_queue"] == ["local-b", "file [cli]"]
    code, out, _ = panda(capsys, "--server", "flag.example:7", "config", "show", "--jedi", "flag.example:8")
    settings = shown(out)
    assert settings["server_address"]["value"] == "flag.example:7" and settings["server_address"]["source"] == "flag"
    assert settings["jedi_address"]["value"] == "flag.example:8" and settings["jedi_address"]["origin"] == "--jedi"

    # Nothing set anywhere: the defaults, and where the file would be.
    config.unlink()
    for name in ("PANDA_IAM", "PANDA_SERVER"):
        monkeypatch.delenv(name)
    code, out, _ = panda(capsys, "config", "show")
    assert out.splitlines()[0] == f"settings file: none ({config} does not exist)"
    rows = table_rows(out)
    assert rows["server_address"] == ["127.0.0.1:25080", "default"]
    assert rows["output_format"] == ["table", "default"]


def test_the_gateways_address_is_a_setting_of_the_command_line(
    config_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The settings file's [cli] may say where the gateway is; `panda config show` says it and
    where it came from, the environment winning over the file."""
    code, out, _ = panda(capsys, "config", "show")
    assert (code, table_rows(out)["gateway_address"]) == (0, ["127.0.0.1:25380", "default"])
    config = config_dir / "config.toml"
    config.write_text('[cli]\ngateway_address = "file.example:25380"\n')
    code, out, err = panda(capsys, "config", "show", "--json")
    assert code == 0, err
    gateway = shown(out)["gateway_address"]
    assert (gateway["value"], gateway["source"], gateway["origin"]) == ("file.example:25380", "file", "[cli]")
    code, out, _ = panda(capsys, "config", "show")
    assert table_rows(out)["gateway_address"] == ["file.example:25380", "file [cli]"]
    # The top level of the file is every part's, the command line's too.
    config.write_text('gateway_address = "top.example:1"\n')
    code, out, _ = panda(capsys, "config", "show", "--json")
    assert shown(out)["gateway_address"]["value"] == "top.example:1"
    assert shown(out)["gateway_address"]["origin"] == "(top level)"
    for variable in ("PANDA_GATEWAY", "PANDA_GATEWAY_ADDRESS"):
        monkeypatch.setenv(variable, "env.example:2")
        code, out, _ = panda(capsys, "config", "show")
        assert table_rows(out)["gateway_address"] == ["env.example:2", f"environment {variable}"]
        monkeypatch.delenv(variable)


def test_a_bad_value_in_the_file_is_one_clear_line(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (config_dir / "config.toml").write_text('[cli]\noutput_format = "yaml"\n')
    code, out, err = panda(capsys, "config", "show")
    assert (code, out) == (1, "")
    assert err.startswith("panda: bad configuration in the PANDA_* environment or the settings file:")
    assert "output_format" in err and "Traceback" not in err


def test_the_former_file_name_is_read_with_a_one_line_notice(config_dir: Path) -> None:
    def config_show() -> subprocess.CompletedProcess[str]:
        env = {key: value for key, value in os.environ.items() if key not in OWN_VARIABLES}
        return subprocess.run([sys.executable, "-m", "panda_cli.main", "config", "show", "--json"],
                              capture_output=True, text=True, timeout=60, env=env)

    former = config_dir / "panda.toml"
    former.write_text('[cli]\ndefault_queue = "old-name"\n')
    result = config_show()
    assert result.returncode == 0, result.stderr
    assert shown(result.stdout)["default_queue"]["value"] == "old-name"
    # Once, however many times the process reads its settings.
    assert result.stderr == (f"panda: reading {former}: the settings file is now called config.toml; "
                             f"rename it to {config_dir / 'config.toml'}\n")
    (config_dir / "config.toml").write_text('[cli]\ndefault_queue = "new-name"\n')
    result = config_show()
    assert (result.returncode, result.stderr) == (0, "")
    assert shown(result.stdout)["default_queue"]["value"] == "new-name"


def test_the_files_default_queue_and_output_format_are_used(
    server: ServerHandle, local_queue: str, queues_stub: QueueStubs, config_dir: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (config_dir / "config.toml").write_text('[cli]\ndefault_queue = "local"\noutput_format = "json"\n')
    code, out, err = panda(capsys, "--server", server.address, "submit", "--", "echo", "hi")
    assert code == 0, err
    job_id = json.loads(out)["job_id"]
    jobs_file = tmp_path / "jobs.yaml"
    jobs_file.write_text("jobs:\n  - command: [echo, from-the-file]\n")
    code, out, err = panda(capsys, "submit", "-f", str(jobs_file), "--server", server.address)
    assert code == 0, err
    file_job_id = json.loads(out)["job_ids"][0]
    code, out, err = panda(capsys, "--server", server.address, "jobs")
    assert code == 0, err
    listed = {int(job["job_id"]): job["queue"] for job in json.loads(out)["jobs"]}
    assert listed == {job_id: "local", file_job_id: "local"}
    code, out, _ = panda(capsys, "--server", server.address, "jobs", "--no-json")
    assert out.splitlines()[0].split()[:3] == ["ID", "STATE", "QUEUE"] and len(out.splitlines()) == 4

    # `panda dataset register` puts the files on the default queue's storage element.
    queues_stub.CreateQueue(queue_service_pb2.CreateQueueRequest(
        queue=queue_pb2.Queue(queue_id="bare", status=queue_pb2.Queue.STATUS_ONLINE)), timeout=10)
    (config_dir / "config.toml").write_text('[cli]\ndefault_queue = "bare"\n')
    data = tmp_path / "events.txt"
    data.write_text("1\n")
    code, out, err = panda(capsys, "--server", server.address, "dataset", "register", "user.me.ds", str(data))
    assert (code, out, err) == (2, "", "panda: queue bare has no storage element; give --se NAME\n")
    # A flag wins over the file.
    code, out, err = panda(capsys, "--server", server.address, "submit", "--queue", "bare", "--", "true")
    assert code == 0 and out.strip().isdigit(), err
