//! Signed, self-contained tokens: `base64url(payload).base64url(hmac)`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use std::path::Path;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// What a token says. Roles are resolved when the token is issued, as
/// Keystone does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    pub user_id: String,
    pub project_id: Option<String>,
    pub methods: Vec<String>,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix milliseconds (tokens from before this field: `issued_at`'s
    /// second), compared with revocations: a password changed and a new
    /// token taken within one second must leave the new one valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at_ms: Option<i64>,
    pub expires_at: i64,
    pub audit_id: String,
    /// (id, name) of every role the token carries, implied ones included.
    pub roles: Vec<(String, String)>,
}

pub struct Signer {
    key: Vec<u8>,
}

impl Payload {
    /// When the token was issued, in Unix milliseconds.
    pub fn issued_ms(&self) -> i64 {
        self.issued_at_ms
            .unwrap_or_else(|| self.issued_at.saturating_mul(1000))
    }
}

impl Signer {
    pub fn from_key(key: Vec<u8>) -> Signer {
        Signer { key }
    }

    /// Loads the signing key from `path`, creating it (mode 0600) on first use.
    pub fn load_or_create(path: &Path) -> std::io::Result<Signer> {
        if let Ok(key) = std::fs::read(path)
            && key.len() >= 32
        {
            return Ok(Signer { key });
        }
        let mut key = vec![0u8; 32];
        getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
        write_private(path, &key)?;
        Ok(Signer { key })
    }

    pub fn sign(&self, payload: &Payload) -> String {
        let body = B64.encode(serde_json::to_vec(payload).expect("payload serializes"));
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("any key length");
        mac.update(body.as_bytes());
        format!("{body}.{}", B64.encode(mac.finalize().into_bytes()))
    }

    /// The payload of a well-formed, correctly signed token (expiry and
    /// revocation are the caller's to check).
    pub fn verify(&self, token: &str) -> Option<Payload> {
        let (body, sig) = token.split_once('.')?;
        let sig = B64.decode(sig).ok()?;
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("any key length");
        mac.update(body.as_bytes());
        mac.verify_slice(&sig).ok()?;
        serde_json::from_slice(&B64.decode(body).ok()?).ok()
    }
}

/// A 32-byte key kept in `path` (mode 0600), created on first use.
pub fn load_or_create_key(path: &Path) -> std::io::Result<[u8; 32]> {
    if let Ok(key) = std::fs::read(path)
        && key.len() == 32
    {
        let mut out = [0u8; 32];
        out.copy_from_slice(&key);
        return Ok(out);
    }
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
    write_private(path, &key)?;
    Ok(key)
}

/// HMAC-SHA256 of `message` under `key`, as lowercase hex.
pub fn derive_hex(key: &[u8], message: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(key).expect("any key length");
    mac.update(message.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes a file readable by its owner only.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
