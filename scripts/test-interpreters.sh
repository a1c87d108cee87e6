#!/usr/bin/env bash
# Builds the wheel once and installs it into every test interpreter: the host's python3.11
# (and pyenv's 3.12 when the machine has it) in venvs under target/venvs, and sid's 3.13, 3.14
# and 3.15 in venvs inside the cached sid root. Writes target/interpreters.json for the tests.
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
add() { # name version python-command... -- perf-command...
    local name=$1 version=$2; shift 2
    local py=() perf=()
    while [ "$1" != "--" ]; do py+=("$1"); shift; done; shift
    perf=("$@")
    entries+=("$("$host_py" -c 'import json,sys; n,v,p,f=sys.argv[1],sys.argv[2],sys.argv[3].split("\x1f"),sys.argv[4].split("\x1f"); print(json.dumps({"name":n,"version":v,"python":p,"perf":f}))' \
        "$name" "$version" "$(IFS=$'\x1f'; echo "${py[*]}")" "$(IFS=$'\x1f'; echo "${perf[*]}")")")
}

venv_host() { # version python
    local v=$1 py=$2 dir=target/venvs/$1
    [ -x "$dir/bin/python" ] || "$py" -m venv "$dir"
    "$dir/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$wheel"
    add "host-$v" "$v" "$top/$dir/bin/python" -- perf
}

venv_host 3.11 "$host_py"
"target/venvs/3.11/bin/python" -c 'import pytest' 2>/dev/null ||
    target/venvs/3.11/bin/python -m pip install -q --disable-pip-version-check 'pytest>=8'
if [ -x "$HOME/.pyenv/versions/3.12.1/bin/python3.12" ]; then
    venv_host 3.12 "$HOME/.pyenv/versions/3.12.1/bin/python3.12"
fi

mkdir -p "$root/opt/wheels"
rm -f "$root"/opt/wheels/*.whl
cp "$wheel" "$root/opt/wheels/"
for v in 3.13 3.14 3.15; do
    [ -x "$root/opt/venvs/$v/bin/python" ] || scripts/in-root.sh "$root" "python$v" -m venv "/opt/venvs/$v"
    scripts/in-root.sh "$root" "/opt/venvs/$v/bin/python" -m pip install -q --disable-pip-version-check \
        --force-reinstall --no-deps --no-index "/opt/wheels/$(basename "$wheel")"
    add "sid-$v" "$v" "$top/scripts/in-root.sh" "$root" "/opt/venvs/$v/bin/python" -- "$top/scripts/in-root.sh" "$root" perf
done

(IFS=,; echo "[${entries[*]}]") > target/interpreters.json
echo "test-interpreters: $(grep -o '"name": "[^"]*"' target/interpreters.json | cut -d'"' -f4 | tr '\n' ' ')" >&2
