"""The `panda` command's parsers, one module per group of commands. Each module exports
`register(commands: Commands) -> None`, which adds its commands through `Commands`
(panda_cli.arguments), and main.build_parser() calls them in this order (the order of
`panda --help`). The commands themselves are in panda_cli's other modules."""

from panda_cli.commands import (
    completion,
    config,
    datasets,
    db,
    harvester,
    iam,
    jobs,
    login,
    pilot,
    queues,
    run,
    serve,
    storage,
    tasks,
    up,
)

__all__ = ["GROUPS"]

GROUPS = (up, jobs, queues, harvester, storage, tasks, run, datasets, login, iam, serve, pilot, db, config,
          completion)
