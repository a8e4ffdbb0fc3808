//! Snapshot and backup policies: a schedule (an interval, or a cron
//! expression in a time zone), a retention (count and/or age) and the
//! volumes covered (by id, type or metadata), per project.
//!
//! Runs are exactly once. A due run is *claimed* in one transaction that
//! advances `next_run` past now and records the claimed due time as
//! `pending_run`; the run then makes what it makes under names derived
//! from that due time (a re-run finds them and makes nothing twice), and a
//! second transaction records it as `last_run`. A process that dies
//! in between finishes the pending run at its next start. Runs missed
//! while Ember was down are not made up one by one: the next check runs
//! once, late, and `last_run.late_seconds` says by how much.
//!
//! What a policy makes carries the reserved `autobk_snapshot_` name prefix
//! (backups `autobk_backup_`), which no client may give, change or delete
//! through any API: only the policy's retention deletes them.

use crate::snapshots::RESERVED_SNAPSHOT_PREFIX;
use crate::volumes::require_writer;
use crate::*;
use chrono::TimeZone;
use ember_model::*;
use std::str::FromStr;

/// The prefix of the backups policies make.
pub const RESERVED_BACKUP_PREFIX: &str = "autobk_backup_";
/// Policies one project may have.
pub const MAX_POLICIES_PER_PROJECT: usize = 100;
/// The shortest interval (a test-friendly floor; a real schedule is
/// minutes or hours).
pub const MIN_INTERVAL_SECONDS: u64 = 1;

/// What a client asks for (create, or update with every field given).
#[derive(Clone, Debug)]
pub struct PolicySpec {
    pub name: String,
    pub kind: PolicyKind,
    pub schedule: Schedule,
    pub retention: Retention,
    pub volumes: Selector,
    pub enabled: bool,
}

fn invalid(message: impl Into<String>) -> ServiceError {
    ServiceError::InvalidInput(message.into())
}

fn to_chrono(t: Timestamp) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc
        .timestamp_micros(t.0)
        .single()
        .unwrap_or_else(chrono::Utc::now)
}

/// The first due time strictly after `after`.
pub fn next_due(schedule: &Schedule, after: Timestamp) -> Result<Timestamp> {
    match (&schedule.interval_seconds, &schedule.cron) {
        (Some(secs), None) => {
            let step = secs
                .checked_mul(1_000_000)
                .and_then(|s| i64::try_from(s).ok())
                .ok_or_else(|| invalid("interval_seconds is too large."))?;
            Ok(Timestamp(after.0.saturating_add(step)))
        }
        (None, Some(expr)) => {
            let tz = chrono_tz::Tz::from_str(&schedule.time_zone)
                .map_err(|_| invalid(format!("Unknown time zone {}.", schedule.time_zone)))?;
            let cron = croner::parser::CronParser::builder()
                .seconds(croner::parser::Seconds::Optional)
                .build()
                .parse(expr)
                .map_err(|e| invalid(format!("Invalid cron expression {expr:?}: {e}")))?;
            let from = to_chrono(after).with_timezone(&tz);
            let next = cron
                .find_next_occurrence(&from, false)
                .map_err(|e| invalid(format!("Cron expression {expr:?} never runs: {e}")))?;
            Ok(Timestamp(
                next.with_timezone(&chrono::Utc).timestamp_micros(),
            ))
        }
        _ => Err(invalid(
            "A schedule has exactly one of interval_seconds and cron.",
        )),
    }
}

fn check_spec(spec: &PolicySpec) -> Result<()> {
    if spec.name.trim().is_empty() || spec.name.chars().count() > 255 {
        return Err(invalid("A policy's name is 1 to 255 characters."));
    }
    if let Some(secs) = spec.schedule.interval_seconds
        && secs < MIN_INTERVAL_SECONDS
    {
        return Err(invalid("interval_seconds must be at least 1."));
    }
    next_due(&spec.schedule, Timestamp::now())?;
    if spec.retention.count == Some(0) {
        return Err(invalid("retention count must be at least 1."));
    }
    if spec.volumes.ids.is_empty()
        && spec.volumes.volume_type.is_none()
        && spec.volumes.metadata.is_empty()
    {
        return Err(invalid(
            "A policy covers volumes by ids, volume_type or metadata; none given.",
        ));
    }
    Ok(())
}

fn load(tx: &mut dyn ember_store::Tx, caller: &Caller, id: &str) -> Result<Policy> {
    match tx.policy(id)? {
        Some(p) if caller.sees(&p.project_id) => Ok(p),
        _ => Err(ServiceError::NotFound(format!(
            "Policy {id} could not be found."
        ))),
    }
}

/// The name prefix of what `policy` makes; the due time follows it.
fn prefix(policy: &Policy) -> String {
    let base = match policy.kind {
        PolicyKind::Snapshot => RESERVED_SNAPSHOT_PREFIX,
        PolicyKind::Backup => RESERVED_BACKUP_PREFIX,
    };
    format!("{base}{}_", &policy.id[..8.min(policy.id.len())])
}

fn made_name(policy: &Policy, due: Timestamp) -> String {
    format!(
        "{}{}",
        prefix(policy),
        to_chrono(due).format("%Y%m%dT%H%M%S%.6fZ")
    )
}

fn covers(policy: &Policy, v: &Volume) -> bool {
    let sel = &policy.volumes;
    (sel.ids.is_empty() || sel.ids.contains(&v.id))
        && sel
            .volume_type
            .as_ref()
            .is_none_or(|t| v.volume_type_id.as_deref() == Some(t.as_str()) || &v.volume_type == t)
        && sel
            .metadata
            .iter()
            .all(|(k, val)| v.metadata.get(k) == Some(val))
}

impl Service {
    pub async fn create_policy(&self, caller: &Caller, spec: PolicySpec) -> Result<Policy> {
        require_writer(caller, "ember:policy:create")?;
        check_spec(&spec)?;
        let core = self.core.clone();
        let caller = caller.clone();
        self.run_blocking(move || {
            let mut tx = core.store.write()?;
            if tx.policies(Some(&caller.project_id))?.len() >= MAX_POLICIES_PER_PROJECT {
                return Err(invalid(format!(
                    "A project has at most {MAX_POLICIES_PER_PROJECT} policies."
                )));
            }
            let now = Timestamp::now();
            let policy = Policy {
                id: uuid::Uuid::new_v4().to_string(),
                project_id: caller.project_id.clone(),
                user_id: caller.user_id.clone(),
                name: spec.name,
                kind: spec.kind,
                next_run: next_due(&spec.schedule, now)?,
                schedule: spec.schedule,
                retention: spec.retention,
                volumes: spec.volumes,
                enabled: spec.enabled,
                pending_run: None,
                last_run: None,
                created_at: now,
                updated_at: None,
            };
            tx.put_policy(&policy)?;
            tx.commit()?;
            Ok(policy)
        })
        .await
    }

    pub async fn policy(&self, caller: &Caller, id: String) -> Result<Policy> {
        let core = self.core.clone();
        let caller = caller.clone();
        self.run_blocking(move || load(core.store.read()?.as_mut(), &caller, &id))
            .await
    }

    /// The caller's project's policies (every project's for an admin
    /// asking for all).
    pub async fn list_policies(&self, caller: &Caller, all: bool) -> Result<Vec<Policy>> {
        let core = self.core.clone();
        let project = (!(all && caller.is_admin())).then(|| caller.project_id.clone());
        self.run_blocking(move || Ok(core.store.read()?.policies(project.as_ref())?))
            .await
    }

    pub async fn update_policy(
        &self,
        caller: &Caller,
        id: String,
        spec: PolicySpec,
    ) -> Result<Policy> {
        require_writer(caller, "ember:policy:update")?;
        check_spec(&spec)?;
        let core = self.core.clone();
        let caller = caller.clone();
        self.run_blocking(move || {
            let mut tx = core.store.write()?;
            let mut p = load(tx.as_mut(), &caller, &id)?;
            let now = Timestamp::now();
            if p.schedule != spec.schedule {
                p.next_run = next_due(&spec.schedule, now)?;
            }
            p.name = spec.name;
            p.kind = spec.kind;
            p.schedule = spec.schedule;
            p.retention = spec.retention;
            p.volumes = spec.volumes;
            p.enabled = spec.enabled;
            p.updated_at = Some(now);
            tx.put_policy(&p)?;
            tx.commit()?;
            Ok(p)
        })
        .await
    }

    /// Deletes a policy; what it made stays (and stays protected).
    pub async fn delete_policy(&self, caller: &Caller, id: String) -> Result<()> {
        require_writer(caller, "ember:policy:delete")?;
        let core = self.core.clone();
        let caller = caller.clone();
        self.run_blocking(move || {
            let mut tx = core.store.write()?;
            load(tx.as_mut(), &caller, &id)?;
            tx.delete_policy(&id)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Runs every policy that is due, and finishes any run a crash left
    /// pending. Called every second by one node (the collector).
    pub async fn run_due_policies(&self) -> Result<usize> {
        if !self
            .core
            .collector
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return Ok(0);
        }
        let core = self.core.clone();
        let now = Timestamp::now();
        // Claim: advance next_run, remember the due time as pending.
        let claimed: Vec<(Policy, Timestamp)> = self
            .run_blocking(move || {
                let mut tx = core.store.write()?;
                let mut claimed = Vec::new();
                for mut p in tx.policies(None)? {
                    if let Some(due) = p.pending_run {
                        claimed.push((p, due));
                        continue;
                    }
                    if !p.enabled || p.next_run > now {
                        continue;
                    }
                    let due = p.next_run;
                    p.next_run = next_due(&p.schedule, now)?;
                    p.pending_run = Some(due);
                    tx.put_policy(&p)?;
                    claimed.push((p, due));
                }
                tx.commit()?;
                Ok(claimed)
            })
            .await?;
        let n = claimed.len();
        for (policy, due) in claimed {
            tracing::info!(policy = %policy.id, due = %due.to_iso_micros(), "policy run");
            let run = self.run_policy(&policy, due).await;
            tracing::info!(policy = %policy.id, made = run.made, deleted = run.deleted, late_seconds = run.late_seconds, failures = ?run.failures, "policy run finished");
            let core = self.core.clone();
            let id = policy.id.clone();
            self.run_blocking(move || {
                let mut tx = core.store.write()?;
                if let Some(mut p) = tx.policy(&id)? {
                    p.pending_run = None;
                    p.last_run = Some(run);
                    tx.put_policy(&p)?;
                }
                tx.commit()?;
                Ok(())
            })
            .await?;
        }
        Ok(n)
    }

    /// One run: makes a snapshot (or backup) of every covered volume under
    /// the run's name, unless it exists already, then applies retention.
    async fn run_policy(&self, policy: &Policy, due: Timestamp) -> PolicyRun {
        let started = Timestamp::now();
        let caller = Caller {
            user_id: policy.user_id.clone(),
            project_id: policy.project_id.clone(),
            roles: vec!["member".into()],
        };
        let mut run = PolicyRun {
            scheduled_at: due,
            started_at: started,
            late_seconds: (started.0.saturating_sub(due.0).max(0) / 1_000_000) as u64,
            made: 0,
            deleted: 0,
            failures: Vec::new(),
        };
        let name = made_name(policy, due);
        let core = self.core.clone();
        let project = policy.project_id.clone();
        let state = self
            .run_blocking(move || {
                let mut tx = core.store.read()?;
                let volumes = tx
                    .all_volumes()?
                    .into_iter()
                    .filter(|v| v.project_id == project)
                    .collect::<Vec<_>>();
                let snapshots = tx
                    .all_snapshots()?
                    .into_iter()
                    .filter(|s| s.project_id == project)
                    .collect::<Vec<_>>();
                let backups = tx.backups(Some(&project))?;
                Ok((volumes, snapshots, backups))
            })
            .await;
        let (volumes, snapshots, backups) = match state {
            Ok(s) => s,
            Err(e) => {
                run.failures.push(e.to_string());
                return run;
            }
        };
        for v in volumes.iter().filter(|v| covers(policy, v)) {
            let result = match policy.kind {
                PolicyKind::Snapshot => {
                    if snapshots
                        .iter()
                        .any(|s| s.volume_id == v.id && s.name.as_deref() == Some(&name))
                    {
                        continue; // made before a crash
                    }
                    self.create_snapshot_named(
                        &caller,
                        CreateSnapshot {
                            volume_id: v.id,
                            name: Some(name.clone()),
                            description: Some(format!("made by policy {}", policy.name)),
                            metadata: Metadata::new(),
                            allow_in_use: true,
                        },
                    )
                    .await
                    .map(drop)
                }
                PolicyKind::Backup => {
                    if backups
                        .iter()
                        .any(|b| b.volume_id == v.id && b.name.as_deref() == Some(&name))
                    {
                        continue;
                    }
                    let parent_ok = backups
                        .iter()
                        .any(|b| b.volume_id == v.id && b.status == BackupStatus::Available);
                    self.create_backup_named(
                        &caller,
                        CreateBackup {
                            volume_id: v.id,
                            name: Some(name.clone()),
                            description: Some(format!("made by policy {}", policy.name)),
                            incremental: parent_ok,
                            force: true,
                            ..Default::default()
                        },
                    )
                    .await
                    .map(drop)
                }
            };
            match result {
                Ok(()) => run.made += 1,
                Err(e) => run.failures.push(format!("volume {}: {e}", v.id)),
            }
        }
        run.deleted = self.apply_retention(policy, &caller, &mut run).await;
        run
    }

    /// Deletes what the policy made beyond its retention, oldest first,
    /// per volume; the newest of each volume always stays.
    async fn apply_retention(&self, policy: &Policy, caller: &Caller, run: &mut PolicyRun) -> u32 {
        let r = &policy.retention;
        if r.count.is_none() && r.max_age_seconds.is_none() {
            return 0;
        }
        let core = self.core.clone();
        let project = policy.project_id.clone();
        let prefix = prefix(policy);
        let kind = policy.kind;
        // (volume, id, created_at) of what the policy made, oldest first.
        let made = self
            .run_blocking(move || {
                let mut tx = core.store.read()?;
                let mut out: Vec<(VolumeId, String, Timestamp)> = match kind {
                    PolicyKind::Snapshot => tx
                        .all_snapshots()?
                        .into_iter()
                        .filter(|s| s.project_id == project)
                        .filter(|s| s.status == SnapshotStatus::Available)
                        .filter(|s| s.name.as_deref().is_some_and(|n| n.starts_with(&prefix)))
                        .map(|s| (s.volume_id, s.id.to_string(), s.created_at))
                        .collect(),
                    PolicyKind::Backup => tx
                        .backups(Some(&project))?
                        .into_iter()
                        .filter(|b| b.status == BackupStatus::Available)
                        .filter(|b| b.name.as_deref().is_some_and(|n| n.starts_with(&prefix)))
                        .map(|b| (b.volume_id, b.id.to_string(), b.created_at))
                        .collect(),
                };
                out.sort_by_key(|(_, _, t)| *t);
                Ok(out)
            })
            .await
            .unwrap_or_default();
        let now = Timestamp::now().0;
        let mut deleted = 0;
        let mut by_volume: std::collections::BTreeMap<VolumeId, Vec<(String, Timestamp)>> =
            Default::default();
        for (v, id, t) in made {
            by_volume.entry(v).or_default().push((id, t));
        }
        for (_, items) in by_volume {
            let keep_from = r
                .count
                .map_or(0, |c| items.len().saturating_sub(c as usize));
            for (i, (id, t)) in items.iter().enumerate() {
                let newest = i + 1 == items.len();
                let too_many = i < keep_from;
                let too_old = r.max_age_seconds.is_some_and(|age| {
                    now.saturating_sub(t.0)
                        > i64::try_from(age)
                            .unwrap_or(i64::MAX)
                            .saturating_mul(1_000_000)
                });
                if newest || !(too_many || too_old) {
                    continue;
                }
                let result = match kind {
                    PolicyKind::Snapshot => match SnapshotId::parse(id) {
                        Some(sid) => {
                            self.start_snapshot_delete(caller, sid, false, false, true)
                                .await
                        }
                        None => continue,
                    },
                    PolicyKind::Backup => match BackupId::parse(id) {
                        Some(bid) => self.delete_backup_of_policy(caller, bid).await,
                        None => continue,
                    },
                };
                match result {
                    Ok(()) => deleted += 1,
                    Err(e) => run.failures.push(format!("retention of {id}: {e}")),
                }
            }
        }
        deleted
    }
}
