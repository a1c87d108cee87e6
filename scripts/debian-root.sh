#!/usr/bin/env bash
# Builds (once, then cached) a minimal Debian root with the test interpreters and that suite's
# perf: `debian-root.sh sid` (python3.13/3.14/3.15) or `debian-root.sh bullseye` (python3.9);
# for isa-tests/extension.sh, `cross` (sid's rustc and the cross toolchains for the extension)
# and `aarch64`, `riscv64`, `s390x` (that ISA's python3.13 and python3.15, unpacked only, run with
# qemu-user).
# Prints the root's path. Rebuilt when the package list below changes.
set -euo pipefail

suite=${1:?usage: debian-root.sh sid|bullseye|cross|aarch64|riscv64|s390x}
# Foreign roots are only unpacked (--variant=extract): no maintainer script runs, so no binfmt
# support is needed; qemu-user runs the interpreter from outside with -L <root>.
dist=$suite
opts=(--variant=minbase)
foreign=
case "$suite" in
    # binutils: perf runs addr2line and objdump; without them perf 7.2 sometimes dies of
    # SIGPIPE (perf inject, perf script) or stops unwinding early.
    sid) pkgs="python3.13,python3.13-venv,python3.14,python3.14-venv,python3.15,python3.15-venv,linux-perf,binutils" ;;
    # libgcc-10-dev: the wheel links its unwinder (libgcc_eh.a) from here (see test-interpreters.sh).
    bullseye) pkgs="python3.9,python3.9-venv,linux-perf,util-linux,libc6-dev,binutils,libgcc-10-dev" ;;
    # Sid's rustc (newer than our pinned one, which has no other targets here) and its standard
    # library for each ISA, multi-arch, with each ISA's gcc as linker.
    cross)
        dist=sid
        opts+=(--architectures=amd64,arm64,riscv64,s390x)
        pkgs="rustc,cargo,ca-certificates,libstd-rust-dev:arm64,libstd-rust-dev:s390x"
        for a in aarch64:arm64 riscv64:riscv64 s390x:s390x; do
            pkgs="$pkgs,gcc-${a%%:*}-linux-gnu,libc6-dev-${a#*:}-cross"
        done ;;
    aarch64|riscv64|s390x)
        dist=sid
        foreign=$suite
        [ "$suite" = aarch64 ] && foreign=arm64
        opts=(--variant=extract "--architectures=$foreign")
        pkgs="python3.13,python3.15" ;;
    *) echo "debian-root: unknown suite $suite (sid, bullseye, cross, aarch64, riscv64 or s390x)" >&2; exit 2 ;;
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
mmdebstrap --quiet "${opts[@]}" --aptopt='Acquire::Check-Valid-Until "false"' --include="$pkgs" "$dist" "$root.tmp" "deb $mirror $dist main" >&2
if [ "$suite" = cross ]; then
    # libstd-rust-dev:riscv64 cannot be installed beside the amd64 rustc (its libllvm is not
    # installable there), yet only its rlibs are needed: unpack that package alone, at rustc's
    # exact version (mmdebstrap has removed the package lists, hence the update).
    chroot "$root.tmp" sh -ec 'cd /tmp; v=$(dpkg-query -W -f="\${Version}" rustc); apt-get update -q=2
        apt-get download -q=2 "libstd-rust-dev:riscv64=$v"; dpkg-deb -x libstd-rust-dev_*_riscv64.deb /
        rm libstd-rust-dev_*_riscv64.deb' >&2
elif [ -n "$foreign" ]; then
    # Nothing ran usrmerge in an unpacked root: its loader and libraries are only under usr/.
    for d in bin lib sbin; do [ -e "$root.tmp/$d" ] || ln -s "usr/$d" "$root.tmp/$d"; done
else
    # Absolute symlinks such as lib64/ld-linux-x86-64.so.2 -> /lib/... point at the host's files
    # when the root is used as a link sysroot from outside (test-interpreters.sh does): make the
    # library ones relative, which means the same inside the root.
    (cd "$root.tmp" && find lib64 usr/lib/x86_64-linux-gnu -maxdepth 1 -type l -lname '/*' 2>/dev/null) |
        while read -r link; do
            up=$(printf '%s' "$link" | sed 's|[^/]*/|../|g; s|[^/]*$||')
            ln -sfn "${up%/}$(readlink "$root.tmp/$link")" "$root.tmp/$link"
        done
fi
# Older suites install perf only as perf_<version> (the `perf` wrapper lives elsewhere).
if [ ! -e "$root.tmp/usr/bin/perf" ]; then
    versioned=$(cd "$root.tmp/usr/bin" && ls perf_* 2>/dev/null | sort -V | tail -n1 || true)
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
