#!/usr/bin/env bash
# The main job: sets everything up, then profiles examples/seed_example.py on CPython 3.15
# with `perf-trampoline record`: a flame graph and the top Python functions; then once more in
# fp mode (3.15 is built with frame pointers) for the Python call chains perf script sees.
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

echo "== perf-trampoline record -o seed.svg -- python3.15 seed_example.py   (in $out)"
# perf and the interpreter must see the same files: the command runs in the sid root too.
in_root "$py" -m perf_trampoline record -o seed.svg -- "$py" seed_example.py 50000000
echo "== for perf report / perf script: --mode fp (this interpreter has frame pointers) --keep"
in_root "$py" -m perf_trampoline record --mode fp --keep -o seed-fp.svg -- "$py" seed_example.py 50000000 >/dev/null
echo "== Python call chains in perf script"
in_root perf script -i seed-fp.perf.data | "$top/target/venvs/3.11/bin/python" -m perf_trampoline.stacks --top 3
echo "== kept in $out: seed.svg (the flame graph: open it in a browser), seed.folded, seed-fp.perf.data"
echo "   (its perf map stays in /tmp: $top/scripts/in-root.sh $root perf report -i $out/seed-fp.perf.data)"
