"""The `openstack` CLI, unmodified, against Ember's embedded identity."""
import time


def wait_status(ember, kind, ident, want, env=None):
    deadline = time.time() + 60
    while time.time() < deadline:
        status = ember.openstack(*kind.split(), "show", ident, "-f", "json", env=env)["status"]
        if status == want:
            return
        assert not status.startswith("error"), f"{kind} {ident} went to {status}"
        time.sleep(0.2)
    raise AssertionError(f"{kind} {ident} never became {want}")


def test_snapshot_lifecycle_with_properties(ember, tenants):
    env = tenants["alpha"]
    vol = ember.openstack("volume", "create", "--size", "1", "cli-vol", "-f", "json", env=env)
    assert vol["size"] == 1 and vol["name"] == "cli-vol"
    wait_status(ember, "volume", vol["id"], "available", env)

    snap = ember.openstack("volume", "snapshot", "create", "--volume", "cli-vol", "--description", "first",
                           "--property", "purpose=backup", "--property", "tier=gold", "cli-snap", "-f", "json", env=env)
    assert snap["name"] == "cli-snap"
    assert snap["volume_id"] == vol["id"]
    assert snap["properties"] == {"purpose": "backup", "tier": "gold"}
    wait_status(ember, "volume snapshot", snap["id"], "available", env)

    listed = ember.openstack("volume", "snapshot", "list", "--volume", vol["id"], "-f", "json", env=env)
    assert [(s["ID"], s["Name"], s["Status"], s["Size"]) for s in listed] == [(snap["id"], "cli-snap", "available", 1)]
    long = ember.openstack("volume", "snapshot", "list", "--volume", vol["id"], "--long", "-f", "json", env=env)
    assert long[0]["Properties"] == {"purpose": "backup", "tier": "gold"}

    ember.openstack("volume", "snapshot", "set", "--name", "cli-snap2", "--description", "renamed",
                    "--property", "owner=ops", "cli-snap", env=env)
    shown = ember.openstack("volume", "snapshot", "show", "cli-snap2", "-f", "json", env=env)
    assert shown["name"] == "cli-snap2" and shown["description"] == "renamed"
    assert shown["properties"] == {"purpose": "backup", "tier": "gold", "owner": "ops"}
    assert shown["size"] == 1 and shown["status"] == "available"

    ember.openstack("volume", "snapshot", "unset", "--property", "tier", "--property", "purpose", "cli-snap2", env=env)
    shown = ember.openstack("volume", "snapshot", "show", snap["id"], "-f", "json", env=env)
    assert shown["properties"] == {"owner": "ops"}

    # A volume from the snapshot, then everything goes away.
    clone = ember.openstack("volume", "create", "--snapshot", snap["id"], "--size", "2", "cli-clone", "-f", "json", env=env)
    wait_status(ember, "volume", clone["id"], "available", env)
    assert ember.openstack("volume", "show", clone["id"], "-f", "json", env=env)["snapshot_id"] == snap["id"]

    ember.openstack("volume", "snapshot", "delete", "cli-snap2", env=env)
    deadline = time.time() + 60
    while ember.openstack("volume", "snapshot", "list", "--volume", vol["id"], "-f", "json", env=env):
        assert time.time() < deadline, "snapshot never went away"
        time.sleep(0.2)
    out = ember.openstack("volume", "snapshot", "show", snap["id"], env=env, check=False)
    assert out.returncode != 0 and f"No Snapshot found for {snap['id']}" in out.stderr
    ember.openstack("volume", "delete", clone["id"], vol["id"], env=env)


def test_bad_password_is_refused(ember):
    env = ember.openrc_env()
    env["OS_PASSWORD"] = "wrong"
    out = ember.openstack("volume", "list", env=env, check=False)
    assert out.returncode != 0
    assert "401" in out.stderr and "requires authentication" in out.stderr


def test_admin_sees_all_projects_members_do_not(ember, tenants):
    vol = ember.openstack("volume", "create", "--size", "1", "beta-only", "-f", "json", env=tenants["beta"])
    wait_status(ember, "volume", vol["id"], "available", tenants["beta"])
    alpha = ember.openstack("volume", "list", "-f", "json", env=tenants["alpha"])
    assert vol["id"] not in [v["ID"] for v in alpha]
    everyone = ember.openstack("volume", "list", "--all-projects", "-f", "json")
    assert vol["id"] in [v["ID"] for v in everyone]
    # As in Cinder, a member's all_tenants is ignored: own project only.
    mine = ember.openstack("volume", "list", "--all-projects", "-f", "json", env=tenants["alpha"])
    assert vol["id"] not in [v["ID"] for v in mine]
    ember.openstack("volume", "delete", vol["id"], env=tenants["beta"])


def test_backup_create_restore_delete(ember, tenants):
    env = tenants["alpha"]
    vol = ember.openstack("volume", "create", "--size", "1", "cli-bvol", "-f", "json", env=env)
    wait_status(ember, "volume", vol["id"], "available", env)
    full = ember.openstack("volume", "backup", "create", "--name", "cli-full", "cli-bvol", "-f", "json", env=env)
    wait_status(ember, "volume backup", full["id"], "available", env)
    incr = ember.openstack("volume", "backup", "create", "--name", "cli-incr", "--incremental", "cli-bvol",
                           "-f", "json", env=env)
    wait_status(ember, "volume backup", incr["id"], "available", env)
    shown = ember.openstack("volume", "backup", "show", "cli-incr", "-f", "json", env=env)
    assert shown["is_incremental"] is True and shown["volume_id"] == vol["id"] and shown["size"] == 1
    listed = ember.openstack("volume", "backup", "list", "-f", "json", env=env)
    assert {b["Name"] for b in listed} >= {"cli-full", "cli-incr"}

    # The parent of an incremental cannot go first.
    out = ember.openstack("volume", "backup", "delete", "cli-full", env=env, check=False)
    assert out.returncode != 0

    # Restore over an existing volume.
    target = ember.openstack("volume", "create", "--size", "1", "cli-target", "-f", "json", env=env)
    wait_status(ember, "volume", target["id"], "available", env)
    ember.openstack("volume", "backup", "restore", "--force", "cli-incr", "cli-target", env=env)
    wait_status(ember, "volume backup", incr["id"], "available", env)
    wait_status(ember, "volume", target["id"], "available", env)

    for b in ("cli-incr", "cli-full"):
        ember.openstack("volume", "backup", "delete", b, env=env)
        deadline = time.time() + 60
        while b in {x["Name"] for x in ember.openstack("volume", "backup", "list", "-f", "json", env=env)}:
            assert time.time() < deadline, f"backup {b} never went away"
            time.sleep(0.2)
    ember.openstack("volume", "delete", "cli-target", "cli-bvol", env=env)
