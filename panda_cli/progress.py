"""Progress of long work: how far `panda dataset register` and `panda submit -f` are, and what a
watched task or job is doing now.

For a person at a terminal (stdout and stderr both terminals, no --json) rich draws a bar or a
live line on stderr. Otherwise progress is plain lines on stderr with no escape codes, so stdout
carries only the command's result (its JSON, with --json). rich decides what a terminal is, so
TTY_COMPATIBLE=1 (or FORCE_COLOR) makes one of a pipe, and TTY_COMPATIBLE=0 a pipe of a terminal."""

from __future__ import annotations

import math
import sys
from types import TracebackType
from typing import Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

__all__ = ["PLAIN_STEPS", "LiveLine", "Steps", "Work", "on_terminal"]

# Counted work says how far it is in plain lines at each tenth of it.
PLAIN_STEPS = 10


def _stderr() -> Console:
    # Created when used: sys.stderr may have been replaced (tests, `writing_past_a_closed_reader`).
    return Console(stderr=True, highlight=False)


def on_terminal(as_json: bool) -> bool:
    """Whether to draw progress live: a person reads both streams, and no program reads stdout."""
    return not as_json and Console().is_terminal and _stderr().is_interactive


def _plain(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class _Count(ProgressColumn):
    """`done/total unit`; nothing for work of unknown length."""

    def render(self, task: Task) -> Text:
        if not task.fields.get("counted", True) or task.total is None:
            return Text("")
        return Text(f"{int(task.completed)}/{int(task.total)} {task.fields.get('unit', '')}".rstrip(), style="green")


def _description() -> TextColumn:
    # Shown as it is: a name with brackets in it is no markup.
    return TextColumn("{task.description}", markup=False)


class _Display:
    """A rich Progress on stderr when live, nothing otherwise; a context manager."""

    def __init__(self, live: bool, *columns: ProgressColumn) -> None:
        self.progress = Progress(*columns, console=_stderr()) if live else None

    def __enter__(self) -> Self:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self.progress is not None:
            self.progress.stop()  # the last frame stays on the screen: what was done, and how far


class Work:
    """One piece of counted work (`total` steps of `unit`), or of unknown length (total None)."""

    def __init__(self, display: Steps, description: str, total: int | None, unit: str) -> None:
        self._display = display
        self._description = description
        self._total = total
        self._unit = unit
        self._done = 0
        self._task: TaskID | None = None
        progress = display.progress
        if progress is not None:
            self._task = progress.add_task(description, total=total, unit=unit, counted=total is not None)
        elif total is None:
            _plain(f"{description}...")

    def advance(self, steps: int = 1) -> None:
        before, self._done = self._done, self._done + steps
        progress = self._display.progress
        if progress is not None and self._task is not None:
            progress.update(self._task, completed=self._done)
        elif self._total and not (before == 0 and self._done >= self._total):  # work done at once says nothing
            step = math.ceil(self._total / PLAIN_STEPS)
            if self._done // step > before // step or self._done >= self._total:
                _plain(f"{self._description}: {self._done}/{self._total} {self._unit}".rstrip())

    def finish(self) -> None:
        """Work of unknown length is done (a bar of known length fills as it advances)."""
        progress = self._display.progress
        if progress is not None and self._task is not None and self._total is None:
            progress.update(self._task, total=1, completed=1)


class Steps(_Display):
    """Counted work shown as bars (`with Steps(live) as steps: work = steps.work(...)`), one per
    piece of work; in plain lines, `description: done/total unit` at each tenth."""

    def __init__(self, live: bool) -> None:
        super().__init__(live, _description(), BarColumn(), _Count(), TimeElapsedColumn())

    def work(self, description: str, total: int | None = None, unit: str = "") -> Work:
        return Work(self, description, total, unit)


class LiveLine(_Display):
    """A line that says what a watched thing is doing now, rewritten as it changes, with a bar
    of what is done (`counted`); in plain lines (`plain=True`), each new text once."""

    def __init__(self, live: bool, *, counted: bool, plain: bool) -> None:
        count: tuple[ProgressColumn, ...] = (BarColumn(), _Count()) if counted else ()
        super().__init__(live, SpinnerColumn(), _description(), *count, TimeElapsedColumn())
        self._plain = plain
        self._task: TaskID | None = None
        self._text = ""

    def show(self, text: str, *, done: int | None = None, total: int | None = None) -> None:
        progress = self.progress
        if progress is None:
            if self._plain and text != self._text:
                _plain(text)
        elif self._task is None:
            self._task = progress.add_task(text, total=total or None, completed=done or 0)
        else:
            progress.update(self._task, description=text, total=total or None, completed=done or 0)
        self._text = text
