"""The `panda` command's parsers, run as a user runs them: a misspelled or abbreviated flag is
reported with the usage of the command it was given to (exit 2), and `panda pilot` hands every
argument to the pilot's own parser."""

from __future__ import annotations

import argparse
import subprocess
import sys

from panda_cli.main import build_parser


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


def test_no_parser_takes_abbreviations() -> None:
    def parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
        found = [parser]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    found += parsers(sub)
        return found

    every = parsers(build_parser())
    assert len(every) > 50
    assert [p.prog for p in every if p.allow_abbrev] == []


def test_panda_pilot_hands_its_arguments_to_the_pilot() -> None:
    helped = panda("pilot", "--queue", "q", "--help")
    assert helped.returncode == 0 and helped.stdout.startswith("usage: panda pilot ")
    assert "--idle-timeout" in helped.stdout  # the pilot's own option
    refused = panda("pilot", "--queue", "q", "--bogus")
    assert usage_error(refused)[0::2] == (2, "usage: panda pilot")
