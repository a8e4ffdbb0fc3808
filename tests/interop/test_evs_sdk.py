"""Seed 004 with the Huawei Cloud SDK (huaweicloudsdkevs), unmodified: it
signs every request with an access key (AK/SK, SDK-HMAC-SHA256) that
Ember's identity service issued through Keystone's EC2 credentials API."""
import json
import os
import shutil
import tempfile
import time
import urllib.request

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions import exceptions
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkevs.v2 import (CreateSnapshotOption, CreateSnapshotRequest, CreateSnapshotRequestBody,
                                  DeleteSnapshotRequest, EvsClient, ListSnapshotsRequest, ShowSnapshotRequest)

from conftest import ADMIN_PASSWORD, Ember, free_port


def call(method, url, body=None, token=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["X-Auth-Token"] = token
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=30) as r:
        raw = r.read()
        return {k.lower(): v for k, v in r.headers.items()}, json.loads(raw) if raw else None


@pytest.fixture(scope="module")
def evs_cloud():
    root = tempfile.mkdtemp(prefix="ember-evs-")
    binary = os.path.realpath(os.environ.get("EMBER_BIN") or os.path.join(os.path.dirname(__file__), "..", "..", "target", "debug", "ember"))
    ember = Ember(binary, root, free_port())
    evs_port = free_port()
    ember.extra_args += ["--evs-listen", f"127.0.0.1:{evs_port}"]
    ember.start()
    headers, body = call("POST", f"{ember.auth_url}/auth/tokens", {"auth": {"identity": {"methods": ["password"], "password": {
        "user": {"name": "admin", "domain": {"id": "default"}, "password": ADMIN_PASSWORD}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})
    token, user, project = headers["x-subject-token"], body["token"]["user"]["id"], body["token"]["project"]["id"]
    _, cred = call("POST", f"{ember.auth_url}/users/{user}/credentials/OS-EC2", {"tenant_id": project}, token)
    yield ember, evs_port, token, project, cred["credential"]
    ember.stop()
    shutil.rmtree(root, ignore_errors=True)


def client(port, ak, sk, project):
    cfg = HttpConfig.get_default_config()
    cfg.ignore_ssl_verification = True
    return (EvsClient.new_builder().with_http_config(cfg).with_credentials(BasicCredentials(ak, sk, project))
            .with_endpoint(f"http://127.0.0.1:{port}").build())


def test_the_sdk_creates_shows_lists_and_deletes_a_snapshot(evs_cloud):
    ember, port, token, project, cred = evs_cloud
    _, vol = call("POST", f"{ember.base}/v3/{project}/volumes", {"volume": {"size": 1, "name": "evs-disk"}}, token)
    vol_id = vol["volume"]["id"]
    for _ in range(300):
        if call("GET", f"{ember.base}/v3/{project}/volumes/{vol_id}", token=token)[1]["volume"]["status"] == "available":
            break
        time.sleep(0.05)
    evs = client(port, cred["access"], cred["secret"], project)
    resp = evs.create_snapshot(CreateSnapshotRequest(body=CreateSnapshotRequestBody(snapshot=CreateSnapshotOption(
        volume_id=vol_id, name="snap-001", description="Daily backup", force=False, metadata={}))))
    assert resp.status_code == 202
    snap = resp.snapshot
    assert (snap.name, snap.description, snap.volume_id, snap.size) == ("snap-001", "Daily backup", vol_id, 1)
    for _ in range(300):
        shown = evs.show_snapshot(ShowSnapshotRequest(snapshot_id=snap.id)).snapshot
        if shown.status == "available":
            break
        time.sleep(0.05)
    assert shown.status == "available"
    assert shown.os_extended_snapshot_attributesproject_id == project
    # The Cinder API shows the very same snapshot.
    assert call("GET", f"{ember.base}/v3/{project}/snapshots/{snap.id}", token=token)[1]["snapshot"]["name"] == "snap-001"
    listed = evs.list_snapshots(ListSnapshotsRequest(volume_id=vol_id, limit=10))
    assert [s.id for s in listed.snapshots] == [snap.id] and listed.count == 1
    assert evs.delete_snapshot(DeleteSnapshotRequest(snapshot_id=snap.id)).status_code == 202


def test_a_wrong_secret_or_key_is_refused(evs_cloud):
    ember, port, token, project, cred = evs_cloud
    for ak, sk in [(cred["access"], "0" * 32), ("unknown-access-key", cred["secret"])]:
        with pytest.raises(exceptions.ClientRequestException) as e:
            client(port, ak, sk, project).list_snapshots(ListSnapshotsRequest())
        assert e.value.status_code == 401
        assert e.value.error_code == "EVS.5401"
    # An EVS rule, through the SDK: the reserved name prefix.
    with pytest.raises(exceptions.ClientRequestException) as e:
        client(port, cred["access"], cred["secret"], project).create_snapshot(CreateSnapshotRequest(body=CreateSnapshotRequestBody(
            snapshot=CreateSnapshotOption(volume_id="00000000-0000-4000-8000-000000000000", name="autobk_snapshot_x"))))
    assert e.value.status_code == 400 and "autobk_snapshot_" in e.value.error_msg


def test_keys_of_a_disabled_or_deleted_user_stop_working(evs_cloud):
    """An access key acts as its user: disabled, the user's key is refused;
    deleted, the key goes with it (Keystone deletes a user's credentials)."""
    ember, port, token, project, _ = evs_cloud
    _, user = call("POST", f"{ember.auth_url}/users", {"user": {"name": "evs-temp", "password": "pw-temp"}}, token)
    user_id = user["user"]["id"]
    _, roles = call("GET", f"{ember.auth_url}/roles?name=member", token=token)
    call("PUT", f"{ember.auth_url}/projects/{project}/users/{user_id}/roles/{roles['roles'][0]['id']}", token=token)
    _, cred = call("POST", f"{ember.auth_url}/users/{user_id}/credentials/OS-EC2", {"tenant_id": project}, token)
    key = cred["credential"]
    evs = client(port, key["access"], key["secret"], project)
    assert evs.list_snapshots(ListSnapshotsRequest()).status_code == 200
    call("PATCH", f"{ember.auth_url}/users/{user_id}", {"user": {"enabled": False}}, token)
    with pytest.raises(exceptions.ClientRequestException) as e:
        evs.list_snapshots(ListSnapshotsRequest())
    assert e.value.status_code == 401
    call("PATCH", f"{ember.auth_url}/users/{user_id}", {"user": {"enabled": True}}, token)
    assert evs.list_snapshots(ListSnapshotsRequest()).status_code == 200
    call("DELETE", f"{ember.auth_url}/users/{user_id}", token=token)
    with pytest.raises(exceptions.ClientRequestException) as e:
        evs.list_snapshots(ListSnapshotsRequest())
    assert e.value.status_code == 401
    # The secret is derived, never stored: the metadata store holds none.
    for name in os.listdir(ember.data_dir):
        if name.startswith("ember.db"):
            with open(os.path.join(ember.data_dir, name), "rb") as f:
                assert key["secret"].encode() not in f.read(), name
