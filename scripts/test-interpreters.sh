#!/usr/bin/env bash
# Builds the wheel once and installs it into every test interpreter: the host's python3.11
# (and pyenv's 3.12 when the machine has it) in venvs under target/venvs, and sid's 3.13, 3.14
# and 3.15 in venvs under target/venvs too, run inside the cached sid root. Writes
# target/interpreters.json for the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

host_py=${HOST_PYTHON:-python3.11}
root=$(scripts/sid-root.sh)

echo "test-interpreters: building the wheel (release)" >&2
rm -rf target/wheels
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
if [ -x "$HOME/.pyenv/versions/3.12.1/bin/python3.12" ]; then
    venv_host 3.12 "$HOME/.pyenv/versions/3.12.1/bin/python3.12"
fi

# sid's venvs live in this checkout too (in-root.sh mounts it at the same path in the root),
# so two checkouts never share an installed copy.
for v in 3.13 3.14 3.15; do
    dir=$top/target/venvs/sid-$v
    [ -x "$dir/bin/python" ] || scripts/in-root.sh "$root" "python$v" -m venv "$dir"
    scripts/in-root.sh "$root" "$dir/bin/python" -m pip install -q --disable-pip-version-check \
        --force-reinstall --no-deps --no-index "$top/$wheel"
    add "sid-$v" "$v" "$dir/bin/python" "$top/scripts/in-root.sh" "$root"
done

(IFS=,; echo "[${entries[*]}]") > target/interpreters.json
echo "test-interpreters: $(grep -o '"name": "[^"]*"' target/interpreters.json | cut -d'"' -f4 | tr '\n' ' ')" >&2
