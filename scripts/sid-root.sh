#!/usr/bin/env bash
# Builds (once, then cached) a minimal Debian sid root with python3.13/3.14/3.15 and sid's perf.
# Prints the root's path. Rebuilt when the package list below changes.
set -euo pipefail

pkgs="python3.13,python3.13-venv,python3.14,python3.14-venv,python3.15,python3.15-venv,linux-perf"
cache=${PERF_TRAMPOLINE_CACHE:-$HOME/.cache/perf-trampoline}
key=$(printf '%s' "$pkgs" | sha256sum | cut -c1-12)
root="$cache/sid-root-$key"

if [ -f "$root/.complete" ]; then
    echo "$root"
    exit 0
fi

# Use the same Debian mirror the host's apt is configured with.
mirror=$(grep -hoE '^URIs: *[^ ]+/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 | awk '{print $2}')
[ -n "$mirror" ] || mirror=$(grep -hoE '^deb +[^ ]+/debian/? ' /etc/apt/sources.list 2>/dev/null | head -n1 | awk '{print $2}')
[ -n "$mirror" ] || { echo "sid-root: no Debian mirror found in the host's apt sources" >&2; exit 1; }

# Never delete through the host directories in-root.sh mounts there: unmount them first.
release() {
    awk -v r="$1/" 'index($2, r) == 1 { print $2 }' /proc/self/mounts | sort -r |
        while read -r m; do umount -l "$m"; done
    rm -rf --one-file-system "$1"
}

mkdir -p "$cache"
[ -d "$root.tmp" ] && release "$root.tmp"
echo "sid-root: building $root from $mirror (about a minute)" >&2
# The archive reached here is a snapshot whose Release files may be past their Valid-Until.
mmdebstrap --quiet --variant=minbase --aptopt='Acquire::Check-Valid-Until "false"' --include="$pkgs" sid "$root.tmp" "deb $mirror sid main" >&2
[ -d "$root" ] && release "$root"
mv "$root.tmp" "$root"
touch "$root/.complete"
echo "$root"
