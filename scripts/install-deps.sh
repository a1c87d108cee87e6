#!/usr/bin/env bash
# Installs the host packages the build and the tests need (idempotent; fast when present).
set -euo pipefail

# qemu-user: isa-tests/extension.sh runs the foreign CPythons with it. golang-go and
# golang-github-google-pprof-dev: the pprof tool, built below.
apt_pkgs=(linux-perf mmdebstrap binutils binutils-multiarch chromium qemu-user golang-go
          golang-github-google-pprof-dev)
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

# --- Viewers of the profile formats, for tests/python/test_formats.py (issue 17) ---
# pprof: built from Debian's google/pprof sources with Debian's Go, offline (GOPATH mode, the
# sources and their dependencies are Debian packages). speedscope and playwright-core (which
# drives Debian's chromium, above) from npm. Built once into the shared cache, in a directory
# named for the versions, and reached from the checkout as target/tools (a link): a fresh clone
# does not build them again. (golang-go and golang-github-google-pprof-dev are in apt_pkgs.)
speedscope_version=1.25.0
playwright_version=1.65.1
pprof_version=$(dpkg-query -W -f='${Version}' golang-github-google-pprof-dev)
tools=${PERF_TRAMPOLINE_CACHE:-$HOME/.cache/perf-trampoline}/viewers-pprof-$pprof_version-speedscope-$speedscope_version-playwright-$playwright_version
mkdir -p "$tools"
exec 9>"$tools.lock"   # two checkouts setting up at once build them once
flock 9
if [ ! -x "$tools/pprof" ]; then
    echo "install-deps: building pprof from /usr/share/gocode"
    GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$tools/go-cache" GOFLAGS= \
        go build -o "$tools/pprof.new" github.com/google/pprof
    mv "$tools/pprof.new" "$tools/pprof"
fi
if ! command -v npm >/dev/null; then
    echo "install-deps: apt packages: npm"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null
fi
if [ ! -d "$tools/npm/node_modules/speedscope" ] || [ ! -d "$tools/npm/node_modules/playwright-core" ]; then
    echo "install-deps: npm packages: speedscope playwright-core"
    mkdir -p "$tools/npm"
    npm install --silent --no-audit --no-fund --prefix "$tools/npm" \
        "speedscope@$speedscope_version" "playwright-core@$playwright_version" >/dev/null
fi
exec 9>&-
checkout_tools="$(cd "$(dirname "$0")/.." && pwd)/target/tools"
if [ -d "$checkout_tools" ] && [ ! -L "$checkout_tools" ]; then
    rm -rf "$checkout_tools"   # built there before the cache held them
fi
mkdir -p "$(dirname "$checkout_tools")"
ln -sfn "$tools" "$checkout_tools"
# --- end of the viewers ---
