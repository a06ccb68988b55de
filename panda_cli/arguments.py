"""What the command line's parsers share: argument types (numbers with a lower bound, ids), and
`Commands`, the one way a group of commands registers its sub-commands."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from panda_runtime.settings import DEFAULT_IAM_ADDRESS, DEFAULT_JEDI_ADDRESS

__all__ = [
    "Commands",
    "Handler",
    "iam_address_option",
    "id_of",
    "jedi_address_option",
    "job_id_arg",
    "new_parser",
    "non_negative_int",
    "option_set",
    "positive_int",
    "task_id_arg",
]


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


# --- how a group of commands adds itself to the parser -----------------------------------

Handler = Callable[[argparse.Namespace], int]


def new_parser(**kwargs: Any) -> argparse.ArgumentParser:
    """An argument parser of the command line: abbreviated long flags are refused (`--stat`
    is not taken for `--state`)."""
    return argparse.ArgumentParser(allow_abbrev=False, **kwargs)


def option_set(*options: tuple[str, dict[str, Any]]) -> argparse.ArgumentParser:
    """Options to give several commands at once (a parent parser): (flag, add_argument's keywords)."""
    parent = new_parser(add_help=False)
    for flag, keywords in options:
        parent.add_argument(flag, **keywords)
    return parent


def jedi_address_option() -> argparse.ArgumentParser:
    return option_set(("--jedi", {"metavar": "ADDR", "default": None,
                                  "help": f"JEDI's address (default: PANDA_JEDI, else {DEFAULT_JEDI_ADDRESS})"}))


def iam_address_option() -> argparse.ArgumentParser:
    return option_set(("--iam", {"metavar": "ADDR", "default": None, "help": "the identity service's gRPC address "
                                 f"(default: PANDA_IAM, else {DEFAULT_IAM_ADDRESS})"}))


def _shared_options(*, json_flag: bool) -> argparse.ArgumentParser:
    """Options accepted after the sub-command as well as before it. SUPPRESS keeps a
    sub-command's unset option from overwriting the value given before the sub-command."""
    options: list[tuple[str, dict[str, Any]]] = [
        ("--server", {"metavar": "ADDR", "default": argparse.SUPPRESS, "help": "server address (host:port)"})
    ]
    if json_flag:
        options.append(
            ("--json", {"action": "store_true", "default": argparse.SUPPRESS, "help": "print machine-readable JSON"})
        )
    return option_set(*options)


class _CommandParser(argparse.ArgumentParser):
    """A command's parser. It reports the arguments it does not know itself, with its own usage:
    argparse would hand them up to the top level's parser, whose usage says nothing of the
    command's flags. A command that hands its arguments on (`passes_unknown`) keeps them."""

    def __init__(self, *args: Any, passes_unknown: bool = False, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)
        self._passes_unknown = passes_unknown

    def parse_known_args(  # type: ignore[override]  # typeshed's overloads; argparse calls it with both arguments
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, unknown = super().parse_known_args(args, namespace)
        if unknown and not self._passes_unknown:
            self.error(f"unrecognized arguments: {' '.join(unknown)}")
        return parsed, unknown


class Commands:
    """Where a group of commands adds its sub-commands (`panda_cli.commands.<group>.register`).

    Every command made here refuses abbreviated flags, takes --server (and --json, unless
    `json_flag=False`) after its name too, plus the options this `Commands` was made `with_`,
    and reports a misspelled flag with its own usage."""

    def __init__(
        self,
        subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
        *,
        options: tuple[argparse.ArgumentParser, ...] = (),
        read: argparse.ArgumentParser | None = None,
        plain: argparse.ArgumentParser | None = None,
    ) -> None:
        self._subparsers = subparsers
        self._options = options
        self._read = read or _shared_options(json_flag=True)
        self._plain = plain or _shared_options(json_flag=False)

    @classmethod
    def of(cls, parser: argparse.ArgumentParser) -> Commands:
        """The top level's commands (`panda COMMAND`)."""
        return cls(parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_CommandParser))

    def command(
        self, name: str, handler: Handler, help_text: str, *, json_flag: bool = True, **kwargs: Any
    ) -> argparse.ArgumentParser:
        """`name` running `handler`; `kwargs` go to the parser (epilog, formatter_class, ...)."""
        shared = self._read if json_flag else self._plain
        parser: argparse.ArgumentParser = self._subparsers.add_parser(
            name, help=help_text, description=help_text, parents=[shared, *self._options], **kwargs
        )
        parser.set_defaults(handler=handler)
        return parser

    def group(self, name: str, help_text: str, description: str, *, dest: str, metavar: str = "COMMAND") -> Commands:
        """`name` with sub-commands of its own (`panda job show`); the chosen one's name goes to `dest`."""
        parser = self._subparsers.add_parser(name, help=help_text, description=description)
        subparsers = parser.add_subparsers(dest=dest, metavar=metavar, required=True)
        return Commands(subparsers, options=self._options, read=self._read, plain=self._plain)

    def with_options(self, options: argparse.ArgumentParser) -> Commands:
        """The same place, where every command also takes `options` (e.g. --jedi)."""
        return Commands(self._subparsers, options=(*self._options, options), read=self._read, plain=self._plain)

    def pass_through(self, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        """`name` whose arguments all go to another parser, its --help included (main() hands them on)."""
        parser: argparse.ArgumentParser = self._subparsers.add_parser(
            name, help=help_text, description=help_text, add_help=False, passes_unknown=True
        )
        parser.set_defaults(handler=handler)
        return parser
