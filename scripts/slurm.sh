#!/usr/bin/env bash
# A one-node Slurm on this machine, for the tests, CI and the benchmarks.
#
#   scripts/slurm.sh start DIR    munged, slurmctld and slurmd, every file of theirs under DIR;
#                                 returns once the node is idle and prints SLURM_CONF=DIR/slurm.conf
#                                 (also in DIR/env), which every Slurm command needs
#   scripts/slurm.sh stop DIR     cancels the cluster's jobs, stops exactly the daemons it started
#   scripts/slurm.sh status DIR   each daemon's PID and the node's state; exit 0 when all run
#
# PANDA_SLURM_JOBS_PER_CORE=N (start only): let N jobs share each core, for benchmarks of jobs that
# barely use one (default 1). PANDA_SLURM_PARTITION names the partition (default "debug").
# PANDA_SLURM_MIN_JOB_AGE: seconds an ended job stays in squeue (default 300, Slurm's).
#
# The configuration is deploy/slurm/slurm.conf.in, rendered with this machine's hostname, cores
# and memory (as `slurmd -C` finds them) and free ports, so clusters in different DIRs run side
# by side. Each daemon puts itself in its own session when it forks; its PID file is in DIR, and
# stop signals only a PID whose command line names DIR (never a reused PID). A start in a DIR
# whose cluster runs reuses it; one whose daemons run only in part fails and says to stop first;
# files a dead cluster left (PID files, a socket, its job state) are cleared. Needs Debian's
# slurmctld, slurmd, slurm-client and munge (scripts/test.sh installs them).
set -euo pipefail
# The daemons (slurmctld, slurmd, munged, mungekey) are in /usr/sbin, outside a user's PATH.
export PATH=$PATH:/usr/sbin:/sbin

usage() { echo "usage: $0 start|stop|status DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
command=$1
case "$command" in start|stop|status) ;; *) usage ;; esac
mkdir -p "$2"
dir=$(cd "$2" && pwd)
repo=$(cd "$(dirname "$0")/.." && pwd)
conf=$dir/slurm.conf
export SLURM_CONF=$conf
daemons=(munged slurmctld slurmd)
start_timeout=${PANDA_SLURM_START_TIMEOUT:-60}

pid_file() { echo "$dir/$1.pid"; }

# The daemon's PID when it runs as this cluster's (its command line names DIR), else nothing.
running_pid() {
  local file pid
  file=$(pid_file "$1")
  [ -s "$file" ] || return 0
  pid=$(tr -dc '0-9' <"$file")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 0
  if tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$dir"; then echo "$pid"; fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

node_state() { sinfo --noheader --format=%T 2>/dev/null | head -n 1; }

render_config() {
  local hardware ctld_port slurmd_port oversubscribe=NO
  if [ "${PANDA_SLURM_JOBS_PER_CORE:-1}" -gt 1 ]; then oversubscribe=FORCE:$PANDA_SLURM_JOBS_PER_CORE; fi
  # "NodeName=host CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105"
  hardware=$(slurmd -C | head -n 1 | sed -e 's/^NodeName=[^ ]* //')
  ctld_port=$(free_port)
  slurmd_port=$(free_port)
  while [ "$slurmd_port" = "$ctld_port" ]; do slurmd_port=$(free_port); done
  sed -e "s|@DIR@|$dir|g" \
      -e "s|@CLUSTER@|panda$(echo "$dir" | cksum | cut -c1-8)|g" \
      -e "s|@HOSTNAME@|$(hostname -s)|g" \
      -e "s|@USER@|$(id -un)|g" \
      -e "s|@SLURMCTLD_PORT@|$ctld_port|g" \
      -e "s|@SLURMD_PORT@|$slurmd_port|g" \
      -e "s|@PARTITION@|${PANDA_SLURM_PARTITION:-debug}|g" \
      -e "s|@NODE_HARDWARE@|$hardware|g" \
      -e "s|@OVERSUBSCRIBE@|$oversubscribe|g" \
      -e "s|@MIN_JOB_AGE@|${PANDA_SLURM_MIN_JOB_AGE:-300}|g" \
      "$repo/deploy/slurm/slurm.conf.in" >"$conf"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local seconds=$1 what=$2
  local deadline=$((SECONDS + seconds))
  shift 2
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "slurm.sh: $what did not happen within $seconds s" >&2
      tail -n 20 "$dir"/log/*.log >&2 2>/dev/null || true
      return 1
    fi
    sleep 0.2
  done
}

node_idle() { [ "$(node_state)" = idle ]; }

start() {
  local alive=() name
  for name in "${daemons[@]}"; do [ -n "$(running_pid "$name")" ] && alive+=("$name"); done
  if [ "${#alive[@]}" -eq "${#daemons[@]}" ]; then
    echo "slurm.sh: the cluster in $dir already runs; reusing it" >&2
    echo "SLURM_CONF=$conf"
    return 0
  fi
  if [ "${#alive[@]}" -gt 0 ]; then
    echo "slurm.sh: only ${alive[*]} of ${daemons[*]} run for $dir: run '$0 stop $dir' first" >&2
    return 1
  fi
  # A dead cluster's leftovers: its PID files, munge's socket, its job state and spool.
  rm -rf "$dir/state" "$dir/spool" "$dir/munge/munge.socket" "$dir/munge/munge.socket.lock"
  for name in "${daemons[@]}"; do rm -f "$(pid_file "$name")"; done
  mkdir -p "$dir/state" "$dir/spool" "$dir/log" "$dir/munge"
  # munged wants its socket's directory searchable by all (every user's client reaches it) and
  # writable by none but its owner, and its key readable by none but its owner.
  chmod 755 "$dir/munge"
  [ -s "$dir/munge/munge.key" ] || mungekey --create --keyfile="$dir/munge/munge.key"
  chmod 600 "$dir/munge/munge.key"
  render_config

  # Whatever fails from here on (a daemon refusing its configuration, a node that never comes
  # up) stops what this start started.
  trap 'echo "slurm.sh: start failed; logs in $dir/log" >&2; stop' EXIT
  # --force: munged wants every directory above its socket searchable by all, and DIR may be a
  # private one (pytest's temporary directories are 0700); then only DIR's owner can reach munge,
  # and so submit jobs, which is who uses this cluster.
  munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
         --pid-file="$(pid_file munged)" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munged.seed" 9>&-
  # -c: a fresh controller, not the jobs and node states of a run that died.
  slurmctld -c -f "$conf" 9>&-
  slurmd -f "$conf" 9>&-
  wait_for "$start_timeout" "the node becoming idle" node_idle
  trap - EXIT
  echo "SLURM_CONF=$conf" | tee "$dir/env"
}

# Stops the named daemons together (each takes a second or two to exit): SIGTERM, then SIGKILL
# for any still there after 5 s.
stop_daemons() {
  local name pid pids=()
  for name in "$@"; do
    pid=$(running_pid "$name")
    if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; pids+=("$pid"); fi
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
    if [ -d "/proc/$pid" ]; then
      echo "slurm.sh: $pid ignored SIGTERM for 5 s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  for name in "$@"; do rm -f "$(pid_file "$name")"; done
}

stop() {
  # The jobs first, while slurmd still runs to end them: a job outlives a stopped slurmd.
  if [ -n "$(running_pid slurmctld)" ] && [ -n "$(running_pid slurmd)" ]; then
    scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
    local deadline=$((SECONDS + 10))
    while [ -n "$(squeue --noheader --format=%i 2>/dev/null)" ] && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
  fi
  stop_daemons slurmd slurmctld
  # munge last: the Slurm daemons authenticate what they send as they shut down.
  stop_daemons munged
}

status() {
  local name pid all=0
  for name in "${daemons[@]}"; do
    pid=$(running_pid "$name")
    if [ -n "$pid" ]; then echo "$name: running ($pid)"; else echo "$name: stopped"; all=3; fi
  done
  [ "$all" = 0 ] && echo "node: $(node_state)"
  return "$all"
}

# One start or stop at a time per DIR: two starts at once would otherwise both find no cluster
# and start two. The daemons do not inherit the lock (9>&- where they start).
exec 9>"$dir/.lock"
flock 9

case "$command" in
  start) start ;;
  stop) stop ;;
  status) status ;;
esac
