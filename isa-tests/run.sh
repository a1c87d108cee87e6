#!/usr/bin/env bash
# isa-tests/run.sh: installs, builds and runs the cross-ISA trampoline checks, then prints a pass/fail table per ISA.
#
# Meant for an x86-64 Debian host: x86-64 runs natively, the other three under qemu-user
# (started explicitly, as binfmt_misc may not be mounted). Exits non-zero on any failure;
# the last line is always "N passed, M failed".
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
out=${CARGO_TARGET_DIR:-$root/target}/isa-tests
isas=(x86_64 aarch64 riscv64 s390x)
checks=(call-through fp-chain dwarf-unwind dwarf-without-fde broken-detected)

# Progress with the time since start, so a slow run shows where the time went.
say() { echo "isa-tests [${SECONDS}s]: $*"; }

pkgs=(qemu-user gcc libc6-dev
      gcc-aarch64-linux-gnu libc6-dev-arm64-cross
      gcc-riscv64-linux-gnu libc6-dev-riscv64-cross
      gcc-s390x-linux-gnu libc6-dev-s390x-cross)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# A step that fails leaves its ISAs without results; the table still comes, so CI always gets
# its last line.
if ((${#missing[@]})); then
    sudo=()
    ((EUID == 0)) || sudo=(sudo)
    say "installing ${missing[*]}"
    { "${sudo[@]}" apt-get update -qq &&
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } ||
        say "installing failed"
fi

# One run at a time per output directory (a second one would delete the first one's files),
# and results of an earlier run must not stand in for this one's.
mkdir -p "${out%/*}"
exec 9>"$out.lock"
flock 9
rm -rf "$out"
mkdir -p "$out"
say "emitting templates and .eh_frame (cargo example isa_emit)"
built=()
if (cd "$root" && cargo run --quiet --example isa_emit -- "$out"); then
    # -fno-optimize-sibling-calls keeps call_through's frame alive during the call, as CPython's
    # is; frame pointers and unwind tables are what the walks need from the harness's own code.
    cflags=(-O2 -g -static -Wall -Wextra -Werror -fno-omit-frame-pointer -fasynchronous-unwind-tables
            -fno-optimize-sibling-calls)
    say "building the harnesses"
    for isa in "${isas[@]}"; do
        extra=()
        case $isa in
            # Return addresses saved by the harness must stay unsigned to be compared with ours.
            aarch64) extra=(-mbranch-protection=none) ;;
            # Without it gcc's s390x frames carry no back chain, and there is nothing to walk.
            s390x) extra=(-mbackchain) ;;
        esac
        if "$isa-linux-gnu-gcc" "${cflags[@]}" "${extra[@]}" -I "$out/$isa" -o "$out/$isa/harness" "$here/harness.c"; then
            built+=("$isa")
        else
            say "building the $isa harness failed"
        fi
    done
else
    say "the emitter failed: nothing to run"
fi

for isa in "${built[@]}"; do
    runner=()
    [[ $isa == "$(uname -m)" ]] || runner=("qemu-$isa")
    say "running $isa${runner:+ under ${runner[*]}}"
    # Failing checks make the harness exit non-zero; the table below is what counts.
    timeout 120 "${runner[@]}" "$out/$isa/harness" >"$out/$isa/result.txt" 2>"$out/$isa/stderr.txt" || true
    cat "$out/$isa/result.txt"
    grep -v '^qemu: uncaught target signal' "$out/$isa/stderr.txt" >&2 || true
done

passed=0
failed=0
row() {
    local line cell
    printf -v line '%-8s' "$1"
    shift
    for cell in "$@"; do printf -v line '%s %-18s' "$line" "$cell"; done
    echo "${line%"${line##*[! ]}"}"
}
echo
row ISA "${checks[@]}"
for isa in "${isas[@]}"; do
    cells=()
    for check in "${checks[@]}"; do
        line=$(grep -sE "^(PASS|FAIL) $isa $check:" "$out/$isa/result.txt" | head -n1 || true)
        status=${line%% *}
        if [[ $status == PASS ]]; then
            passed=$((passed + 1))
        else
            failed=$((failed + 1))
        fi
        cells+=("${status:-NO-RESULT}")
    done
    row "$isa" "${cells[@]}"
done
echo "$passed passed, $failed failed"
((failed == 0))
