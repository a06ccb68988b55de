"""What a run of the `panda` command gave, as the command-line tests read it."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Result"]


@dataclass
class Result:
    code: int
    out: str
    err: str

    def lines(self) -> list[str]:
        return self.out.splitlines()
