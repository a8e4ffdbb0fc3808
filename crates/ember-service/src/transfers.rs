//! Volume transfers: a project offers a volume (with its snapshots unless
//! asked not to); whoever presents the auth key takes it. The hand-over is
//! one transaction: ownership, snapshot ownership and both projects' quota
//! usage change together, or not at all.

use crate::quotas::reserve;
use crate::volumes::{load_volume, require_writer};
use crate::{Caller, Result, Service, ServiceError};
use ember_model::{QuotaResource, Timestamp, Transfer, VolumeId, VolumeStatus};
use sha2::{Digest, Sha256};

fn not_found(id: &str) -> ServiceError {
    ServiceError::NotFound(format!("Transfer {id} could not be found."))
}

fn key_hash(salt: &str, key: &str) -> String {
    Sha256::digest(format!("{salt}{key}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `bytes` random bytes from the OS, as hex (Cinder's keys are 16 hex
/// characters).
fn random_hex(bytes: usize) -> Result<String> {
    let mut raw = vec![0u8; bytes];
    getrandom::fill(&mut raw).map_err(|e| ServiceError::Internal(format!("no randomness: {e}")))?;
    Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
}

/// A new transfer and its auth key (shown once, never stored).
pub struct NewTransfer {
    pub transfer: Transfer,
    pub auth_key: String,
}

impl Service {
    pub async fn create_transfer(
        &self,
        caller: &Caller,
        volume_id: VolumeId,
        name: Option<String>,
        no_snapshots: bool,
    ) -> Result<NewTransfer> {
        require_writer(caller, "volume:create_transfer")?;
        let core = self.core.clone();
        let caller = caller.clone();
        self.run_blocking(move || {
            let mut tx = core.store.write()?;
            let mut volume = load_volume(tx.as_mut(), &caller, volume_id)?;
            if volume.status != VolumeStatus::Available {
                return Err(ServiceError::InvalidVolume(
                    "status must be available".into(),
                ));
            }
            let auth_key = random_hex(8)?;
            let salt = random_hex(8)?;
            let transfer = Transfer {
                id: uuid::Uuid::new_v4().to_string(),
                volume_id,
                name,
                source_project_id: volume.project_id.clone(),
                no_snapshots,
                key_hash: key_hash(&salt, &auth_key),
                salt,
                created_at: Timestamp::now(),
            };
            volume.status = VolumeStatus::AwaitingTransfer;
            volume.updated_at = Some(Timestamp::now());
            tx.put_volume(&volume)?;
            tx.put_transfer(&transfer)?;
            tx.commit()?;
            Ok(NewTransfer { transfer, auth_key })
        })
        .await
    }

    /// The caller's project's transfers (every project's for an admin
    /// asking for all tenants).
    pub async fn list_transfers(
        &self,
        caller: &Caller,
        all_tenants: bool,
    ) -> Result<Vec<Transfer>> {
        let core = self.core.clone();
        let caller = caller.clone();
        self.run_blocking(move || {
            let all = core.store.read()?.transfers()?;
            Ok(all
                .into_iter()
                .filter(|t| {
                    (all_tenants && caller.is_admin()) || t.source_project_id == caller.project_id
                })
                .collect())
        })
        .await
    }

    pub async fn transfer(&self, caller: &Caller, id: String) -> Result<Transfer> {
        let core = self.core.clone();
        let caller = caller.clone();
        self.run_blocking(move || match core.store.read()?.transfer(&id)? {
            Some(t) if caller.sees(&t.source_project_id) => Ok(t),
            _ => Err(not_found(&id)),
        })
        .await
    }

    /// Withdraws the offer; the volume is `available` again.
    pub async fn delete_transfer(&self, caller: &Caller, id: String) -> Result<()> {
        require_writer(caller, "volume:delete_transfer")?;
        let core = self.core.clone();
        let caller = caller.clone();
        self.run_blocking(move || {
            let mut tx = core.store.write()?;
            let t = match tx.transfer(&id)? {
                Some(t) if caller.sees(&t.source_project_id) => t,
                _ => return Err(not_found(&id)),
            };
            if let Some(mut v) = tx.volume(t.volume_id)?
                && v.status == VolumeStatus::AwaitingTransfer
            {
                v.status = VolumeStatus::Available;
                v.updated_at = Some(Timestamp::now());
                tx.put_volume(&v)?;
            }
            tx.delete_transfer(&id)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Takes the volume into the caller's project if `auth_key` matches.
    pub async fn accept_transfer(
        &self,
        caller: &Caller,
        id: String,
        auth_key: String,
    ) -> Result<Transfer> {
        require_writer(caller, "volume:accept_transfer")?;
        let core = self.core.clone();
        let caller = caller.clone();
        self.run_blocking(move || {
            let mut tx = core.store.write()?;
            // Any project may accept: the key, not the id, is the secret.
            let t = tx.transfer(&id)?.ok_or_else(|| not_found(&id))?;
            if key_hash(&t.salt, &auth_key) != t.key_hash {
                return Err(ServiceError::InvalidInput(format!(
                    "Invalid auth key: Attempt to transfer {id} with invalid auth key."
                )));
            }
            let mut volume = tx
                .volume(t.volume_id)?
                .ok_or_else(|| ServiceError::VolumeNotFound(t.volume_id.to_string()))?;
            if volume.status != VolumeStatus::AwaitingTransfer {
                return Err(ServiceError::InvalidVolume(format!(
                    "Volume {} status must be awaiting-transfer, but current status is: {}.",
                    volume.id, volume.status
                )));
            }
            let from = volume.project_id.clone();
            let to = caller.project_id.clone();
            let snapshots: Vec<_> = if t.no_snapshots {
                vec![]
            } else {
                tx.all_snapshots()?
                    .into_iter()
                    .filter(|s| s.volume_id == volume.id)
                    .collect()
            };
            let snapshot_gb: i64 = snapshots.iter().map(|s| s.size_gib as i64).sum();
            let gb = volume.size_gib as i64 + snapshot_gb;
            let count = snapshots.len() as i64;
            reserve(
                tx.as_mut(),
                &to,
                &[
                    (QuotaResource::Volumes, 1),
                    (QuotaResource::Snapshots, count),
                    (QuotaResource::Gigabytes, gb),
                ],
            )?;
            tx.add_quota_usage(&from, QuotaResource::Volumes, -1)?;
            tx.add_quota_usage(&from, QuotaResource::Snapshots, -count)?;
            tx.add_quota_usage(&from, QuotaResource::Gigabytes, -gb)?;
            // Per-type usage moves too, each under the type it was counted as.
            let vt = crate::quotas::type_of(&volume.volume_type_id);
            let vdeltas = [
                (QuotaResource::Volumes, 1),
                (QuotaResource::Gigabytes, volume.size_gib as i64),
            ];
            crate::quotas::reserve_typed(tx.as_mut(), &to, &vt, &vdeltas)?;
            crate::quotas::release_typed(tx.as_mut(), &from, &vt, &vdeltas)?;
            for s in &snapshots {
                let st = crate::quotas::type_of(&s.volume_type_id);
                let sdeltas = [
                    (QuotaResource::Snapshots, 1),
                    (QuotaResource::Gigabytes, s.size_gib as i64),
                ];
                crate::quotas::reserve_typed(tx.as_mut(), &to, &st, &sdeltas)?;
                crate::quotas::release_typed(tx.as_mut(), &from, &st, &sdeltas)?;
            }
            // Every export of what moves is withdrawn: an export name is a
            // capability the old owner holds, and the new owner makes its
            // own (live clients are cut off after the commit).
            let mut withdrawn = vec![];
            for mut s in snapshots {
                if s.export_secret.take().is_some() {
                    withdrawn.push(s.id.0);
                }
                s.project_id = to.clone();
                s.user_id = caller.user_id.clone();
                s.updated_at = Some(Timestamp::now());
                tx.put_snapshot(&s)?;
            }
            for a in volume.attachments.iter_mut() {
                if a.export_secret.take().is_some() {
                    withdrawn.push(a.id);
                }
            }
            // Connections made but never completed (the legacy flow) go.
            volume
                .attachments
                .retain(|a| a.status == ember_model::AttachStatus::Attached);
            volume.project_id = to;
            volume.user_id = caller.user_id.clone();
            volume.status = VolumeStatus::Available;
            volume.updated_at = Some(Timestamp::now());
            tx.put_volume(&volume)?;
            tx.delete_transfer(&id)?;
            tx.commit()?;
            for export in withdrawn {
                core.revoke_export(export);
            }
            Ok(t)
        })
        .await
    }
}
