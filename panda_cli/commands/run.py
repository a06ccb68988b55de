"""`panda run`: submit a task with prun's options (panda-client's names, camelCase)."""

from __future__ import annotations

import argparse
import math

from panda_cli import run
from panda_cli.arguments import Commands, jedi_address_option, positive_int

__all__ = ["register"]

USAGE = "panda run --exec CMD --inDS DATASET --outDS NAME [options]"
EPILOG = """\
The options are prun's (panda-client), with prun's meanings where this system has the concept;
the README's "From prun and pbook" lists them beside the task file keys they set.

placeholders in --exec (the string runs in /bin/sh, as prun runs it):
  %IN          the job's input file names, comma separated (${IN_CSV})
  %OUT         the job's output file name, to write in the work dir (${OUT})
  %SKIPEVENTS, %MAXEVENTS, %FIRSTEVENT
               events splitting: events to skip, to process, the first one
  ${IN}, ${SERIAL}, ...  this system's own placeholders (README, "Task files");
               so a shell variable is written $NAME, not ${NAME}

examples:
  panda run --exec 'wc -l %IN > %OUT' --inDS user.me.demo --outDS user.me.demo.wc.1
  panda run --exec 'cat $(echo %IN | tr , " ") > %OUT' --inDS user.me.demo \\
            --outDS user.me.demo.cat.1 --nFilesPerJob 5 --memory 1000 --site local
  panda run ... --noSubmit > task.yaml && panda task submit -f task.yaml"""


def positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number: {text!r}")
    return value


def register(commands: Commands) -> None:
    p = commands.with_options(jedi_address_option()).command(
        "run", run.cmd_run, "submit a task with prun's options (--exec, --inDS, --outDS, ...), print its id",
        usage=USAGE, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--exec", required=True, metavar="CMD",
                   help="what each job runs, in /bin/sh, with %%IN, %%OUT... (below)")
    p.add_argument("--inDS", required=True, metavar="DATASET",
                   help="input dataset; several comma separated, read in order")
    p.add_argument("--outDS", required=True, metavar="NAME",
                   help="output dataset the task creates (must not exist); also the task's name")
    split = p.add_mutually_exclusive_group()
    split.add_argument("--nFilesPerJob", type=positive_int, metavar="N", help="input files per job (default 1)")
    split.add_argument("--nGBPerJob", type=positive_number, metavar="G",
                       help="whole input files up to G gigabytes per job (at least one file)")
    split.add_argument("--nEventsPerJob", type=positive_int, metavar="E",
                       help="E events per job, files cut and combined (needs the files' event counts)")
    p.add_argument("--site", metavar="QUEUE[,QUEUE...]",
                   help="queues brokerage may choose from (default AUTO: any online queue)")
    p.add_argument("--excludedSite", action="append", metavar="QUEUE[,QUEUE...]",
                   help="queues brokerage must not choose (repeatable)")
    p.add_argument("--memory", type=positive_int, metavar="MB", help="memory per core, MB")
    p.add_argument("--nCore", type=positive_int, metavar="N", help="cores per job")
    p.add_argument("--maxWalltime", type=positive_int, metavar="HOURS", help="walltime per job, in hours")
    p.add_argument("--maxAttempt", type=positive_int, metavar="N", help="attempts per input file (default 3)")
    p.add_argument("--priority", type=int, metavar="P", help="the task's priority; higher runs first")
    p.add_argument("--workingGroup", metavar="GROUP", help="the physics or production group the task counts against")
    p.add_argument("--vo", metavar="VO", help="the task's virtual organisation (default: yours)")
    p.add_argument("--expertOnly_skipScout", action="store_true",
                   help="no scout jobs: every job starts with the requested memory and walltime")
    p.add_argument("--noSubmit", action="store_true",
                   help="submit nothing: print the task file it would submit (for panda task submit -f)")
