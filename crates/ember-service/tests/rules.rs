//! Rules that hold whichever dialect asks, because they live once, here:
//! the reserved snapshot name prefix.

use ember_model::*;
use ember_service::*;
use ember_storage::qcow2::Qcow2Driver;
use ember_store::sqlite::SqliteStore;
use std::sync::Arc;
use std::time::Duration;

fn member() -> Caller {
    Caller {
        user_id: UserId("u".into()),
        project_id: ProjectId("p".into()),
        roles: vec!["member".into()],
    }
}

async fn settle(svc: &Service) {
    for _ in 0..5000 {
        if svc.running_workflows() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("workflows did not finish");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_snapshot_names_are_refused_and_protected_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let driver = Qcow2Driver::new(dir.path().join("images")).unwrap();
    let store = SqliteStore::open(&dir.path().join("m.db")).unwrap();
    let svc = Service::embedded(Arc::new(store), Arc::new(driver), ServiceConfig::default());
    svc.recover().await.unwrap();
    let me = member();
    let vol = svc
        .create_volume(
            &me,
            CreateVolume {
                size_gib: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .id;
    settle(&svc).await;
    let snapshot = |name: Option<&str>| CreateSnapshot {
        volume_id: vol,
        name: name.map(str::to_string),
        description: None,
        metadata: Metadata::new(),
        allow_in_use: false,
    };
    // No client may give a snapshot a reserved name, at create or rename.
    let err = svc
        .create_snapshot(&me, snapshot(Some("autobk_snapshot_1")))
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::InvalidInput(_)), "{err:?}");
    let s = svc
        .create_snapshot(&me, snapshot(Some("mine")))
        .await
        .unwrap();
    settle(&svc).await;
    let err = svc
        .update_snapshot(
            &me,
            s.id,
            UpdateSnapshot {
                name: Some(Some("autobk_snapshot_2".into())),
                description: None,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::InvalidInput(_)), "{err:?}");
    // A snapshot a backup made (its name set by Ember itself) cannot be
    // changed or deleted by a client.
    {
        let core = svc.core();
        let mut tx = core.store.write().unwrap();
        let mut made = tx.snapshot(s.id).unwrap().unwrap();
        made.name = Some("autobk_snapshot_daily".into());
        tx.put_snapshot(&made).unwrap();
        tx.commit().unwrap();
    }
    let protected = |r: Result<()>| match r {
        Err(ServiceError::Protected(_)) => {}
        other => panic!("not protected: {other:?}"),
    };
    protected(
        svc.update_snapshot(
            &me,
            s.id,
            UpdateSnapshot {
                name: Some(Some("x".into())),
                description: None,
            },
        )
        .await
        .map(drop),
    );
    protected(
        svc.write_snapshot_metadata(
            &me,
            s.id,
            Metadata::from([("k".into(), "v".into())]),
            MetadataWrite::Merge,
        )
        .await
        .map(drop),
    );
    protected(
        svc.delete_snapshot_metadata_key(&me, s.id, "k".into())
            .await,
    );
    protected(svc.delete_snapshot(&me, s.id, false).await);
    assert_eq!(
        svc.snapshot(&me, s.id).await.unwrap().status,
        SnapshotStatus::Available
    );
}
