#!/usr/bin/env bash
# The main job: sets everything up, then profiles examples/seed_example.py on CPython 3.15
# (built with frame pointers) with `perf-trampoline record`: a flame graph, the top Python
# functions, and the Python call chains perf saw.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

scripts/install-deps.sh
scripts/test-interpreters.sh
root=$(scripts/debian-root.sh sid)
out=$(mktemp -d /tmp/perf-trampoline-demo.XXXXXX)
chmod 755 "$out"
cp examples/seed_example.py "$out/"
cd "$out"
py=$top/target/venvs/sid-3.15/bin/python
in_root() { "$top/scripts/in-root.sh" "$root" "$@"; }

echo "== perf-trampoline record --keep -o seed.svg -- python3.15 seed_example.py   (in $out)"
# perf and the interpreter must see the same files: the command runs in the sid root too.
in_root "$py" -m perf_trampoline record --keep -o seed.svg -- "$py" seed_example.py 50000000
echo "== Python call chains in perf script"
in_root perf script -i seed.perf.data | "$top/target/venvs/3.11/bin/python" -m perf_trampoline.stacks --top 3
echo "== kept in $out: seed.svg (the flame graph: open it in a browser), seed.folded, seed.perf.data"
echo "   (its perf map stays in /tmp: $top/scripts/in-root.sh $root perf report -i $out/seed.perf.data)"
