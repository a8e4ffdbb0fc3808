//! Cinder's API versions and microversion negotiation.

use axum::http::HeaderMap;
use serde_json::{Value, json};

pub const MIN_MINOR: u32 = 0;
pub const MAX_MINOR: u32 = 71;

/// A negotiated v3 microversion (`3.minor`), or v2 (rendered like 3.0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Microversion(pub u32);

impl Microversion {
    pub const V3_0: Microversion = Microversion(0);

    pub fn at_least(self, minor: u32) -> bool {
        self.0 >= minor
    }

    pub fn header_value(self) -> String {
        format!("volume 3.{}", self.0)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum VersionError {
    /// 400 with this message.
    Malformed(String),
    /// 406: the version asked for, as written.
    Unsupported { asked: String },
}

/// Reads `OpenStack-API-Version: volume 3.N` (or `volume latest`).
pub fn negotiate(headers: &HeaderMap) -> Result<Microversion, VersionError> {
    let values: Vec<&str> = headers
        .get_all("openstack-api-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if values.is_empty() {
        return Ok(Microversion::V3_0);
    }
    let mut volume = None;
    for entry in values.iter().flat_map(|v| v.split(',')) {
        let mut parts = entry.split_whitespace();
        let (Some(service), Some(version), None) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(VersionError::Malformed(generic_bad_request()));
        };
        if service.eq_ignore_ascii_case("volume") {
            volume = Some(version.to_string());
        }
    }
    let Some(version) = volume else {
        return Err(VersionError::Malformed(generic_bad_request()));
    };
    if version.eq_ignore_ascii_case("latest") {
        return Ok(Microversion(MAX_MINOR));
    }
    let parsed = version
        .split_once('.')
        .and_then(|(major, minor)| Some((major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?)))
        .filter(|_| version.bytes().all(|b| b.is_ascii_digit() || b == b'.'));
    match parsed {
        None => Err(VersionError::Malformed(format!(
            "API Version String {version} is of invalid format. Must be of format MajorNum.MinorNum."
        ))),
        Some((3, minor)) if (MIN_MINOR..=MAX_MINOR).contains(&minor) => Ok(Microversion(minor)),
        Some(_) => Err(VersionError::Unsupported { asked: version }),
    }
}

fn generic_bad_request() -> String {
    "The server could not comply with the request since it is either malformed or otherwise incorrect.".into()
}

fn v3_doc(base: &str) -> Value {
    json!({
        "id": "v3.0",
        "status": "CURRENT",
        "version": format!("3.{MAX_MINOR}"),
        "min_version": format!("3.{MIN_MINOR}"),
        "updated": "2023-08-31T00:00:00Z",
        "links": [
            {"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"},
            {"rel": "self", "href": format!("{base}/v3/")}
        ],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.volume+json;version=3"}]
    })
}

fn v2_doc(base: &str) -> Value {
    json!({
        "id": "v2.0",
        "status": "DEPRECATED",
        "version": "",
        "min_version": "",
        "updated": "2017-02-25T12:00:00Z",
        "links": [
            {"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"},
            {"rel": "self", "href": format!("{base}/v2/")}
        ],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.volume+json;version=2"}]
    })
}

/// `GET /`: every version (Ember also serves v2, as deprecated).
pub fn versions_doc(base: &str) -> Value {
    json!({"versions": [v3_doc(base), v2_doc(base)]})
}

pub fn v3_version_doc(base: &str) -> Value {
    json!({"versions": [v3_doc(base)]})
}

pub fn v2_version_doc(base: &str) -> Value {
    json!({"versions": [v2_doc(base)]})
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("openstack-api-version", HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn negotiation_follows_cinder() {
        assert_eq!(negotiate(&HeaderMap::new()), Ok(Microversion(0)));
        assert_eq!(negotiate(&with("volume 3.45")), Ok(Microversion(45)));
        assert_eq!(negotiate(&with("volume latest")), Ok(Microversion(71)));
        assert_eq!(
            negotiate(&with("volume 3.72")),
            Err(VersionError::Unsupported {
                asked: "3.72".into()
            })
        );
        assert_eq!(
            negotiate(&with("volume 2.0")),
            Err(VersionError::Unsupported {
                asked: "2.0".into()
            })
        );
        assert!(
            matches!(negotiate(&with("volume 3.x")), Err(VersionError::Malformed(m)) if m.contains("3.x is of invalid format"))
        );
        assert!(matches!(
            negotiate(&with("compute 2.1")),
            Err(VersionError::Malformed(_))
        ));
    }
}
