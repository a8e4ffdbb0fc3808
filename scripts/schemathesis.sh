#!/usr/bin/env bash
# Schemathesis (pinned in tests/schemathesis/requirements.txt) against a
# fresh `ember serve`: every route of the OpenAPI documents Ember serves,
# bounded by EMBER_SCHEMATHESIS_EXAMPLES per operation (default 10; a soak:
# EMBER_SCHEMATHESIS_EXAMPLES=200 ./scripts/schemathesis.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${EMBER_SCHEMATHESIS_VENV:-target/schemathesis-venv}"
req=tests/schemathesis/requirements.txt
if [ ! -x "$venv/bin/st" ] || ! cmp -s "$req" "$venv/requirements.txt"; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
    cp "$req" "$venv/requirements.txt"
fi
cargo build --locked --bin ember
EMBER_BIN="$PWD/target/debug/ember" exec "$venv/bin/python" tests/schemathesis/run.py
