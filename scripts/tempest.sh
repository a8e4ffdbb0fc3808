#!/usr/bin/env bash
# Tempest's volume API tests (tempest 47, pinned in tests/tempest/) against a
# fresh `ember serve` with embedded identity; see tests/tempest/run.py.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${EMBER_TEMPEST_VENV:-target/tempest-venv}"
req=tests/tempest/requirements.txt
if [ ! -x "$venv/bin/tempest" ] || ! cmp -s "$req" "$venv/requirements.txt"; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
    cp "$req" "$venv/requirements.txt"
fi
cargo build --locked --bin ember
exec "$venv/bin/python" tests/tempest/run.py target/debug/ember
