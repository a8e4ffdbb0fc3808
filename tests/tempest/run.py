"""Runs Tempest's volume API tests against a fresh `ember serve`.

Two passes, because of how tempest 47 couples credentials and networking:
1. dynamic credentials (tempest makes a project and users per class through
   Ember's Keystone API), neutron off: every volume test class but the few
   that tempest gates on neutron;
2. pre-provisioned accounts (made here through the Keystone API), neutron
   on: those gated classes (the core snapshot CRUD class among them), which
   make no network call with pre-provisioned credentials.
Ember runs two backends, so that Tempest's multi-backend and
retype-with-migration tests run (`backend_names`): the embedded qcow2 one
(first: where the other tests' volumes go) and RBD on the test cluster when
EMBER_TEST_CEPH_CONF names one (scripts/ceph.sh), else a second qcow2.
With a Ceph cluster, a third pass puts every volume on RBD; with a
PostgreSQL server too (EMBER_TEST_DATABASE, scripts/postgres.sh), a fourth
runs the same tests against two Ember nodes on one database and one pool,
every request sent to the next node in turn (roundrobin.py).
Tests in exclude.txt are not run (each has its reason there); any other
failure fails the run. Usage: python run.py EMBER_BINARY
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import roundrobin

HERE = os.path.dirname(os.path.abspath(__file__))
ADMIN_PASSWORD = "tempest-admin"
GATED = r"^tempest\.api\.volume\.(test_volumes_snapshots\.VolumesSnapshotTestJSON|test_volumes_actions|admin\.test_volumes_actions|test_volumes_extend\.VolumesExtendAttachedTest|admin\.test_encrypted_volumes_extend|admin\.test_snapshot_manage|test_volumes_backup)"
# The cinder-tempest-plugin's volume API tests run in both passes (both
# credential modes).
PLUGIN = r"^cinder_tempest_plugin\.api\.volume\."
DYNAMIC = r"^tempest\.api\.volume\.|" + PLUGIN
ACCOUNTS = GATED + "|" + PLUGIN
# With a Ceph test cluster, a third pass puts every volume on RBD (the
# `volume_type` Tempest creates volumes with): the core volume, snapshot,
# clone, extend and action tests.
ON_RBD = (r"^tempest\.api\.volume\.(test_volumes_get|test_volumes_extend|test_volumes_clone|"
          r"test_volume_delete_cascade|test_volumes_snapshots_list|test_volumes_snapshots_negative|"
          r"test_snapshot_metadata|test_volumes_list|test_volumes_negative|admin\.test_snapshots_actions|"
          r"admin\.test_volumes_actions|admin\.test_group_snapshots)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(method, url, body=None, token=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["X-Auth-Token"] = token
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                 method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=30) as r:
        raw = r.read()
        return r.headers, (json.loads(raw) if raw else None)


def admin_token(auth_url):
    headers, _ = call("POST", f"{auth_url}/auth/tokens", {"auth": {"identity": {"methods": ["password"], "password": {
        "user": {"name": "admin", "domain": {"id": "default"}, "password": ADMIN_PASSWORD}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})
    return headers["X-Subject-Token"]


def rbd_volume_type(port, auth_url):
    """A public volume type whose volumes go to the RBD backend."""
    token = admin_token(auth_url)
    project = call("GET", f"{auth_url}/projects?name=admin", token=token)[1]["projects"][0]["id"]
    call("POST", f"http://127.0.0.1:{port}/v3/{project}/types",
         {"volume_type": {"name": "on-rbd", "extra_specs": {"volume_backend_name": "rbd"}}}, token)
    return "on-rbd"


def provision_accounts(auth_url, path):
    """Two member projects, each with a member and a reader, and two admins."""
    token = admin_token(auth_url)
    roles = {r["name"]: r["id"] for r in call("GET", f"{auth_url}/roles", token=token)[1]["roles"]}
    admin_project = call("GET", f"{auth_url}/projects?name=admin", token=token)[1]["projects"][0]["id"]
    accounts = []

    def user(name, project_id, project_name, role):
        uid = call("POST", f"{auth_url}/users", {"user": {"name": name, "password": name + "-pw",
                                                          "domain_id": "default"}}, token)[1]["user"]["id"]
        call("PUT", f"{auth_url}/projects/{project_id}/users/{uid}/roles/{roles[role]}", token=token)
        entry = {"username": name, "project_name": project_name, "password": name + "-pw",
                 "domain_name": "Default", "roles": [role]}
        if role == "admin":
            entry["types"] = ["admin"]
        accounts.append(entry)

    for i in (1, 2):
        pid = call("POST", f"{auth_url}/projects", {"project": {"name": f"tempest-p{i}", "domain_id": "default"}},
                   token)[1]["project"]["id"]
        user(f"tempest-member{i}", pid, f"tempest-p{i}", "member")
        user(f"tempest-reader{i}", pid, f"tempest-p{i}", "reader")
        user(f"tempest-admin{i}", admin_project, "admin", "admin")
    with open(path, "w") as f:
        for a in accounts:
            f.write("- " + "\n  ".join(f"{k}: {json.dumps(v)}" for k, v in a.items()) + "\n")


def backends_toml(root):
    """The [[backend]] tables: the embedded qcow2, and RBD or a second qcow2."""
    tables = f'''[[backend]]
name = "qcow2"
driver = "qcow2"
path = "{os.path.join(root, "data", "images")}"
'''
    ceph = os.environ.get("EMBER_TEST_CEPH_CONF")
    if ceph:
        tables += f'''
[[backend]]
name = "rbd"
driver = "rbd"
ceph_conf = "{ceph}"
pool = "{os.environ.get("EMBER_TEST_CEPH_POOL", "rbd")}"
namespace = "tempest-{os.getpid()}"
'''
        return tables, ["qcow2", "rbd"]
    tables += f'''
[[backend]]
name = "qcow2b"
driver = "qcow2"
path = "{os.path.join(root, "images-b")}"
'''
    return tables, ["qcow2", "qcow2b"]


def config(port, dynamic, backend_names, accounts_file=None, volume_type=""):
    return f"""[DEFAULT]
log_file = tempest.log
[auth]
use_dynamic_credentials = {str(dynamic).lower()}
{"test_accounts_file = " + accounts_file if accounts_file else ""}
admin_username = admin
admin_password = {ADMIN_PASSWORD}
admin_project_name = admin
admin_domain_name = Default
create_isolated_networks = false
tempest_roles = member
[identity]
uri_v3 = http://127.0.0.1:{port}/identity/v3
auth_version = v3
region = RegionOne
[identity-feature-enabled]
api_v3 = true
[service_available]
cinder = true
neutron = {str(not dynamic).lower()}
nova = false
glance = false
swift = false
[volume]
catalog_type = block-storage
vendor_name = Ember
storage_protocol = nbd
min_microversion = 3.0
max_microversion = 3.71
build_interval = 1
build_timeout = 60
backend_names = {",".join(backend_names)}
# Ember names unmanaged data volume-<id> and snapshot-<id> (as Cinder's RBD
# driver does; Tempest's snapshot default is LVM's _snapshot-<id>).
manage_volume_ref = source-name,volume-%s
manage_snapshot_ref = source-name,snapshot-%s
volume_type = {volume_type}
[compute-feature-enabled]
volume_multiattach = true
[volume-feature-enabled]
multi_backend = true
volume_revert = true
snapshot = true
clone = true
backup = true
extend_volume_with_snapshot = true
manage_snapshot = true
manage_volume = true
"""


def tempest(workspace, regex, exclude):
    cmd = [os.path.join(os.path.dirname(sys.executable), "tempest"), "run", "--regex", regex,
           "--exclude-list", exclude, "--concurrency", "2"]
    print("+", " ".join(cmd), flush=True)
    # shim/sitecustomize.py: tempest 47's missing images_client (see there).
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (os.path.join(HERE, "shim"), env.get("PYTHONPATH")) if p)
    return subprocess.run(cmd, cwd=workspace, env=env).returncode


def wait_for(auth_url):
    for _ in range(600):
        try:
            urllib.request.urlopen(auth_url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.05)


def start_two_nodes(binary, root):
    """Two nodes on a fresh database and one RBD namespace, behind the
    round-robin proxy. Returns (proxy port, processes, proxy)."""
    db = f"tempest_{os.getpid()}"
    base = os.environ["EMBER_TEST_DATABASE"]
    subprocess.run(["psql", base, "-qc", f"CREATE DATABASE {db}"], check=True)
    url = base.rsplit("/", 1)[0] + "/" + db
    with open(os.path.join(root, "two-nodes.toml"), "w") as f:
        f.write(f'''database = "{url}"
[[backend]]
name = "rbd"
driver = "rbd"
ceph_conf = "{os.environ["EMBER_TEST_CEPH_CONF"]}"
pool = "{os.environ.get("EMBER_TEST_CEPH_POOL", "rbd")}"
namespace = "tempest-nodes-{os.getpid()}"
''')
    proxy_port = free_port()
    procs = []
    ports = []
    for i in range(2):
        port = free_port()
        ports.append(port)
        log = open(os.path.join(root, f"ember-n{i}.log"), "ab")
        procs.append(subprocess.Popen(
            [binary, "serve", "--listen", f"127.0.0.1:{port}", "--nbd-listen", "127.0.0.1:0",
             "--data-dir", os.path.join(root, f"data-n{i}"), "--admin-password", ADMIN_PASSWORD,
             "--config", os.path.join(root, "two-nodes.toml"), "--node-id", f"n{i}",
             "--public-endpoint", f"http://127.0.0.1:{proxy_port}"],
            stdout=log, stderr=log))
        # One at a time: the first creates the schema and the keys.
        wait_for(f"http://127.0.0.1:{port}/identity/v3")
    proxy = roundrobin.serve(proxy_port, ports)
    return proxy_port, procs, proxy


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def main():
    binary = os.path.realpath(sys.argv[1])
    root = tempfile.mkdtemp(prefix="ember-tempest-")
    port = free_port()
    log = open(os.path.join(root, "ember.log"), "ab")
    tables, backend_names = backends_toml(root)
    with open(os.path.join(root, "ember.toml"), "w") as f:
        f.write(tables)
    print(f"backends: {', '.join(backend_names)}", flush=True)
    ember = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{port}", "--nbd-listen", "127.0.0.1:0", "--data-dir",
                              os.path.join(root, "data"), "--admin-password", ADMIN_PASSWORD,
                              "--config", os.path.join(root, "ember.toml")],
                             stdout=log, stderr=log)
    failed = False
    cluster = []
    try:
        auth_url = f"http://127.0.0.1:{port}/identity/v3"
        wait_for(auth_url)
        tempest_bin = os.path.join(os.path.dirname(sys.executable), "tempest")
        exclude = os.path.join(HERE, "exclude.txt")
        passes = [("dynamic", True, DYNAMIC), ("accounts", False, ACCOUNTS)]
        if "rbd" in backend_names:
            passes.append(("on-rbd", True, ON_RBD))
            if os.environ.get("EMBER_TEST_DATABASE"):
                passes.append(("two-nodes", True, ON_RBD))
        if os.environ.get("EMBER_TEMPEST_PASSES"):
            # Development: only the passes named (comma-separated).
            wanted = os.environ["EMBER_TEMPEST_PASSES"].split(",")
            passes = [p for p in passes if p[0] in wanted]
        if len(sys.argv) > 2:
            # Development: one regex for every pass.
            passes = [(name, dynamic, sys.argv[2]) for name, dynamic, _ in passes]
        for name, dynamic, regex in passes:
            names = backend_names
            if name == "two-nodes":
                port, cluster, proxy = start_two_nodes(binary, root)
                auth_url = f"http://127.0.0.1:{port}/identity/v3"
                names = ["rbd"]
            ws = os.path.join(root, name)
            # A private workspace registry: runs never collide by name.
            subprocess.run([tempest_bin, "init", "--workspace-path", os.path.join(root, "workspaces.yaml"),
                            "--name", f"{os.path.basename(root)}-{name}", ws], check=True, capture_output=True)
            accounts = None
            if not dynamic:
                accounts = os.path.join(ws, "etc", "accounts.yaml")
                provision_accounts(auth_url, accounts)
            with open(os.path.join(ws, "etc", "tempest.conf"), "w") as f:
                volume_type = rbd_volume_type(port, auth_url) if name == "on-rbd" else ""
                f.write(config(port, dynamic, names, accounts, volume_type))
            if tempest(ws, regex, exclude) != 0:
                failed = True
    finally:
        for proc in [ember] + cluster:
            stop(proc)
    if failed:
        print(f"tempest failed; logs and data kept in {root}", file=sys.stderr)
        sys.exit(1)
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
