#!/usr/bin/env bash
# Create .venv and install PanDA mesh into it (editable). With --dev, also what the tests and
# the contract checks need. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
if [ "${1:-}" = "--dev" ]; then
  echo "==> installing panda-mesh with test dependencies"
  .venv/bin/python -m pip install --quiet -e '.[dev]'
else
  echo "==> installing panda-mesh"
  .venv/bin/python -m pip install --quiet -e .
fi
