#!/usr/bin/env bash
# Start a one-node SLURM cluster on this machine (Debian; run as root), for
# tests/test_slurm.py. Idempotent: a cluster already up is left alone.
#   bash .ci/slurm-up.sh
# Daemons run as plain background processes (no systemd needed): munged,
# slurmctld, slurmd. Config: tests/slurm/*.conf.in -> /etc/slurm/.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"

node_idle() { sinfo -h -N -r -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; }

if command -v sinfo >/dev/null && node_idle; then
    echo "slurm-up: cluster already up"; sinfo; exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "slurm-up: must run as root (installs packages, starts daemons)" >&2; exit 1
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null || ! command -v sinfo >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
fi

host="$(hostname -s)"
cpus="$(nproc)"
# Leave ~1 GiB to the system; slurmd refuses a RealMemory above what it sees.
mem="$(awk '/MemTotal/ {print int($2/1024) - 1024}' /proc/meminfo)"
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
for f in slurm gres; do
    sed -e "s/@HOST@/$host/g" -e "s/@CPUS@/$cpus/g" -e "s/@MEM@/$mem/g" \
        "$here/tests/slurm/$f.conf.in" > "/etc/slurm/$f.conf"
done

# munge: a key, its own user, /run/munge owned by it.
if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
mkdir -p /run/munge /var/lib/munge /var/log/munge
chown munge:munge /etc/munge /etc/munge/munge.key /run/munge /var/lib/munge /var/log/munge
chmod 0400 /etc/munge/munge.key
chmod 0755 /run/munge
if ! pgrep -u munge -x munged >/dev/null; then
    runuser -u munge -- munged --force
fi
for _ in $(seq 50); do munge -n </dev/null >/dev/null 2>&1 && break; sleep 0.1; done

if ! pgrep -x slurmctld >/dev/null; then slurmctld; fi
if ! pgrep -x slurmd >/dev/null; then slurmd; fi

for _ in $(seq 60); do
    if node_idle; then echo "slurm-up: node $host up ($cpus CPUs, ${mem} MB)"; sinfo; exit 0; fi
    # a node that was down before (e.g. a restart) comes back on request
    scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
    sleep 0.5
done
echo "slurm-up: node did not become idle; logs:" >&2
tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
sinfo >&2 || true
exit 1
