#!/usr/bin/env bash
# Installs the host packages the build and the tests need (idempotent; fast when present).
set -euo pipefail

apt_pkgs=(linux-perf mmdebstrap binutils binutils-multiarch chromium)
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
if ! "$py" -c 'import maturin, pytest' 2>/dev/null; then
    echo "install-deps: pip packages: maturin pytest"
    "$py" -m pip install -q --disable-pip-version-check 'maturin>=1.9,<2' 'pytest>=8'
fi
