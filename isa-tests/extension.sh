#!/usr/bin/env bash
# isa-tests/extension.sh: builds the real extension for aarch64, riscv64 and s390x with Debian
# sid's Rust cross toolchain, then runs isa-tests/test_extension.py, which loads it into each
# ISA's CPython under qemu-user. Everything built is cached (roots in ~/.cache/perf-trampoline,
# the build in target/cross); exits non-zero if any check fails.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(dirname "$here")
out=$top/target/isa-ext
isas=(aarch64 riscv64 s390x)
say() { echo "isa-ext [${SECONDS}s]: $*"; }

"$top/scripts/install-deps.sh"
say "Debian roots (cached; the first build takes a few minutes)"
cross=$("$top/scripts/debian-root.sh" cross)
declare -A root triple=([aarch64]=aarch64-unknown-linux-gnu [riscv64]=riscv64gc-unknown-linux-gnu
                        [s390x]=s390x-unknown-linux-gnu)
for isa in "${isas[@]}"; do root[$isa]=$("$top/scripts/debian-root.sh" "$isa"); done

# Our pinned toolchain has no std for these targets and none can be fetched here; sid's rustc
# (newer) with its multi-arch libstd-rust-dev can. pyo3's abi3 build needs no target Python.
# The root reaches no registry (this host's TLS trust is not in it): the crates come from here,
# vendored again only when Cargo.lock changed.
vendor=$top/target/cross/vendor
if ! cmp -s "$top/Cargo.lock" "$vendor.lock"; then
    say "vendoring the crates for the root's cargo"
    (cd "$top" && cargo vendor --quiet --locked --versioned-dirs "$vendor" >/dev/null)
    cp "$top/Cargo.lock" "$vendor.lock"
fi
say "building the extension for ${isas[*]} inside $cross"
targets=(--offline --config 'source.crates-io.replace-with="vendored"'
         --config "source.vendored.directory=\"$vendor\"")
envs=(CARGO_HOME="$top/target/cross/cargo-home" CARGO_TARGET_DIR="$top/target/cross" PYO3_CROSS=1)
for isa in "${isas[@]}"; do
    t=${triple[$isa]}
    targets+=(--target "$t")
    t=${t^^}
    envs+=("CARGO_TARGET_${t//-/_}_LINKER=$isa-linux-gnu-gcc")
done
# s390x has no frame pointer, only the back chain, which rustc writes only when asked; a
# target's own flags replace .cargo/config.toml's, hence those again.
envs+=("CARGO_TARGET_S390X_UNKNOWN_LINUX_GNU_RUSTFLAGS=-C force-frame-pointers=yes -C link-arg=-Wl,-z,separate-loadable-segments -C target-feature=+backchain")
(cd "$top" && "$top/scripts/in-root.sh" "$cross" env "${envs[@]}" \
    cargo build --quiet --release --lib --features frame-walk "${targets[@]}")

# Per ISA: the package as it would be installed, with that ISA's module, and its root.
for isa in "${isas[@]}"; do
    site=$out/$isa/site
    rm -rf "$site"
    mkdir -p "$site"
    cp -r "$top/python/perf_trampoline" "$site/"
    cp "$top/target/cross/${triple[$isa]}/release/libperf_trampoline.so" "$site/perf_trampoline/_native.abi3.so"
    ln -sfn "${root[$isa]}" "$out/$isa/root"
done
say "running isa-tests/test_extension.py"
"${HOST_PYTHON:-python3.11}" -m pytest -q -rs -p no:cacheprovider --durations=5 "$here/test_extension.py"
say "done"
