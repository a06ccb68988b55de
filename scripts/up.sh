#!/usr/bin/env bash
# The whole system on this machine: install, then `panda up` on SQLite with two pilots and two
# demo jobs. Ctrl-C stops it. Extra arguments go to `panda up` (e.g. --pilots 4).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
exec .venv/bin/panda up --demo "$@"
