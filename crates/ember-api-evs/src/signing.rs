//! The Huawei SDK's request signature, `SDK-HMAC-SHA256` (see
//! evs-facts.md §4): verified from the request as it arrived, with the
//! signed-header list taken from the `Authorization` header.

use axum::http::{HeaderMap, Method, Uri};
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

pub const ALGORITHM: &str = "SDK-HMAC-SHA256";
/// How far `X-Sdk-Date` may be from now.
const MAX_SKEW_SECS: i64 = 15 * 60;

/// The parts of an `Authorization: SDK-HMAC-SHA256 Access=…, SignedHeaders=…, Signature=…`.
#[derive(Debug, PartialEq)]
pub struct Authorization {
    pub access: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

pub fn parse_authorization(value: &str) -> Option<Authorization> {
    let rest = value.strip_prefix(ALGORITHM)?.trim();
    let (mut access, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k {
            "Access" => access = Some(v.to_string()),
            "SignedHeaders" => {
                signed = Some(v.split(';').map(|h| h.to_ascii_lowercase()).collect())
            }
            "Signature" => signature = Some(v.to_ascii_lowercase()),
            _ => {}
        }
    }
    Some(Authorization {
        access: access?,
        signed_headers: signed?,
        signature: signature?,
    })
}

/// Python's `quote(s, safe='~')`: everything but unreserved characters as
/// `%XX` (upper case).
fn quote(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The canonical request the SDK signs.
pub fn canonical_request(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    signed: &[String],
    body: &[u8],
) -> String {
    let path = ember_api_common::percent_decode(uri.path());
    let mut canonical_uri = path.split('/').map(quote).collect::<Vec<_>>().join("/");
    if !canonical_uri.ends_with('/') {
        canonical_uri.push('/');
    }
    let mut pairs = ember_api_common::query_pairs(uri.query());
    pairs.sort();
    let query = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", quote(k), quote(v)))
        .collect::<Vec<_>>()
        .join("&");
    let mut canonical_headers = String::new();
    for name in signed {
        let value = headers
            .get(name.as_str())
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim();
        canonical_headers.push_str(&format!("{name}:{value}\n"));
    }
    let payload = match headers
        .get("x-sdk-content-sha256")
        .and_then(|v| v.to_str().ok())
    {
        Some("UNSIGNED-PAYLOAD") => "UNSIGNED-PAYLOAD".to_string(),
        _ => hex(&Sha256::digest(body)),
    };
    format!(
        "{}\n{canonical_uri}\n{query}\n{canonical_headers}\n{}\n{payload}",
        method.as_str(),
        signed.join(";")
    )
}

/// Whether the request carries a valid signature by `secret`, made within
/// the allowed clock skew.
pub fn verify(
    auth: &Authorization,
    secret: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> bool {
    let Some(date) = headers.get("x-sdk-date").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let Ok(when) = time::PrimitiveDateTime::parse(date, &format) else {
        return false;
    };
    if (time::OffsetDateTime::now_utc() - when.assume_utc())
        .whole_seconds()
        .abs()
        > MAX_SKEW_SECS
    {
        return false;
    }
    if !auth.signed_headers.iter().any(|h| h == "x-sdk-date") {
        return false;
    }
    let canonical = canonical_request(method, uri, headers, &auth.signed_headers, body);
    let string_to_sign = format!(
        "{ALGORITHM}\n{date}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(string_to_sign.as_bytes());
    let Ok(given) = (0..auth.signature.len())
        .step_by(2)
        .map(|i| {
            auth.signature
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(())
        })
        .collect::<Result<Vec<u8>, ()>>()
    else {
        return false;
    };
    mac.verify_slice(&given).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_sdk_header() {
        let a = parse_authorization("SDK-HMAC-SHA256 Access=AK1, SignedHeaders=content-type;host;x-sdk-date, Signature=ABCD").unwrap();
        assert_eq!(
            a,
            Authorization {
                access: "AK1".into(),
                signed_headers: vec!["content-type".into(), "host".into(), "x-sdk-date".into()],
                signature: "abcd".into()
            }
        );
        assert!(parse_authorization("Bearer x").is_none());
    }

    #[test]
    fn canonical_request_has_the_sdk_shape() {
        let mut h = HeaderMap::new();
        h.insert("host", "127.0.0.1:9".parse().unwrap());
        h.insert("x-sdk-date", "20261123T163028Z".parse().unwrap());
        let uri: Uri = "/v2/p1/cloudsnapshots/detail?name=a%20b&limit=10"
            .parse()
            .unwrap();
        let c = canonical_request(
            &Method::GET,
            &uri,
            &h,
            &["host".into(), "x-sdk-date".into()],
            b"",
        );
        assert_eq!(
            c,
            "GET\n/v2/p1/cloudsnapshots/detail/\nlimit=10&name=a%20b\nhost:127.0.0.1:9\nx-sdk-date:20261123T163028Z\n\nhost;x-sdk-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
