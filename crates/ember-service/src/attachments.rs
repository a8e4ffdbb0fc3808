//! Attachments: who holds a volume, and the NBD export that lets them
//! reach its bytes.
//!
//! Both of Cinder's attach flows land here: the attachments API (3.27+:
//! create → update with a connector → complete → delete) and the legacy
//! volume actions (`os-reserve`, `os-initialize_connection`, `os-attach`,
//! `os-terminate_connection`, `os-detach`, `os-force_detach`). Making a
//! connection issues the attachment a random export secret; the NBD export
//! name carries it, so knowing a volume id is not enough to read it, and
//! ending the connection withdraws the name and cuts live clients off.

use crate::volumes::{load_volume, require_admin, require_writer};
use crate::*;
use ember_model::*;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// How the NBD export is reached, as `connection_info` tells clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NbdEndpoint {
    pub host: String,
    pub port: u16,
}

const EXPORT_PREFIX: &str = "ember-";
const SNAPSHOT_EXPORT_PREFIX: &str = "ember-snap-";

/// The export name of an attachment's connection.
pub fn export_name(volume: VolumeId, secret: &str) -> String {
    format!("{EXPORT_PREFIX}{volume}-{secret}")
}

/// Marks nonces (stored) as opposed to the plain secrets stored before.
const NONCE_PREFIX: &str = "n1:";

/// A fresh export nonce: what the metadata store keeps. The secret in the
/// export name is derived from it with the service's key (`secret_of`).
fn new_secret() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| ServiceError::Internal(e.to_string()))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{NONCE_PREFIX}{hex}"))
}

/// The secret an export name carries for a stored nonce: 128 bits of
/// HMAC-SHA256 under the service's key, so a copy of the metadata store
/// opens no export. (Secrets stored in the clear by earlier versions are
/// used as they are until their attachment ends.)
pub fn secret_of(core: &core::Core, stored: &str) -> String {
    match stored.strip_prefix(NONCE_PREFIX) {
        Some(nonce) => core
            .config
            .secrets_key
            .derive(&format!("ember-export:{nonce}"))[..32]
            .to_string(),
        None => stored.to_string(),
    }
}

/// The export name of a snapshot's read-only export.
pub fn snapshot_export_name(snapshot: SnapshotId, secret: &str) -> String {
    format!("{SNAPSHOT_EXPORT_PREFIX}{snapshot}-{secret}")
}

/// Leaves only what a caller who may not write may see of an export:
/// where it is and its mode, never its name (the secret). Knowing a
/// connection's details must not be enough to use it; as a Cinder target
/// admits only the connector's initiator, Ember's export names are shown
/// only to whoever may write the volume.
fn redact_for(caller: &Caller, data: &mut Map<String, Value>) {
    if !caller.can_write() {
        data.insert("export_name".into(), Value::Null);
        data.insert("uri".into(), Value::Null);
    }
}

/// `host`, `port`, `export_name` and `uri` of an export.
fn endpoint_data(core: &core::Core, name: String) -> Map<String, Value> {
    let mut data = Map::new();
    let (host, port) = core
        .config
        .nbd
        .clone()
        .map(|e| (Value::from(e.host), Value::from(e.port)))
        .unwrap_or((Value::Null, Value::Null));
    let uri = match (&host, &port) {
        (Value::String(h), Value::Number(p)) => Value::from(format!("nbd://{h}:{p}/{name}")),
        _ => Value::Null,
    };
    data.insert("host".into(), host);
    data.insert("port".into(), port);
    data.insert("export_name".into(), json!(name));
    data.insert("uri".into(), uri);
    data
}

/// The `connection_info` data of an exported snapshot (read-only), as
/// `caller` may see it.
pub fn snapshot_connection_data(
    core: &core::Core,
    caller: &Caller,
    s: &Snapshot,
) -> Map<String, Value> {
    let Some(stored) = &s.export_secret else {
        return Map::new();
    };
    let mut data = endpoint_data(core, snapshot_export_name(s.id, &secret_of(core, stored)));
    data.insert("snapshot_id".into(), json!(s.id.to_string()));
    data.insert("volume_id".into(), json!(s.volume_id.to_string()));
    data.insert("access_mode".into(), json!("ro"));
    redact_for(caller, &mut data);
    data
}

/// The `connection_info` of an attachment with a connection, as `caller`
/// may see it: the driver volume type and its data. Ember's NBD export
/// (`nbd`: what os-brick, or any NBD client, needs, plus Cinder's standard
/// keys), or where the volume's backend attaches natively, what the
/// hypervisor needs to open the data itself (e.g. `rbd`). Empty data
/// before a connection is made.
pub fn connection(
    core: &core::Core,
    caller: &Caller,
    v: &Volume,
    a: &Attachment,
) -> (String, Map<String, Value>) {
    let Some(stored) = &a.export_secret else {
        return ("nbd".into(), Map::new());
    };
    let native = match (v.image, core.backend_of(v)) {
        (Some(data), Ok(backend)) => backend.native_attach(v.id, data),
        _ => None,
    };
    let (kind, mut data) = match native {
        Some(native) => native,
        None => {
            let mut data = endpoint_data(core, export_name(v.id, &secret_of(core, stored)));
            data.insert("volume_id".into(), json!(v.id.to_string()));
            redact_for(caller, &mut data);
            ("nbd".to_string(), data)
        }
    };
    data.insert("access_mode".into(), json!(access_mode(v, a)));
    data.insert("encrypted".into(), json!(false));
    data.insert("qos_specs".into(), Value::Null);
    data.insert("discard".into(), json!(true));
    (kind, data)
}

/// What an attachment's export allows: read-only when the attachment asked
/// for it or the volume is flagged read-only (`os-update_readonly_flag`).
fn access_mode(v: &Volume, a: &Attachment) -> &'static str {
    if a.mode == "ro" || volume_is_read_only(v) {
        "ro"
    } else {
        "rw"
    }
}

/// Cinder's `readonly` admin metadata.
pub fn volume_is_read_only(v: &Volume) -> bool {
    v.read_only == Some(true)
}

/// The volume status its attachments imply.
fn status_from(attachments: &[Attachment]) -> VolumeStatus {
    let has = |s| attachments.iter().any(|a| a.status == s);
    if has(AttachStatus::Attached) {
        VolumeStatus::InUse
    } else if has(AttachStatus::Attaching) {
        VolumeStatus::Attaching
    } else if has(AttachStatus::Reserved) {
        VolumeStatus::Reserved
    } else {
        VolumeStatus::Available
    }
}

fn refuse_error_state(v: &Volume) -> Result<()> {
    if v.status.as_str().contains("error") {
        return Err(ServiceError::InvalidVolume(format!(
            "Volume attachments can not be created if the volume is in an error state. \
             The Volume {} currently has a status of: {} ",
            v.id, v.status
        )));
    }
    Ok(())
}

/// Cinder's reservation rule: an available volume, or an in-use one that
/// allows multiattach, or a re-attach by the same instance.
fn check_reservable(v: &Volume, instance: Option<&str>) -> Result<()> {
    let ok = match v.status {
        VolumeStatus::Available => true,
        VolumeStatus::InUse | VolumeStatus::Reserved | VolumeStatus::Attaching if v.multiattach => {
            true
        }
        VolumeStatus::InUse | VolumeStatus::Reserved => instance.is_some_and(|i| {
            v.attachments
                .iter()
                .any(|a| a.instance_uuid.as_deref() == Some(i))
        }),
        _ => false,
    };
    if ok {
        return Ok(());
    }
    let statuses = if v.multiattach {
        "available or in-use or downloading"
    } else {
        "available or downloading"
    };
    Err(ServiceError::InvalidVolume(format!(
        "Volume {} status must be {statuses} to reserve, but the current status is {}.",
        v.id, v.status
    )))
}

/// A fresh attachment record: no host, no connection yet.
fn new_attachment(instance: Option<String>, mode: String, status: AttachStatus) -> Attachment {
    Attachment {
        id: uuid::Uuid::new_v4(),
        instance_uuid: instance,
        host_name: None,
        mountpoint: None,
        mode,
        attached_at: None,
        status,
        connector: None,
        export_secret: None,
    }
}

fn attachment_not_found(id: uuid::Uuid) -> ServiceError {
    ServiceError::NotFound(format!(
        "Volume attachment could not be found with filter: attachment_id = {id}."
    ))
}

/// Gives the attachment a connection: mode from the attachment (3.54+) or
/// the connector, a fresh export secret unless it has one.
fn connect(a: &mut Attachment, connector: Value) -> Result<()> {
    if a.mode == "null" || a.mode.is_empty() {
        a.mode = match connector.get("mode").and_then(Value::as_str) {
            Some("ro") => "ro".into(),
            _ => "rw".into(),
        };
    }
    if let Some(host) = connector.get("host").and_then(Value::as_str) {
        a.host_name = Some(host.to_string());
    }
    if let Some(mp) = connector.get("mountpoint").and_then(Value::as_str) {
        a.mountpoint = Some(mp.to_string());
    }
    a.connector = Some(connector);
    if a.export_secret.is_none() {
        a.export_secret = Some(new_secret()?);
    }
    if a.status == AttachStatus::Reserved {
        a.status = AttachStatus::Attaching;
    }
    Ok(())
}

/// Which attachments a listing returns (every field narrows it).
#[derive(Clone, Debug, Default)]
pub struct AttachmentFilter {
    pub volume_id: Option<VolumeId>,
    pub instance: Option<String>,
    pub status: Option<AttachStatus>,
    pub limit: Option<usize>,
}

/// A volume with one of its attachments.
pub type AttachmentView = (Volume, Attachment);

impl Service {
    async fn change_attachments<R: Send + 'static>(
        &self,
        caller: &Caller,
        volume: VolumeId,
        change: impl FnOnce(&mut Volume) -> Result<R> + Send + 'static,
    ) -> Result<(Volume, R)> {
        let core = self.core.clone();
        let caller = caller.clone();
        let (volume, result, revoked) = self
            .run_blocking(move || {
                let mut tx = core.store.write()?;
                let mut v = load_volume(tx.as_mut(), &caller, volume)?;
                let connected = |v: &Volume| -> Vec<uuid::Uuid> {
                    v.attachments
                        .iter()
                        .filter(|a| a.export_secret.is_some())
                        .map(|a| a.id)
                        .collect()
                };
                let before = connected(&v);
                let result = change(&mut v)?;
                let after = connected(&v);
                v.updated_at = Some(Timestamp::now());
                tx.put_volume(&v)?;
                tx.commit()?;
                let revoked: Vec<_> = before.into_iter().filter(|a| !after.contains(a)).collect();
                for a in &revoked {
                    core.revoke_export(*a);
                }
                Ok((v, result, revoked))
            })
            .await?;
        if !revoked.is_empty() {
            tracing::info!(volume = %volume.id, withdrawn = revoked.len(), "withdrew nbd exports");
        }
        Ok((volume, result))
    }

    async fn volume_of_attachment(&self, caller: &Caller, id: uuid::Uuid) -> Result<Volume> {
        let core = self.core.clone();
        let caller = caller.clone();
        self.run_blocking(
            move || match core.store.read()?.volume_with_attachment(id)? {
                Some(v) if caller.sees(&v.project_id) => Ok(v),
                _ => Err(attachment_not_found(id)),
            },
        )
        .await
    }

    /// `POST /attachments`: reserves the volume for `instance`, and
    /// connects at once when a connector is given.
    pub async fn create_attachment(
        &self,
        caller: &Caller,
        volume_id: VolumeId,
        instance: Option<String>,
        connector: Option<Value>,
        mode: Option<String>,
    ) -> Result<AttachmentView> {
        require_writer(caller, "volume:attachment_create")?;
        let (v, id) = self
            .change_attachments(caller, volume_id, move |v| {
                refuse_error_state(v)?;
                check_reservable(v, instance.as_deref())?;
                let mode = mode.unwrap_or_else(|| "null".into());
                let mut a = new_attachment(instance, mode, AttachStatus::Reserved);
                if let Some(c) = connector.filter(|c| c.as_object().is_some_and(|o| !o.is_empty()))
                {
                    connect(&mut a, c)?;
                }
                let id = a.id;
                v.attachments.push(a);
                v.status = status_from(&v.attachments);
                Ok(id)
            })
            .await?;
        Ok(pick(v, id))
    }

    pub async fn attachment(&self, caller: &Caller, id: uuid::Uuid) -> Result<AttachmentView> {
        let v = self.volume_of_attachment(caller, id).await?;
        Ok(pick(v, id))
    }

    /// Every attachment the caller may see (admins: all projects with
    /// `all_tenants`), oldest volume first.
    pub async fn list_attachments(
        &self,
        caller: &Caller,
        all_tenants: bool,
        filter: AttachmentFilter,
    ) -> Result<Vec<AttachmentView>> {
        let core = self.core.clone();
        let project = (!(all_tenants && caller.is_admin())).then(|| caller.project_id.clone());
        self.run_blocking(move || {
            let volumes = core.store.read()?.attached_volumes(project.as_ref())?;
            let mut items: Vec<AttachmentView> = volumes
                .into_iter()
                .filter(|v| filter.volume_id.is_none_or(|id| id == v.id))
                .flat_map(|v| {
                    let attachments = v.attachments.clone();
                    attachments.into_iter().map(move |a| (v.clone(), a))
                })
                .filter(|(_, a)| {
                    filter
                        .instance
                        .as_ref()
                        .is_none_or(|i| a.instance_uuid.as_ref() == Some(i))
                        && filter.status.is_none_or(|st| a.status == st)
                })
                .collect();
            if let Some(limit) = filter.limit {
                items.truncate(limit);
            }
            Ok(items)
        })
        .await
    }

    /// `PUT /attachments/{id}`: connects a reserved attachment.
    pub async fn update_attachment(
        &self,
        caller: &Caller,
        id: uuid::Uuid,
        connector: Value,
    ) -> Result<AttachmentView> {
        require_writer(caller, "volume:attachment_update")?;
        let volume = self.volume_of_attachment(caller, id).await?;
        let (v, ()) = self
            .change_attachments(caller, volume.id, move |v| {
                if v.status.as_str().contains("error") {
                    return Err(ServiceError::Conflict(format!(
                        "Volume attachments can not be updated if the volume is in an error state. \
                         The Volume {} currently has a status of: {} ",
                        v.id, v.status
                    )));
                }
                let a = v
                    .attachments
                    .iter_mut()
                    .find(|a| a.id == id)
                    .ok_or_else(|| attachment_not_found(id))?;
                connect(a, connector)?;
                v.status = status_from(&v.attachments);
                Ok(())
            })
            .await?;
        Ok(pick(v, id))
    }

    /// `os-complete`: the host has the device; the volume is in use.
    pub async fn complete_attachment(&self, caller: &Caller, id: uuid::Uuid) -> Result<()> {
        require_writer(caller, "volume:attachment_complete")?;
        let volume = self.volume_of_attachment(caller, id).await?;
        self.change_attachments(caller, volume.id, move |v| {
            let a = v
                .attachments
                .iter_mut()
                .find(|a| a.id == id)
                .ok_or_else(|| attachment_not_found(id))?;
            a.status = AttachStatus::Attached;
            a.attached_at.get_or_insert_with(Timestamp::now);
            v.status = status_from(&v.attachments);
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// `DELETE /attachments/{id}`: ends the connection (live NBD clients are
    /// cut off) and frees the volume. Returns the volume's other attachments.
    pub async fn delete_attachment(
        &self,
        caller: &Caller,
        id: uuid::Uuid,
    ) -> Result<Vec<AttachmentView>> {
        require_writer(caller, "volume:attachment_delete")?;
        let volume = self.volume_of_attachment(caller, id).await?;
        let (v, ()) = self
            .change_attachments(caller, volume.id, move |v| {
                let before = v.attachments.len();
                v.attachments.retain(|a| a.id != id);
                if v.attachments.len() == before {
                    return Err(attachment_not_found(id));
                }
                v.status = status_from(&v.attachments);
                Ok(())
            })
            .await?;
        let rest = v.attachments.clone();
        Ok(rest.into_iter().map(|a| (v.clone(), a)).collect())
    }

    /// Legacy `os-initialize_connection`: a connection for `connector`'s
    /// host, reusing that host's attachment when there is one.
    pub async fn initialize_connection(
        &self,
        caller: &Caller,
        volume_id: VolumeId,
        connector: Value,
    ) -> Result<AttachmentView> {
        require_writer(
            caller,
            "volume_extension:volume_actions:initialize_connection",
        )?;
        let host = connector
            .get("host")
            .and_then(Value::as_str)
            .map(str::to_string);
        let (v, id) = self
            .change_attachments(caller, volume_id, move |v| {
                refuse_error_state(v)?;
                let existing = v.attachments.iter().position(|a| {
                    a.status != AttachStatus::Attached || (host.is_some() && a.host_name == host)
                });
                let index = match existing {
                    Some(i) => i,
                    None => {
                        if !matches!(
                            v.status,
                            VolumeStatus::Available
                                | VolumeStatus::Reserved
                                | VolumeStatus::Attaching
                        ) && !v.multiattach
                        {
                            return Err(ServiceError::InvalidVolume(format!(
                                "Volume {} status must be available or reserved, but current status is: {}.",
                                v.id, v.status
                            )));
                        }
                        v.attachments.push(new_attachment(
                            None,
                            "null".into(),
                            AttachStatus::Attaching,
                        ));
                        v.attachments.len() - 1
                    }
                };
                connect(&mut v.attachments[index], connector)?;
                let id = v.attachments[index].id;
                // The legacy flow keeps the volume's status until os-attach.
                Ok(id)
            })
            .await?;
        Ok(pick(v, id))
    }

    /// Legacy `os-terminate_connection`: withdraws the export of the
    /// connector's host; an attachment that never completed goes away.
    pub async fn terminate_connection(
        &self,
        caller: &Caller,
        volume_id: VolumeId,
        connector: Value,
    ) -> Result<()> {
        require_writer(
            caller,
            "volume_extension:volume_actions:terminate_connection",
        )?;
        let host = connector
            .get("host")
            .and_then(Value::as_str)
            .map(str::to_string);
        self.change_attachments(caller, volume_id, move |v| {
            for a in v.attachments.iter_mut() {
                if host.is_none() || a.host_name == host || a.status != AttachStatus::Attached {
                    a.export_secret = None;
                }
            }
            v.attachments
                .retain(|a| a.status == AttachStatus::Attached || a.export_secret.is_some());
            if v.status != VolumeStatus::Reserved {
                v.status = status_from(&v.attachments);
            }
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// Legacy `os-attach`: completes the connection made for this host (or
    /// a fresh record) and marks the volume in use.
    pub async fn attach_volume(
        &self,
        caller: &Caller,
        id: VolumeId,
        req: AttachRequest,
    ) -> Result<Volume> {
        require_writer(caller, "volume:attach")?;
        let (v, ()) = self
            .change_attachments(caller, id, move |v| {
                let ok = match v.status {
                    VolumeStatus::Available | VolumeStatus::Reserved | VolumeStatus::Attaching => {
                        true
                    }
                    VolumeStatus::InUse => v.multiattach,
                    _ => false,
                };
                if !ok {
                    return Err(ServiceError::InvalidVolume(format!(
                        "Volume {} status must be available or reserved to attach, but current status is: {}.",
                        v.id, v.status
                    )));
                }
                let pending = v.attachments.iter().position(|a| {
                    a.status != AttachStatus::Attached
                        && (a.host_name.is_none() || a.host_name == req.host_name || req.host_name.is_none())
                });
                let index = match pending {
                    Some(i) => i,
                    None => {
                        v.attachments.push(new_attachment(
                            None,
                            req.mode.clone(),
                            AttachStatus::Attaching,
                        ));
                        v.attachments.len() - 1
                    }
                };
                let a = &mut v.attachments[index];
                a.instance_uuid = req.instance_uuid.or(a.instance_uuid.take());
                a.host_name = req.host_name.or(a.host_name.take());
                a.mountpoint = req.mountpoint.or(a.mountpoint.take());
                a.mode = req.mode;
                a.status = AttachStatus::Attached;
                a.attached_at = Some(Timestamp::now());
                v.status = VolumeStatus::InUse;
                Ok(())
            })
            .await?;
        Ok(v)
    }

    /// Legacy `os-detach`: removes one attachment (or the only one) and
    /// withdraws its export.
    pub async fn detach_volume(
        &self,
        caller: &Caller,
        id: VolumeId,
        attachment_id: Option<uuid::Uuid>,
    ) -> Result<Volume> {
        require_writer(caller, "volume:detach")?;
        let (v, ()) = self
            .change_attachments(caller, id, move |v| {
                let index = match attachment_id {
                    Some(a) => v.attachments.iter().position(|x| x.id == a),
                    None if v.attachments.len() == 1 => Some(0),
                    None => None,
                };
                let Some(index) = index else {
                    return Err(ServiceError::InvalidVolume(format!(
                        "Volume {} has no such attachment.",
                        v.id
                    )));
                };
                v.attachments.remove(index);
                v.status = status_from(&v.attachments);
                Ok(())
            })
            .await?;
        Ok(v)
    }

    /// Admin `os-force_detach`: removes the attachment (all of them when
    /// none is named), whatever their state, and withdraws their exports.
    pub async fn force_detach(
        &self,
        caller: &Caller,
        id: VolumeId,
        attachment_id: Option<uuid::Uuid>,
    ) -> Result<Volume> {
        require_admin(caller, "volume_extension:volume_admin_actions:force_detach")?;
        let (v, ()) = self
            .change_attachments(caller, id, move |v| {
                match attachment_id {
                    Some(a) => {
                        if !v.attachments.iter().any(|x| x.id == a) {
                            return Err(attachment_not_found(a));
                        }
                        v.attachments.retain(|x| x.id != a);
                    }
                    None => v.attachments.clear(),
                }
                v.status = status_from(&v.attachments);
                Ok(())
            })
            .await?;
        Ok(v)
    }

    /// Resolves an NBD export name to the attachment's volume, for the
    /// export server. Blocking. `None` for any name that is not a live
    /// connection: unknown, mistyped, or withdrawn.
    pub fn open_export(&self, name: &str) -> Option<VolumeExport> {
        if let Some(rest) = name.strip_prefix(SNAPSHOT_EXPORT_PREFIX) {
            return self.open_snapshot_export(rest);
        }
        let rest = name.strip_prefix(EXPORT_PREFIX)?;
        let (volume, secret) = rest.rsplit_once('-')?;
        let volume = VolumeId::parse(volume)?;
        let core = self.core.clone();
        let mut live = core.exports.lock().unwrap_or_else(|p| p.into_inner());
        let v = core.store.read().ok()?.volume(volume).ok()??;
        let a = v.attachments.iter().find(|a| {
            a.export_secret.as_deref().is_some_and(|stored| {
                constant_time_eq(secret_of(&core, stored).as_bytes(), secret.as_bytes())
            })
        })?;
        let flag = live
            .entry(a.id)
            .or_insert_with(|| Arc::new(AtomicBool::new(true)))
            .clone();
        drop(live);
        Some(VolumeExport {
            core,
            target: Target::Volume(volume),
            size: crate::volumes::size_bytes(v.size_gib).ok()?,
            read_only: access_mode(&v, a) == "ro",
            live: flag,
        })
    }

    fn open_snapshot_export(&self, rest: &str) -> Option<VolumeExport> {
        let (snapshot, secret) = rest.rsplit_once('-')?;
        let snapshot = SnapshotId::parse(snapshot)?;
        let core = self.core.clone();
        let mut live = core.exports.lock().unwrap_or_else(|p| p.into_inner());
        let s = core.store.read().ok()?.snapshot(snapshot).ok()??;
        let known = s.export_secret.as_deref().is_some_and(|stored| {
            constant_time_eq(secret_of(&core, stored).as_bytes(), secret.as_bytes())
        });
        if !known || s.status != SnapshotStatus::Available {
            return None;
        }
        s.image?;
        let io = core.open_snapshot(&s).ok()?;
        let flag = live
            .entry(snapshot.0)
            .or_insert_with(|| Arc::new(AtomicBool::new(true)))
            .clone();
        drop(live);
        Some(VolumeExport {
            core,
            size: io.size(),
            target: Target::Snapshot(io, Box::new(s.clone())),
            read_only: true,
            live: flag,
        })
    }

    /// Ember's `ember-export` snapshot action: a read-only NBD export of
    /// the snapshot's data (the same name until `ember-unexport` or delete).
    pub async fn export_snapshot(&self, caller: &Caller, id: SnapshotId) -> Result<Snapshot> {
        require_writer(caller, "volume:export_snapshot")?;
        let core = self.core.clone();
        let caller = caller.clone();
        self.run_blocking(move || {
            let mut tx = core.store.write()?;
            let mut s = crate::snapshots::load_snapshot(tx.as_mut(), &caller, id)?;
            if s.status != SnapshotStatus::Available {
                return Err(ServiceError::InvalidSnapshot(format!(
                    "Snapshot {id} status must be available to export, but current status is: {}.",
                    s.status
                )));
            }
            if s.export_secret.is_none() {
                s.export_secret = Some(new_secret()?);
                tx.put_snapshot(&s)?;
                tx.commit()?;
            }
            Ok(s)
        })
        .await
    }

    /// `ember-unexport`: withdraws the snapshot's export; connected clients
    /// are cut off.
    pub async fn unexport_snapshot(&self, caller: &Caller, id: SnapshotId) -> Result<()> {
        require_writer(caller, "volume:export_snapshot")?;
        let core = self.core.clone();
        let caller = caller.clone();
        self.run_blocking(move || {
            let mut tx = core.store.write()?;
            let mut s = crate::snapshots::load_snapshot(tx.as_mut(), &caller, id)?;
            if s.export_secret.take().is_some() {
                tx.put_snapshot(&s)?;
                tx.commit()?;
            }
            core.revoke_export(id.0);
            Ok(())
        })
        .await
    }
}

/// What an export reads and writes.
enum Target {
    /// An attached volume, through its slot.
    Volume(VolumeId),
    /// A snapshot's frozen chain, opened read-only, and its record.
    Snapshot(Arc<dyn ember_storage::BlockIo>, Box<Snapshot>),
}

/// The meta context of a snapshot export that marks what changed since an
/// earlier snapshot (`ember:changed-since:<snapshot id>`), as qemu's
/// `qemu:dirty-bitmap:` does: flag 1 (dirty) on the changed runs.
pub const CHANGED_SINCE: &str = "ember:changed-since:";

fn pick(v: Volume, id: uuid::Uuid) -> AttachmentView {
    let a = v
        .attachments
        .iter()
        .find(|a| a.id == id)
        .cloned()
        .expect("the attachment was just found on this volume");
    (v, a)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An attached volume as the NBD server sees it. I/O goes through the
/// volume's slot, so a snapshot's quiesce waits for requests in flight and
/// holds new ones until the overlay switch is done.
pub struct VolumeExport {
    core: Arc<core::Core>,
    target: Target,
    size: u64,
    read_only: bool,
    live: Arc<AtomicBool>,
}

impl VolumeExport {
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn read_only(&self) -> bool {
        self.read_only
    }
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }
    fn io<R>(&self, f: impl FnOnce(&dyn ember_storage::BlockIo) -> Result<R>) -> Result<R> {
        match &self.target {
            Target::Volume(volume) => self.core.with_io(*volume, f),
            Target::Snapshot(io, _) => f(io.as_ref()),
        }
    }
    fn writable(&self) -> Result<()> {
        if self.read_only {
            return Err(ServiceError::Forbidden(
                "write to a read-only export".into(),
            ));
        }
        Ok(())
    }
    pub fn read(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.io(|io| Ok(io.read_at(buf, offset)?))
    }
    pub fn write(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.writable()?;
        self.io(|io| Ok(io.write_at(buf, offset)?))
    }
    pub fn write_zeroes(&self, offset: u64, length: u64) -> Result<()> {
        self.writable()?;
        self.io(|io| Ok(io.write_zeroes(offset, length)?))
    }
    pub fn flush(&self) -> Result<()> {
        match &self.target {
            Target::Snapshot(..) => Ok(()),
            Target::Volume(_) => self.io(|io| Ok(io.flush()?)),
        }
    }

    /// The `ember:changed-since:` contexts `query` names: a snapshot export
    /// offers one per earlier snapshot of the same volume's lineage (of
    /// the same project), asked for by its full name (`ember:` lists none:
    /// the bases are the client's to name).
    pub fn meta_contexts(&self, query: &str) -> Vec<String> {
        match query.strip_prefix(CHANGED_SINCE) {
            Some(base) if self.changed_since(base).ok().flatten().is_some() => {
                vec![query.to_string()]
            }
            _ => Vec::new(),
        }
    }

    /// The byte ranges of this snapshot export that may differ from the
    /// earlier snapshot `base` (None when `base` is no earlier point of
    /// its volume or the backend cannot tell).
    pub fn changed_since(&self, base: &str) -> Result<Option<Vec<(u64, u64)>>> {
        let Target::Snapshot(_, snapshot) = &self.target else {
            return Ok(None);
        };
        let Some(base) = SnapshotId::parse(base) else {
            return Ok(None);
        };
        let mut tx = self.core.store.read()?;
        let Some(base) = tx.snapshot(base)? else {
            return Ok(None);
        };
        let (Some(base_data), Some(data)) = (base.image, snapshot.image) else {
            return Ok(None);
        };
        if base.project_id != snapshot.project_id || base.volume_id != snapshot.volume_id {
            return Ok(None);
        }
        let backend = self
            .core
            .backend_of_snapshot(tx.as_mut(), snapshot)?
            .clone();
        drop(tx);
        Ok(match backend.changed_ranges(data, Some(base_data))? {
            ember_backend::Changed::Since(ranges) => Some(ranges),
            _ => None,
        })
    }
    /// What the range holds (data, zeroes, holes), from the format's
    /// mapping; None when the backend cannot tell.
    pub fn extents(&self, offset: u64, length: u64) -> Result<Option<Vec<ember_storage::Extent>>> {
        self.io(|io| Ok(io.extents(offset, length)?))
    }
}
