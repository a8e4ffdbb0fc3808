#!/usr/bin/env bash
# Runs Ember's whole test suite: unit tests, the qcow2 driver against
# qemu's own tools, and integration tests that start the real `ember`
# binary, then the OpenStack clients against it (scripts/interop.sh) and
# Tempest (scripts/tempest.sh).
# Installs the system tools the tests use when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

need=()
command -v qemu-img >/dev/null || need+=(qemu-utils)
# libnbd's nbdinfo/nbdcopy: NBD clients the attach tests use beside qemu-io.
command -v nbdinfo >/dev/null || need+=(libnbd-bin)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
# gdb: scripts/watchdog.sh prints a hung test's stacks with it.
command -v gdb >/dev/null || need+=(gdb)
if ((${#need[@]})); then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
    else
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
    fi
fi

# A throwaway single-node Ceph (scripts/ceph.sh) so that the backend
# suites (the service's workflow suite, the SIGKILL crash test, the RBD
# tests) run against RBD as well as qcow2, and the backup tests against
# its radosgw (S3) as well as a directory. EMBER_SKIP_CEPH=1 runs them on
# qcow2 and a directory only.
if [ -z "${EMBER_SKIP_CEPH:-}" ]; then
    export CEPH_STATE="$PWD/target/ceph"
    # Snapshots in ~50 ms instead of Ceph's default 1 s batching (one test
    # in tests/rbd.rs measures with the default interval set at run time).
    CEPH_PAXOS_INTERVAL=0.05 CEPH_RGW=1 ./scripts/ceph.sh up >/dev/null
    trap '"$root/scripts/ceph.sh" down' EXIT
    # EMBER_TEST_S3_URL and the S3 user's keys.
    source "$CEPH_STATE/env"
    export EMBER_TEST_CEPH_CONF="$CEPH_STATE/ceph.conf"
    export EMBER_TEST_CEPH_REQUIRED=1
    export EMBER_TEST_S3_REQUIRED=1
fi

# A throwaway PostgreSQL (scripts/postgres.sh): the store suite and the
# multi-node tests run against it as well as SQLite. EMBER_SKIP_POSTGRES=1
# runs SQLite only.
if [ -z "${EMBER_SKIP_POSTGRES:-}" ]; then
    export PG_STATE="${PG_STATE:-/tmp/ember-postgres-ci-$$}"
    eval "$(./scripts/postgres.sh up)"
    if [ -z "${EMBER_SKIP_CEPH:-}" ]; then
        trap '"$root/scripts/ceph.sh" down; "$root/scripts/postgres.sh" down' EXIT
    else
        trap '"$root/scripts/postgres.sh" down' EXIT
    fi
    export EMBER_TEST_POSTGRES_REQUIRED=1
fi

# A test binary that runs past 15 minutes is hung: its stacks are printed
# and it is killed (the longest takes about two minutes).
./scripts/watchdog.sh cargo test --workspace --locked "$@"

# The standard OpenStack clients, unmodified, against the real binary.
if [ -z "${EMBER_SKIP_INTEROP:-}" ]; then
    ./scripts/interop.sh
fi

# Schemathesis against the OpenAPI documents Ember serves (/openapi.json):
# no 5xx, every response as documented, invalid input refused, auth
# enforced, every workflow finished afterwards.
if [ -z "${EMBER_SKIP_SCHEMATHESIS:-}" ]; then
    ./scripts/schemathesis.sh
fi

# Tempest's volume API tests (tests/tempest/exclude.txt lists what Ember
# does not implement yet, with reasons).
if [ -z "${EMBER_SKIP_TEMPEST:-}" ]; then
    ./scripts/tempest.sh
fi
