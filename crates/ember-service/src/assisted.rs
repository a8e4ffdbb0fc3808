//! Nova's assisted volume snapshots (seed 003), Ember's way.
//!
//! In OpenStack, a Cinder remotefs driver asks Nova to switch an attached
//! volume's qcow2 chain to a new overlay (`create_info.new_file`) or to
//! merge a layer away (`delete_info.file_to_merge`). Ember owns both the
//! chain and the attachment, so the request runs Ember's own snapshot
//! workflows — the same quiesce-and-switch an attached volume gets from
//! the Cinder API, and the same state machine `os-update_snapshot_status`
//! drives — and the file names are checked, never trusted as paths.

use crate::snapshots::{begin_snapshot_as, load_snapshot};
use crate::volumes::load_volume;
use crate::*;
use ember_model::*;

/// Nova's policy: `rule:service_or_admin`.
fn require_service_or_admin(caller: &Caller, action: &str) -> Result<()> {
    if caller.is_admin() || caller.roles.iter().any(|r| r == "service") {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(action.into()))
    }
}

/// What a client-supplied file name refers to.
#[derive(Debug, PartialEq, Eq)]
enum FileName {
    /// The name of data on the backend (`<uuid>.qcow2`), existing or not.
    Image(ImageId),
    /// Any other plain name: accepted as a label, never used as a path.
    Label,
}

/// The volume's backend as chains of files: assisted snapshots only make
/// sense where volumes are files a hypervisor could name.
fn files_of<'a>(
    core: &'a core::Core,
    volume: &Volume,
) -> Result<&'a dyn ember_backend::FileChains> {
    core.backend_of(volume)?.files().ok_or_else(|| {
        ServiceError::InvalidInput(format!(
            "Volume {} is not on a file-based backend; assisted snapshots need one.",
            volume.id
        ))
    })
}

/// Refuses anything that is not a plain file name in the image directory:
/// separators, `.`/`..`, absolute paths, control characters, symlinks and
/// other special entries.
fn plain_file_name(files: &dyn ember_backend::FileChains, name: &str) -> Result<FileName> {
    let bad = name.is_empty()
        || name.len() > 255
        || name == "."
        || name == ".."
        || name.contains('/')
        || name.contains('\\')
        || name.chars().any(char::is_control)
        || files.is_special_entry(name);
    if bad {
        return Err(ServiceError::InvalidInput(format!(
            "{name:?} is not a plain file name in the volume's directory."
        )));
    }
    Ok(match files.data_named(name) {
        Some(image) => FileName::Image(image),
        None => FileName::Label,
    })
}

/// Whether `image` is one of this volume's files: in its chain, or frozen
/// in one of its snapshots.
fn belongs_to(
    tx: &mut dyn ember_store::Tx,
    files: &dyn ember_backend::FileChains,
    volume: &Volume,
    image: ImageId,
) -> Result<bool> {
    if let Some(top) = volume.image
        && files.chain(tx, top)?.contains(&image)
    {
        return Ok(true);
    }
    Ok(tx
        .snapshots_of_volume(volume.id)?
        .iter()
        .any(|s| s.image == Some(image)))
}

/// Checks a named file against the volume: a name of another volume's
/// image is refused.
fn own_file(
    tx: &mut dyn ember_store::Tx,
    core: &core::Core,
    volume: &Volume,
    name: &str,
) -> Result<FileName> {
    let files = files_of(core, volume)?;
    let parsed = plain_file_name(files, name)?;
    if let FileName::Image(image) = parsed
        && files.exists(tx, image)?
        && !belongs_to(tx, files, volume, image)?
    {
        return Err(ServiceError::InvalidInput(format!(
            "{name} is not a file of volume {}.",
            volume.id
        )));
    }
    Ok(parsed)
}

fn no_bdm(volume: &str) -> ServiceError {
    ServiceError::InvalidInput(format!("No volume Block Device Mapping with id {volume}."))
}

impl Service {
    /// `POST os-assisted-volume-snapshots`: freezes the attached volume's
    /// current top as snapshot `snapshot_id` and continues it in
    /// `new_file` (an Ember image name `<uuid>.qcow2` becomes the overlay's
    /// file; any other plain name is a label). Idempotent per snapshot id.
    pub async fn assisted_snapshot_create(
        &self,
        caller: &Caller,
        volume_id: String,
        snapshot_id: String,
        new_file: String,
    ) -> Result<()> {
        require_service_or_admin(caller, "os_compute_api:os-assisted-volume-snapshots:create")?;
        let volume = VolumeId::parse(&volume_id).ok_or_else(|| no_bdm(&volume_id))?;
        let snapshot_id = SnapshotId::parse(&snapshot_id).ok_or_else(|| {
            ServiceError::InvalidInput(format!("Snapshot id {snapshot_id} is not a UUID."))
        })?;
        let core = self.core.clone();
        let caller2 = caller.clone();
        let record = self
            .run_blocking(move || {
                let mut tx = core.store.write()?;
                let v = load_volume(tx.as_mut(), &caller2, volume).map_err(|_| no_bdm(&volume_id))?;
                let attached = v.attachments.iter().filter(|a| a.status == AttachStatus::Attached).count();
                if attached == 0 {
                    return Err(no_bdm(&volume_id));
                }
                if attached > 1 {
                    return Err(ServiceError::InvalidInput(format!(
                        "Volume {volume_id} is attached to more than one instance; assisted snapshots need a single attachment."
                    )));
                }
                let new_top = match own_file(tx.as_mut(), &core, &v, &new_file)? {
                    FileName::Image(image) => image,
                    FileName::Label => ImageId::new(),
                };
                if let Some(existing) = tx.snapshot(snapshot_id)? {
                    // A retry, or a snapshot Ember is already taking.
                    if existing.volume_id != v.id {
                        return Err(ServiceError::InvalidInput(format!(
                            "Snapshot {snapshot_id} is not a snapshot of volume {volume_id}."
                        )));
                    }
                    return Ok(None);
                }
                if files_of(&core, &v)?.exists(tx.as_mut(), new_top)? {
                    return Err(ServiceError::InvalidInput(format!(
                        "{new_file} already exists; the new overlay needs a new file."
                    )));
                }
                let req = CreateSnapshot {
                    volume_id: v.id,
                    name: None,
                    description: Some("assisted snapshot".into()),
                    metadata: Metadata::new(),
                    allow_in_use: true,
                };
                let (_, record) = begin_snapshot_as(&core, tx.as_mut(), &caller2, req, None, snapshot_id, new_top)?;
                tx.commit()?;
                Ok(Some(record))
            })
            .await?;
        if let Some(record) = record {
            self.start(record);
        }
        Ok(())
    }

    /// `DELETE os-assisted-volume-snapshots/{id}`: merges the snapshot's
    /// layer away with Ember's snapshot-delete workflow. The named files,
    /// when given, must be this snapshot's file and one of the volume's.
    pub async fn assisted_snapshot_delete(
        &self,
        caller: &Caller,
        snapshot_id: String,
        volume_id: String,
        file_to_merge: Option<String>,
        merge_target_file: Option<String>,
    ) -> Result<()> {
        require_service_or_admin(caller, "os_compute_api:os-assisted-volume-snapshots:delete")?;
        let volume = VolumeId::parse(&volume_id).ok_or_else(|| no_bdm(&volume_id))?;
        let sid = SnapshotId::parse(&snapshot_id)
            .ok_or_else(|| ServiceError::SnapshotNotFound(snapshot_id.clone()))?;
        let core = self.core.clone();
        let caller2 = caller.clone();
        self.run_blocking(move || {
            let mut tx = core.store.read()?;
            let v = load_volume(tx.as_mut(), &caller2, volume).map_err(|_| no_bdm(&volume_id))?;
            let s = load_snapshot(tx.as_mut(), &caller2, sid)?;
            if s.volume_id != v.id {
                return Err(ServiceError::InvalidInput(format!(
                    "Snapshot {snapshot_id} is not a snapshot of volume {volume_id}."
                )));
            }
            if let Some(name) = &file_to_merge {
                let parsed = own_file(tx.as_mut(), &core, &v, name)?;
                if matches!(parsed, FileName::Image(i) if Some(i) != s.image) {
                    return Err(ServiceError::InvalidInput(format!(
                        "{name} is not the file of snapshot {snapshot_id}."
                    )));
                }
            }
            if let Some(name) = &merge_target_file {
                own_file(tx.as_mut(), &core, &v, name)?;
            }
            Ok(())
        })
        .await?;
        self.delete_snapshot(caller, sid, false).await
    }
}
