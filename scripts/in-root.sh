#!/usr/bin/env bash
# Runs a command inside a Debian root (usage: in-root.sh ROOT CMD...), with /proc, /sys, /dev
# and the host's /tmp shared, in a private mount namespace so nothing stays mounted afterwards.
# The working directory is kept when it exists inside the root (bind-mount it there if needed).
set -euo pipefail
root=$1; shift
exec unshare --mount --propagation private -- /bin/sh -c '
    root=$1; shift
    for d in proc sys dev tmp; do mount --rbind "/$d" "$root/$d"; done
    for d in $PERF_TRAMPOLINE_BIND; do mkdir -p "$root$d"; mount --rbind "$d" "$root$d"; done
    cwd=$(pwd)
    exec chroot "$root" /bin/sh -c "cd \"\$0\" 2>/dev/null || cd /; exec \"\$@\"" "$cwd" "$@"
' sh "$root" "$@"
