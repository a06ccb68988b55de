"""What the command line's parsers share: argument types (numbers with a lower bound, ids), the
address flags, and `Commands`, the one way a group of commands registers its sub-commands.

Each command offers only the flags it uses: --server where it calls the server, --jedi where it
calls JEDI, --iam where it calls the identity service, --json where it can print JSON. Such a
flag given to a command that does not use it, after the command or before it (`panda --server
ADDR tasks`), is refused with that command's usage."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NoReturn

from panda_runtime.settings import DEFAULT_IAM_ADDRESS, DEFAULT_JEDI_ADDRESS, DEFAULT_SERVER_ADDRESS

__all__ = [
    "ADDRESS_FLAGS",
    "JSON_HELP",
    "SERVER_HELP",
    "SERVER_LISTEN_HELP",
    "Commands",
    "Handler",
    "completes",
    "iam_address_option",
    "id_of",
    "jedi_address_option",
    "job_id_arg",
    "new_parser",
    "non_negative_int",
    "option_set",
    "positive_int",
    "refuse_flags_before",
    "server_address_option",
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


# The address flags, each naming the service it points the command at.
ADDRESS_FLAGS = {"--server": "the server", "--jedi": "JEDI", "--iam": "the identity service"}
SERVER_HELP = f"the server's address (default: PANDA_SERVER, else the settings file's, else {DEFAULT_SERVER_ADDRESS})"
SERVER_LISTEN_HELP = (f"the address the server listens on (default: PANDA_SERVER, else the settings file's, "
                      f"else {DEFAULT_SERVER_ADDRESS})")
JSON_HELP = "print machine-readable JSON; --no-json: a table (default: the output_format setting, else a table)"


def server_address_option(help_text: str = SERVER_HELP) -> argparse.ArgumentParser:
    """--server for the commands that call the server (or run it: `help_text` then says so).
    SUPPRESS keeps a command's unset --server from overwriting one given before the command
    (`panda --server ADDR jobs`)."""
    return option_set(("--server", {"metavar": "ADDR", "default": argparse.SUPPRESS, "help": help_text}))


def jedi_address_option() -> argparse.ArgumentParser:
    return option_set(("--jedi", {"metavar": "ADDR", "default": None,
                                  "help": f"JEDI's address (default: PANDA_JEDI, else the settings file's, "
                                  f"else {DEFAULT_JEDI_ADDRESS})"}))


def iam_address_option() -> argparse.ArgumentParser:
    return option_set(("--iam", {"metavar": "ADDR", "default": None, "help": "the identity service's gRPC address "
                                 f"(default: PANDA_IAM, else the settings file's, else {DEFAULT_IAM_ADDRESS})"}))


def _json_option() -> argparse.ArgumentParser:
    """--json (and --no-json), after the command as well as before it; SUPPRESS as for --server."""
    return option_set(("--json", {"action": argparse.BooleanOptionalAction, "default": argparse.SUPPRESS,
                                  "help": JSON_HELP}))


def completes(action: argparse.Action, completer: Callable[..., Iterable[str]]) -> argparse.Action:
    """`action`'s values are completed by `completer` (argcomplete's protocol: called with
    prefix, action, parser and parsed_args; returns the candidates)."""
    action.completer = completer  # type: ignore[attr-defined]  # the attribute argcomplete reads
    return action


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
            flag = unknown[0].split("=", 1)[0]
            if flag in (*ADDRESS_FLAGS, "--json", "--no-json"):
                self.refuse(flag)
            self.error(f"unrecognized arguments: {' '.join(unknown)}")
        return parsed, unknown

    def takes(self, flag: str) -> bool:
        """Whether this command uses `flag` (a command that hands its arguments on: whether
        what it hands them to does, which only the server's address is known to be)."""
        return flag in self._option_string_actions or (self._passes_unknown and flag == "--server")

    def refuse(self, flag: str) -> NoReturn:
        """Exit with this command's usage: `flag` is another command's, not this one's."""
        taken = [other for other in ADDRESS_FLAGS if self.takes(other)]
        hint = f" (it takes {', '.join(taken)})" if flag in ADDRESS_FLAGS and taken else ""
        self.error(f"{flag} does not apply to {self.prog}{hint}")


def refuse_flags_before(args: argparse.Namespace) -> None:
    """Refuse --server or --json given before a command that does not use it (`panda --server
    ADDR tasks`), with the command's usage. The top level's parser leaves them None when not given."""
    command: _CommandParser = args.command_parser
    if getattr(args, "server", None) is not None and not command.takes("--server"):
        command.refuse("--server")
    json_flag = getattr(args, "json", None)
    if json_flag is not None and not command.takes("--json"):
        command.refuse("--json" if json_flag else "--no-json")


class Commands:
    """Where a group of commands adds its sub-commands (`panda_cli.commands.<group>.register`).

    Every command made here refuses abbreviated flags, takes --json after its name too (unless
    `json_flag=False`), plus the options this `Commands` was made `with_` (the address flags of
    the services its commands call), and reports a misspelled flag with its own usage."""

    def __init__(
        self,
        subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
        *,
        options: tuple[argparse.ArgumentParser, ...] = (),
        json: argparse.ArgumentParser | None = None,
    ) -> None:
        self._subparsers = subparsers
        self._options = options
        self._json = json or _json_option()

    @classmethod
    def of(cls, parser: argparse.ArgumentParser) -> Commands:
        """The top level's commands (`panda COMMAND`)."""
        return cls(parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_CommandParser))

    def command(
        self, name: str, handler: Handler, help_text: str, *, json_flag: bool = True, **kwargs: Any
    ) -> argparse.ArgumentParser:
        """`name` running `handler`; `kwargs` go to the parser (epilog, formatter_class, ...)."""
        parents = [self._json, *self._options] if json_flag else list(self._options)
        parser: argparse.ArgumentParser = self._subparsers.add_parser(
            name, help=help_text, description=help_text, parents=parents, **kwargs
        )
        parser.set_defaults(handler=handler, command_parser=parser)
        return parser

    def group(self, name: str, help_text: str, description: str, *, dest: str, metavar: str = "COMMAND") -> Commands:
        """`name` with sub-commands of its own (`panda job show`); the chosen one's name goes to `dest`."""
        parser = self._subparsers.add_parser(name, help=help_text, description=description)
        subparsers = parser.add_subparsers(dest=dest, metavar=metavar, required=True)
        return Commands(subparsers, options=self._options, json=self._json)

    def with_options(self, options: argparse.ArgumentParser) -> Commands:
        """The same place, where every command also takes `options` (e.g. --jedi)."""
        return Commands(self._subparsers, options=(*self._options, options), json=self._json)

    def pass_through(self, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        """`name` whose arguments all go to another parser, its --help included (main() hands them on)."""
        parser: argparse.ArgumentParser = self._subparsers.add_parser(
            name, help=help_text, description=help_text, add_help=False, passes_unknown=True
        )
        parser.set_defaults(handler=handler, command_parser=parser)
        return parser
