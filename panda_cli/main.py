"""`panda`: the command line of PanDA mesh. The parser and the dispatch; each group of commands
registers itself from panda_cli/commands/, and the commands live in jobs.py, queues.py, storage.py,
tasks.py, datasets.py, iam.py, login.py, runners.py and up.py."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import argcomplete

from panda_runtime.client.credentials import CredentialsError
from panda_runtime.client.errors import ServiceError

from .arguments import JSON_HELP, SERVER_HELP, Commands, Handler, new_parser, refuse_flags_before
from .errors import CliError, ExitCode, exit_code_of
from .output import discard_output

__all__ = ["EPILOG", "build_parser", "main", "parse_args", "resolve_settings"]

EPILOG = """\
examples:
  panda up --demo                          the identity service, the server, JEDI, the HTTP/JSON
                                           gateway and four pilots (2 on queue local, 1 on
                                           local-b, 1 on local-small), with two sample jobs
  panda submit --queue local -- echo hi    submit one job, print its id
  panda submit -f jobs.yaml                submit many jobs from YAML
  panda jobs --state running --since 1h    list jobs
  panda job watch 42                       follow a job until it ends
  panda queue list                         queues, their limits, jobs and pilots
  panda se list                            storage elements, where they are and who may use them
  panda task submit -f task.yaml           submit a task to JEDI (see examples/task.yaml)
  panda run --exec 'wc -l %IN > %OUT' --inDS DS --outDS NAME
                                           the same with prun's options (README: "From prun and pbook")
  panda tasks                              list tasks; panda task show ID for one
  panda completion install                 completion of commands, flags, queues and states
  panda config show                        every setting, its value and where it came from

Each command takes the address flags of the services it calls: --server (the server), --jedi
(JEDI: tasks, datasets), --iam (the identity service). A flag wins over the environment
(PANDA_SERVER, ...), which wins over the settings file (~/.config/panda-mesh/config.toml).

exit codes: 0 success, 1 refused or failed, 2 usage, 3 not found, 4 permission or sign-in,
5 unreachable, 6 the watched job or task ended without succeeding, 130 interrupted
"""


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("panda-mesh")
    except Exception:  # not installed as a distribution (e.g. run from a source tree)
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    # Imported here: run as `python -m panda_cli.main`, this module is __main__, and the command
    # modules must not make Python import it a second time as panda_cli.main.
    from .commands import GROUPS

    parser = new_parser(
        prog="panda",
        description="PanDA mesh: submit, follow and manage jobs and tasks; run the system locally.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Before the command as after it; None here when not given (resolve_settings fills them in).
    parser.add_argument("--server", metavar="ADDR", default=None,
                        help=f"for the commands that call the server: {SERVER_HELP}")
    parser.add_argument("--json", action=argparse.BooleanOptionalAction, default=None,
                        help=f"for the commands that print results: {JSON_HELP}")
    parser.add_argument("--version", action="version", version=f"panda {_version()}")
    commands = Commands.of(parser)
    for group in GROUPS:
        group.register(commands)
    return parser


def parse_args(argv: Sequence[str], parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    parser = parser or build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "pilot":
        # Everything after `pilot` goes to the pilot's own parser, including its --help.
        index = list(argv).index("pilot")
        args.pilot_args = list(argv[index + 1 :])
    elif extra:
        # Flags before the command (each command reports its own).
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    refuse_flags_before(args)
    return args


def resolve_settings(args: argparse.Namespace) -> None:
    """The flags win over the settings (environment, then the settings file, then defaults):
    --server and --json get their values from the settings when not given."""
    from panda_cli.settings import CliSettings, flags_given

    args.flags_given = flags_given(args)
    args.server_explicit = "server_address" in args.flags_given
    if args.server is None or args.json is None:
        settings = CliSettings()
        if args.server is None:
            args.server = settings.server_address
        if args.json is None:
            args.json = settings.output_format == "json"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # A shell completing a `panda` line runs this: argcomplete answers and exits here.
    argcomplete.autocomplete(parser, always_complete_options=False)
    args = parse_args(argv, parser)
    try:
        resolve_settings(args)
        handler: Handler = args.handler
        code = handler(args)
        sys.stdout.flush()  # a closed pipe shows up here, inside the try, not at exit
        return code
    except CliError as exc:
        print(f"panda: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except ServiceError as exc:
        print(f"panda: {exc.message}", file=sys.stderr)
        return exit_code_of(exc)
    except CredentialsError as exc:
        print(f"panda: {exc}", file=sys.stderr)
        return exit_code_of(exc)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        # `panda jobs | head`: the reader left; say nothing, and keep Python quiet at exit.
        discard_output(sys.stdout)
        return ExitCode.FAILED
    except Exception as exc:
        from pydantic import ValidationError

        from panda_runtime.settings import SettingsFileError

        if isinstance(exc, ValidationError):
            print(f"panda: bad configuration in the PANDA_* environment or the settings file: {exc}",
                  file=sys.stderr)
            return ExitCode.FAILED
        if isinstance(exc, SettingsFileError):
            print(f"panda: {exc}", file=sys.stderr)
            return ExitCode.FAILED
        raise


if __name__ == "__main__":
    sys.exit(main())
