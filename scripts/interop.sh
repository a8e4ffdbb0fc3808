#!/usr/bin/env bash
# Client interop tests: the openstack CLI, openstacksdk and
# python-cinderclient (pinned in tests/interop/requirements.txt), unmodified,
# against a fresh `ember serve` with embedded identity, and with tokens
# validated by a real Keystone (tests/keystone/). Makes its own venvs.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
venv="${EMBER_VENV:-target/interop-venv}"
make_venv "$venv" tests/interop/requirements.txt
# A real Keystone for the --auth keystone tests, in its own venv.
keystone_venv="${EMBER_KEYSTONE_VENV:-target/keystone-venv}"
make_venv "$keystone_venv" tests/keystone/requirements.txt
export EMBER_KEYSTONE_PYTHON="$PWD/$keystone_venv/bin/python"
cargo build --locked --bin ember
export EMBER_BIN="$PWD/target/debug/ember"
export PATH="$PWD/$venv/bin:$PATH"
exec "$venv/bin/pytest" -q tests/interop "$@"
