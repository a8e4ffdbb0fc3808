#!/usr/bin/env bash
# Client interop tests: the openstack CLI, openstacksdk and
# python-cinderclient (pinned in tests/interop/requirements.txt), unmodified,
# against a fresh `ember serve` with embedded identity. Makes its own venv.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${EMBER_VENV:-target/interop-venv}"
req=tests/interop/requirements.txt
if [ ! -x "$venv/bin/pytest" ] || ! cmp -s "$req" "$venv/requirements.txt"; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
    cp "$req" "$venv/requirements.txt"
fi
cargo build --locked --bin ember
export EMBER_BIN="$PWD/target/debug/ember"
export PATH="$PWD/$venv/bin:$PATH"
exec "$venv/bin/pytest" -q tests/interop "$@"
