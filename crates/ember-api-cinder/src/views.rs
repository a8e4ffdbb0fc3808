//! How Cinder renders Ember's resources, by microversion.

use crate::version::Microversion;
use ember_model::{Snapshot, Volume};
use serde_json::{Map, Value, json};

fn ts(t: Option<ember_model::Timestamp>) -> Value {
    t.map(|t| Value::String(t.to_iso_micros()))
        .unwrap_or(Value::Null)
}

fn metadata(m: &ember_model::Metadata) -> Value {
    Value::Object(
        m.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// How much of a snapshot to show.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SnapshotView {
    /// Create and update responses, summary lists.
    Basic,
    /// Show and detail lists: adds the extended attributes.
    Detailed,
}

pub fn snapshot(s: &Snapshot, mv: Microversion, view: SnapshotView, summary_list: bool) -> Value {
    let mut o = Map::new();
    o.insert("id".into(), json!(s.id.to_string()));
    o.insert("created_at".into(), json!(s.created_at.to_iso_micros()));
    o.insert("updated_at".into(), ts(s.updated_at));
    o.insert("name".into(), json!(s.name));
    o.insert("description".into(), json!(s.description));
    o.insert("volume_id".into(), json!(s.volume_id.to_string()));
    o.insert("status".into(), json!(s.status.as_str()));
    o.insert("size".into(), json!(s.size_gib));
    o.insert("metadata".into(), metadata(&s.metadata));
    if !summary_list {
        if mv.at_least(14) {
            o.insert("group_snapshot_id".into(), json!(s.group_snapshot_id));
        }
        if mv.at_least(41) {
            o.insert("user_id".into(), json!(s.user_id.0));
        }
        if mv.at_least(65) {
            o.insert("consumes_quota".into(), json!(true));
        }
    }
    if view == SnapshotView::Detailed {
        o.insert(
            "os-extended-snapshot-attributes:project_id".into(),
            json!(s.project_id.0),
        );
        o.insert(
            "os-extended-snapshot-attributes:progress".into(),
            json!(s.progress),
        );
    }
    Value::Object(o)
}

pub fn volume_links(base: &str, project: &str, id: &str) -> Value {
    json!([
        {"rel": "self", "href": format!("{base}/v3/{project}/volumes/{id}")},
        {"rel": "bookmark", "href": format!("{base}/{project}/volumes/{id}")}
    ])
}

/// A volume as Cinder's detailed view shows it. `admin_attrs` adds the
/// `os-vol-*` attributes (shown to admins, not in create responses).
/// Which `os-vol-*` attributes a volume view carries: the project one for
/// anyone who may read the volume, host and migration ones for admins
/// (Cinder's policies); none in the answer to a create.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum VolumeAttrs {
    None,
    Reader,
    Admin,
}

impl VolumeAttrs {
    pub fn for_reader(is_admin: bool) -> Self {
        if is_admin {
            VolumeAttrs::Admin
        } else {
            VolumeAttrs::Reader
        }
    }
}

pub fn volume(v: &Volume, mv: Microversion, base: &str, attrs: VolumeAttrs) -> Value {
    let admin_attrs = attrs == VolumeAttrs::Admin;
    let id = v.id.to_string();
    let mut o = Map::new();
    o.insert("id".into(), json!(id));
    o.insert("status".into(), json!(v.status.as_str()));
    o.insert("size".into(), json!(v.size_gib));
    o.insert("availability_zone".into(), json!(v.availability_zone));
    o.insert("created_at".into(), json!(v.created_at.to_iso_micros()));
    o.insert("updated_at".into(), ts(v.updated_at));
    o.insert("name".into(), json!(v.name));
    o.insert("description".into(), json!(v.description));
    o.insert("volume_type".into(), json!(v.volume_type));
    o.insert(
        "snapshot_id".into(),
        json!(v.snapshot_id.map(|s| s.to_string())),
    );
    o.insert(
        "source_volid".into(),
        json!(v.source_volid.map(|s| s.to_string())),
    );
    let mut md = metadata(&v.metadata);
    if let Value::Object(m) = &mut md {
        // Cinder's visible admin metadata: `readonly` once the flag was
        // set (to anyone who sees the volume), and the attach mode.
        let flag = |b: bool| json!(if b { "True" } else { "False" });
        if let Some(read_only) = v.read_only {
            m.insert("readonly".into(), flag(read_only));
        }
        if admin_attrs && !v.attachments.is_empty() {
            m.entry("readonly").or_insert_with(|| flag(false));
            m.insert("attached_mode".into(), json!(v.attachments[0].mode));
        }
    }
    o.insert("metadata".into(), md);
    o.insert("links".into(), volume_links(base, &v.project_id.0, &id));
    o.insert("user_id".into(), json!(v.user_id.0));
    o.insert(
        "bootable".into(),
        json!(if v.bootable { "true" } else { "false" }),
    );
    o.insert("encrypted".into(), json!(false));
    o.insert("replication_status".into(), Value::Null);
    o.insert("consistencygroup_id".into(), Value::Null);
    o.insert("multiattach".into(), json!(v.multiattach));
    let attachments: Vec<Value> = v
        .attachments
        .iter()
        // Reserved and half-made attachments are not shown on the volume.
        .filter(|a| a.status == ember_model::AttachStatus::Attached)
        .map(|a| {
            json!({
                "id": id,
                "attachment_id": a.id.to_string(),
                "volume_id": id,
                "server_id": a.instance_uuid,
                "host_name": a.host_name,
                "device": a.mountpoint,
                "attached_at": a.attached_at.as_ref().map(|t| t.to_iso_micros()),
            })
        })
        .collect();
    o.insert("attachments".into(), Value::Array(attachments));
    o.insert("migration_status".into(), json!(v.migration_status));
    if mv.at_least(13) {
        o.insert("group_id".into(), json!(v.group_id));
    }
    if mv.at_least(21) {
        o.insert("provider_id".into(), Value::Null);
    }
    if mv.at_least(48) {
        // Every attachment has its own NBD export: nothing is shared, so
        // os-brick needs no host-wide lock around attaches.
        o.insert("shared_targets".into(), json!(false));
        o.insert("service_uuid".into(), Value::Null);
    }
    if mv.at_least(61) {
        o.insert("cluster_name".into(), Value::Null);
    }
    if mv.at_least(63) {
        o.insert(
            "volume_type_id".into(),
            json!(
                v.volume_type_id
                    .as_deref()
                    .unwrap_or(ember_service::DEFAULT_VOLUME_TYPE_ID)
            ),
        );
    }
    if mv.at_least(65) {
        o.insert("consumes_quota".into(), json!(true));
    }
    if attrs != VolumeAttrs::None {
        o.insert("os-vol-tenant-attr:tenant_id".into(), json!(v.project_id.0));
    }
    if admin_attrs {
        o.insert(
            "os-vol-mig-status-attr:migstat".into(),
            json!(v.migration_status),
        );
        o.insert("os-vol-mig-status-attr:name_id".into(), Value::Null);
        o.insert(
            "os-vol-host-attr:host".into(),
            json!(ember_service::backend::host_of(v)),
        );
    }
    if let Some(reason) = &v.error_reason
        && admin_attrs
    {
        o.insert("ember:error_reason".into(), json!(reason));
    }
    Value::Object(o)
}

pub fn volume_summary(v: &Volume, base: &str) -> Value {
    let id = v.id.to_string();
    json!({"id": id, "links": volume_links(base, &v.project_id.0, &id), "name": v.name})
}
