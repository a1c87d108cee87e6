#!/usr/bin/env bash
# Builds the wheel once and installs it into a venv under target/venvs for every test
# interpreter: the host's python3.11 (and pyenv's 3.10 and 3.12 when the machine has them),
# Debian bullseye's 3.9 and sid's 3.13, 3.14 and 3.15 (run inside cached Debian roots, each
# with its suite's perf). Writes target/interpreters.json for the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

host_py=${HOST_PYTHON:-python3.11}

# One wheel for all of them, linked against bullseye's glibc 2.31 (the oldest of the test
# interpreters' C libraries) so it also loads there. It gets its own target directory: these
# RUSTFLAGS replace .cargo/config.toml's (hence its flags again, see there), and sharing
# target/release with `cargo bench` would rebuild everything at every switch.
sysroot=$(scripts/debian-root.sh bullseye)
# Rust's standard library asks for the unwinder as `-lgcc_s`, and loading libgcc_s.so.1 costs
# every process that turns support on about 0.16 ms (most Pythons never load it otherwise).
# This directory's libgcc_s.so is a linker script that answers with bullseye's static copy
# (gcc 10's, which finds unwind tables with dl_iterate_phdr, present in glibc 2.31; newer ones
# need glibc 2.35): panics still unwind, inside the module alone.
mkdir -p target/wheel-link
echo "INPUT ( $sysroot/usr/lib/gcc/x86_64-linux-gnu/10/libgcc_eh.a )" > target/wheel-link/libgcc_s.so
echo "test-interpreters: building the wheel (release)" >&2
rm -rf target/wheels
RUSTFLAGS="-C force-frame-pointers=yes -C link-arg=-Wl,-z,separate-loadable-segments -C link-arg=--sysroot=$sysroot \
 -C link-arg=-L$sysroot/usr/lib/x86_64-linux-gnu -C link-arg=-L$sysroot/lib/x86_64-linux-gnu -C link-arg=-L$top/target/wheel-link" \
CARGO_TARGET_DIR=target/wheel-build \
    "$host_py" -m maturin build --release --quiet -i "$host_py" -o target/wheels >&2
wheel=$(ls target/wheels/*.whl)

entries=()
add() { # name version python [wrapper...]: python (and perf) run as `wrapper... python args`
    entries+=("$("$host_py" -c 'import json,sys; print(json.dumps({"name": sys.argv[1], "version": sys.argv[2], "python": sys.argv[3], "wrap": sys.argv[4:]}))' "$@")")
}

venv_host() { # version python
    local v=$1 py=$2 dir=target/venvs/$1
    [ -x "$dir/bin/python" ] || "$py" -m venv "$dir"
    "$dir/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$wheel"
    add "host-$v" "$v" "$top/$dir/bin/python"
}

venv_host 3.11 "$host_py"
"target/venvs/3.11/bin/python" -c 'import pytest' 2>/dev/null ||
    target/venvs/3.11/bin/python -m pip install -q --disable-pip-version-check 'pytest>=8'
for v in 3.10.13 3.12.1; do
    py=$HOME/.pyenv/versions/$v/bin/python${v%.*}
    if [ -x "$py" ]; then venv_host "${v%.*}" "$py"; fi
done

# The Debian roots' venvs live in this checkout too (in-root.sh mounts it at the same path in
# the root), so two checkouts never share an installed copy.
venv_root() { # suite version
    local suite=$1 v=$2 root dir=$top/target/venvs/$1-$2
    root=$(scripts/debian-root.sh "$suite")
    [ -x "$dir/bin/python" ] || scripts/in-root.sh "$root" "python$v" -m venv "$dir"
    scripts/in-root.sh "$root" "$dir/bin/python" -m pip install -q --disable-pip-version-check \
        --force-reinstall --no-deps --no-index "$top/$wheel"
    add "$suite-$v" "$v" "$dir/bin/python" "$top/scripts/in-root.sh" "$root"
}
venv_root bullseye 3.9
for v in 3.13 3.14 3.15; do venv_root sid "$v"; done

(IFS=,; echo "[${entries[*]}]") > target/interpreters.json
echo "test-interpreters: $(grep -o '"name": "[^"]*"' target/interpreters.json | cut -d'"' -f4 | tr '\n' ' ')" >&2
