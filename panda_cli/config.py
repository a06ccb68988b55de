"""`panda config show`: the value of every setting the command line reads, and where it came
from: a flag, an environment variable, the settings file (which section), or the default."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from panda_runtime.settings import (
    CONFIG_FILE_NAME,
    default_config_dir,
    environment_variable,
    file_values,
    is_credential,
    settings_file,
)

from . import output
from .runners import display_url
from .settings import CliSettings

__all__ = ["Effective", "cmd_config_show", "effective_settings"]

SOURCES = ("flag", "environment", "file", "default")


@dataclass(frozen=True)
class Effective:
    """One setting: its value, its source (one of SOURCES), and which flag, variable or section
    of the file gave it ("" for the default)."""

    name: str
    value: Any
    source: str
    origin: str


def _shown(name: str, value: Any, credential: bool) -> Any:
    """A value as it may be printed: a credential only says that it is set; the database's URL
    keeps its password to itself."""
    if name == "database_url":
        return display_url(value) if value else ""
    if credential:
        return "(set)" if value else ""
    if isinstance(value, Path):
        return str(value)
    return value


def effective_settings(flags: dict[str, tuple[str, str]]) -> list[Effective]:
    """Every setting of the command line, `flags` (setting -> (flag, value)) winning over the
    environment, which wins over the file, which wins over the default."""
    settings = CliSettings()
    in_file = file_values(CliSettings)
    found = []
    for name, info in sorted(CliSettings.model_fields.items()):
        value = getattr(settings, name)
        variable = environment_variable(name, info)
        if name in flags:
            origin, value = flags[name]
            source = "flag"
        elif variable is not None:
            source, origin = "environment", variable
        elif name in in_file:
            section = in_file[name].section
            source, origin = "file", f"[{section}]" if section else "(top level)"
        else:
            source, origin = "default", ""
        found.append(Effective(name, _shown(name, value, is_credential(info)), source, origin))
    return found


def cmd_config_show(args: argparse.Namespace) -> int:
    path = settings_file()
    found = effective_settings(args.flags_given)
    if args.json:
        output.print_json({"settings_file": str(path) if path else None, "settings": [asdict(e) for e in found]})
        return 0
    print(f"settings file: {path or f'none ({default_config_dir() / CONFIG_FILE_NAME} does not exist)'}")
    rows = [[e.name, ", ".join(e.value) if isinstance(e.value, list) else str(e.value),
             f"{e.source} {e.origin}".strip()] for e in found]
    print(output.render_table(["SETTING", "VALUE", "FROM"], rows))
    return 0
