#!/usr/bin/env bash
# Runs a command inside a Debian root (usage: in-root.sh ROOT CMD...) with the host's /proc,
# /sys, /dev, /tmp and this checkout mounted in it at the same paths. The mounts are made once
# and stay, in the host's mount namespace: perf and the programs it profiles must see the same
# paths for the same files whether perf started them or attached to them later. The working
# directory is kept when it exists inside the root (/tmp and the checkout do).
set -euo pipefail
root=$(cd "$1" && pwd); shift
top=$(cd "$(dirname "$0")/.." && pwd)
exec 9>"$root.mount-lock"
flock 9
for d in /proc /sys /dev /tmp "$top"; do
    case "$d" in /tmp/*) continue ;; esac   # already inside the root through /tmp
    if mountpoint -q "$root$d"; then
        # A mount made for an earlier checkout at this path (a fresh clone after `rm -rf`)
        # still shows the deleted directory: replace it.
        [ "$(stat -c %d:%i "$root$d")" = "$(stat -c %d:%i "$d")" ] && continue
        umount -l "$root$d"
    fi
    mkdir -p "$root$d"
    mount --rbind "$d" "$root$d"
    # Unmounts inside the root must never reach the host's own mounts.
    mount --make-rslave "$root$d"
done
flock -u 9
cwd=$(pwd)
exec chroot "$root" /bin/sh -c 'cd "$0" 2>/dev/null || cd /; exec "$@"' "$cwd" "$@"
