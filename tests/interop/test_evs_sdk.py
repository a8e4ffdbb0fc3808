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
                                  DeleteSnapshotRequest, EvsClient, ListSnapshotsRequest, ListVersionsRequest,
                                  RollbackSnapshotOption, RollbackSnapshotRequest, RollbackSnapshotRequestBody,
                                  ShowSnapshotRequest, ShowVersionRequest, UpdateSnapshotOption,
                                  UpdateSnapshotRequest, UpdateSnapshotRequestBody)

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


def wait(predicate, what):
    for _ in range(600):
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_sdk_whole_snapshot_surface(evs_cloud):
    """Create, show, list with every filter and paging, update, rollback
    (to an older snapshot, bytes checked through the Cinder data API),
    delete, the version calls and the error cases, all through the SDK."""
    ember, port, token, project, cred = evs_cloud
    evs = client(port, cred["access"], cred["secret"], project)
    _, vol = call("POST", f"{ember.base}/v3/{project}/volumes", {"volume": {"size": 1, "name": "sdk-disk"}}, token)
    vol_id = vol["volume"]["id"]
    status = lambda: call("GET", f"{ember.base}/v3/{project}/volumes/{vol_id}", token=token)[1]["volume"]["status"]
    wait(lambda: status() == "available", "the volume")

    def write(byte):
        req = urllib.request.Request(f"{ember.base}/v3/{project}/volumes/{vol_id}/data?offset=0", data=bytes([byte]) * 4096,
                                     method="PUT", headers={"X-Auth-Token": token})
        urllib.request.urlopen(req, timeout=30).read()

    def read():
        req = urllib.request.Request(f"{ember.base}/v3/{project}/volumes/{vol_id}/data?offset=0&length=4096",
                                     headers={"X-Auth-Token": token})
        return urllib.request.urlopen(req, timeout=30).read()

    def snap(name):
        s = evs.create_snapshot(CreateSnapshotRequest(body=CreateSnapshotRequestBody(snapshot=CreateSnapshotOption(
            volume_id=vol_id, name=name)))).snapshot
        wait(lambda: evs.show_snapshot(ShowSnapshotRequest(snapshot_id=s.id)).snapshot.status == "available", name)
        return s.id

    write(0x11)
    older = snap("older")
    write(0x22)
    newer = snap("newer")
    write(0x33)

    # Every filter, and paging with its next link.
    def ids(**kw):
        r = evs.list_snapshots(ListSnapshotsRequest(volume_id=vol_id, **kw))
        return [s.id for s in r.snapshots], r
    assert set(ids()[0]) == {older, newer}
    assert ids(id=older)[0] == [older]
    assert ids(name="newer")[0] == [newer]
    assert set(ids(status="available")[0]) == {older, newer}
    assert set(ids(availability_zone="nova")[0]) == {older, newer}
    assert ids(availability_zone="elsewhere")[0] == []
    assert set(ids(service_type="EVS")[0]) == {older, newer}
    assert ids(dedicated_storage_id="ds")[0] == []
    assert ids(dedicated_storage_name="ds")[0] == []
    assert set(ids(enterprise_project_id="0")[0]) == {older, newer}
    assert ids(enterprise_project_id="42")[0] == []
    first_page, r = ids(limit=1)
    assert len(first_page) == 1 and r.count == 2
    assert r.snapshots_links and r.snapshots_links[0].rel == "next"
    second_page, r = ids(limit=1, offset=1)
    assert len(second_page) == 1 and second_page != first_page and not r.snapshots_links

    # Update.
    up = evs.update_snapshot(UpdateSnapshotRequest(snapshot_id=older, body=UpdateSnapshotRequestBody(
        snapshot=UpdateSnapshotOption(name="oldest", description="renamed"))))
    assert (up.snapshot.name, up.snapshot.description) == ("oldest", "renamed")

    # Rollback to the older snapshot: its bytes; the newer one is kept.
    rb = evs.rollback_snapshot(RollbackSnapshotRequest(snapshot_id=older, body=RollbackSnapshotRequestBody(
        rollback=RollbackSnapshotOption(volume_id=vol_id, name="sdk-disk-restored"))))
    assert rb.status_code == 202 and rb.rollback.volume_id == vol_id
    wait(lambda: status() == "available", "the rollback")
    assert read() == bytes([0x11]) * 4096
    assert evs.show_snapshot(ShowSnapshotRequest(snapshot_id=newer)).snapshot.status == "available"

    # Versions.
    assert evs.list_versions(ListVersionsRequest()).versions[0].id == "v2.0"
    assert evs.show_version(ShowVersionRequest(version="v2")).versions[0].id == "v2.0"

    # Errors, with EVS's codes.
    with pytest.raises(exceptions.ClientRequestException) as e:
        evs.show_snapshot(ShowSnapshotRequest(snapshot_id="00000000-0000-4000-8000-000000000000"))
    assert (e.value.status_code, e.value.error_code) == (404, "EVS.5404")
    _, other = call("POST", f"{ember.base}/v3/{project}/volumes", {"volume": {"size": 1}}, token)
    with pytest.raises(exceptions.ClientRequestException) as e:
        evs.rollback_snapshot(RollbackSnapshotRequest(snapshot_id=older, body=RollbackSnapshotRequestBody(
            rollback=RollbackSnapshotOption(volume_id=other["volume"]["id"]))))
    assert e.value.status_code == 400
    with pytest.raises(exceptions.ClientRequestException) as e:
        evs.list_snapshots(ListSnapshotsRequest(limit=1001))
    assert (e.value.status_code, e.value.error_code) == (400, "EVS.2142")

    # Delete.
    for sid in (older, newer):
        assert evs.delete_snapshot(DeleteSnapshotRequest(snapshot_id=sid)).status_code == 202
    wait(lambda: ids()[0] == [], "the deletes")
