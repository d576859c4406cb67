#!/usr/bin/env bash
# A single-node Slurm cluster on 127.0.0.1 for tests: Debian's Slurm 22.05 with
# munge, one node "localhost" with every CPU of this machine and two fake GPUs
# (gres "gpu" backed by /dev/null and /dev/zero, so that `--gpus=1` is
# scheduled and sets CUDA_VISIBLE_DEVICES=0 or 1; ADVFIT_SLURM_GPUS=1 for one),
# no accounting database (status via squeue).
#
#   .ci/slurm.sh install       install the Debian packages if missing (root)
#   .ci/slurm.sh start [DIR]   install, write the configs, start munged,
#                              slurmctld and slurmd; wait until the node is idle
#   .ci/slurm.sh stop [DIR]    stop, by PID, the daemons that `start` started,
#                              and remove the configuration it wrote
#
# DIR (default /tmp/advfit-slurm) holds the state, the logs and the PID files.
# The configuration is written to /etc/slurm/ because `srun` inside a job does
# not see SLURM_CONF (snakemake's jobstep executor clears SLURM_* variables);
# an /etc/slurm/slurm.conf not written by this script is never overwritten.
# Two partitions, main (default) and gpu, both on the node.
# Exit status of start: 0 running, 2 cannot run here (not root, no apt-get, the
# packages cannot be installed, a foreign slurm.conf), 1 a daemon failed.
set -euo pipefail

cmd=${1:-}
DIR=${2:-/tmp/advfit-slurm}
CONF_DIR=/etc/slurm
MARK="# written by advfit .ci/slurm.sh"
PACKAGES=(slurmctld slurmd slurm-client munge)
# Fake GPUs (1 or 2; default 2, so that two GPU jobs can run at once): each is a
# gres "gpu" backed by a character device that is not a GPU.
GPUS=${ADVFIT_SLURM_GPUS:-2}
FAKE_GPU_FILES=(/dev/null /dev/zero)
case "$GPUS" in 1|2) ;; *) echo "slurm.sh: ADVFIT_SLURM_GPUS must be 1 or 2" >&2; exit 64 ;; esac

say() { echo "slurm.sh: $*" >&2; }

need_root() {
    if [ "$(id -u)" != 0 ]; then say "cannot run: needs root"; exit 2; fi
}

install_packages() {
    need_root
    local missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null; then say "cannot run: no apt-get to install ${missing[*]}"; exit 2; fi
    # Keep the packages' maintainer scripts from starting the daemons themselves.
    local policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy"
    fi
    local ok=0
    export DEBIAN_FRONTEND=noninteractive
    (apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null 2>&1 &&
          apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; }) || ok=1
    [ -n "$policy" ] && rm -f "$policy"
    if [ $ok != 0 ]; then say "cannot run: apt-get could not install ${missing[*]}"; exit 2; fi
}

pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_pidfile() {  # stop the process named in a PID file, wait up to 10 s, then SIGKILL
    local file=$1 pid
    [ -s "$file" ] || return 0
    pid=$(cat "$file")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
}

write_configs() {
    if [ -e "$CONF_DIR/slurm.conf" ] && ! grep -qF "$MARK" "$CONF_DIR/slurm.conf"; then
        say "cannot run: $CONF_DIR/slurm.conf exists and was not written by this script"
        exit 2
    fi
    mkdir -p "$CONF_DIR" "$DIR/ctld" "$DIR/spool"
    local cpus mem
    cpus=$(nproc)
    # Leave a little memory to the system, else slurmd marks the node invalid.
    mem=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
    cat > "$CONF_DIR/slurm.conf" <<EOF
$MARK (a one-node test cluster)
# state: $DIR
ClusterName=advfit
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
GresTypes=gpu
MpiDefault=none
ReturnToService=2
# No slurmdbd: finished jobs stay visible to squeue for 5 minutes, which is
# how snakemake's slurm executor learns their state (status command squeue).
MinJobAge=300
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:$GPUS State=UNKNOWN
# Two partitions on the one node, to test partition choices: main (default) and gpu.
PartitionName=main Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=localhost MaxTime=INFINITE State=UP
EOF
    {
        echo "$MARK"
        echo "# Fake GPUs: scheduled like real ones, a job given one sees CUDA_VISIBLE_DEVICES=<index>."
        echo "AutoDetect=off"
        for device in "${FAKE_GPU_FILES[@]:0:$GPUS}"; do echo "Name=gpu File=$device"; done
    } > "$CONF_DIR/gres.conf"
}

start_munge() {
    # Reuse a munged that already answers (a developer's machine may run one).
    if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
    if [ ! -s /etc/munge/munge.key ]; then
        mkdir -p /etc/munge
        if command -v mungekey >/dev/null; then mungekey --create --keyfile=/etc/munge/munge.key --force
        else dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null; fi
        chown munge:munge /etc/munge/munge.key 2>/dev/null || true
        chmod 400 /etc/munge/munge.key
    fi
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge 2>/dev/null || true
    chmod 755 /run/munge
    # Run as the munge user, as the package's service does.
    rm -f /run/munge/munged.pid
    if id munge >/dev/null 2>&1; then
        runuser -u munge -- munged 2>"$DIR/munged.err" ||
            { say "munged failed to start: $(cat "$DIR/munged.err")"; return 1; }
    else
        munged --force 2>"$DIR/munged.err" ||
            { say "munged failed to start: $(cat "$DIR/munged.err")"; return 1; }
    fi
    for _ in $(seq 50); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
    cp /run/munge/munged.pid "$DIR/munged.pid"   # ours: `stop` ends it
    for _ in $(seq 50); do
        munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    say "munged does not answer"; return 1
}

start() {
    install_packages
    mkdir -p "$DIR"
    local where=$DIR
    if pid_alive "$DIR/slurmctld.pid" && pid_alive "$DIR/slurmd.pid"; then
        say "already running (state in $DIR)"
    elif grep -qsF "$MARK" "$CONF_DIR/slurm.conf" && scontrol ping 2>/dev/null | grep -q UP; then
        # Started by another `start` with another DIR: use it, leave it to that one to stop.
        where=$(sed -n 's/^# state: //p' "$CONF_DIR/slurm.conf")
        say "already running (started elsewhere, state in $where)"
    else
        stop
        write_configs
        start_munge
        # -c: start clean, without jobs or node states of an earlier run.
        slurmctld -c -f "$CONF_DIR/slurm.conf" || { say "slurmctld failed: see $DIR/slurmctld.log"; stop; exit 1; }
        slurmd -N localhost -f "$CONF_DIR/slurm.conf" || { say "slurmd failed: see $DIR/slurmd.log"; stop; exit 1; }
    fi
    local state=""
    for _ in $(seq 120); do
        state=$(sinfo -h -N -n localhost -o %t 2>/dev/null | head -1 || true)
        case "$state" in idle*|mix*|alloc*) break ;; esac  # busy: reused with jobs on it
        sleep 0.5
    done
    case "$state" in
        idle*|mix*|alloc*) say "node localhost ${state} (state in $where)" ;;
        *) say "node not up after 60 s (state '${state}'); logs in $DIR"; tail -5 "$DIR"/slurm*.log >&2 || true; stop; exit 1 ;;
    esac
}

stop() {
    stop_pidfile "$DIR/slurmd.pid"
    stop_pidfile "$DIR/slurmctld.pid"
    stop_pidfile "$DIR/munged.pid"
    # Remove the configuration of this cluster: with a slurm.conf whose
    # controller is down, every `scontrol` waits ~10 s, and the Slurm
    # executor plugin calls it whenever snakemake starts.
    if grep -qsxF "# state: $DIR" "$CONF_DIR/slurm.conf"; then
        rm -f "$CONF_DIR/slurm.conf" "$CONF_DIR/gres.conf"
    fi
}

case "$cmd" in
    install) install_packages ;;
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 install | start [DIR] | stop [DIR]" >&2; exit 64 ;;
esac
