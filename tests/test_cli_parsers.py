"""The `panda` command's parsers, run as a user runs them: a misspelled or abbreviated flag is
reported with the usage of the command it was given to (exit 2), in every group; each command
offers only the address flags of the services it calls, and refuses another's with its usage;
`panda pilot` hands every argument to the pilot's own parser."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator

import pytest

from panda_cli.main import build_parser, parse_args


def panda(*argv: str) -> subprocess.CompletedProcess[str]:
    # Port 1: a command that got past its parser would fail to reach the server instead.
    return subprocess.run([sys.executable, "-m", "panda_cli.main", "--server", "127.0.0.1:1", *argv],
                          capture_output=True, text=True, timeout=60)


def usage_error(result: subprocess.CompletedProcess[str]) -> tuple[int, str, str, str]:
    """Exit code, stdout, the usage line's start and the error line."""
    lines = result.stderr.splitlines()
    return result.returncode, result.stdout, lines[0].split("[")[0].strip(), lines[-1]


def test_a_misspelled_flag_shows_the_commands_usage() -> None:
    assert usage_error(panda("jobs", "--stat", "running")) == (
        2, "", "usage: panda jobs", "panda jobs: error: unrecognized arguments: --stat running")
    assert usage_error(panda("task", "show", "1", "--jsn")) == (
        2, "", "usage: panda task show", "panda task show: error: unrecognized arguments: --jsn")
    assert usage_error(panda("iam", "user", "list", "--gruop", "/panda")) == (
        2, "", "usage: panda iam user list", "panda iam user list: error: unrecognized arguments: --gruop /panda")
    # Given before the command, it is the top level's flag that is misspelled.
    assert usage_error(panda("--jsn", "jobs")) == (2, "", "usage: panda", "panda: error: unrecognized arguments: --jsn")


def test_abbreviated_flags_are_refused() -> None:
    assert usage_error(panda("jobs", "--lim", "5")) == (
        2, "", "usage: panda jobs", "panda jobs: error: unrecognized arguments: --lim 5")
    assert usage_error(panda("queue", "add", "q", "--stor", "file:///se")) == (
        2, "", "usage: panda queue add", "panda queue add: error: unrecognized arguments: --stor file:///se")
    assert usage_error(panda("pilot", "--queue", "q", "--idle", "5"))[2:] == (
        "usage: panda pilot", "panda pilot: error: unrecognized arguments: --idle 5")


def parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += parsers(sub)
    return found


def commands() -> Iterator[argparse.ArgumentParser]:
    """Every command's own parser (`panda job show`, not the group `panda job`), but the pilot's,
    whose arguments go to pilot_agent's parser."""
    for parser in parsers(build_parser())[1:]:
        has_commands = any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)
        if not has_commands and parser.prog != "panda pilot":
            yield parser


def test_no_parser_takes_abbreviations() -> None:
    every = parsers(build_parser())
    assert len(every) > 50
    assert [p.prog for p in every if p.allow_abbrev] == []


def valid_arguments(parser: argparse.ArgumentParser) -> list[str]:
    """Arguments the command's parser takes: a value for each positional and required flag."""
    argv: list[str] = []
    for action in parser._actions:
        if action.option_strings:
            if action.required:
                argv += [action.option_strings[0], "x"]
        elif action.nargs != argparse.REMAINDER:
            argv.append(str(next(iter(action.choices))) if action.choices else "1")
    return argv


def abbreviation(parser: argparse.ArgumentParser) -> str:
    """A long flag of the command cut short, so that it names that flag and no other."""
    for flag in [f for f in parser._option_string_actions if f.startswith("--") and f != "--help"] + ["--help"]:
        short = flag[:-1]
        if sum(other.startswith(short) for other in parser._option_string_actions) == 1:
            return short
    raise AssertionError(f"{parser.prog} has no flag to abbreviate")


def refusal(argv: list[str], capsys: pytest.CaptureFixture[str], *, whole_usage: bool = False) -> tuple[str, str]:
    """The usage line's start (up to its first option; all of it with `whole_usage`) and the
    error line of a command line refused with exit 2."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:
        parse_args(argv)
    assert refused.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    return lines[0] if whole_usage else lines[0].split("[")[0].strip(), lines[-1]


def test_every_command_shows_its_usage_for_a_misspelled_or_abbreviated_flag(
    capsys: pytest.CaptureFixture[str],
) -> None:
    every = list(commands())
    groups = {p.prog.split()[1] for p in every}
    assert groups >= {"up", "submit", "jobs", "job", "queue", "se", "task", "tasks", "dataset", "login", "logout",
                      "whoami", "iam", "serve", "db", "config", "completion"}
    for parser in every:
        path = parser.prog.split()[1:]
        assert parse_args([*path, *valid_arguments(parser)]).command_parser.prog == parser.prog
        for wrong in (abbreviation(parser), "--no-such-flag"):
            usage, error = refusal([*path, *valid_arguments(parser), wrong], capsys, whole_usage=True)
            assert usage.startswith(f"usage: {parser.prog} ")
            assert error == f"{parser.prog}: error: unrecognized arguments: {wrong}"


# The address flags each command takes, by its name's start: those of the services it calls.
ADDRESS_FLAGS_BY_COMMAND = {
    "panda up": {"--server"}, "panda submit": {"--server"}, "panda jobs": {"--server"}, "panda job": {"--server"},
    "panda queue": {"--server"}, "panda se": {"--server"}, "panda workers": {"--server"},
    "panda worker": {"--server"}, "panda harvester": {"--server"},
    "panda task": {"--jedi"}, "panda tasks": {"--jedi"}, "panda run": {"--jedi"},
    "panda dataset register": {"--server", "--jedi"}, "panda dataset": {"--jedi"},
    "panda login": set(), "panda logout": set(), "panda whoami": {"--iam"}, "panda iam": {"--iam"},
    "panda serve server": {"--server"}, "panda serve jedi": {"--server", "--jedi"}, "panda serve iam": {"--iam"},
    "panda serve gateway": {"--server", "--jedi", "--iam"}, "panda serve harvester": {"--server"},
    "panda db": set(), "panda config show": {"--server", "--jedi", "--iam"}, "panda completion": set(),
}


def test_each_command_offers_the_address_flags_of_the_services_it_calls() -> None:
    for parser in commands():
        # The longest start that names the command: `panda dataset register` before `panda dataset`.
        start = max((s for s in ADDRESS_FLAGS_BY_COMMAND if f"{parser.prog} ".startswith(f"{s} ")), key=len)
        offered = {f for f in ("--server", "--jedi", "--iam") if f in parser._option_string_actions}
        assert (parser.prog, offered) == (parser.prog, ADDRESS_FLAGS_BY_COMMAND[start])
        assert ("--server" in parser.format_help()) == ("--server" in offered)


def test_a_flag_the_command_does_not_use_is_refused_with_its_usage(capsys: pytest.CaptureFixture[str]) -> None:
    tasks = ("usage: panda tasks", "panda tasks: error: --server does not apply to panda tasks (it takes --jedi)")
    assert refusal(["tasks", "--server", "h:1"], capsys) == tasks
    assert refusal(["tasks", "--server=h:1"], capsys) == tasks
    assert refusal(["--server", "h:1", "tasks"], capsys) == tasks  # before the command too
    assert refusal(["--server", "h:1", "task", "show", "1"], capsys) == (
        "usage: panda task show",
        "panda task show: error: --server does not apply to panda task show (it takes --jedi)")
    assert refusal(["--server", "h:1", "whoami"], capsys) == (
        "usage: panda whoami", "panda whoami: error: --server does not apply to panda whoami (it takes --iam)")
    assert refusal(["jobs", "--jedi", "h:1"], capsys) == (
        "usage: panda jobs", "panda jobs: error: --jedi does not apply to panda jobs (it takes --server)")
    assert refusal(["login", "--server", "h:1"], capsys) == (
        "usage: panda login", "panda login: error: --server does not apply to panda login")
    assert refusal(["--json", "up"], capsys) == (
        "usage: panda up", "panda up: error: --json does not apply to panda up")
    assert refusal(["--no-json", "db", "upgrade"], capsys) == (
        "usage: panda db upgrade", "panda db upgrade: error: --no-json does not apply to panda db upgrade")


def test_server_before_the_command_works_where_the_command_calls_the_server() -> None:
    for argv in (["jobs"], ["queue", "list"], ["dataset", "register", "d", "f"], ["up"], ["serve", "jedi"],
                 ["config", "show"], ["pilot", "--queue", "q"]):
        assert parse_args(["--server", "h:1", *argv]).server == "h:1", argv
    assert parse_args(["--json", "tasks"]).json is True
    assert parse_args(["--no-json", "jobs"]).json is False


def test_panda_pilot_hands_its_arguments_to_the_pilot() -> None:
    helped = panda("pilot", "--queue", "q", "--help")
    assert helped.returncode == 0 and helped.stdout.startswith("usage: panda pilot ")
    assert "--idle-timeout" in helped.stdout  # the pilot's own option
    refused = panda("pilot", "--queue", "q", "--bogus")
    assert usage_error(refused)[0::2] == (2, "usage: panda pilot")
