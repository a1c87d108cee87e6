#!/usr/bin/env bash
# The main job: sets everything up, profiles examples/seed_example.py with `perf record -g`
# on CPython 3.15 (built with frame pointers) with perf-trampoline on, and prints the Python
# call chains perf saw, then perf report's view of the hottest symbols.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

scripts/install-deps.sh
scripts/test-interpreters.sh
root=$(scripts/sid-root.sh)
out=$(mktemp -d /tmp/perf-trampoline-demo.XXXXXX)
chmod 755 "$out"
cp examples/seed_example.py "$out/"
cd "$out"
in_root() { "$top/scripts/in-root.sh" "$root" "$@"; }

echo "== perf record -F 999 -g -- python3.15 -m perf_trampoline seed_example.py   (in $out)"
in_root perf record -F 999 -g -q -o perf.data -- $top/target/venvs/sid-3.15/bin/python -m perf_trampoline seed_example.py 50000000
in_root perf script -i perf.data > perf.script
echo "== Python call chains in perf script"
"$top/target/venvs/3.11/bin/python" -m perf_trampoline.stacks --top 3 < perf.script
echo "== perf report --no-children (top entries, with callers)"
in_root perf report -i perf.data --stdio --no-children --percent-limit 5 2>/dev/null |
    grep -v '^$' | grep -v '^#' | head -n 30
echo "== files kept in $out"
