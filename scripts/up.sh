#!/usr/bin/env bash
# The whole system on this machine: install (nothing to do when pyproject.toml has not changed),
# then `panda up` on SQLite: the identity service, the server, JEDI, the HTTP/JSON gateway
# (http://127.0.0.1:25380, its API page at /docs), harvester, which starts pilots as work arrives
# (up to two on queue `local` and one on each other queue), and two demo jobs. Ctrl-C, SIGTERM or
# SIGHUP stops it all, even piped into `tee`. Extra arguments go to `panda up` (e.g. --pilots 4).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
exec .venv/bin/panda up --demo "$@"
