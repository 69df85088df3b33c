#!/usr/bin/env bash
# A real Slurm cluster of two emulated nodes on this one machine, for the tests and for trying the Slurm engine:
# its own munged, slurmctld and two `slurmd -N n1|n2` (Debian's slurm-wlm 22.05, cgroup v1 task/affinity +
# task/cgroup), all stopped by their pids with `stop`.
#
#   scripts/slurm-test-cluster.sh start DIR     # writes DIR/slurm.conf, starts the daemons, waits for 2 idle nodes
#   scripts/slurm-test-cluster.sh stop DIR      # stops them (and every job)
#   export SLURM_CONF=DIR/slurm.conf            # then sbatch/srun/squeue talk to it
#
# Each emulated node is configured as 2 sockets of 1 core and reserves the other node's CPU with CpuSpecList, so n1's
# jobs run on CPU 0 and n2's on CPU 1 (on a machine with CPUs 0 and 1): each node's rank gets a CPU of its own, as on
# two real hosts. The two nodes share one hostname; the engine sees that and tells OpenMPI to use TCP between them.
set -euo pipefail
cmd=${1:?usage: slurm-test-cluster.sh start|stop DIR}
dir=$(realpath -m "${2:?usage: slurm-test-cluster.sh start|stop DIR}")
conf=$dir/slurm.conf
port_base=${XEONTL_SLURM_PORT_BASE:-17800}
# Where Slurm puts it by default (/var/spool/slurmd), one dir per emulated node: PMIx's server directory lives under
# it, outside /tmp (which ch-run binds anyway) and at a path the image lacks, as on a real cluster.
spool=/var/spool/slurmd/xeontl-test-$port_base

stop() {
  # its jobs first: their step daemons (slurmstepd) and ranks are no daemon's children once slurmd is gone
  if [ -f "$dir/run/slurmctld.pid" ] && kill -0 "$(cat "$dir/run/slurmctld.pid")" 2>/dev/null; then
    SLURM_CONF=$conf timeout 30 scancel --full --quiet --partition=debug 2>/dev/null || true
    for _ in $(seq 30); do
      [ -z "$(SLURM_CONF=$conf timeout 10 squeue -h -o %i 2>/dev/null)" ] && break
      sleep 1
    done
  fi
  # a pid file outlives its daemon, and the pid can be another process's by now: only our daemons are signalled
  ours() { case "$(cat "/proc/$1/comm" 2>/dev/null)" in munged|slurmctld|slurmd) return 0;; *) return 1;; esac; }
  for pidf in "$dir"/run/*.pid; do
    [ -f "$pidf" ] || continue
    pid=$(cat "$pidf" 2>/dev/null)
    [[ "$pid" =~ ^[0-9]+$ ]] && ours "$pid" && kill "$pid" 2>/dev/null || true
  done
  for _ in $(seq 30); do
    alive=0
    for pidf in "$dir"/run/*.pid; do
      pid=$(cat "$pidf" 2>/dev/null) && [[ "$pid" =~ ^[0-9]+$ ]] && ours "$pid" && alive=1
    done
    [ $alive = 0 ] && break
    sleep 1
  done
  rm -f "$dir"/run/*.pid
  # the spool of the cluster this dir started (its slurm.conf names it), not another's on the same port base
  [ -f "$conf" ] && grep -qF "SlurmdSpoolDir=$spool/" "$conf" && rm -rf "$spool"
  return 0
}

if [ "$cmd" = stop ]; then
  stop
  echo "[slurm] stopped ($dir)"
  exit 0
fi
[ "$cmd" = start ] || { echo "usage: slurm-test-cluster.sh start|stop DIR" >&2; exit 2; }
for tool in munged slurmctld slurmd sinfo; do
  command -v $tool >/dev/null || { echo "[slurm] $tool missing: run scripts/setup-host.sh (apt-get install slurm-wlm munge)" >&2; exit 1; }
done
[ "$(nproc)" -ge 2 ] || { echo "[slurm] needs 2 CPUs (one per emulated node)" >&2; exit 1; }
mkdir -p "$dir"/{state,run,log,tmp/n1,tmp/n2}
cpus=$(nproc); mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 4 ))

cat > "$conf" <<CONF
ClusterName=xeontl-test
SlurmctldHost=localhost
SlurmctldPort=$port_base
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/run/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$spool/%n
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd-%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd-%n.log
TmpFS=$dir/tmp/%n
# The hardware as configured here, not as slurmd detects it: two "nodes" on one machine.
SlurmdParameters=config_overrides
ProctrackType=proctrack/cgroup
TaskPlugin=task/affinity,task/cgroup
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
MinJobAge=600
KillWait=5
InactiveLimit=0
SchedulerType=sched/backfill
NodeName=n1 NodeHostname=localhost Port=$((port_base + 1)) Sockets=2 CoresPerSocket=1 ThreadsPerCore=1 CPUs=2 RealMemory=$mem CpuSpecList=1
NodeName=n2 NodeHostname=localhost Port=$((port_base + 2)) Sockets=2 CoresPerSocket=1 ThreadsPerCore=1 CPUs=2 RealMemory=$mem CpuSpecList=0
PartitionName=debug Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP OverSubscribe=EXCLUSIVE
CONF
cat > "$dir/cgroup.conf" <<CONF
CgroupPlugin=cgroup/v1
ConstrainCores=yes
ConstrainRAMSpace=no
CONF
export SLURM_CONF=$conf

stop  # a previous cluster in the same dir
mkdir -p "$spool"/n1 "$spool"/n2
# The cluster's own munged, on its own socket (slurm.conf's AuthInfo names it), stopped with the cluster by its pid.
sock=$dir/run/munge.socket
munged -f --socket="$sock" --pid-file="$dir/run/munged.pid" --log-file="$dir/log/munged.log" \
  --seed-file="$dir/run/munged.seed"
for _ in $(seq 30); do munge -S "$sock" -n 2>/dev/null | unmunge -S "$sock" >/dev/null 2>&1 && break; sleep 0.5; done
munge -S "$sock" -n | unmunge -S "$sock" >/dev/null || { echo "[slurm] munged does not answer ($dir/log)" >&2; exit 1; }
slurmctld -f "$conf" -i
for n in n1 n2; do slurmd -f "$conf" -N $n; done
for _ in $(seq 60); do
  idle=$(sinfo -h -N -t idle -o %N 2>/dev/null | sort -u | wc -l)
  [ "$idle" -ge 2 ] && break
  sleep 1
done
sinfo -N -o "%N %T %X %Y %c" || true
[ "${idle:-0}" -ge 2 ] || { echo "[slurm] nodes did not come up idle; see $dir/log" >&2; tail -n 5 "$dir"/log/*.log >&2; exit 1; }
echo "[slurm] up: SLURM_CONF=$conf (2 emulated nodes, $cpus CPUs)"
