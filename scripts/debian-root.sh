#!/usr/bin/env bash
# Builds (once, then cached) a minimal Debian root with the test interpreters and that suite's
# perf: `debian-root.sh sid` (python3.13/3.14/3.15) or `debian-root.sh bullseye` (python3.9).
# Prints the root's path. Rebuilt when the package list below changes.
set -euo pipefail

suite=${1:?usage: debian-root.sh sid|bullseye}
case "$suite" in
    # binutils: perf runs addr2line and objdump; without them perf 7.2 sometimes dies of
    # SIGPIPE (perf inject, perf script) or stops unwinding early.
    sid) pkgs="python3.13,python3.13-venv,python3.14,python3.14-venv,python3.15,python3.15-venv,linux-perf,binutils" ;;
    bullseye) pkgs="python3.9,python3.9-venv,linux-perf,util-linux,libc6-dev,binutils" ;;
    *) echo "debian-root: unknown suite $suite (sid or bullseye)" >&2; exit 2 ;;
esac
cache=${PERF_TRAMPOLINE_CACHE:-$HOME/.cache/perf-trampoline}
key=$(printf '%s' "$pkgs" | sha256sum | cut -c1-12)
root="$cache/$suite-root-$key"

if [ -f "$root/.complete" ]; then
    echo "$root"
    exit 0
fi

# Use the same Debian mirror the host's apt is configured with.
mirror=$(grep -hoE '^URIs: *[^ ]+/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 | awk '{print $2}')
[ -n "$mirror" ] || mirror=$(grep -hoE '^deb +[^ ]+/debian/? ' /etc/apt/sources.list 2>/dev/null | head -n1 | awk '{print $2}')
[ -n "$mirror" ] || { echo "debian-root: no Debian mirror found in the host's apt sources" >&2; exit 1; }

# Never delete through the host directories in-root.sh mounts there: unmount them first.
release() {
    awk -v r="$1/" 'index($2, r) == 1 { print $2 }' /proc/self/mounts | sort -r |
        while read -r m; do umount -l "$m"; done
    rm -rf --one-file-system "$1"
}

mkdir -p "$cache"
[ -d "$root.tmp" ] && release "$root.tmp"
echo "debian-root: building $root from $mirror (about a minute)" >&2
# The archive reached here is a snapshot whose Release files may be past their Valid-Until.
mmdebstrap --quiet --variant=minbase --aptopt='Acquire::Check-Valid-Until "false"' --include="$pkgs" "$suite" "$root.tmp" "deb $mirror $suite main" >&2
# Absolute symlinks such as lib64/ld-linux-x86-64.so.2 -> /lib/... point at the host's files
# when the root is used as a link sysroot from outside (test-interpreters.sh does): make the
# library ones relative, which means the same inside the root.
(cd "$root.tmp" && find lib64 usr/lib/x86_64-linux-gnu -maxdepth 1 -type l -lname '/*' 2>/dev/null) |
    while read -r link; do
        up=$(printf '%s' "$link" | sed 's|[^/]*/|../|g; s|[^/]*$||')
        ln -sfn "${up%/}$(readlink "$root.tmp/$link")" "$root.tmp/$link"
    done
# Older suites install perf only as perf_<version> (the `perf` wrapper lives elsewhere).
if [ ! -e "$root.tmp/usr/bin/perf" ]; then
    versioned=$(cd "$root.tmp/usr/bin" && ls perf_* 2>/dev/null | sort -V | tail -n1)
    [ -n "$versioned" ] && ln -s "$versioned" "$root.tmp/usr/bin/perf"
fi
[ -d "$root" ] && release "$root"
mv "$root.tmp" "$root"
# Roots built from older package lists are of no use any more.
for old in "$cache/$suite"-root-*; do
    case "$old" in "$root"|*.lock|*.mount-lock) ;; *) [ -d "$old" ] && release "$old" ;; esac
done
touch "$root/.complete"
echo "$root"
