"""Argument types the command line's parsers share: numbers with a lower bound, and ids."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def _whole(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None


def positive_int(text: str) -> int:
    value = _whole(text, "a whole number")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def non_negative_int(text: str) -> int:
    value = _whole(text, "a whole number")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {value}")
    return value


def id_of(kind: str) -> Callable[[str], int]:
    """The argument type of a `kind` id (a positive whole number), e.g. id_of("job")."""

    def parse(text: str) -> int:
        value = _whole(text, f"a {kind} id")
        if value < 1:
            raise argparse.ArgumentTypeError(f"not a {kind} id: {text!r}")
        return value

    parse.__name__ = f"{kind}_id"
    return parse


job_id_arg = id_of("job")
task_id_arg = id_of("task")
