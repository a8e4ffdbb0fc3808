"""Three `ember serve` nodes on one PostgreSQL and one Ceph pool, driven by
the standard clients (the openstack CLI and openstacksdk, alternately)
round-robin across the nodes while nodes are SIGKILLed at random points
and restarted. Afterwards: every acknowledged create exists (unless its
delete was acknowledged), nothing is transitional, the quota usage equals
a recount, and every acknowledged write reads back, from volumes and from
the snapshots taken after it, through any node.

Needs EMBER_TEST_DATABASE (scripts/postgres.sh) and EMBER_TEST_CEPH_CONF
(scripts/ceph.sh); skipped without them unless EMBER_TEST_POSTGRES_REQUIRED
/ EMBER_TEST_CEPH_REQUIRED is 1 (CI). The kill series is drawn from a seed
printed at the start (EMBER_TEST_SEED replays one).
"""
import os
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid

import openstack
import pytest

from conftest import ADMIN_PASSWORD, Ember, free_port

TRANSITIONAL = {"creating", "deleting", "extending", "attaching", "detaching", "reserved",
                "downloading", "uploading", "retyping", "maintenance", "reverting"}
OPERATIONS = 18


def required(var, flag):
    value = os.environ.get(var)
    if not value:
        if os.environ.get(flag) == "1":
            pytest.fail(f"{flag}=1 but {var} is not set")
        pytest.skip(f"no {var}")
    return value


def fresh_database(base):
    """A new, empty database beside the test cluster's own."""
    name = f"ember_interop_{uuid.uuid4().hex}"
    subprocess.run(["psql", base, "-qAt", "-v", "ON_ERROR_STOP=1", "-c", f"CREATE DATABASE {name}"],
                   check=True, capture_output=True, timeout=30)
    return base.rsplit("/", 1)[0] + "/" + name


class Node(Ember):
    """One node: its own port, data directory and node id; shared config."""

    def __init__(self, binary, index, config):
        super().__init__(binary, tempfile.mkdtemp(prefix=f"ember-node{index}-"), free_port())
        self.name = f"n{index}"
        self.extra_args += ["--config", config, "--node-id", self.name]
        # Every workflow step takes a while, so kills find work in flight.
        self.extra_env = {"EMBER_FAULT_STEP_DELAY_MS": "150"}
        self.up = False

    def start(self):
        super().start()
        self.up = True

    def kill(self):
        self.up = False  # first: a request failing from now on was cut short
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def connect(self):
        return openstack.connect(
            auth_url=self.auth_url, username="admin", password=ADMIN_PASSWORD, project_name="admin",
            user_domain_name="Default", project_domain_name="Default", region_name="RegionOne",
            block_storage_api_version="3", api_timeout=30,
        )


@pytest.fixture
def cluster():
    base = required("EMBER_TEST_DATABASE", "EMBER_TEST_POSTGRES_REQUIRED")
    ceph_conf = required("EMBER_TEST_CEPH_CONF", "EMBER_TEST_CEPH_REQUIRED")
    pool = os.environ.get("EMBER_TEST_CEPH_POOL", "rbd")
    binary = os.path.realpath(os.environ.get("EMBER_BIN") or os.path.join(
        os.path.dirname(__file__), "..", "..", "target", "debug", "ember"))
    config_dir = tempfile.mkdtemp(prefix="ember-cluster-")
    config = os.path.join(config_dir, "ember.toml")
    with open(config, "w") as f:
        f.write(f'database = "{fresh_database(base)}"\n'
                f'[[backend]]\nname = "rbd"\ndriver = "rbd"\nceph_conf = "{ceph_conf}"\n'
                f'pool = "{pool}"\nnamespace = "interop-{uuid.uuid4().hex[:12]}"\n')
    nodes = [Node(binary, i, config) for i in range(3)]
    for node in nodes:  # one at a time: the first creates the admin
        node.start()
    yield nodes
    for node in nodes:
        node.stop()
        if not os.environ.get("EMBER_TEST_KEEP"):
            shutil.rmtree(node.data_dir, ignore_errors=True)
    shutil.rmtree(config_dir, ignore_errors=True)


class Unknown(Exception):
    """The node went away during the request: it may or may not have happened."""


def through(nodes, turn, call):
    """Runs `call(node)` on the next live node from `turn` on, as a load
    balancer would; a node that fails to answer is skipped. Returns the
    result and the node that gave it; raises Unknown if a node died while
    it had the request."""
    for k in range(len(nodes)):
        node = nodes[(turn + k) % len(nodes)]
        if not node.up:
            continue
        try:
            return call(node), node
        except Exception as e:  # a dead node shows as a connection error
            if node.proc.poll() is not None or not node.up:
                raise Unknown(str(e)) from e
            raise
    raise AssertionError("no live node")


def cli_create_volume(node, name):
    return node.openstack("volume", "create", "--size", "1", name, "-f", "json")["id"]


def sdk_create_volume(node, name):
    return node.connect().block_storage.create_volume(size=1, name=name).id


def cli_create_snapshot(node, volume, name):
    return node.openstack("volume", "snapshot", "create", "--volume", volume, name, "-f", "json")["id"]


def sdk_create_snapshot(node, volume, name):
    return node.connect().block_storage.create_snapshot(volume_id=volume, name=name).id


def wait_status(nodes, kind, ident, want, seconds=90):
    deadline = time.time() + seconds
    last = None
    while time.time() < deadline:
        try:
            got, _ = through(nodes, 0, lambda n: n.connect().block_storage.get(f"/{kind}/{ident}"))
            last = got.json()[kind[:-1]]["status"]
            if last == want:
                return
        except Unknown:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{kind} {ident} is {last}, not {want}, after {seconds}s")


def write(node, volume, data):
    r = node.connect().block_storage.put(f"/volumes/{volume}/data?offset=0", data=data,
                                         headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 204, r.text


def read(node, kind, ident, length):
    r = node.connect().block_storage.get(f"/{kind}/{ident}/data?offset=0&length={length}")
    assert r.status_code == 200, r.text
    return r.content


def test_clients_round_robin_over_three_nodes_lose_nothing_while_nodes_die(cluster):
    nodes = cluster
    seed = int(os.environ.get("EMBER_TEST_SEED") or time.time_ns() % 1_000_000)
    print(f"kill series seed: {seed} (EMBER_TEST_SEED={seed} replays it)")
    rng = random.Random(seed)
    nodes[0].openstack("quota", "set", "--volumes", "100", "--snapshots", "100", "admin")

    created, unknown, deleted = {}, set(), set()   # name -> id; names; ids
    written = {}                                    # volume id -> bytes acknowledged
    snapshots = {}                                  # snapshot id -> bytes it must hold
    snapped = set()                                 # volumes that may have a snapshot
    kills = []
    down_since = {}
    for op in range(OPERATIONS):
        for timer in kills:
            timer.join()
        # Bring back a node that has been down for two operations; then,
        # at random, kill a live one (never the last) at a random moment
        # of this operation: a request may be cut short, and the node's
        # workflows are in flight (its steps are slowed).
        for node in nodes:
            if not node.up and op - down_since[node.name] >= 2:
                node.start()
        live = [n for n in nodes if n.up]
        if len(live) > 1 and (rng.random() < 0.3 or (op == OPERATIONS // 2 and not kills)):
            victim = rng.choice(live)
            down_since[victim.name] = op
            delay = rng.uniform(0.0, 1.5)
            print(f"op {op}: {victim.name} killed {delay:.2f}s in")
            timer = threading.Timer(delay, victim.kill)
            timer.start()
            kills.append(timer)

        name = f"mn-{op}"
        create = cli_create_volume if op % 2 == 0 else sdk_create_volume
        try:
            vid, _ = through(nodes, op, lambda n: create(n, name))
        except Unknown:
            unknown.add(name)
            continue
        created[name] = vid
        wait_status(nodes, "volumes", vid, "available")
        data = bytes([op + 1]) * 4096 + vid.encode()
        try:
            through(nodes, op + 1, lambda n: write(n, vid, data))
            written[vid] = data
        except Unknown:
            pass  # not acknowledged: nothing is promised about it
        if op % 3 == 0 and vid in written:
            snap = cli_create_snapshot if op % 2 == 0 else sdk_create_snapshot
            snapped.add(vid)
            try:
                sid, _ = through(nodes, op + 2, lambda n: snap(n, vid, f"{name}-snap"))
                snapshots[sid] = data
            except Unknown:
                pass
        if op % 4 == 3 and vid not in snapped:
            try:
                through(nodes, op + 2, lambda n: n.openstack("volume", "delete", vid))
                deleted.add(vid)
            except Unknown:
                unknown.add(name)
    for timer in kills:
        timer.join()
    assert kills, f"seed {seed} killed no node"
    print(f"{len(kills)} kills; {len(created)} creates acknowledged, {len(unknown)} cut short, "
          f"{len(deleted)} deletes, {len(written)} writes, {len(snapshots)} snapshots")
    for node in nodes:
        if not node.up:
            node.start()

    # Nothing stuck: every workflow finished, on its node or a taker's.
    conn = nodes[0].connect()
    deadline = time.time() + 120
    while True:
        volumes = list(conn.block_storage.volumes(details=True, all_projects=True))
        snaps = list(conn.block_storage.snapshots(details=True, all_projects=True))
        busy = [v.status for v in volumes + snaps if v.status in TRANSITIONAL]
        if not busy:
            break
        assert time.time() < deadline, f"still transitional: {busy}"
        time.sleep(0.5)

    # Every acknowledged create exists unless its delete was acknowledged;
    # what exists beyond that was asked for by a request cut short.
    by_name = {v.name: v for v in volumes}
    for name, vid in created.items():
        if vid in deleted:
            assert vid not in {v.id for v in volumes}, f"deleted volume {name} is back"
        else:
            assert name in by_name and by_name[name].id == vid, f"acknowledged volume {name} is gone"
    for v in volumes:
        assert v.status == "available", f"{v.name}: {v.status}"
        assert v.name in created or v.name in unknown, f"volume {v.name} nobody asked for"
    for s in snaps:
        assert s.status == "available", f"{s.name}: {s.status}"

    # The quota counts exactly what exists.
    project = conn.current_project_id
    usage = conn.block_storage.get(f"/os-quota-sets/{project}?usage=true").json()["quota_set"]
    assert usage["volumes"]["in_use"] == len(volumes), usage
    assert usage["snapshots"]["in_use"] == len(snaps), usage
    assert usage["gigabytes"]["in_use"] == len(volumes) + len(snaps), usage
    assert usage["volumes"]["reserved"] == 0, usage

    # Every acknowledged write reads back through every node.
    live_ids = {v.id for v in volumes}
    for i, (vid, data) in enumerate(written.items()):
        if vid in live_ids:
            assert read(nodes[i % 3], "volumes", vid, len(data)) == data, f"volume {vid}"
    snap_ids = {s.id for s in snaps}
    for i, (sid, data) in enumerate(snapshots.items()):
        assert sid in snap_ids, f"acknowledged snapshot {sid} is gone"
        assert read(nodes[(i + 1) % 3], "snapshots", sid, len(data)) == data, f"snapshot {sid}"

    # Every node is listed, and up again.
    services = conn.block_storage.get("/os-services?binary=cinder-scheduler").json()["services"]
    assert sorted(s["host"] for s in services) == ["n0", "n1", "n2"], services
