"""The PanDA mesh pilot: runs on a worker node, takes jobs from the server over one stream,
stages input in, runs and watches the payload, stages output out, and reports.

Entry points: `panda pilot` (panda_cli) and `python -m pilot_agent`, both through
`pilot_agent.cli`."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("panda-mesh")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
