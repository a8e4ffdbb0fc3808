#!/usr/bin/env bash
# A throwaway single-node Ceph on 127.0.0.1 for tests and development:
# one monitor, one OSD (memstore: objects in the OSD's memory, or BlueStore
# on a sparse file), an RBD pool with one replica. No systemd, LVM or
# containers; every daemon started here, all state in one directory.
#
#   scripts/ceph.sh up      starts it (installing Debian's packages when
#                           missing) and prints `export CEPH_CONF=...`
#   scripts/ceph.sh down    stops the daemons it started (by pid file) and
#                           deletes the state
#
# Environment:
#   CEPH_STATE=dir          state directory (default target/ceph)
#   CEPH_POOL=rbd           the RBD pool to create
#   CEPH_OBJECTSTORE=memstore | bluestore
#   CEPH_PAXOS_INTERVAL=    the monitor's paxos_propose_interval; unset is
#                           Ceph's default (1 s: each snapshot create or
#                           remove then takes ~1 s); 0.05 for fast tests
#   CEPH_MGR=0              1 starts a ceph-mgr too (`ceph -s` then knows
#                           the PG states; RBD does not need it)
#   CEPH_RGW=0              1 starts radosgw (S3) too, with a user and a
#                           bucket `ember-backups`; `$CEPH_STATE/env` then
#                           also exports EMBER_TEST_S3_URL and the user's
#                           AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY
# Ports are chosen free at start-up.
set -euo pipefail
cmd="${1:-}"
STATE="${CEPH_STATE:-target/ceph}"
POOL="${CEPH_POOL:-rbd}"
STORE="${CEPH_OBJECTSTORE:-memstore}"
say() { echo "[ceph] $*" >&2; }

stop_daemons() {
    for pidfile in "$STATE"/run/*.pid; do
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid"
            for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
        fi
        rm -f "$pidfile"
    done
}

case "$cmd" in
down)
    [ -d "$STATE" ] || exit 0
    stop_daemons
    rm -rf "$STATE"
    say "stopped"
    exit 0
    ;;
up) ;;
*)
    echo "usage: $0 up|down" >&2
    exit 2
    ;;
esac

t0=$(date +%s.%N)
took() { echo "$(date +%s.%N) $t0" | awk '{printf "%.1f s", $1-$2}'; }

packages=(ceph-mon ceph-osd ceph-common uuid-runtime)
[ "${CEPH_MGR:-0}" = 1 ] && packages+=(ceph-mgr)
[ "${CEPH_RGW:-0}" = 1 ] && packages+=(radosgw curl)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ -d "$STATE" ]; then
    stop_daemons
    rm -rf "$STATE"
fi
mkdir -p "$STATE"/{run,log}
STATE="$(cd "$STATE" && pwd)"
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
MON_PORT=$(free_port)
RGW_PORT=$(free_port)
FSID=$(uuidgen)
CONF="$STATE/ceph.conf"
cat >"$CONF" <<CONF
[global]
fsid = $FSID
mon initial members = a
mon host = v2:127.0.0.1:$MON_PORT
public addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $STATE/\$cluster.\$name.keyring
run dir = $STATE/run
pid file = $STATE/run/\$name.pid
log file = $STATE/log/\$name.log
mon cluster log file = $STATE/log/cluster.log
crash dir = $STATE/crash
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 2
mon data avail crit = 1
[client]
# Several clients in one directory would collide on one admin socket.
admin socket =
[mon]
mon data = $STATE/\$name
keyring = $STATE/\$name/keyring
admin socket = $STATE/run/\$name.asok
$([ -n "${CEPH_PAXOS_INTERVAL:-}" ] && echo "paxos propose interval = $CEPH_PAXOS_INTERVAL")
[mgr]
mgr data = $STATE/\$name
[client.rgw.a]
rgw data = $STATE/\$name
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw dns name = 127.0.0.1
[osd]
osd data = $STATE/\$name
admin socket = $STATE/run/\$name.asok
osd objectstore = $STORE
# memstore keeps objects only in memory; a clean stop writes them out.
osd fast shutdown = false
memstore device bytes = 8589934592
bluestore block create = true
bluestore block size = 8589934592
osd memory target = 1073741824
CONF
export CEPH_CONF="$CONF"
ADMIN="$STATE/ceph.client.admin.keyring"
ceph-authtool --create-keyring "$STATE/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool --create-keyring "$ADMIN" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
ceph-authtool "$STATE/mon.keyring" --import-keyring "$ADMIN" >/dev/null
monmaptool --create --addv a "v2:127.0.0.1:$MON_PORT" --fsid "$FSID" "$STATE/monmap" >/dev/null
mkdir -p "$STATE/mon.a"
ceph-mon --mkfs -i a --monmap "$STATE/monmap" --keyring "$STATE/mon.keyring"
ceph-mon -i a
for _ in $(seq 1 150); do timeout 5 ceph -s >/dev/null 2>&1 && break; sleep 0.2; done
timeout 10 ceph -s >/dev/null || { say "the monitor does not answer: $STATE/log/mon.a.log"; exit 1; }
say "monitor up on 127.0.0.1:$MON_PORT ($(took))"
# Clone v2 (clones of unprotected snapshots, snapshots removable while
# clones live) needs clients from Mimic on.
ceph osd set-require-min-compat-client mimic >/dev/null 2>&1

if [ "${CEPH_MGR:-0}" = 1 ]; then
    mkdir -p "$STATE/mgr.x"
    ceph auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' -o "$STATE/mgr.x/keyring"
    ceph-mgr -i x --keyring "$STATE/mgr.x/keyring"
fi

mkdir -p "$STATE/osd.0"
OSD_UUID=$(uuidgen)
OSD_KEY=$(ceph-authtool --gen-print-key)
id=$(echo "{\"cephx_secret\": \"$OSD_KEY\"}" | ceph osd new "$OSD_UUID" -i -)
[ "$id" = 0 ] || { say "expected OSD id 0, got $id"; exit 1; }
ceph-authtool --create-keyring "$STATE/osd.0/keyring" --name osd.0 --add-key "$OSD_KEY" >/dev/null
ceph-osd -i 0 --mkfs --osd-uuid "$OSD_UUID" --keyring "$STATE/osd.0/keyring" \
    >>"$STATE/log/osd.0.mkfs.log" 2>&1 || { say "OSD mkfs failed: $STATE/log/osd.0.mkfs.log"; exit 1; }
ceph-osd -i 0 --keyring "$STATE/osd.0/keyring"
for _ in $(seq 1 300); do ceph osd dump 2>/dev/null | grep -q '^osd.0 up' && break; sleep 0.2; done
ceph osd dump | grep -q '^osd.0 up' || { say "osd.0 is not up: $STATE/log/osd.0.log"; exit 1; }
ceph osd pool create "$POOL" 8 8 >/dev/null 2>&1
# Returns once the pool's placement groups are active: ready for RBD.
timeout 120 rbd pool init "$POOL"
echo "export CEPH_CONF=$CONF" >"$STATE/env"

if [ "${CEPH_RGW:-0}" = 1 ]; then
    mkdir -p "$STATE/client.rgw.a"
    ceph auth get-or-create client.rgw.a mon 'allow rw' osd 'allow rwx' mgr 'allow rw' \
        -o "$STATE/client.rgw.a/keyring"
    radosgw -n client.rgw.a --keyring "$STATE/client.rgw.a/keyring"
    for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$RGW_PORT/" >/dev/null && break; sleep 0.2; done
    curl -sf "http://127.0.0.1:$RGW_PORT/" >/dev/null || { say "radosgw does not answer: $STATE/log/client.rgw.a.log"; exit 1; }
    KEY=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
    SECRET=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
    radosgw-admin user create --uid=ember --display-name=ember \
        --access-key="$KEY" --secret-key="$SECRET" >/dev/null
    # object_store does not create buckets: a signed PUT does (radosgw
    # wants the payload's hash among the signed headers).
    empty_sha256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
    curl -sf -X PUT -H "x-amz-content-sha256: $empty_sha256" \
        --aws-sigv4 "aws:amz:us-east-1:s3" --user "$KEY:$SECRET" \
        "http://127.0.0.1:$RGW_PORT/ember-backups" >/dev/null \
        || { say "could not create the bucket"; exit 1; }
    {
        echo "export EMBER_TEST_S3_URL='s3://ember-backups?endpoint=http://127.0.0.1:$RGW_PORT&allow_http=true'"
        echo "export AWS_ACCESS_KEY_ID=$KEY"
        echo "export AWS_SECRET_ACCESS_KEY=$SECRET"
    } >>"$STATE/env"
    say "radosgw (S3) on http://127.0.0.1:$RGW_PORT, bucket ember-backups ($(took))"
fi
say "ready in $(took): pool $POOL, CEPH_CONF=$CONF"
cat "$STATE/env"
