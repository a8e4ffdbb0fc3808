"""openstacksdk, unmodified: the block_storage proxy against Ember.

Bytes go through Ember's data API on the SDK's own authenticated session,
so the snapshot promise is checked with real data.
"""
import openstack
import pytest


def connect(ember, user="admin", password=None, project="admin"):
    from conftest import ADMIN_PASSWORD
    return openstack.connect(
        auth_url=ember.auth_url, username=user, password=password or ADMIN_PASSWORD, project_name=project,
        user_domain_name="Default", project_domain_name="Default", region_name="RegionOne",
        block_storage_api_version="3",
    )


def write(conn, volume_id, offset, data):
    r = conn.block_storage.put(f"/volumes/{volume_id}/data?offset={offset}", data=data,
                               headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 204, r.text


def read(conn, kind, ident, offset, length):
    r = conn.block_storage.get(f"/{kind}/{ident}/data?offset={offset}&length={length}")
    assert r.status_code == 200, r.text
    return r.content


def test_snapshot_holds_the_bytes_written_before_it(ember, tenants):
    conn = connect(ember, "user-alpha", "pw-alpha", "proj-alpha")
    vol = conn.block_storage.create_volume(size=1, name="sdk-vol")
    vol = conn.block_storage.wait_for_status(vol, status="available", wait=60, interval=0.1)
    write(conn, vol.id, 0, b"A" * 65536)
    write(conn, vol.id, 512 << 20, b"a" * 4096)

    snap = conn.block_storage.create_snapshot(volume_id=vol.id, name="sdk-snap", description="d",
                                              metadata={"k": "v"})
    snap = conn.block_storage.wait_for_status(snap, status="available", wait=60, interval=0.1)
    assert (snap.name, snap.description, snap.size, snap.volume_id) == ("sdk-snap", "d", 1, vol.id)
    assert snap.metadata == {"k": "v"}
    assert snap.project_id == conn.current_project_id

    write(conn, vol.id, 0, b"B" * 65536)
    assert read(conn, "snapshots", snap.id, 0, 65536) == b"A" * 65536
    assert read(conn, "snapshots", snap.id, 512 << 20, 4096) == b"a" * 4096
    assert read(conn, "volumes", vol.id, 0, 65536) == b"B" * 65536

    assert "sdk-snap" in [s.name for s in conn.block_storage.snapshots()]
    detailed = list(conn.block_storage.snapshots(details=True, volume_id=vol.id))
    assert [s.id for s in detailed] == [snap.id] and detailed[0].status == "available"
    got = conn.block_storage.get_snapshot(snap.id)
    assert got.id == snap.id and got.created_at

    clone = conn.block_storage.create_volume(size=1, snapshot_id=snap.id, name="sdk-clone")
    clone = conn.block_storage.wait_for_status(clone, status="available", wait=60, interval=0.1)
    assert read(conn, "volumes", clone.id, 0, 65536) == b"A" * 65536

    conn.block_storage.delete_snapshot(snap)
    conn.block_storage.wait_for_delete(snap, interval=0.1, wait=60)
    assert read(conn, "volumes", clone.id, 0, 65536) == b"A" * 65536, "the clone outlives its snapshot"
    with pytest.raises(openstack.exceptions.NotFoundException):
        conn.block_storage.get_snapshot(snap.id)

    for v in (clone, vol):
        conn.block_storage.delete_volume(v)
        conn.block_storage.wait_for_delete(v, interval=0.1, wait=60)


def test_other_projects_see_nothing_and_readers_cannot_write(ember, tenants):
    alpha = connect(ember, "user-alpha", "pw-alpha", "proj-alpha")
    beta = connect(ember, "user-beta", "pw-beta", "proj-beta")
    reader = connect(ember, "user-reader", "pw-reader", "proj-alpha")
    vol = alpha.block_storage.wait_for_status(alpha.block_storage.create_volume(size=1, name="mine"),
                                             status="available", wait=60, interval=0.1)
    snap = alpha.block_storage.wait_for_status(alpha.block_storage.create_snapshot(volume_id=vol.id),
                                              status="available", wait=60, interval=0.1)

    # Another project: a foreign id answers exactly as a missing one.
    with pytest.raises(openstack.exceptions.NotFoundException) as foreign:
        beta.block_storage.get_snapshot(snap.id)
    missing_id = "00000000-0000-4000-8000-000000000000"
    with pytest.raises(openstack.exceptions.NotFoundException) as missing:
        beta.block_storage.get_snapshot(missing_id)
    assert str(foreign.value).replace(snap.id, "X") == str(missing.value).replace(missing_id, "X")
    assert snap.id not in [s.id for s in beta.block_storage.snapshots()]
    with pytest.raises(openstack.exceptions.NotFoundException):
        beta.block_storage.create_snapshot(volume_id=vol.id)
    with pytest.raises(openstack.exceptions.NotFoundException):
        beta.block_storage.delete_snapshot(snap.id, ignore_missing=False)

    # A reader in the same project sees, but cannot change.
    assert [s.id for s in reader.block_storage.snapshots(volume_id=vol.id)] == [snap.id]
    with pytest.raises(openstack.exceptions.ForbiddenException):
        reader.block_storage.create_snapshot(volume_id=vol.id)
    with pytest.raises(openstack.exceptions.ForbiddenException):
        reader.block_storage.delete_snapshot(snap.id, ignore_missing=False)
    with pytest.raises(openstack.exceptions.ForbiddenException):
        reader.block_storage.create_volume(size=1)

    alpha.block_storage.delete_snapshot(snap)
    alpha.block_storage.wait_for_delete(snap, interval=0.1, wait=60)
    alpha.block_storage.delete_volume(vol)
    alpha.block_storage.wait_for_delete(vol, interval=0.1, wait=60)


def test_an_attachment_gives_an_nbd_export_that_qemu_io_writes(ember, tenants):
    """The SDK's attachment calls (what Nova and Ironic use), unmodified;
    the connection_info it returns is enough for qemu-io to write."""
    import subprocess
    import uuid

    conn = connect(ember, "user-alpha", "pw-alpha", "proj-alpha")
    vol = conn.block_storage.create_volume(size=1, name="sdk-attached")
    vol = conn.block_storage.wait_for_status(vol, status="available", wait=60, interval=0.1)
    att = conn.block_storage.create_attachment(
        vol, connector={"host": "sdk-host", "platform": "x86_64", "os_type": "linux"},
        instance=str(uuid.uuid4()), attach_mode="rw")
    assert att.status == "attaching"
    info = att.connection_info
    assert info["driver_volume_type"] == "nbd" and info["access_mode"] == "rw"
    out = subprocess.run(["qemu-io", "-f", "raw", info["uri"], "-c", "write -P 0x5a 0 64k"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "wrote 65536/65536" in out.stdout, out.stdout + out.stderr

    conn.block_storage.complete_attachment(att)
    vol = conn.block_storage.get_volume(vol.id)
    assert vol.status == "in-use"
    assert read(conn, "volumes", vol.id, 0, 65536) == b"\x5a" * 65536
    listed = list(conn.block_storage.attachments(volume_id=vol.id))
    assert [a.id for a in listed] == [att.id]

    conn.block_storage.delete_attachment(att, ignore_missing=False)
    conn.block_storage.wait_for_status(vol, status="available", wait=60, interval=0.1)
    out = subprocess.run(["qemu-io", "-r", "-f", "raw", info["uri"], "-c", "read 0 4k"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 or "read 4096/4096" not in out.stdout, "export outlived its attachment"


def test_backups_restore_the_bytes_they_hold(ember, tenants):
    """Full and incremental backups through the SDK's backup proxy, restored
    to a new volume: bytes written before each backup come back, bytes
    written after never do."""
    conn = connect(ember, "user-alpha", "pw-alpha", "proj-alpha")
    vol = conn.block_storage.create_volume(size=1, name="sdk-bvol", metadata={"tier": "gold"})
    vol = conn.block_storage.wait_for_status(vol, status="available", wait=60, interval=0.1)
    write(conn, vol.id, 0, b"F" * 65536)
    full = conn.block_storage.create_backup(volume_id=vol.id, name="sdk-full")
    full = conn.block_storage.wait_for_status(full, status="available", wait=60, interval=0.1)
    write(conn, vol.id, 256 << 20, b"I" * 65536)
    incr = conn.block_storage.create_backup(volume_id=vol.id, name="sdk-incr", is_incremental=True)
    incr = conn.block_storage.wait_for_status(incr, status="available", wait=60, interval=0.1)
    assert incr.is_incremental and not full.is_incremental
    write(conn, vol.id, 0, b"X" * 65536)

    assert {b.name for b in conn.block_storage.backups(details=True)} >= {"sdk-full", "sdk-incr"}
    got = conn.block_storage.get_backup(full.id)
    assert got.has_dependent_backups and got.size == 1 and got.volume_id == vol.id

    for backup, at_256m in ((incr, b"I" * 65536), (full, b"\0" * 65536)):
        restored = conn.block_storage.restore_backup(backup, name=f"from-{backup.name}")
        new = conn.block_storage.get_volume(restored["volume_id"])
        new = conn.block_storage.wait_for_status(new, status="available", wait=60, interval=0.1)
        assert read(conn, "volumes", new.id, 0, 65536) == b"F" * 65536
        assert read(conn, "volumes", new.id, 256 << 20, 65536) == at_256m
        assert new.metadata.get("tier") == "gold"
        conn.block_storage.delete_volume(new)

    conn.block_storage.delete_backup(incr)
    conn.block_storage.wait_for_delete(incr, interval=0.1, wait=60)
    conn.block_storage.delete_backup(full)
    conn.block_storage.wait_for_delete(full, interval=0.1, wait=60)
    conn.block_storage.delete_volume(vol)
