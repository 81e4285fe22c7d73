#!/bin/sh
# PID 1 of a lab guest. The root filesystem is the host's, read-only over 9p; the host's lab run folder is the
# writable 9p share "labout". The kernel passes PASIDLAB_* (from the command line) in the environment.
# It runs labout/job.sh (or a shell on the console for `lab shell`), keeps its exit status, and powers off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp LANG=C.UTF-8
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /run
# The guest writes to a tmpfs /tmp, but the host's /tmp may hold the project itself (a CI clone, a venv):
# keep the host's entries reachable at their own paths, through links to a bind of the host's /tmp.
mkdir -p /run/host-tmp && mount --bind /tmp /run/host-tmp
mount -t tmpfs tmpfs /tmp
for entry in /run/host-tmp/* /run/host-tmp/.[!.]*; do
    [ -e "$entry" ] && [ "${entry##*/}" != lab ] && ln -s "$entry" "/tmp/${entry##*/}"
done
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts && mount -t tmpfs tmpfs /dev/shm
mkdir -p /tmp/lab && mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 labout /tmp/lab
# bcc builds against /lib/modules/$(uname -r)/build, the lab kernel's own build tree (generated headers), and
# /lib/modules/$(uname -r)/source, its source tree (an O= build keeps the two apart), shared with the root.
mount -t tmpfs tmpfs /lib/modules
mkdir -p "/lib/modules/$(uname -r)" && ln -s "$PASIDLAB_BUILD" "/lib/modules/$(uname -r)/build"
ln -s "$(readlink -f "$PASIDLAB_BUILD/source")" "/lib/modules/$(uname -r)/source"
echo "pasidlab: up $(cut -d' ' -f1 /proc/uptime)" > /tmp/lab/boot.txt
cd "${PASIDLAB_CWD:-/}" || cd /
if [ "$PASIDLAB_MODE" = shell ]; then
    echo "PASID Explorer lab: $(uname -r). 'exit' powers the VM off."
    setsid -c /bin/bash -i </dev/ttyS0 >/dev/ttyS0 2>&1
else
    /bin/sh /tmp/lab/job.sh >/tmp/lab/job.out 2>&1
    echo $? >/tmp/lab/job.rc
fi
sync
echo o >/proc/sysrq-trigger
sleep 5
echo b >/proc/sysrq-trigger
