#!/usr/bin/env bash
# A real one-node Slurm (with accounting) on this host, for tests and demos.
#
#   scripts/slurm-local.sh up      install Debian's slurm + munge + slurmdbd + mariadb if missing, write a
#                                  one-node config, start the daemons, wait until the node is idle
#   scripts/slurm-local.sh down    stop exactly the daemons `up` started (by PID), in reverse order
#   scripts/slurm-local.sh status  sinfo + the PIDs this script holds
#
# Accounting (slurmdbd on mariadb) is what lets submitit learn that Slurm killed a job (scancel, time
# limit, OOM): submitit asks `sacct`, which fails without it, and such a sweep would wait forever.
# Needs root (apt-get, /etc/slurm). State, logs and PID files go to $SLURM_LOCAL_DIR.
set -euo pipefail

STATE=${SLURM_LOCAL_DIR:-/tmp/hydra-eval-slurm}
NODE=$(hostname -s)
CLUSTER=hydraeval
DB_SOCKET=/run/mysqld/mysqld.sock

log() { echo "slurm-local: $*" >&2; }

install_packages() {
  local missing=()
  for bin in slurmctld slurmd sbatch munged slurmdbd mariadbd; do
    command -v "$bin" >/dev/null || missing+=("$bin")
  done
  [ ${#missing[@]} -eq 0 ] && return
  log "installing slurm, munge, slurmdbd, mariadb (missing: ${missing[*]})"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || true
  apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurm-client slurmdbd munge mariadb-server >/dev/null
}

alive() { [ -f "$STATE/$1.pid" ] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }

wait_for() {  # wait_for <what> <seconds> <command...>
  local what=$1 limit=$2
  shift 2
  for _ in $(seq $((limit * 4))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.25
  done
  log "timed out waiting for $what (logs in $STATE)"
  return 1
}

write_configs() {
  local cpus mem
  cpus=$(nproc)
  [ "$cpus" -lt 4 ] && cpus=4  # jobs of the tiny test model are light: let 4 run at once on 2 cores
  mem=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
  mkdir -p /etc/slurm "$STATE/spool/ctld" "$STATE/spool/d"
  cat >/etc/slurm/slurm.conf <<EOF
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/slurmctld.daemon.pid
SlurmdPidFile=$STATE/slurmd.daemon.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=300
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  cat >/etc/slurm/slurmdbd.conf <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=$STATE/slurmdbd.daemon.pid
LogFile=$STATE/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=hydra-eval-local
StorageLoc=slurm_acct_db
EOF
  chmod 600 /etc/slurm/slurmdbd.conf
}

start_munge() {
  alive munged && return
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  chmod 0755 /run/munge
  [ -s /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
  # setpriv execs munged itself, so the PID kept is munged's
  setpriv --reuid=munge --regid=munge --init-groups munged --foreground >"$STATE/munged.log" 2>&1 &
  echo $! >"$STATE/munged.pid"
  wait_for munged 10 sh -c "munge -n | unmunge"
}

start_mariadb() {
  alive mariadbd && return
  mkdir -p /run/mysqld "$STATE/mariadb" && chown mysql:mysql /run/mysqld "$STATE/mariadb"
  if [ ! -d "$STATE/mysql/mysql" ]; then
    mkdir -p "$STATE/mysql" && chown mysql:mysql "$STATE/mysql"
    mysql_install_db --user=mysql --datadir="$STATE/mysql" --skip-test-db >"$STATE/mysql_install.log" 2>&1
  fi
  mariadbd --user=mysql --datadir="$STATE/mysql" --socket=$DB_SOCKET --skip-networking \
    --pid-file="$STATE/mariadb/mariadbd.pid" --log-error="$STATE/mariadb/error.log" &
  echo $! >"$STATE/mariadbd.pid"
  wait_for mariadb 30 mariadb --socket=$DB_SOCKET -e "select 1"
  mariadb --socket=$DB_SOCKET <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'hydra-eval-local';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
EOF
}

start_daemon() {  # start_daemon <name> <command...>: foreground daemon, PID kept
  local name=$1
  shift
  alive "$name" && return
  "$@" >"$STATE/$name.out" 2>&1 &
  echo $! >"$STATE/$name.pid"
}

up() {
  install_packages
  mkdir -p "$STATE"
  write_configs
  start_munge
  start_mariadb
  start_daemon slurmdbd slurmdbd -D
  wait_for slurmdbd 30 sacctmgr -n list cluster
  sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || true
  start_daemon slurmctld slurmctld -D -i
  wait_for slurmctld 30 scontrol ping
  start_daemon slurmd slurmd -D -N "$NODE"
  wait_for "node $NODE idle" 60 sh -c "sinfo -h -n $NODE -o %T | grep -qx idle"
  wait_for accounting 30 sacct -n -X -S now
  log "up: node $NODE idle, cluster $CLUSTER, accounting on (state in $STATE)"
}

stop() {  # stop <name>: TERM, wait up to 10 s, then KILL; only the PID this script recorded
  local name=$1 pid
  [ -f "$STATE/$name.pid" ] || return 0
  pid=$(cat "$STATE/$name.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$STATE/$name.pid"
}

down() {
  for name in slurmd slurmctld slurmdbd mariadbd munged; do stop "$name"; done
  log "down"
}

status() {
  for name in munged mariadbd slurmdbd slurmctld slurmd; do
    if alive "$name"; then echo "$name: pid $(cat "$STATE/$name.pid")"; else echo "$name: not running"; fi
  done
  sinfo 2>/dev/null || true
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
