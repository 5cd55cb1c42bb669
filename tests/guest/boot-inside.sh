#!/bin/bash
# Runs inside the guest, started by the image's /sbin/convoy-guest-init once /repo (this repository,
# read-only) and /results (writable, the host's results directory) are mounted. Read fresh from the
# repository at each boot, so changing it needs no image rebuild. It prepares what the tests need,
# then does what /results/request asks: mode=pytest runs pytest on the arguments in /results/args
# (its output in /results/pytest.log); mode=command runs the command in /results/args (a benchmark:
# its output in /results/output.log); either writes the exit status to /results/exit-status.
# mode=shell gives a root shell on the console. Either way the guest powers off at the end.
export PATH=/opt/convoy-venv/bin:/usr/sbin:/usr/bin:/sbin:/bin
say() { echo "CONVOY-GUEST: $*"; }
say "userspace up at $(cut -d' ' -f1 /proc/uptime)s"
hostname guest
ip link set lo up  # the kernel NFS server and client talk over 127.0.0.1
# A managed plugin on the host's network gets the host's /etc/resolv.conf and /etc/hosts bind-mounted into it:
# the guest has no network, but the files must exist or runc refuses to start the plugin.
[ -e /etc/resolv.conf ] || : > /etc/resolv.conf
[ -e /etc/hosts ] || printf '127.0.0.1 localhost guest\n' > /etc/hosts

# /scratch: the host's fresh sparse disk, for loop files and every temporary directory of the tests
mkdir -p /scratch && mount /dev/vdb /scratch || say "cannot mount the scratch disk /dev/vdb"
mkdir -p /scratch/tmp
mountpoint -q /sys/fs/cgroup || mount -t cgroup2 none /sys/fs/cgroup

# Debian builds these as modules; load them now so a missing one shows here, not as an odd test failure.
for module in loop dm-mod dm-bufio dm-persistent-data dm-thin-pool dm-snapshot xfs nfsd nfs nfsv3 nfsv4; do
  modprobe "$module" || say "modprobe $module failed"
done

# No udev in the guest: libdevmapper makes the /dev/mapper nodes itself.
export DM_DISABLE_UDEV=1
export CONVOY_GUEST=1 TMPDIR=/scratch/tmp PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/root

# run_within_budget LOG COMMAND...: the command's output to the console and /results/LOG, its exit
# status to /results/exit-status. SIGINT first at the budget's end: pytest then stops like on Ctrl-C
# and still writes its junit XML and summary (exit status 124).
run_within_budget() {
  local log=$1; shift
  timeout -s INT -k 30 "$budget" "$@" 2>&1 | tee "/results/$log"
  local status=${PIPESTATUS[0]}
  echo "$status" > /results/exit-status
  say "exit status $status at $(cut -d' ' -f1 /proc/uptime)s"
}

mode=pytest; budget=1100
# shellcheck disable=SC1091
[ -f /results/request ] && . /results/request
cd /repo || exit 1
case "$mode" in
  shell)
    say "a root shell (the repository is /repo, results /results, scratch /scratch); exit powers off"
    setsid -c bash -i </dev/ttyS0 >/dev/ttyS0 2>&1  # not a login shell: /etc/profile would drop the venv from PATH
    ;;
  pytest)
    mapfile -d '' -t args < /results/args
    say "pytest ${args[*]} (budget ${budget}s)"
    run_within_budget pytest.log python -m pytest -p no:cacheprovider --basetemp=/scratch/pytest \
      --junitxml=/results/junit.xml -o junit_family=xunit2 "${args[@]}"
    ;;
  command)
    mapfile -d '' -t args < /results/args
    say "run ${args[*]} (budget ${budget}s)"
    run_within_budget output.log "${args[@]}"
    ;;
  *) say "unknown mode $mode in /results/request" ;;
esac
sync
