#!/usr/bin/env bash
# Schemathesis (pinned in tests/schemathesis/requirements.txt) against a
# fresh `ember serve`: every route of the OpenAPI documents Ember serves,
# bounded by EMBER_SCHEMATHESIS_EXAMPLES per operation (default 10; a soak:
# EMBER_SCHEMATHESIS_EXAMPLES=200 ./scripts/schemathesis.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${EMBER_SCHEMATHESIS_VENV:-target/schemathesis-venv}"
source scripts/venv.sh
make_venv "$venv" tests/schemathesis/requirements.txt
cargo build --locked --bin ember
EMBER_BIN="$PWD/target/debug/ember" exec "$venv/bin/python" tests/schemathesis/run.py
