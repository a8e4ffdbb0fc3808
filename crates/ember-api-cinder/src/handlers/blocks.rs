//! Ember's changed-blocks API, in the style of the EBS direct APIs
//! (`ListSnapshotBlocks`, `ListChangedBlocks`, `GetSnapshotBlock`), under
//! `/v3/{project_id}/ember/snapshots/{snapshot_id}/…`: 512 KiB blocks,
//! pages of at most 10 000 with a `next_token`, each block's SHA-256.

use crate::{CinderError, Reply, Req};
use axum::http::StatusCode;
use ember_model::SnapshotId;
use ember_service::Service;
use ember_service::blocks::{BLOCK_SIZE, BlockPage, MAX_RESULTS};
use serde_json::{Value, json};

fn snapshot_id(id: &str) -> Result<SnapshotId, CinderError> {
    SnapshotId::parse(id).ok_or_else(|| CinderError::snapshot_not_found(id))
}

fn number(req: &Req, key: &str) -> Result<Option<u64>, CinderError> {
    req.query(key)
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                CinderError::bad_request(format!("{key} must be a non-negative integer."))
            })
        })
        .transpose()
}

/// (first block, page size) from `next_token` or `starting_block_index`,
/// and `max_results` (100 to 10 000, as EBS; default 10 000).
fn paging(req: &Req) -> Result<(u64, usize), CinderError> {
    let from = match number(req, "next_token")? {
        Some(n) => n,
        None => number(req, "starting_block_index")?.unwrap_or(0),
    };
    let max = match number(req, "max_results")? {
        None => MAX_RESULTS,
        Some(n) if (100..=MAX_RESULTS as u64).contains(&n) => n as usize,
        Some(_) => {
            return Err(CinderError::bad_request(
                "max_results must be between 100 and 10000.",
            ));
        }
    };
    Ok((from, max))
}

fn render(key: &str, page: BlockPage) -> Value {
    json!({
        key: page.indices.iter().map(|i| json!({"block_index": i})).collect::<Vec<_>>(),
        "block_size": BLOCK_SIZE,
        "volume_size": page.volume_size_gib,
        "next_token": page.next.map(|n| n.to_string()),
    })
}

pub async fn list(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    let (from, max) = paging(req)?;
    let page = svc
        .snapshot_blocks(&req.caller, snapshot_id(id)?, from, max)
        .await?;
    Ok(Reply::ok(render("blocks", page)))
}

pub async fn changed(svc: &Service, req: &Req, id: &str) -> Result<Reply, CinderError> {
    let (from, max) = paging(req)?;
    let first = req
        .query("first_snapshot_id")
        .ok_or_else(|| CinderError::bad_request("first_snapshot_id is required."))?;
    let page = svc
        .changed_blocks(
            &req.caller,
            snapshot_id(first)?,
            snapshot_id(id)?,
            from,
            max,
        )
        .await?;
    Ok(Reply::ok(render("changed_blocks", page)))
}

pub async fn get(svc: &Service, req: &Req, id: &str, index: &str) -> Result<Reply, CinderError> {
    let index: u64 = index
        .parse()
        .map_err(|_| CinderError::bad_request("The block index must be a non-negative integer."))?;
    let (data, sha256) = svc
        .snapshot_block(&req.caller, snapshot_id(id)?, index)
        .await?;
    let length = data.len().to_string();
    Ok(Reply {
        status: StatusCode::OK,
        body: None,
        raw: Some(data),
        headers: vec![
            ("x-ember-checksum", sha256),
            ("x-ember-checksum-algorithm", "SHA256".into()),
            ("x-ember-data-length", length),
        ],
    })
}
