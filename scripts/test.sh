#!/usr/bin/env bash
# Runs every test: installs what they need, builds the wheel into each test interpreter,
# then rustfmt, ruff and clippy (any finding fails), the Rust tests (cargo test) and the Python
# tests (pytest, real perf and interpreters).
set -uo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh || exit 1
scripts/test-interpreters.sh || exit 1

status=0
echo "== cargo fmt --check"
cargo fmt --check || status=1
echo "== ruff check"
"${HOST_PYTHON:-python3.11}" -m ruff check --quiet . || status=1
echo "== cargo clippy"
cargo clippy --quiet --all-targets -- -D warnings || status=1
cargo clippy --quiet --all-targets --features python -- -D warnings || status=1
# The wheel's configuration: the extension without Cranelift (pyproject.toml).
cargo clippy --quiet --no-default-features --features python -- -D warnings || status=1
echo "== cargo test"
cargo test --quiet || status=1
echo "== pytest"
# Every test's time goes to target/test-artefacts/pytest.xml: what to look at when the run grows.
target/venvs/3.11/bin/python -m pytest -q -rs --durations=15 --junitxml=target/test-artefacts/pytest.xml tests/python \
    || status=1
echo "== isa-tests"
isa-tests/run.sh || status=1
exit $status
