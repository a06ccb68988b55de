"""Shell completion of `panda`, as a person gets it: `panda completion install` writes each
shell's script where that shell looks, then a real bash and zsh on a terminal complete what is
typed and TAB'd (commands, flags, job and task states, queue names from a real server), and fish
completes through its own `complete -C`. The completion itself is the real `panda` command, run
by the shell with the line in COMP_LINE (the protocol argcomplete's own tests use too)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest
from pexpect.popen_spawn import PopenSpawn

from panda.server.v1 import queue_pb2, queue_service_pb2
from panda_cli.completion import script
from tests.registry_support import Stubs, robot_channel
from tests.server_support import QueueStubs
from tools.cluster import IdentityHandle, ServerHandle

PANDA = Path(sys.executable).with_name("panda")
BASH_COMPLETION = Path("/usr/share/bash-completion/bash_completion")
QUEUES = ["local", "local-b", "remote"]
PROMPT = "PROMPT> "
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>]|\x07|\x08")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A user's home, with nothing in it; `panda` (the installed command) must be there to run."""
    assert PANDA.is_file(), f"{PANDA} is missing: install the package (scripts/install.sh)"
    path = tmp_path / "home"
    path.mkdir()
    return path


def user_env(home: Path, **extra: str) -> dict[str, str]:
    """A person's environment: their home, `panda` on PATH, the token the fixtures gave this
    process; none of the XDG variables, so each shell finds its files in its usual places. A
    PYTHONPATH the tests run with is kept: `panda` then runs the code under test."""
    path = {"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {}
    return {"HOME": str(home), "PATH": f"{PANDA.parent}:/usr/bin:/bin", "TERM": "dumb", "LANG": "C.UTF-8",
            "PANDA_TOKEN": os.environ["PANDA_TOKEN"], **path, **extra}


def install(shell: str, env: dict[str, str]) -> str:
    result = subprocess.run([str(PANDA), "completion", "install", "--shell", shell], env=env,
                            capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    return result.stdout


def completions(line: str, env: dict[str, str]) -> tuple[list[str], str]:
    """What `panda` offers for `line` when a shell asks it (and what it wrote to stderr)."""
    out = Path(env["HOME"]) / "completions.out"
    result = subprocess.run(
        [str(PANDA)], capture_output=True, text=True, timeout=60,
        env={**env, "COMP_LINE": line, "COMP_POINT": str(len(line)), "_ARGCOMPLETE": "1",
             "_ARGCOMPLETE_IFS": "\n", "_ARGCOMPLETE_SUPPRESS_SPACE": "1", "_ARGCOMPLETE_STDOUT_FILENAME": str(out)})
    assert result.returncode == 0, result.stderr
    return sorted(out.read_text().split()), result.stderr


class Terminal:
    """An interactive shell on a terminal. Ctrl-X is bound to print the line being edited.

    `script` gives the shell its terminal, in a process started as every subprocess here is:
    forking this process directly (as pexpect.spawn does) restarts gRPC's poller in the child,
    which can crash there before it runs the shell."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        script = ["script", "--quiet", "--flush", "--return", "--command", shlex.join(argv), "/dev/null"]
        self.shell = PopenSpawn(script, env={**env, "COLUMNS": "250", "LINES": "60"}, encoding="utf-8", timeout=60)
        self.typed = 0
        self.shell.expect_exact(PROMPT)

    def complete(self, line: str, tabs: int = 1) -> tuple[str, list[str]]:
        """Type `line`, press TAB `tabs` times: the line as it then reads, and the candidates the
        shell listed (none when it completed the word itself)."""
        self.shell.send(line + "\t" * tabs + "\x18")
        self.shell.expect(r"<<(.*)>>")
        edited = str(self.shell.match.group(1))
        shown = ANSI.sub("", str(self.shell.before)).replace("\r", "").split("\n")
        listing = []
        for text in shown[1:]:  # after the typed line, up to the prompt drawn again below the list
            if text.startswith(PROMPT):
                break
            listing += text.split(" -- ")[0].split()  # zsh describes candidates after " -- "
        self.shell.send("\x15")  # clear the line
        self.run("true")
        return edited, sorted(listing)

    def run(self, command: str) -> None:
        """Run `command`, and wait for a mark printed after it, so that what follows is fresh."""
        self.typed += 1
        self.shell.sendline(f"{command}; echo done-$((1000 + {self.typed}))")
        self.shell.expect_exact(f"done-{1000 + self.typed}")
        self.shell.expect_exact(PROMPT)

    def close(self) -> None:
        self.shell.sendline("exit")
        self.shell.sendeof()  # `script` ends when its input does
        self.shell.expect(pexpect.EOF)
        assert self.shell.wait() == 0


def bash(home: Path, env: dict[str, str]) -> Terminal:
    """bash as a Debian user has it: bash-completion loaded, which finds panda's file on demand."""
    assert BASH_COMPLETION.is_file(), "bash-completion is missing (scripts/test.sh installs it)"
    rc = home / ".bashrc"
    rc.write_text(
        f"PS1='{PROMPT}'\nsource {BASH_COMPLETION}\n"
        "bind 'set show-all-if-ambiguous on'\nbind 'set completion-display-width 0'\n"
        "bind 'set page-completions off'\nbind 'set bell-style none'\n"
        """bind -x '"\\C-x": printf "\\n<<%s>>\\n" "$READLINE_LINE"'\n""")
    return Terminal(["bash", "--noprofile", "--rcfile", str(rc), "-i"], env)


def zsh(home: Path, env: dict[str, str]) -> Terminal:
    """zsh with compinit in .zshrc, as most setups have it; .zshenv is what the install wrote."""
    (home / ".zshrc").write_text(
        f"autoload -U compinit && compinit -u\nbindkey -e\nPS1='{PROMPT}'\nunsetopt BEEP AUTO_MENU\n"
        "show-line() { print -r -- $'\\n'\"<<$BUFFER>>\" }\nzle -N show-line\nbindkey '^X' show-line\n")
    return Terminal(["zsh", "-i"], env)


def fish(line: str, env: dict[str, str]) -> list[str]:
    """fish's own completion of `line` (its completions directory is autoloaded)."""
    result = subprocess.run(["fish", "-c", "complete -C $argv[1]", line], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return sorted(row.split("\t")[0] for row in result.stdout.splitlines())


@pytest.fixture
def terminals(home: Path) -> Iterator[dict[str, Terminal]]:
    env = user_env(home)
    for shell in ("bash", "zsh", "fish"):
        install(shell, env)
    opened = {"bash": bash(home, env), "zsh": zsh(home, env)}
    yield opened
    for terminal in opened.values():
        terminal.close()


def test_bash_zsh_and_fish_complete_commands_flags_and_states(
    home: Path, terminals: dict[str, Terminal]
) -> None:
    for name, terminal in terminals.items():
        # Ambiguous: the common part is put in, and a second TAB lists (bash lists on the first).
        assert terminal.complete("panda jo", tabs=1 if name == "bash" else 2) == ("panda job", ["job", "jobs"]), name
        assert terminal.complete("panda jobs --st") == ("panda jobs --state ", []), name
        assert terminal.complete("panda jobs --state ru") == ("panda jobs --state running ", []), name
        assert terminal.complete("panda tasks --state abort", tabs=1 if name == "bash" else 2) == (
            "panda tasks --state abort", ["aborted", "aborting"]), name
        # Flags a command does not use are not offered: tasks call JEDI, not the server.
        assert terminal.complete("panda tasks --se") == ("panda tasks --se", []), name
        assert terminal.complete("panda jobs --se") == ("panda jobs --server ", []), name
        assert terminal.complete("panda workers --state fin") == ("panda workers --state finished ", []), name
    env = user_env(home)
    assert fish("panda jo", env) == ["job", "jobs"]
    assert fish("panda jobs --st", env) == ["--state"]
    assert fish("panda jobs --state ru", env) == ["running"]
    assert fish("panda tasks --se", env) == []
    assert fish("panda workers --state ru", env) == ["running"]


@pytest.fixture
def queues(local_queue: str, queues_stub: QueueStubs) -> list[str]:
    for name in QUEUES[1:]:
        queues_stub.CreateQueue(queue_service_pb2.CreateQueueRequest(
            queue=queue_pb2.Queue(queue_id=name, status=queue_pb2.Queue.STATUS_ONLINE)), timeout=10)
    return QUEUES


def test_queue_names_come_from_the_server(
    server: ServerHandle, queues: list[str], home: Path, terminals: dict[str, Terminal]
) -> None:
    # The shells' `panda` finds the server as every command does: here through PANDA_SERVER.
    for terminal in terminals.values():
        terminal.run(f"export PANDA_SERVER={server.address}")
    for name, terminal in terminals.items():
        assert terminal.complete("panda jobs --queue rem") == ("panda jobs --queue remote ", []), name
        assert terminal.complete("panda queue show loc", tabs=1 if name == "bash" else 2) == (
            "panda queue show local", ["local", "local-b"]), name
    assert fish("panda submit --queue ", user_env(home, PANDA_SERVER=server.address)) == queues

    # The line's own --server is the one asked; a server that does not answer gives nothing, quietly.
    nobody = user_env(home, PANDA_SERVER="127.0.0.1:1")
    assert completions(f"panda --server {server.address} job reassign 1 --queue ", nobody) == (queues, "")
    assert completions("panda jobs --queue ", nobody) == ([], "")
    assert completions("panda task reassign 1 --queue l", user_env(home, PANDA_SERVER=server.address)) == (
        ["local", "local-b"], "")


def test_harvester_names_come_from_the_server(server: ServerHandle, identity: IdentityHandle, home: Path) -> None:
    with robot_channel(server.address, identity) as channel:
        for harvester_id in ("cern-1", "cern-2", "bnl-1"):
            Stubs(channel).register(harvester_id)
    env = user_env(home, PANDA_SERVER=server.address)
    assert completions("panda harvester commands cern", env) == (["cern-1", "cern-2"], "")
    assert completions("panda workers --harvester b", env) == (["bnl-1"], "")


def test_install_writes_where_each_shell_looks(home: Path) -> None:
    env = user_env(home, SHELL="/usr/bin/zsh")
    out = subprocess.run([str(PANDA), "completion", "install"], env=env, capture_output=True, text=True,
                         timeout=60).stdout
    functions = home / ".local" / "share" / "zsh" / "site-functions"
    assert out.splitlines()[:2] == [f"installed zsh completion of panda in {functions / '_panda'}",
                                    f"added {functions} to fpath in {home / '.zshenv'}"]
    install("zsh", env)  # again: the line is not added twice
    assert (home / ".zshenv").read_text() == (
        f"fpath=({functions} $fpath)  # panda's completion (panda completion install)\n")
    assert (functions / "_panda").read_text() == script("zsh")

    xdg = user_env(home, XDG_DATA_HOME=str(home / "data"), XDG_CONFIG_HOME=str(home / "conf"))
    assert install("bash", xdg).startswith(
        f"installed bash completion of panda in {home / 'data' / 'bash-completion' / 'completions' / 'panda'}\n")
    assert install("fish", xdg).startswith(
        f"installed fish completion of panda in {home / 'conf' / 'fish' / 'completions' / 'panda.fish'}\n")

    printed = subprocess.run([str(PANDA), "completion", "bash"], env=env, capture_output=True, text=True, timeout=60)
    assert printed.stdout == script("bash") and "-F _python_argcomplete panda" in printed.stdout
    unknown = subprocess.run([str(PANDA), "completion", "install"], env=user_env(home, SHELL="/bin/tcsh"),
                             capture_output=True, text=True, timeout=60)
    assert (unknown.returncode, unknown.stderr) == (
        2, "panda: cannot tell your shell from SHELL='/bin/tcsh': give --shell bash|zsh|fish\n")
