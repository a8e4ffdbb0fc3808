"""python-cinderclient, unmodified, with a keystoneauth session."""
import time

import pytest
from cinderclient import client as cinder_client
from cinderclient import exceptions as cinder_exc
from keystoneauth1 import loading, session


def make_client(ember, user, password, project, version="3.71"):
    auth = loading.get_plugin_loader("password").load_from_options(
        auth_url=ember.auth_url, username=user, password=password, project_name=project,
        user_domain_name="Default", project_domain_name="Default")
    return cinder_client.Client(version, session=session.Session(auth=auth))


def wait(getter, want):
    deadline = time.time() + 60
    while time.time() < deadline:
        obj = getter()
        if obj.status == want:
            return obj
        time.sleep(0.1)
    raise AssertionError(f"never became {want}")


@pytest.mark.parametrize("version", ["3.71", "3.0"])
def test_snapshot_crud(ember, tenants, version):
    c = make_client(ember, "user-alpha", "pw-alpha", "proj-alpha", version)
    vol = c.volumes.create(1, name=f"cc-vol-{version}")
    wait(lambda: c.volumes.get(vol.id), "available")
    snap = c.volume_snapshots.create(vol.id, name="cc-snap", description="from cinderclient", metadata={"a": "1"})
    assert snap.status == "creating" and snap.volume_id == vol.id and snap.size == 1
    snap = wait(lambda: c.volume_snapshots.get(snap.id), "available")
    assert snap.name == "cc-snap" and snap.metadata == {"a": "1"}
    if version == "3.71":
        assert snap.user_id and snap.consumes_quota is True
        assert snap.group_snapshot_id is None
    else:
        assert not hasattr(snap, "user_id")

    assert [s.id for s in c.volume_snapshots.list(search_opts={"volume_id": vol.id})] == [snap.id]
    c.volume_snapshots.update(snap, name="renamed")
    c.volume_snapshots.set_metadata(snap, {"b": "2"})
    c.volume_snapshots.delete_metadata(snap, ["a"])
    snap = c.volume_snapshots.get(snap.id)
    assert snap.name == "renamed" and snap.metadata == {"b": "2"}

    # A volume with snapshots cannot go; Cinder's message says why.
    with pytest.raises(cinder_exc.BadRequest) as refused:
        c.volumes.delete(vol)
    assert "snapshots" in str(refused.value)

    c.volume_snapshots.delete(snap)
    deadline = time.time() + 60
    while True:
        try:
            c.volume_snapshots.get(snap.id)
        except cinder_exc.NotFound:
            break
        assert time.time() < deadline
        time.sleep(0.1)
    c.volumes.delete(vol)


def test_admin_only_actions_need_admin(ember, tenants):
    from conftest import ADMIN_PASSWORD
    member = make_client(ember, "user-alpha", "pw-alpha", "proj-alpha")
    admin = make_client(ember, "admin", ADMIN_PASSWORD, "admin")
    vol = member.volumes.create(1, name="cc-admin")
    wait(lambda: member.volumes.get(vol.id), "available")
    snap = member.volume_snapshots.create(vol.id)
    wait(lambda: member.volume_snapshots.get(snap.id), "available")

    with pytest.raises(cinder_exc.Forbidden):
        member.volume_snapshots.reset_state(snap, "error")
    with pytest.raises(cinder_exc.Forbidden):
        member.volumes.reset_state(vol, "error")
    with pytest.raises(cinder_exc.Forbidden):
        member.quotas.update(member.client.session.get_project_id(), snapshots=50)
    # As in Cinder, a member's all_tenants is ignored: own project only.
    other = make_client(ember, "user-beta", "pw-beta", "proj-beta")
    theirs = other.volumes.create(1, name="cc-beta")
    assert theirs.id not in [v.id for v in member.volumes.list(search_opts={"all_tenants": 1})]
    assert theirs.id in [v.id for v in admin.volumes.list(search_opts={"all_tenants": 1})]
    wait(lambda: other.volumes.get(theirs.id), "available")
    other.volumes.delete(theirs)

    admin.volume_snapshots.reset_state(snap, "error")
    assert member.volume_snapshots.get(snap.id).status == "error"
    assert snap.id in [s.id for s in admin.volume_snapshots.list(search_opts={"all_tenants": 1})]
    member.volume_snapshots.delete(snap)
    wait_gone = time.time() + 60
    while snap.id in [s.id for s in member.volume_snapshots.list()]:
        assert time.time() < wait_gone
        time.sleep(0.1)
    member.volumes.delete(vol)
