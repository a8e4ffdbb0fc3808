//! Generic volume groups (3.13+) and group snapshots (3.14+).
//!
//! A group is a record its volumes point at; a group snapshot is a
//! snapshot of each member volume, all recorded (with their workflows) in
//! one transaction, like Cinder's generic groups on a backend without
//! consistency-group support. Neither keeps a transitional status of its
//! own: a group shows `creating` while a member volume is being created,
//! a group snapshot shows what its member snapshots are doing, so nothing
//! can be left stuck after a crash.

use crate::snapshots::begin_snapshot;
use crate::volumes::{begin_volume, require_admin, require_writer};
use crate::{Caller, CreateSnapshot, CreateVolume, Result, Service, ServiceError};
use ember_model::{
    Group, GroupSnapshot, Metadata, SnapshotStatus, Timestamp, VolumeId, VolumeStatus,
    WorkflowRecord,
};
use ember_store::Tx;

pub(crate) fn load_group(tx: &mut dyn Tx, caller: &Caller, id: &str) -> Result<Group> {
    match tx.group(id)? {
        Some(g) if caller.sees(&g.project_id) => Ok(g),
        _ => Err(ServiceError::NotFound(format!(
            "Group {id} could not be found."
        ))),
    }
}

fn load_group_snapshot(tx: &mut dyn Tx, caller: &Caller, id: &str) -> Result<GroupSnapshot> {
    match tx.group_snapshot(id)? {
        Some(g) if caller.sees(&g.project_id) => Ok(g),
        _ => Err(ServiceError::NotFound(format!(
            "GroupSnapshot {id} could not be found."
        ))),
    }
}

/// A group with what it shows: status and member volumes.
#[derive(Clone, Debug)]
pub struct GroupView {
    pub group: Group,
    pub status: String,
    pub volumes: Vec<VolumeId>,
}

fn group_view(tx: &mut dyn Tx, group: Group) -> Result<GroupView> {
    let members: Vec<_> = tx
        .all_volumes()?
        .into_iter()
        .filter(|v| v.group_id.as_deref() == Some(group.id.as_str()))
        .collect();
    let status = if group.status == "available"
        && members.iter().any(|v| v.status == VolumeStatus::Creating)
    {
        "creating".to_string()
    } else {
        group.status.clone()
    };
    Ok(GroupView {
        volumes: members.iter().map(|v| v.id).collect(),
        status,
        group,
    })
}

fn group_snapshot_status(tx: &mut dyn Tx, gs: &GroupSnapshot) -> Result<String> {
    if let Some(s) = &gs.status_override {
        return Ok(s.clone());
    }
    let members: Vec<_> = tx
        .all_snapshots()?
        .into_iter()
        .filter(|s| s.group_snapshot_id.as_deref() == Some(gs.id.as_str()))
        .collect();
    let any = |st: SnapshotStatus| members.iter().any(|s| s.status == st);
    Ok(if any(SnapshotStatus::Creating) {
        "creating"
    } else if any(SnapshotStatus::Error) {
        "error"
    } else if any(SnapshotStatus::Deleting) {
        "deleting"
    } else {
        "available"
    }
    .into())
}

/// What a new group is made from.
pub enum GroupSource {
    Nothing {
        group_type: String,
        volume_types: Vec<String>,
    },
    GroupSnapshot(String),
    Group(String),
}

impl Service {
    pub async fn create_group(
        &self,
        caller: &Caller,
        name: Option<String>,
        description: Option<String>,
        source: GroupSource,
    ) -> Result<Group> {
        require_writer(caller, "group:create")?;
        let core = self.core.clone();
        let caller = caller.clone();
        let default_name = self.core.config.default_volume_type.clone();
        let (group, records) = self
            .run_blocking(move || {
                let mut tx = core.store.write()?;
                let mut group = Group {
                    id: uuid::Uuid::new_v4().to_string(),
                    project_id: caller.project_id.clone(),
                    user_id: caller.user_id.clone(),
                    name,
                    description,
                    group_type_id: String::new(),
                    volume_type_ids: vec![],
                    availability_zone: core.config.availability_zone.clone(),
                    status: "available".into(),
                    group_snapshot_id: None,
                    source_group_id: None,
                    created_at: Timestamp::now(),
                };
                // (snapshot to clone, source volume to clone) per new member
                let mut members: Vec<(
                    Option<ember_model::SnapshotId>,
                    Option<VolumeId>,
                    Option<String>,
                )> = vec![];
                match source {
                    GroupSource::Nothing {
                        group_type,
                        volume_types,
                    } => {
                        let gt = tx.group_type(&group_type)?;
                        let known_default = group_type == crate::group_types::DEFAULT_GROUP_TYPE_ID;
                        if gt
                            .as_ref()
                            .is_none_or(|t| !t.is_public && !caller.is_admin())
                            && !known_default
                        {
                            return Err(ServiceError::NotFound(format!(
                                "Group type with id {group_type} could not be found."
                            )));
                        }
                        if volume_types.is_empty() {
                            return Err(ServiceError::InvalidInput(
                                "volume_types must be provided to create group.".into(),
                            ));
                        }
                        for t in &volume_types {
                            let found =
                                crate::types::find_type(tx.as_mut(), &default_name, &caller, t)?;
                            group.volume_type_ids.push(found.id);
                        }
                        group.group_type_id = group_type;
                    }
                    GroupSource::GroupSnapshot(id) => {
                        let gs = load_group_snapshot(tx.as_mut(), &caller, &id)?;
                        let source = tx.group(&gs.group_id)?.ok_or_else(|| {
                            ServiceError::NotFound(format!(
                                "Group {} could not be found.",
                                gs.group_id
                            ))
                        })?;
                        group.group_type_id = source.group_type_id.clone();
                        group.volume_type_ids = source.volume_type_ids.clone();
                        group.group_snapshot_id = Some(id.clone());
                        for s in tx
                            .all_snapshots()?
                            .into_iter()
                            .filter(|s| s.group_snapshot_id.as_deref() == Some(id.as_str()))
                        {
                            let vt = tx.volume(s.volume_id)?.and_then(|v| v.volume_type_id);
                            members.push((Some(s.id), None, vt));
                        }
                    }
                    GroupSource::Group(id) => {
                        let source = load_group(tx.as_mut(), &caller, &id)?;
                        group.group_type_id = source.group_type_id.clone();
                        group.volume_type_ids = source.volume_type_ids.clone();
                        group.source_group_id = Some(id.clone());
                        for v in tx
                            .all_volumes()?
                            .into_iter()
                            .filter(|v| v.group_id.as_deref() == Some(id.as_str()))
                        {
                            members.push((None, Some(v.id), v.volume_type_id));
                        }
                    }
                }
                tx.put_group(&group)?;
                let mut records: Vec<WorkflowRecord> = vec![];
                for (snapshot_id, source_volid, volume_type) in members {
                    let req = CreateVolume {
                        snapshot_id,
                        source_volid,
                        volume_type,
                        group_id: Some(group.id.clone()),
                        metadata: Metadata::new(),
                        ..Default::default()
                    };
                    let (_, record) = begin_volume(&core, tx.as_mut(), &caller, req)?;
                    records.extend(record);
                }
                tx.commit()?;
                Ok((group, records))
            })
            .await?;
        for r in records {
            self.start(r);
        }
        Ok(group)
    }

    /// The caller's groups (every project's for an admin asking).
    pub async fn list_groups(&self, caller: &Caller, all_tenants: bool) -> Result<Vec<GroupView>> {
        let core = self.core.clone();
        let caller = caller.clone();
        self.run_blocking(move || {
            let mut tx = core.store.read()?;
            let groups: Vec<Group> = tx
                .groups()?
                .into_iter()
                .filter(|g| (all_tenants && caller.is_admin()) || g.project_id == caller.project_id)
                .collect();
            groups
                .into_iter()
                .map(|g| group_view(tx.as_mut(), g))
                .collect()
        })
        .await
    }

    pub async fn group(&self, caller: &Caller, id: String) -> Result<GroupView> {
        let core = self.core.clone();
        let caller = caller.clone();
        self.run_blocking(move || {
            let mut tx = core.store.read()?;
            let g = load_group(tx.as_mut(), &caller, &id)?;
            group_view(tx.as_mut(), g)
        })
        .await
    }

    /// Renames, and adds or removes member volumes, in one transaction.
    pub async fn update_group(
        &self,
        caller: &Caller,
        id: String,
        name: Option<Option<String>>,
        description: Option<Option<String>>,
        add: Vec<VolumeId>,
        remove: Vec<VolumeId>,
    ) -> Result<()> {
        require_writer(caller, "group:update")?;
        let core = self.core.clone();
        let caller = caller.clone();
        self.run_blocking(move || {
            let mut tx = core.store.write()?;
            let mut group = load_group(tx.as_mut(), &caller, &id)?;
            for vid in add {
                let mut v = crate::volumes::load_volume(tx.as_mut(), &caller, vid)?;
                if v.group_id.as_deref().is_some_and(|g| g != id) {
                    return Err(ServiceError::InvalidVolume(format!("Volume {vid} is already in a group.")));
                }
                if !matches!(v.status, VolumeStatus::Available | VolumeStatus::InUse) {
                    return Err(ServiceError::InvalidVolume(format!(
                        "Cannot add volume {vid} to group {id} because volume is in an invalid state: {}.",
                        v.status
                    )));
                }
                let vt = v.volume_type_id.clone().unwrap_or_else(|| crate::DEFAULT_VOLUME_TYPE_ID.into());
                if !group.volume_type_ids.contains(&vt) {
                    return Err(ServiceError::InvalidVolume(format!(
                        "Cannot add volume {vid} to group {id} because volume type {vt} is not supported by the group."
                    )));
                }
                v.group_id = Some(id.clone());
                tx.put_volume(&v)?;
            }
            for vid in remove {
                let mut v = crate::volumes::load_volume(tx.as_mut(), &caller, vid)?;
                if v.group_id.as_deref() != Some(id.as_str()) {
                    return Err(ServiceError::InvalidVolume(format!("Volume {vid} is not in group {id}.")));
                }
                v.group_id = None;
                tx.put_volume(&v)?;
            }
            if let Some(n) = name {
                group.name = n;
            }
            if let Some(d) = description {
                group.description = d;
            }
            tx.put_group(&group)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Deletes the group; with `delete_volumes`, its volumes (with their
    /// snapshots) first, each by its own durable workflow. A group with
    /// group snapshots cannot go.
    pub async fn delete_group(
        &self,
        caller: &Caller,
        id: String,
        delete_volumes: bool,
    ) -> Result<()> {
        require_writer(caller, "group:delete")?;
        let view = self.group(caller, id.clone()).await?;
        {
            let core = self.core.clone();
            let gid = id.clone();
            let has_snapshots = self
                .run_blocking(move || {
                    Ok(core
                        .store
                        .read()?
                        .group_snapshots()?
                        .iter()
                        .any(|g| g.group_id == gid))
                })
                .await?;
            if has_snapshots {
                return Err(ServiceError::InvalidInput(format!(
                    "Group {id} has existing group snapshots and cannot be deleted."
                )));
            }
        }
        if !view.volumes.is_empty() && !delete_volumes {
            return Err(ServiceError::InvalidInput(format!(
                "Group {id} still contains volumes. The delete-volumes flag is required to delete it."
            )));
        }
        for v in &view.volumes {
            self.delete_volume(caller, *v, true, false).await?;
        }
        let core = self.core.clone();
        self.run_blocking(move || {
            let mut tx = core.store.write()?;
            tx.delete_group(&id)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub async fn reset_group_status(
        &self,
        caller: &Caller,
        id: String,
        status: String,
    ) -> Result<()> {
        require_admin(caller, "group:reset_status")?;
        let core = self.core.clone();
        let caller = caller.clone();
        self.run_blocking(move || {
            let mut tx = core.store.write()?;
            let mut g = load_group(tx.as_mut(), &caller, &id)?;
            g.status = status;
            tx.put_group(&g)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// A snapshot of every member volume, recorded together.
    pub async fn create_group_snapshot(
        &self,
        caller: &Caller,
        group_id: String,
        name: Option<String>,
        description: Option<String>,
    ) -> Result<GroupSnapshot> {
        require_writer(caller, "group:create_group_snapshot")?;
        let core = self.core.clone();
        let caller = caller.clone();
        let (gs, records) = self
            .run_blocking(move || {
                let mut tx = core.store.write()?;
                let group = load_group(tx.as_mut(), &caller, &group_id)?;
                let gs = GroupSnapshot {
                    id: uuid::Uuid::new_v4().to_string(),
                    project_id: group.project_id.clone(),
                    user_id: caller.user_id.clone(),
                    group_id: group.id.clone(),
                    group_type_id: group.group_type_id.clone(),
                    name,
                    description,
                    status_override: None,
                    created_at: Timestamp::now(),
                };
                tx.put_group_snapshot(&gs)?;
                let members: Vec<VolumeId> = tx
                    .all_volumes()?
                    .into_iter()
                    .filter(|v| v.group_id.as_deref() == Some(group.id.as_str()))
                    .map(|v| v.id)
                    .collect();
                let mut records = vec![];
                for volume_id in members {
                    let req = CreateSnapshot {
                        volume_id,
                        name: None,
                        description: None,
                        metadata: Metadata::new(),
                        allow_in_use: true,
                    };
                    let (_, record) =
                        begin_snapshot(&core, tx.as_mut(), &caller, req, Some(gs.id.clone()))?;
                    records.push(record);
                }
                tx.commit()?;
                Ok((gs, records))
            })
            .await?;
        for r in records {
            self.start(r);
        }
        Ok(gs)
    }

    pub async fn list_group_snapshots(
        &self,
        caller: &Caller,
        all_tenants: bool,
    ) -> Result<Vec<(GroupSnapshot, String)>> {
        let core = self.core.clone();
        let caller = caller.clone();
        self.run_blocking(move || {
            let mut tx = core.store.read()?;
            let all: Vec<GroupSnapshot> = tx
                .group_snapshots()?
                .into_iter()
                .filter(|g| (all_tenants && caller.is_admin()) || g.project_id == caller.project_id)
                .collect();
            all.into_iter()
                .map(|g| {
                    let status = group_snapshot_status(tx.as_mut(), &g)?;
                    Ok((g, status))
                })
                .collect()
        })
        .await
    }

    pub async fn group_snapshot(
        &self,
        caller: &Caller,
        id: String,
    ) -> Result<(GroupSnapshot, String)> {
        let core = self.core.clone();
        let caller = caller.clone();
        self.run_blocking(move || {
            let mut tx = core.store.read()?;
            let g = load_group_snapshot(tx.as_mut(), &caller, &id)?;
            let status = group_snapshot_status(tx.as_mut(), &g)?;
            Ok((g, status))
        })
        .await
    }

    /// Deletes each member snapshot (by its own workflow), then the record.
    pub async fn delete_group_snapshot(&self, caller: &Caller, id: String) -> Result<()> {
        require_writer(caller, "group:delete_group_snapshot")?;
        let (gs, _) = self.group_snapshot(caller, id.clone()).await?;
        let core = self.core.clone();
        let gid = gs.id.clone();
        let members: Vec<ember_model::Snapshot> = self
            .run_blocking(move || {
                Ok(core
                    .store
                    .read()?
                    .all_snapshots()?
                    .into_iter()
                    .filter(|s| s.group_snapshot_id.as_deref() == Some(gid.as_str()))
                    .collect())
            })
            .await?;
        // Refuse before changing anything: a member still being taken (or
        // otherwise busy) would leave the group snapshot `deleting` for good.
        if let Some(busy) = members.iter().find(|s| {
            !matches!(
                s.status,
                SnapshotStatus::Available
                    | SnapshotStatus::Error
                    | SnapshotStatus::Deleting
                    | SnapshotStatus::ErrorDeleting
            )
        }) {
            return Err(ServiceError::InvalidSnapshot(format!(
                "Group snapshot {id} cannot be deleted: its snapshot {} is {}.",
                busy.id, busy.status
            )));
        }
        // The group snapshot stays, `deleting`, until its last member is
        // gone (the snapshot-delete workflow removes it then), so a client
        // can wait for it as with Cinder.
        let core = self.core.clone();
        let caller2 = caller.clone();
        let id2 = id.clone();
        self.run_blocking(move || {
            let mut tx = core.store.write()?;
            if !crate::workflows::snapshot_delete::any_member_left(tx.as_mut(), &id2)? {
                tx.delete_group_snapshot(&id2)?;
            } else {
                let mut g = load_group_snapshot(tx.as_mut(), &caller2, &id2)?;
                g.status_override = Some("deleting".into());
                tx.put_group_snapshot(&g)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await?;
        for s in members
            .iter()
            .filter(|s| s.status != SnapshotStatus::Deleting)
        {
            // Policy was checked for the group snapshot as a whole.
            self.start_snapshot_delete(caller, s.id, false, true, false)
                .await?;
        }
        Ok(())
    }

    pub async fn reset_group_snapshot_status(
        &self,
        caller: &Caller,
        id: String,
        status: String,
    ) -> Result<()> {
        require_admin(caller, "group:reset_group_snapshot_status")?;
        let core = self.core.clone();
        let caller = caller.clone();
        self.run_blocking(move || {
            let mut tx = core.store.write()?;
            let mut g = load_group_snapshot(tx.as_mut(), &caller, &id)?;
            g.status_override = Some(status);
            tx.put_group_snapshot(&g)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }
}
