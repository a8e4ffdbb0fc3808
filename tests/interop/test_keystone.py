"""`--auth keystone`: Ember validates tokens with a real Keystone (installed
from PyPI by scripts/interop.sh), and the clients find Ember through
Keystone's catalog."""
import json
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import openstack
import pytest

from conftest import Ember, free_port

HERE = os.path.dirname(os.path.abspath(__file__))
ADMIN_PASSWORD = "keystone-admin"


def call(method, url, body=None, token=None, subject=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["X-Auth-Token"] = token
    if subject:
        headers["X-Subject-Token"] = subject
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                 method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
            return r.status, {k.lower(): v for k, v in r.headers.items()}, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, {k.lower(): v for k, v in e.headers.items()}, json.loads(raw) if raw else None


def password_token(auth_url, user, password, project):
    status, headers, body = call("POST", f"{auth_url}/auth/tokens", {"auth": {"identity": {"methods": ["password"],
        "password": {"user": {"name": user, "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"id": "default"}}}}})
    assert status == 201, body
    return headers["x-subject-token"], body["token"]["project"]["id"]


class Keystone:
    def __init__(self, python, root):
        self.python, self.root, self.port = python, root, free_port()
        self.url = f"http://127.0.0.1:{self.port}/v3"
        self.conf = os.path.join(root, "keystone.conf")
        with open(self.conf, "w") as f:
            f.write(f"""[DEFAULT]
log_dir = {root}
[database]
connection = sqlite:///{root}/keystone.db
[token]
provider = fernet
[fernet_tokens]
key_repository = {root}/fernet-keys
[credential]
key_repository = {root}/credential-keys
""")
        manage = [python, "-c", "import sys; from keystone.cmd.manage import main; sys.argv[0] = 'keystone-manage'; main()",
                  "--config-file", self.conf]
        for args in (["db_sync"], ["fernet_setup", "--keystone-user", str(os.getuid()), "--keystone-group", str(os.getgid())],
                     ["credential_setup", "--keystone-user", str(os.getuid()), "--keystone-group", str(os.getgid())],
                     ["bootstrap", "--bootstrap-password", ADMIN_PASSWORD, "--bootstrap-public-url", self.url,
                      "--bootstrap-region-id", "RegionOne"]):
            subprocess.run(manage + args, check=True, capture_output=True, timeout=300)
        self.log = open(os.path.join(root, "serve.log"), "ab")
        self.proc = subprocess.Popen([python, os.path.join(HERE, "..", "keystone", "serve.py"), str(self.port), self.conf],
                                     stdout=self.log, stderr=self.log)
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(self.url, timeout=2).read()
                break
            except OSError:
                assert self.proc.poll() is None and time.time() < deadline, open(os.path.join(root, "serve.log")).read()
                time.sleep(0.2)
        self.admin_token, _ = password_token(self.url, "admin", ADMIN_PASSWORD, "admin")

    def api(self, method, path, body=None):
        status, _, out = call(method, f"{self.url}{path}", body, token=self.admin_token)
        assert status < 300, (method, path, status, out)
        return out

    def role(self, name):
        found = self.api("GET", f"/roles?name={name}")["roles"]
        return found[0]["id"] if found else self.api("POST", "/roles", {"role": {"name": name}})["role"]["id"]

    def project(self, name):
        return self.api("POST", "/projects", {"project": {"name": name, "domain_id": "default"}})["project"]["id"]

    def user(self, name, password, project_id, role):
        uid = self.api("POST", "/users", {"user": {"name": name, "password": password, "domain_id": "default"}})["user"]["id"]
        self.api("PUT", f"/projects/{project_id}/users/{uid}/roles/{self.role(role)}")
        return uid

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def keystone_cloud():
    python = os.environ.get("EMBER_KEYSTONE_PYTHON")
    assert python, "scripts/interop.sh sets EMBER_KEYSTONE_PYTHON to a venv with keystone installed"
    root = tempfile.mkdtemp(prefix="ember-keystone-")
    ks = Keystone(python, root)
    service = ks.project("service")
    ks.user("ember", "ember-service-pw", service, "service")
    demo, other = ks.project("demo"), ks.project("other")
    ks.user("alice", "alice-pw", demo, "member")
    ks.user("bob", "bob-pw", demo, "reader")
    ks.user("carol", "carol-pw", other, "member")

    binary = os.path.realpath(os.environ.get("EMBER_BIN") or os.path.join(HERE, "..", "..", "target", "debug", "ember"))
    ember = Ember(binary, os.path.join(root, "ember"), free_port())
    os.makedirs(ember.data_dir)
    ember.extra_args = ["--auth", "keystone", "--keystone-url", ks.url, "--keystone-user", "ember",
                        "--keystone-password", "ember-service-pw", "--keystone-project", "service",
                        "--keystone-cache-secs", "2"]
    ember.ready_path = "/"
    ember.start()
    svc = ks.api("POST", "/services", {"service": {"type": "block-storage", "name": "ember"}})["service"]["id"]
    ks.api("POST", "/endpoints", {"endpoint": {"service_id": svc, "interface": "public", "region_id": "RegionOne",
                                               "url": f"{ember.base}/v3/$(project_id)s"}})
    yield ks, ember
    ember.stop()
    ks.stop()


def cli_env(ks, user, password, project):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(OS_AUTH_URL=ks.url, OS_USERNAME=user, OS_PASSWORD=password, OS_PROJECT_NAME=project,
               OS_USER_DOMAIN_NAME="Default", OS_PROJECT_DOMAIN_NAME="Default", OS_IDENTITY_API_VERSION="3",
               OS_REGION_NAME="RegionOne", OS_VOLUME_API_VERSION="3")
    return env


def test_cli_works_through_keystones_catalog(keystone_cloud):
    ks, ember = keystone_cloud
    env = cli_env(ks, "alice", "alice-pw", "demo")
    vol = ember.openstack("volume", "create", "--size", "1", "ks-vol", "-f", "json", env=env)
    deadline = time.time() + 60
    while ember.openstack("volume", "show", vol["id"], "-f", "json", env=env)["status"] != "available":
        assert time.time() < deadline
        time.sleep(0.2)
    snap = ember.openstack("volume", "snapshot", "create", "--volume", vol["id"], "--property", "via=keystone",
                           "ks-snap", "-f", "json", env=env)
    assert snap["properties"] == {"via": "keystone"}
    listed = ember.openstack("volume", "snapshot", "list", "-f", "json", env=env)
    assert snap["id"] in [s["ID"] for s in listed]


def test_roles_and_projects_come_from_keystone(keystone_cloud):
    ks, ember = keystone_cloud

    def conn(user, password, project):
        return openstack.connect(auth_url=ks.url, username=user, password=password, project_name=project,
                                 user_domain_name="Default", project_domain_name="Default", region_name="RegionOne",
                                 block_storage_api_version="3")

    alice, bob, carol = conn("alice", "alice-pw", "demo"), conn("bob", "bob-pw", "demo"), conn("carol", "carol-pw", "other")
    vol = alice.block_storage.wait_for_status(alice.block_storage.create_volume(size=1), status="available",
                                              wait=60, interval=0.2)
    snap = alice.block_storage.wait_for_status(alice.block_storage.create_snapshot(volume_id=vol.id),
                                               status="available", wait=60, interval=0.2)
    assert snap.id in [s.id for s in bob.block_storage.snapshots()]
    with pytest.raises(openstack.exceptions.ForbiddenException):
        bob.block_storage.create_snapshot(volume_id=vol.id)
    with pytest.raises(openstack.exceptions.NotFoundException):
        carol.block_storage.get_snapshot(snap.id)
    assert snap.id not in [s.id for s in carol.block_storage.snapshots()]


def test_invalid_and_revoked_tokens_are_refused(keystone_cloud):
    ks, ember = keystone_cloud
    token, project = password_token(ks.url, "alice", "alice-pw", "demo")
    url = f"{ember.base}/v3/{project}/snapshots"
    assert call("GET", url, token=token)[0] == 200
    assert call("GET", url, token="not-a-keystone-token")[0] == 401
    assert call("GET", url)[0] == 401
    assert call("DELETE", f"{ks.url}/auth/tokens", token=ks.admin_token, subject=token)[0] == 204
    time.sleep(2.5)  # Ember's cache of the earlier answer (--keystone-cache-secs 2) runs out
    status, _, body = call("GET", url, token=token)
    assert status == 401 and body["error"]["code"] == 401
