"""Starts a fresh `ember serve` (embedded identity) for the interop tests.

The binary is $EMBER_BIN (scripts/interop.sh sets it); each test session
gets its own data directory and a port chosen free at run time.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest

ADMIN_PASSWORD = "interop-admin-secret"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Ember:
    def __init__(self, binary, data_dir, port):
        self.binary = binary
        self.data_dir = data_dir
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.auth_url = f"{self.base}/identity/v3"
        self.log_path = os.path.join(data_dir, "ember.log")
        self.proc = None
        self.extra_args = ["--admin-password", ADMIN_PASSWORD]
        self.extra_env = {}
        # Answers without credentials once the server is up.
        self.ready_path = "/identity/v3"

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--listen", f"127.0.0.1:{self.port}", "--nbd-listen", "127.0.0.1:0", "--data-dir", self.data_dir, *self.extra_args],
            stdout=log, stderr=log, env={**os.environ, "EMBER_LOG": "info", **self.extra_env},
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"{self.base}{self.ready_path}", timeout=1).read()
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        raise RuntimeError("ember did not start:\n" + open(self.log_path).read())

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def openrc_env(self):
        """The environment `source <data-dir>/openrc` would give."""
        env = dict(os.environ)
        for k in list(env):
            if k.startswith("OS_"):
                del env[k]
        with open(os.path.join(self.data_dir, "openrc")) as f:
            for line in f:
                line = line.strip()
                if line.startswith("export "):
                    key, value = line[len("export "):].split("=", 1)
                    env[key] = value.strip("'")
        return env

    def user_env(self, user, password, project):
        env = self.openrc_env()
        env.update(OS_USERNAME=user, OS_PASSWORD=password, OS_PROJECT_NAME=project)
        return env

    def openstack(self, *args, env=None, check=True):
        """Runs the `openstack` CLI; returns parsed JSON when `-f json` is given."""
        cli = os.path.join(os.path.dirname(os.path.realpath(os.sys.executable)), "openstack")
        if not os.path.exists(cli):
            cli = shutil.which("openstack")
        out = subprocess.run([cli, *args], env=env or self.openrc_env(), capture_output=True, text=True, timeout=120)
        if check and out.returncode != 0:
            raise AssertionError(f"openstack {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
        if check and "json" in args and out.stdout.strip():
            return json.loads(out.stdout)
        return out


@pytest.fixture(scope="session")
def ember():
    binary = os.environ.get("EMBER_BIN") or os.path.join(os.path.dirname(__file__), "..", "..", "target", "debug", "ember")
    data_dir = tempfile.mkdtemp(prefix="ember-interop-")
    server = Ember(os.path.realpath(binary), data_dir, free_port())
    server.start()
    yield server
    server.stop()
    if os.environ.get("EMBER_TEST_KEEP"):
        print(f"kept {data_dir}")
    else:
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def tenants(ember):
    """Two member projects with a member user each, and a reader in the first."""
    made = {}
    for name in ("alpha", "beta"):
        ember.openstack("project", "create", f"proj-{name}", "-f", "json")
        ember.openstack("user", "create", "--password", f"pw-{name}", f"user-{name}", "-f", "json")
        ember.openstack("role", "add", "--project", f"proj-{name}", "--user", f"user-{name}", "member")
        made[name] = ember.user_env(f"user-{name}", f"pw-{name}", f"proj-{name}")
    ember.openstack("user", "create", "--password", "pw-reader", "user-reader", "-f", "json")
    ember.openstack("role", "add", "--project", "proj-alpha", "--user", "user-reader", "reader")
    made["reader"] = ember.user_env("user-reader", "pw-reader", "proj-alpha")
    return made
