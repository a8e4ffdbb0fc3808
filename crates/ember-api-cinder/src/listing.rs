//! List parameters (limit, marker, offset, sort, filters) and the
//! pagination links, with Cinder's messages.

use crate::{CinderError, Req};
use ember_api_common::schema::as_bool;
use ember_store::{ListQuery, SortDir, SortKey};
use serde_json::{Value, json};

/// Cinder's `osapi_max_limit`.
pub const MAX_LIMIT: u64 = 1000;

/// Query keys that steer listing rather than filter it.
const CONTROL_KEYS: &[&str] = &[
    "limit",
    "marker",
    "offset",
    "sort",
    "sort_key",
    "sort_dir",
    "all_tenants",
    "with_count",
];

pub struct Paging {
    pub limit: u64,
    pub marker: Option<String>,
    pub offset: u64,
    pub sort: Vec<(SortKey, SortDir)>,
    pub all_tenants: bool,
    pub with_count: bool,
}

pub fn paging(req: &Req, sort_key: fn(&str) -> Option<SortKey>) -> Result<Paging, CinderError> {
    let limit = match req.query("limit") {
        None => MAX_LIMIT,
        Some(v) => {
            let n: i64 = v
                .parse()
                .map_err(|_| CinderError::bad_request("limit param must be an integer"))?;
            if n < 0 {
                return Err(CinderError::bad_request("limit param must be positive"));
            }
            (n as u64).min(MAX_LIMIT)
        }
    };
    let offset = match req.query("offset") {
        None => 0,
        Some(v) => {
            let n: i64 = v
                .parse()
                .map_err(|_| CinderError::bad_request("offset param must be an integer"))?;
            if n < 0 {
                return Err(CinderError::bad_request("offset param must be positive"));
            }
            n as u64
        }
    };
    let mut pairs: Vec<(String, Option<String>)> = Vec::new();
    if let Some(sort) = req.query("sort") {
        for item in sort.split(',').filter(|s| !s.trim().is_empty()) {
            let (k, d) = match item.split_once(':') {
                Some((k, d)) => (k.trim().to_string(), Some(d.trim().to_string())),
                None => (item.trim().to_string(), None),
            };
            pairs.push((k, d));
        }
    } else if let Some(keys) = req.query("sort_key") {
        let dirs: Vec<&str> = req
            .query("sort_dir")
            .map(|d| d.split(',').collect())
            .unwrap_or_default();
        for (i, k) in keys.split(',').enumerate() {
            pairs.push((
                k.trim().to_string(),
                dirs.get(i).map(|d| d.trim().to_string()),
            ));
        }
    } else if let Some(dir) = req.query("sort_dir") {
        pairs.push(("created_at".into(), Some(dir.to_string())));
    }
    let mut sort = Vec::new();
    for (k, d) in pairs {
        let key = sort_key(&k)
            .ok_or_else(|| CinderError::bad_request("Invalid input received: Invalid sort key"))?;
        let dir = match d.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("desc") => SortDir::Desc,
            Some("asc") => SortDir::Asc,
            Some(_) => {
                return Err(CinderError::bad_request(
                    "Invalid input received: Unknown sort direction, must be 'desc' or 'asc'",
                ));
            }
        };
        sort.push((key, dir));
    }
    if sort.is_empty() {
        sort.push((SortKey::CreatedAt, SortDir::Desc));
    }
    let all_tenants = req
        .query("all_tenants")
        .map(|v| v.is_empty() || as_bool(&Value::String(v.to_string())).unwrap_or(true))
        .unwrap_or(false);
    let with_count = req
        .query("with_count")
        .and_then(|v| as_bool(&Value::String(v.to_string())))
        .unwrap_or(false);
    Ok(Paging {
        limit,
        marker: req.query("marker").map(str::to_string),
        offset,
        sort,
        all_tenants,
        with_count,
    })
}

/// Filters: every query key that is not a control key, in request order.
pub fn filters(req: &Req) -> Vec<(String, String)> {
    req.query
        .iter()
        .filter(|(k, _)| !CONTROL_KEYS.contains(&k.as_str()))
        .cloned()
        .collect()
}

pub fn to_query<F: Default>(p: &Paging, marker: Option<uuid::Uuid>, filter: F) -> ListQuery<F> {
    ListQuery {
        project: None,
        filter,
        sort: p.sort.clone(),
        marker,
        limit: Some(p.limit),
        offset: p.offset,
        with_count: p.with_count,
    }
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Cinder adds a `next` link whenever a page is as long as its limit.
pub fn next_link(req: &Req, items: usize, limit: u64, last_id: Option<String>) -> Option<Value> {
    if items == 0 || items as u64 != limit {
        return None;
    }
    let mut query: Vec<String> = req
        .query
        .iter()
        .filter(|(k, _)| k != "marker")
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    query.push(format!("marker={}", last_id?));
    Some(json!([{"rel": "next", "href": format!("{}{}?{}", req.base, req.path, query.join("&"))}]))
}

/// oslo's `strutils.bool_from_string` (not strict): anything it does not
/// know as true is false.
pub fn bool_from_string(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "1" | "t" | "true" | "on" | "y" | "yes"
    )
}
