#!/usr/bin/env bash
# Everything the tests need, then the tests: the package with its test dependencies, buf (from
# npm) for the contract checks, oidc-provider (npm) as the external OIDC provider the tests
# trust and @grpc/grpc-js with @grpc/proto-loader (npm) for the Node.js client test, Debian's
# gRPC for C++ for the benchmark's simulated pilots, zsh, fish and bash-completion for the shell
# completion tests, Prometheus (promtool, and the server the metrics test scrapes with), Slurm and
# munge (harvester's Slurm tests start a one-node cluster of their own), a running
# PostgreSQL on 127.0.0.1:5432; then the checks (contracts, ruff, mypy, the settings table, the
# Prometheus rules) and the suite, which runs every server test on
# SQLite and on PostgreSQL, three tests at a time. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install.sh --dev

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi; }
apt_install() {
  if command -v apt-get >/dev/null; then
    as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    echo "cannot install $* here: install it and run again" >&2; exit 1
  fi
}

if ! command -v npm >/dev/null; then
  echo "==> installing Node.js and npm (for buf and the test OIDC provider)"
  apt_install nodejs npm
fi
if ! command -v grpc_cpp_plugin >/dev/null || ! pkg-config --exists grpc++ 2>/dev/null; then
  echo "==> installing gRPC for C++ (the benchmark's simulated pilots, bench/pilots/)"
  apt_install libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler pkg-config g++
fi
if ! command -v zsh >/dev/null || ! command -v fish >/dev/null || [ ! -f /usr/share/bash-completion/bash_completion ]; then
  echo "==> installing zsh, fish and bash-completion (the shell completion tests type into them)"
  apt_install zsh fish bash-completion
fi
if ! command -v chromium >/dev/null; then
  echo "==> installing chromium (the web monitor's browser tests drive it through Playwright)"
  apt_install chromium
fi
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  echo "==> installing Prometheus (promtool checks the rules; the metrics test scrapes the services with it)"
  apt_install prometheus
  # The tests start their own Prometheus; the daemon the package may have started is not needed.
  if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
    as_root systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi
# The daemons are in /usr/sbin, outside a user's PATH; scripts/slurm.sh looks there too. The
# packages' own services (if the init system starts them) are left alone: the tests' clusters
# use their own ports, munge socket and directories.
if ! PATH="$PATH:/usr/sbin" command -v slurmctld >/dev/null || ! PATH="$PATH:/usr/sbin" command -v slurmd >/dev/null \
   || ! command -v sbatch >/dev/null || ! PATH="$PATH:/usr/sbin" command -v munged >/dev/null; then
  echo "==> installing Slurm and munge (harvester's Slurm tests run a one-node cluster, scripts/slurm.sh)"
  apt_install slurmctld slurmd slurm-client munge
fi
echo "==> installing buf, oidc-provider and the Node.js gRPC client (npm ci)"
npm ci --silent --no-audit --no-fund >/dev/null

postgres_up() { .venv/bin/python - <<'PY'
import sys, psycopg
try:
    psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=3).close()
except Exception as error:
    print(error, file=sys.stderr)
    sys.exit(1)
PY
}
if ! postgres_up; then
  if ! command -v pg_ctlcluster >/dev/null; then
    echo "==> installing PostgreSQL"
    apt_install postgresql
  fi
  echo "==> starting PostgreSQL"
  version=$(ls /etc/postgresql | sort -n | tail -1)
  conf=/etc/postgresql/$version/main
  # The tests connect as postgres over TCP on loopback, without a password.
  if ! grep -q "^host all all 127.0.0.1/32 trust" "$conf/pg_hba.conf"; then
    as_root sed -i '1i host all all 127.0.0.1/32 trust' "$conf/pg_hba.conf"
  fi
  # A cluster that runs but refuses connections (stuck, or out of connection slots) is restarted;
  # --force falls back from a fast to an immediate shutdown, which is safe for a test database.
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start \
    || as_root pg_ctlcluster --skip-systemctl-redirect --force "$version" main restart
  for _ in $(seq 30); do postgres_up 2>/dev/null && break; sleep 1; done
  if ! postgres_up; then
    echo "PostgreSQL does not accept connections on 127.0.0.1:5432; its log:" >&2
    tail -n 30 "/var/log/postgresql/postgresql-$version-main.log" >&2 || true
    df -h . >&2
    exit 1
  fi
fi

echo "==> contracts: generated/ is fresh, buf lint, buf breaking"
.venv/bin/python -m tools.protos check
PATH="$PWD/node_modules/.bin:$PATH" .venv/bin/python -m tools.protos lint
PATH="$PWD/node_modules/.bin:$PATH" .venv/bin/python -m tools.protos breaking --against "${PANDA_CONTRACTS_BASE:-origin/main}"
echo "==> ruff"
.venv/bin/ruff check .
echo "==> mypy (every hand-written package; strict on domain/ and logic/)"
.venv/bin/mypy
echo "==> the README's settings table is the settings classes'"
.venv/bin/python -m tools.settings_doc --check
echo "==> promtool: the Prometheus rules, their unit tests and the scrape config"
promtool check rules deploy/prometheus/rules.yml
promtool test rules deploy/prometheus/rules_test.yml
promtool check config --syntax-only deploy/prometheus/prometheus.yml
# Most tests wait on real processes (timeouts, restarts), so they run three at a time even on
# two cores; PANDA_TEST_WORKERS=0 runs them one by one.
workers=${PANDA_TEST_WORKERS:-3}
echo "==> tests (SQLite and PostgreSQL), $workers at a time"
exec .venv/bin/python -m pytest -n "$workers" "$@"
