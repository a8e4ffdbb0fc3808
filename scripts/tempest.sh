#!/usr/bin/env bash
# Tempest's volume API tests (tempest 47, pinned in tests/tempest/) against a
# fresh `ember serve` with embedded identity; see tests/tempest/run.py.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${EMBER_TEMPEST_VENV:-target/tempest-venv}"
source scripts/venv.sh
make_venv "$venv" tests/tempest/requirements.txt
cargo build --locked --bin ember
exec "$venv/bin/python" tests/tempest/run.py target/debug/ember
