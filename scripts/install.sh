#!/usr/bin/env bash
# Create .venv and install PanDA mesh into it (editable). With --dev, also what the tests and
# the contract checks need. Safe to run again: when pyproject.toml has not changed since the
# last install (of the same kind or more), it does nothing; --force installs anyway.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
kind=user
force=no
for argument in "$@"; do
  case "$argument" in
    --dev) kind=dev ;;
    --force) force=yes ;;
    *) echo "usage: scripts/install.sh [--dev] [--force]" >&2; exit 2 ;;
  esac
done

# What the last install was made from: pyproject.toml's digest and its kind (user or dev).
stamp=.venv/.panda-mesh-install
wanted="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$force" = no ] && [ -x .venv/bin/panda ] && [ -f "$stamp" ]; then
  read -r installed_digest installed_kind < "$stamp" || true
  if [ "$installed_digest" = "$wanted" ] && { [ "$installed_kind" = dev ] || [ "$kind" = user ]; }; then
    echo "==> panda-mesh is installed in .venv and pyproject.toml has not changed (--force reinstalls)"
    exit 0
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$python" -m venv .venv
fi
rm -f "$stamp"
.venv/bin/python -m pip install --quiet --upgrade pip
if [ "$kind" = dev ]; then
  echo "==> installing panda-mesh with test dependencies"
  .venv/bin/python -m pip install --quiet -e '.[dev]'
else
  echo "==> installing panda-mesh"
  .venv/bin/python -m pip install --quiet -e .
fi
echo "$wanted $kind" > "$stamp"
