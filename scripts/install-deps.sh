#!/usr/bin/env bash
# Installs the host packages the build and the tests need (idempotent; fast when present).
set -euo pipefail

# qemu-user: isa-tests/extension.sh runs the foreign CPythons with it.
apt_pkgs=(linux-perf mmdebstrap binutils binutils-multiarch chromium qemu-user)
missing=()
for p in "${apt_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: apt packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

py=${HOST_PYTHON:-python3.11}
# ruff pinned: a new release's new findings should come with a change of ours, not fail CI.
if ! "$py" -c 'import maturin, pytest' 2>/dev/null || [ "$("$py" -m ruff --version 2>/dev/null)" != "ruff 0.17.6" ]; then
    echo "install-deps: pip packages: maturin pytest ruff"
    "$py" -m pip install -q --disable-pip-version-check 'maturin>=1.9,<2' 'pytest>=8' 'ruff==0.17.6'
fi

# --- samply (issue 17): the perf-event recorder users try with us; tests/python/test_samply.py
# records with it. Built from crates.io with the pinned toolchain into the shared cache, once.
# Run from the cache rather than this checkout: our .cargo/config.toml's flags are for our own
# code, not for samply's.
samply_version=0.13.1
samply_root=${PERF_TRAMPOLINE_CACHE:-$HOME/.cache/perf-trampoline}/samply-$samply_version
if [ ! -x "$samply_root/bin/samply" ]; then
    mkdir -p "$samply_root"
    exec 8>"$samply_root.lock"   # two checkouts setting up at once build it once
    flock 8
fi
if [ ! -x "$samply_root/bin/samply" ]; then
    echo "install-deps: samply $samply_version (cargo install, a few minutes)"
    toolchain=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$(dirname "$0")/../rust-toolchain.toml")
    (cd "$samply_root" && RUSTUP_TOOLCHAIN=$toolchain cargo install --quiet --locked \
        --root "$samply_root" samply --version "$samply_version")
fi
exec 8>&-
# --- end samply
