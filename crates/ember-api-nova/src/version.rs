//! Nova's microversions (2.1–2.104) and version discovery documents.

use crate::NovaError;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{Value, json};

pub const MIN: (u32, u32) = (2, 1);
pub const MAX: (u32, u32) = (2, 104);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Microversion(pub u32, pub u32);

impl std::fmt::Display for Microversion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

impl Microversion {
    /// From `OpenStack-API-Version: compute 2.N` or the legacy
    /// `X-OpenStack-Nova-API-Version: 2.N`; 2.1 when neither is sent.
    pub fn from_headers(headers: &HeaderMap) -> Result<Microversion, NovaError> {
        let modern = headers
            .get_all("openstack-api-version")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| {
                v.split(',').map(str::trim).find_map(|item| {
                    let (service, version) = item.split_once(char::is_whitespace)?;
                    service
                        .eq_ignore_ascii_case("compute")
                        .then(|| version.trim().to_string())
                })
            });
        let legacy = headers
            .get("x-openstack-nova-api-version")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim().to_string());
        let Some(text) = modern.or(legacy) else {
            return Ok(Microversion(MIN.0, MIN.1));
        };
        if text.eq_ignore_ascii_case("latest") {
            return Ok(Microversion(MAX.0, MAX.1));
        }
        let parsed = text.split_once('.').and_then(|(a, b)| {
            let ok = |s: &str| {
                !s.is_empty()
                    && s.bytes().all(|c| c.is_ascii_digit())
                    && (s == "0" || !s.starts_with('0'))
            };
            (ok(a) && ok(b))
                .then(|| Some(Microversion(a.parse().ok()?, b.parse().ok()?)))
                .flatten()
        });
        let Some(mv) = parsed else {
            return Err(NovaError::bad_request(format!(
                "API Version String {text} is of invalid format. Must be of format MajorNum.MinorNum."
            )));
        };
        if mv < Microversion(MIN.0, MIN.1) || mv > Microversion(MAX.0, MAX.1) {
            return Err(NovaError::new(
                StatusCode::NOT_ACCEPTABLE,
                format!(
                    "Version {mv} is not supported by the API. Minimum is 2.1 and maximum is 2.104."
                ),
            ));
        }
        Ok(mv)
    }

    pub fn at_most(self, minor: u32) -> bool {
        self <= Microversion(2, minor)
    }
}

/// The version headers Nova puts on every versioned response.
pub fn stamp(headers: &mut HeaderMap, mv: Microversion) {
    if let Ok(v) = HeaderValue::from_str(&format!("compute {mv}")) {
        headers.insert("openstack-api-version", v);
    }
    if let Ok(v) = HeaderValue::from_str(&mv.to_string()) {
        headers.insert("x-openstack-nova-api-version", v);
    }
    headers.insert(
        "vary",
        HeaderValue::from_static("OpenStack-API-Version, X-OpenStack-Nova-API-Version"),
    );
}

fn v2_0(base: &str) -> Value {
    json!({"id": "v2.0", "status": "DEPRECATED", "version": "", "min_version": "", "updated": "2025-07-04T12:00:00Z",
           "links": [{"rel": "self", "href": format!("{base}/v2/")}]})
}

fn v2_1(base: &str) -> Value {
    json!({"id": "v2.1", "status": "CURRENT", "version": format!("{}.{}", MAX.0, MAX.1), "min_version": "2.1",
           "updated": "2013-07-23T11:33:21Z", "links": [{"rel": "self", "href": format!("{base}/v2.1/")}]})
}

/// `GET /`: both versions (v2.0 only where it is served, under `/compute`).
pub fn versions(base: &str) -> Value {
    json!({"versions": [v2_0(base), v2_1(base)]})
}

/// Any other unversioned path: Nova's 300 with choices.
pub fn choices(base: &str, path: &str) -> Value {
    let media = json!([{"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2.1"}]);
    json!({"choices": [{"id": "v2.1", "status": "CURRENT", "links": [{"rel": "self", "href": format!("{base}/v2.1{path}")}], "media-types": media}]})
}

/// `GET /v2.1/` (or `/v2/`): the version document clients negotiate from.
pub fn version_doc(base: &str, api: &str) -> Value {
    let mut v = if api == "v2" { v2_0(base) } else { v2_1(base) };
    let self_link = v["links"][0].clone();
    v["links"] = json!([self_link, {"rel": "describedby", "type": "text/html", "href": "http://docs.openstack.org/"}]);
    let version = if api == "v2" { "2" } else { "2.1" };
    v["media-types"] = json!([{"base": "application/json", "type": format!("application/vnd.openstack.compute+json;version={version}")}]);
    json!({"version": v})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, value: &str) -> Result<Microversion, u16> {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
        Microversion::from_headers(&h).map_err(|e| e.status.as_u16())
    }

    #[test]
    fn headers_choose_the_version() {
        assert_eq!(
            Microversion::from_headers(&HeaderMap::new()).unwrap(),
            Microversion(2, 1)
        );
        assert_eq!(
            parse("openstack-api-version", "compute 2.35"),
            Ok(Microversion(2, 35))
        );
        assert_eq!(
            parse("openstack-api-version", "volume 3.5, compute latest"),
            Ok(Microversion(2, 104))
        );
        assert_eq!(
            parse("x-openstack-nova-api-version", "2.36"),
            Ok(Microversion(2, 36))
        );
        assert_eq!(parse("openstack-api-version", "compute 2.105"), Err(406));
        assert_eq!(parse("openstack-api-version", "compute 2.0"), Err(406));
        assert_eq!(parse("openstack-api-version", "compute 2.x"), Err(400));
        assert_eq!(
            parse("openstack-api-version", "volume 3.5"),
            Ok(Microversion(2, 1)),
            "another service's header"
        );
    }
}
