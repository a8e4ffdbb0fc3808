//! The behaviour every metadata backend must share, run against SQLite and
//! PostgreSQL (when `EMBER_TEST_DATABASE` names a server: scripts/test.sh
//! starts one with scripts/postgres.sh; `EMBER_TEST_POSTGRES_REQUIRED=1`
//! makes its absence a failure). Tests of one engine's internals (SQLite's
//! WAL and page-level checks) say so in their names.

use ember_model::*;
use ember_store::postgres::PostgresStore;
use ember_store::sqlite::SqliteStore;
use ember_store::{ListQuery, MetadataStore, SnapshotFilter, SortDir, SortKey};
use std::path::Path;
use std::sync::Arc;

/// A fresh, empty store of every engine under test, with its name.
fn stores(dir: &Path) -> Vec<(&'static str, Arc<dyn MetadataStore>)> {
    let mut all: Vec<(&'static str, Arc<dyn MetadataStore>)> = vec![(
        "sqlite",
        Arc::new(SqliteStore::open(&dir.join("m.db")).unwrap()),
    )];
    match std::env::var("EMBER_TEST_DATABASE") {
        Ok(base) => {
            let url = ember_store::postgres::fresh_database(&base).unwrap();
            all.push(("postgres", Arc::new(PostgresStore::connect(&url).unwrap())));
        }
        Err(_) => assert!(
            std::env::var("EMBER_TEST_POSTGRES_REQUIRED").is_err(),
            "EMBER_TEST_POSTGRES_REQUIRED is set but EMBER_TEST_DATABASE is not"
        ),
    }
    all
}

fn snapshot(project: &str, volume: VolumeId, name: &str, created: i64, size: u64) -> Snapshot {
    Snapshot {
        id: SnapshotId::new(),
        project_id: ProjectId(project.into()),
        user_id: UserId("u".into()),
        volume_id: volume,
        name: Some(name.into()),
        description: None,
        size_gib: size,
        status: SnapshotStatus::Available,
        metadata: Metadata::new(),
        group_snapshot_id: None,
        volume_type_id: None,
        image: None,
        export_secret: None,
        progress: "100%".into(),
        error_reason: None,
        created_at: Timestamp(created),
        updated_at: None,
    }
}

fn pages(store: &dyn MetadataStore, mut query: ListQuery<SnapshotFilter>) -> Vec<String> {
    let mut names = vec![];
    loop {
        let page = store.read().unwrap().list_snapshots(&query).unwrap();
        assert!(!page.marker_not_found);
        names.extend(page.items.iter().map(|s| s.name.clone().unwrap()));
        if !page.more {
            return names;
        }
        query.marker = Some(page.items.last().unwrap().id.0);
    }
}

#[test]
fn keyset_pagination_visits_every_row_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in stores(dir.path()) {
        eprintln!("engine: {engine}");
        keyset_pagination(store.as_ref());
    }
}

fn keyset_pagination(store: &dyn MetadataStore) {
    let volume = VolumeId::new();
    let mut tx = store.write().unwrap();
    for i in 0..25 {
        // Sizes collide on purpose so the id tiebreak matters.
        tx.put_snapshot(&snapshot(
            "p1",
            volume,
            &format!("s{i:02}"),
            i,
            (i % 3) as u64,
        ))
        .unwrap();
    }
    tx.put_snapshot(&snapshot("p2", volume, "other", 100, 1))
        .unwrap();
    tx.commit().unwrap();

    let newest_first = pages(
        store,
        ListQuery {
            project: Some(ProjectId("p1".into())),
            limit: Some(4),
            with_count: true,
            ..Default::default()
        },
    );
    let expected: Vec<String> = (0..25).rev().map(|i| format!("s{i:02}")).collect();
    assert_eq!(newest_first, expected);

    let by_size = pages(
        store,
        ListQuery {
            project: Some(ProjectId("p1".into())),
            sort: vec![
                (SortKey::Size, SortDir::Asc),
                (SortKey::CreatedAt, SortDir::Desc),
            ],
            limit: Some(3),
            ..Default::default()
        },
    );
    assert_eq!(by_size.len(), 25);
    let mut sorted = by_size.clone();
    sorted.sort_by_key(|n| {
        let i: i64 = n[1..].parse().unwrap();
        (i % 3, -i)
    });
    assert_eq!(by_size, sorted);

    let page = store
        .read()
        .unwrap()
        .list_snapshots(&ListQuery {
            project: None,
            with_count: true,
            limit: Some(1),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(page.count, Some(26));
    assert_eq!(page.items[0].name.as_deref(), Some("other"));
}

#[test]
fn uncommitted_transactions_leave_nothing_and_quota_counters_add_up() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in stores(dir.path()) {
        eprintln!("engine: {engine}");
        uncommitted_and_quota(store.as_ref());
    }
    // And in memory (SQLite only).
    uncommitted_and_quota(&SqliteStore::open_in_memory().unwrap());
}

fn uncommitted_and_quota(store: &dyn MetadataStore) {
    let p = ProjectId("p".into());
    {
        let mut tx = store.write().unwrap();
        tx.put_snapshot(&snapshot("p", VolumeId::new(), "lost", 1, 1))
            .unwrap();
        tx.add_quota_usage(&p, QuotaResource::Snapshots, 1).unwrap();
        // dropped without commit
    }
    let mut tx = store.write().unwrap();
    assert!(tx.all_snapshots().unwrap().is_empty());
    assert_eq!(tx.quota_usage(&p, QuotaResource::Snapshots).unwrap(), 0);
    tx.add_quota_usage(&p, QuotaResource::Gigabytes, 5).unwrap();
    tx.add_quota_usage(&p, QuotaResource::Gigabytes, -2)
        .unwrap();
    assert_eq!(tx.quota_limit(&p, QuotaResource::Gigabytes).unwrap(), None);
    tx.set_quota_limit(&p, QuotaResource::Gigabytes, 7).unwrap();
    tx.commit().unwrap();
    let mut tx = store.read().unwrap();
    assert_eq!(tx.quota_usage(&p, QuotaResource::Gigabytes).unwrap(), 3);
    assert_eq!(
        tx.quota_limit(&p, QuotaResource::Gigabytes).unwrap(),
        Some(7)
    );
    drop(tx);
    let mut tx = store.write().unwrap();
    tx.clear_quota_limits(&p).unwrap();
    tx.commit().unwrap();
    let mut tx = store.read().unwrap();
    assert_eq!(
        tx.quota_limit(&p, QuotaResource::Gigabytes).unwrap(),
        None,
        "cleared limits fall back to defaults"
    );
    assert_eq!(
        tx.quota_usage(&p, QuotaResource::Gigabytes).unwrap(),
        3,
        "usage is not a limit"
    );
}

/// Group commit: many threads' jobs share commits; a job that declines is
/// rolled back alone; every kept job is durable and visible afterwards.
#[test]
fn grouped_writes_keep_exactly_the_jobs_that_succeed() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in stores(dir.path()) {
        eprintln!("engine: {engine}");
        grouped_writes(store);
    }
}

fn grouped_writes(store: Arc<dyn MetadataStore>) {
    let volume = VolumeId::new();
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut kept = vec![];
                for i in 0..50 {
                    let s = snapshot("p", volume, &format!("{t}-{i}"), (t * 100 + i) as i64, 1);
                    let id = s.id;
                    let keep = i % 5 != 0;
                    let got = store
                        .write_grouped(Box::new(move |tx| {
                            tx.put_snapshot(&s).unwrap();
                            keep
                        }))
                        .unwrap();
                    assert_eq!(got, keep);
                    if keep {
                        kept.push(id);
                    }
                }
                kept
            })
        })
        .collect();
    let kept: Vec<SnapshotId> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(kept.len(), 16 * 40);
    let mut tx = store.read().unwrap();
    for id in &kept {
        assert!(tx.snapshot(*id).unwrap().is_some());
    }
    assert_eq!(tx.all_snapshots().unwrap().len(), kept.len());
}

/// A put that changes only unindexed fields updates the row in place; one
/// that changes an indexed column (status, name, volume, project) must move
/// the row in every index. Listings through each index see the final state.
#[test]
fn rewriting_a_row_keeps_every_index_in_step() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in stores(dir.path()) {
        eprintln!("engine: {engine}");
        rewriting_a_row(store.as_ref());
    }
    // SQLite's rows are updated in place when no indexed column changes:
    // the database agrees with itself.
    let conn = rusqlite::Connection::open(dir.path().join("m.db")).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

fn rewriting_a_row(store: &dyn MetadataStore) {
    let (v1, v2) = (VolumeId::new(), VolumeId::new());
    let mut s = snapshot("p1", v1, "before", 10, 1);
    let mut tx = store.write().unwrap();
    tx.put_snapshot(&s).unwrap();
    tx.put_snapshot(&snapshot("p1", v1, "neighbour", 5, 1))
        .unwrap();
    tx.commit().unwrap();

    // Unindexed fields only.
    s.description = Some("described".into());
    s.size_gib = 7;
    let mut tx = store.write().unwrap();
    tx.put_snapshot(&s).unwrap();
    tx.commit().unwrap();
    let got = store.read().unwrap().snapshot(s.id).unwrap().unwrap();
    assert_eq!(
        (got.description.as_deref(), got.size_gib),
        (Some("described"), 7)
    );

    // Every indexed column at once.
    s.status = SnapshotStatus::Error;
    s.name = Some("after".into());
    s.volume_id = v2;
    s.project_id = ProjectId("p2".into());
    let mut tx = store.write().unwrap();
    tx.put_snapshot(&s).unwrap();
    tx.commit().unwrap();

    let list = |project: &str, filter: SnapshotFilter| {
        pages(
            store,
            ListQuery {
                project: Some(ProjectId(project.into())),
                filter,
                sort: vec![(SortKey::Name, SortDir::Asc)],
                ..Default::default()
            },
        )
    };
    assert_eq!(list("p1", SnapshotFilter::default()), vec!["neighbour"]);
    assert_eq!(list("p2", SnapshotFilter::default()), vec!["after"]);
    let by_status = |status| SnapshotFilter {
        status: Some(status),
        ..Default::default()
    };
    assert_eq!(list("p2", by_status(SnapshotStatus::Error)), vec!["after"]);
    assert!(list("p2", by_status(SnapshotStatus::Available)).is_empty());
    let by_volume = |volume| SnapshotFilter {
        volume_id: Some(volume),
        ..Default::default()
    };
    assert_eq!(list("p2", by_volume(v2)), vec!["after"]);
    assert!(list("p2", by_volume(v1)).is_empty());
    let by_name = |name: &str| SnapshotFilter {
        name: Some(name.into()),
        ..Default::default()
    };
    assert_eq!(list("p2", by_name("after")), vec!["after"]);
    assert!(list("p1", by_name("before")).is_empty());
}

/// A job that panics fails alone, reported to its own caller as an error;
/// every other job commits (even one whose caller happened to lead the
/// group the panicking job ran in), and later commits go on.
#[test]
fn a_panicking_grouped_job_does_not_stop_group_commit() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in stores(dir.path()) {
        eprintln!("engine: {engine}");
        panicking_grouped_job(store);
    }
}

fn panicking_grouped_job(store: Arc<dyn MetadataStore>) {
    let volume = VolumeId::new();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut committed = vec![];
                for i in 0..30 {
                    let s = snapshot("p", volume, &format!("{t}-{i}"), i, 1);
                    let id = s.id;
                    let panics = t == 0 && i == 10;
                    let result = store.write_grouped(Box::new(move |tx| {
                        assert!(!panics, "job failed on purpose");
                        tx.put_snapshot(&s).unwrap();
                        true
                    }));
                    match result {
                        Ok(true) => committed.push(id),
                        Ok(false) => unreachable!("every job keeps its change"),
                        Err(_) => assert!(panics, "job {t}-{i} failed"),
                    }
                }
                committed
            })
        })
        .collect();
    let committed: Vec<SnapshotId> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(committed.len(), 8 * 30 - 1);
    let mut tx = store.read().unwrap();
    for id in &committed {
        assert!(tx.snapshot(*id).unwrap().is_some());
    }
    assert_eq!(tx.all_snapshots().unwrap().len(), committed.len());
    drop(tx);
    // And commits go on.
    let s = snapshot("p", volume, "after", 99, 1);
    let id = s.id;
    assert!(
        store
            .write_grouped(Box::new(move |tx| {
                tx.put_snapshot(&s).unwrap();
                true
            }))
            .unwrap()
    );
    assert!(store.read().unwrap().snapshot(id).unwrap().is_some());
}

/// Commits never pay for a checkpoint, yet the WAL is copied back into the
/// database file as it grows (by the background thread), it does not grow
/// without bound under a steady stream of commits, and everything
/// committed reads back from a fresh open.
#[test]
fn sqlite_the_log_is_checkpointed_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let store = SqliteStore::open(&path).unwrap();
    let volume = VolumeId::new();
    let db_size = || std::fs::metadata(&path).unwrap().len();
    let wal_pages = || {
        std::fs::metadata(dir.path().join("m.db-wal"))
            .map(|m| m.len() / 4096)
            .unwrap_or(0)
    };
    let mut ids = vec![];
    let mut commit = |i: i64| {
        let s = snapshot("p", volume, &format!("s{i}"), i, 1);
        ids.push(s.id);
        let mut tx = store.write().unwrap();
        tx.put_snapshot(&s).unwrap();
        tx.commit().unwrap();
    };
    // Past the background threshold (4000 pages), short of the writer's
    // own (16 000): with no commit after these, only the background
    // thread can copy pages into the database file.
    let initial = db_size();
    let mut i = 0;
    while wal_pages() < 5000 {
        commit(i);
        i += 1;
    }
    assert!(wal_pages() < 16_000);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while db_size() <= initial {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint reached the database file"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // A steady stream: the log restarts instead of growing.
    for _ in 0..20_000 {
        commit(i);
        i += 1;
    }
    assert!(
        wal_pages() < 32_000,
        "the log grew to {} pages",
        wal_pages()
    );
    drop(store);
    let reopened = SqliteStore::open(&path).unwrap();
    let mut tx = reopened.read().unwrap();
    assert_eq!(tx.all_snapshots().unwrap().len(), ids.len());
}

/// Garbage collection's question, "which images does nobody own?", is
/// answered from an index, not by reading every image.
#[test]
fn unowned_images_come_from_an_index() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in stores(dir.path()) {
        eprintln!("engine: {engine}");
        unowned_images(store.as_ref());
    }
    // On SQLite the query is answered by the partial index.
    let conn = rusqlite::Connection::open(dir.path().join("m.db")).unwrap();
    let plan: String = conn
        .query_row(
            "EXPLAIN QUERY PLAN SELECT body FROM images WHERE json_extract(body, '$.owner') = 'None' ORDER BY id",
            [],
            |r| r.get(3),
        )
        .unwrap();
    assert!(plan.contains("images_unowned"), "{plan}");
}

fn unowned_images(store: &dyn MetadataStore) {
    let image = |owner| Image {
        id: ImageId::new(),
        parent: None,
        size_bytes: 1 << 30,
        owner,
        created_at: Timestamp(0),
        backend: DEFAULT_BACKEND.into(),
        ready: true,
        kind: String::new(),
        label: None,
    };
    let mut tx = store.write().unwrap();
    let mut unowned = vec![];
    for i in 0..50 {
        let owner = match i % 3 {
            0 => ImageOwner::Volume(VolumeId::new()),
            1 => ImageOwner::Snapshot(SnapshotId::new()),
            _ => ImageOwner::None,
        };
        let img = image(owner);
        if owner == ImageOwner::None {
            unowned.push(img.id);
        }
        tx.put_image(&img).unwrap();
    }
    tx.commit().unwrap();
    let mut got: Vec<ImageId> = store
        .read()
        .unwrap()
        .unowned_images()
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    got.sort();
    unowned.sort();
    assert_eq!(got, unowned);
}

/// PostgreSQL only: when the server drops the store's connections (a
/// restart, a failover), the next call answers `Unavailable` (nothing was
/// changed; retry) rather than a generic error, and the pool replaces the
/// broken connections so the calls after it work again.
#[test]
fn postgres_connections_lost_are_unavailable_then_replaced() {
    let Ok(base) = std::env::var("EMBER_TEST_DATABASE") else {
        assert!(
            std::env::var("EMBER_TEST_POSTGRES_REQUIRED").is_err(),
            "EMBER_TEST_POSTGRES_REQUIRED is set but EMBER_TEST_DATABASE is not"
        );
        return;
    };
    let url = ember_store::postgres::fresh_database(&base).unwrap();
    let store = PostgresStore::connect(&url).unwrap();
    let volume = VolumeId::new();
    let mut tx = store.write().unwrap();
    tx.put_snapshot(&snapshot("p", volume, "kept", 1, 1))
        .unwrap();
    tx.commit().unwrap();
    // Another session terminates every connection to the store's database.
    let database = url.rsplit_once('/').unwrap().1.to_string();
    std::thread::spawn(move || {
        let mut admin = postgres::Client::connect(&base, postgres::NoTls).unwrap();
        admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                &[&database],
            )
            .unwrap();
    })
    .join()
    .unwrap();
    let mut failures = 0;
    let mut found = None;
    for _ in 0..10 {
        match store.read().and_then(|mut tx| tx.all_snapshots()) {
            Ok(all) => {
                found = Some(all);
                break;
            }
            Err(e) => {
                assert!(
                    matches!(e, ember_store::StoreError::Unavailable(_)),
                    "{e:?}"
                );
                failures += 1;
            }
        }
    }
    assert!(failures >= 1, "the dropped connection went unnoticed");
    assert_eq!(found.expect("the pool reconnected").len(), 1);
}

/// A write that breaks a constraint (a second volume type of the same
/// name) fails the transaction, at the write or at the commit (PostgreSQL
/// queues writes without waiting for them), and nothing of the transaction
/// is kept.
#[test]
fn a_failed_write_fails_the_whole_transaction() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in stores(dir.path()) {
        eprintln!("engine: {engine}");
        let vtype = |id: &str| VolumeType {
            id: id.into(),
            name: "gold".into(),
            description: None,
            is_public: true,
            extra_specs: Metadata::new(),
            access: vec![],
            encryption: None,
            qos_specs_id: None,
            created_at: Timestamp(0),
            updated_at: None,
        };
        let mut tx = store.write().unwrap();
        tx.put_volume_type(&vtype("a")).unwrap();
        tx.commit().unwrap();
        let s = snapshot("p", VolumeId::new(), "lost", 1, 1);
        let result = (|| {
            let mut tx = store.write()?;
            tx.put_snapshot(&s)?;
            tx.put_volume_type(&vtype("b"))?;
            tx.add_quota_usage(&ProjectId("p".into()), QuotaResource::Snapshots, 1)?;
            tx.commit()
        })();
        assert!(result.is_err(), "{engine}: the duplicate name was accepted");
        let mut tx = store.read().unwrap();
        assert!(tx.snapshot(s.id).unwrap().is_none(), "{engine}");
        assert_eq!(
            tx.quota_usage(&ProjectId("p".into()), QuotaResource::Snapshots)
                .unwrap(),
            0
        );
        assert_eq!(tx.volume_types().unwrap().len(), 1);
        drop(tx);
        // The store goes on.
        let mut tx = store.write().unwrap();
        tx.put_snapshot(&s).unwrap();
        tx.commit().unwrap();
        assert!(store.read().unwrap().snapshot(s.id).unwrap().is_some());
    }
}

#[test]
fn backups_their_chunk_references_and_unreferenced_chunks() {
    let dir = tempfile::tempdir().unwrap();
    for (name, store) in stores(dir.path()) {
        eprintln!("engine {name}");
        backups_and_chunks(store.as_ref());
    }
}

fn backup(project: &str, volume: VolumeId, created: i64) -> Backup {
    Backup {
        id: BackupId::new(),
        project_id: ProjectId(project.into()),
        user_id: UserId("u".into()),
        volume_id: volume,
        snapshot_id: None,
        name: Some("b".into()),
        description: None,
        availability_zone: Some("nova".into()),
        container: None,
        size_gib: 1,
        status: BackupStatus::Creating,
        fail_reason: None,
        is_incremental: false,
        parent_id: None,
        metadata: Metadata::new(),
        object_count: 0,
        stored_bytes: 0,
        data_timestamp: Timestamp(created),
        point: None,
        source: None,
        restore_volume_id: None,
        volume_metadata: Metadata::new(),
        chunk_project: None,
        created_at: Timestamp(created),
        updated_at: None,
    }
}

fn backups_and_chunks(store: &dyn MetadataStore) {
    use ember_store::ChunkState;
    let volume = VolumeId::new();
    let (b1, b2, other) = (
        backup("p", volume, 1),
        backup("p", volume, 2),
        backup("q", VolumeId::new(), 3),
    );
    let p = ProjectId("p".into());
    let q = ProjectId("q".into());
    let mut tx = store.write().unwrap();
    for b in [&b2, &b1, &other] {
        tx.put_backup(b).unwrap();
    }
    tx.put_backup_refs(b1.id, &p, &[(0, "h0".into()), (3, "h3".into())])
        .unwrap();
    // Replacing index 3, and a reference to the same content by b2.
    tx.put_backup_refs(b1.id, &p, &[(3, "h3b".into())]).unwrap();
    tx.put_backup_refs(b2.id, &p, &[(1, "h0".into())]).unwrap();
    tx.put_backup_refs(other.id, &q, &[(0, "h0".into())])
        .unwrap();
    for (project, hash) in [(&p, "h0"), (&p, "h3"), (&p, "h3b"), (&q, "h0")] {
        tx.put_chunk_state(project, hash, ChunkState::Stored)
            .unwrap();
    }
    tx.commit().unwrap();

    let mut tx = store.read().unwrap();
    let ids: Vec<_> = tx.backups(Some(&p)).unwrap().iter().map(|b| b.id).collect();
    assert_eq!(ids, vec![b1.id, b2.id], "oldest first, one project");
    assert_eq!(tx.backups(None).unwrap().len(), 3);
    assert_eq!(tx.backup(b1.id).unwrap().unwrap(), b1);
    assert_eq!(
        tx.backup_refs(b1.id).unwrap(),
        vec![(0, "h0".to_string()), (3, "h3b".to_string())]
    );
    // Only the replaced chunk is referenced by nobody.
    assert_eq!(
        tx.unreferenced_chunks(10).unwrap(),
        vec![(p.clone(), "h3".to_string(), ChunkState::Stored)]
    );
    drop(tx);

    // Deleting b1 leaves h0 (b2 still needs it), and q's h0 is q's own.
    let mut tx = store.write().unwrap();
    tx.delete_backup(b1.id).unwrap();
    tx.put_chunk_state(&p, "h3", ChunkState::Doomed).unwrap();
    tx.commit().unwrap();
    let mut tx = store.read().unwrap();
    assert!(tx.backup(b1.id).unwrap().is_none());
    assert!(tx.backup_refs(b1.id).unwrap().is_empty());
    let mut orphans = tx.unreferenced_chunks(10).unwrap();
    orphans.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        orphans,
        vec![
            (p.clone(), "h3".to_string(), ChunkState::Doomed),
            (p.clone(), "h3b".to_string(), ChunkState::Stored)
        ]
    );
    assert_eq!(tx.chunk_state(&q, "h0").unwrap(), Some(ChunkState::Stored));
    drop(tx);
    let mut tx = store.write().unwrap();
    tx.delete_chunk_state(&p, "h3").unwrap();
    tx.commit().unwrap();
    assert_eq!(store.read().unwrap().chunk_state(&p, "h3").unwrap(), None);
}

#[test]
fn policies_round_trip_per_project() {
    let dir = tempfile::tempdir().unwrap();
    for (name, store) in stores(dir.path()) {
        eprintln!("engine {name}");
        let policy = |project: &str, created: i64| Policy {
            id: uuid::Uuid::new_v4().to_string(),
            project_id: ProjectId(project.into()),
            user_id: UserId("u".into()),
            name: "p".into(),
            kind: PolicyKind::Snapshot,
            schedule: Schedule {
                interval_seconds: Some(60),
                cron: None,
                time_zone: "UTC".into(),
            },
            retention: Retention {
                count: Some(3),
                max_age_seconds: None,
            },
            volumes: Selector::default(),
            enabled: true,
            next_run: Timestamp(created + 60),
            pending_run: Some(Timestamp(created)),
            last_run: None,
            created_at: Timestamp(created),
            updated_at: None,
        };
        let (a, b, c) = (policy("p", 2), policy("p", 1), policy("q", 3));
        let mut tx = store.write().unwrap();
        for p in [&a, &b, &c] {
            tx.put_policy(p).unwrap();
        }
        tx.commit().unwrap();
        let mut tx = store.read().unwrap();
        let mine: Vec<_> = tx
            .policies(Some(&ProjectId("p".into())))
            .unwrap()
            .into_iter()
            .map(|p| p.id)
            .collect();
        assert_eq!(mine, vec![b.id.clone(), a.id.clone()], "oldest first");
        assert_eq!(tx.policies(None).unwrap().len(), 3);
        assert_eq!(tx.policy(&a.id).unwrap().unwrap(), a);
        drop(tx);
        let mut tx = store.write().unwrap();
        tx.delete_policy(&a.id).unwrap();
        tx.commit().unwrap();
        assert!(store.read().unwrap().policy(&a.id).unwrap().is_none());
    }
}

/// Nodes register, renew and are forgotten by id.
#[test]
fn nodes_register_renew_and_are_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in stores(dir.path()) {
        eprintln!("engine: {engine}");
        let node = |id: &str, beat: i64| Node {
            id: id.into(),
            api: format!("{id}:8776"),
            nbd: None,
            started_at: Timestamp(1),
            heartbeat: Timestamp(beat),
        };
        let mut tx = store.write().unwrap();
        tx.put_node(&node("n1", 10)).unwrap();
        tx.put_node(&node("n0", 10)).unwrap();
        tx.put_node(&node("n1", 20)).unwrap();
        tx.commit().unwrap();
        let ids = |store: &dyn MetadataStore| -> Vec<(String, i64)> {
            let mut tx = store.read().unwrap();
            tx.nodes()
                .unwrap()
                .into_iter()
                .map(|n| (n.id, n.heartbeat.0))
                .collect()
        };
        assert_eq!(ids(store.as_ref()), [("n0".into(), 10), ("n1".into(), 20)]);
        let mut tx = store.write().unwrap();
        tx.delete_node("n1").unwrap();
        tx.delete_node("never-was").unwrap();
        tx.commit().unwrap();
        assert_eq!(ids(store.as_ref()), [("n0".into(), 10)]);
    }
}
