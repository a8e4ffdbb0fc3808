//! Keys that nodes sharing a metadata store must agree on (the token
//! signing key, the key export and EC2 secrets derive from), kept in the
//! store instead of the data directory.

use anyhow::Context;
use ember_store::MetadataStore;
use std::sync::Arc;
use std::time::Duration;

/// The 32-byte key named `name`, created by the first node that asks.
pub fn shared(store: &dyn MetadataStore, name: &str) -> anyhow::Result<[u8; 32]> {
    let read = |store: &dyn MetadataStore| -> anyhow::Result<Option<String>> {
        Ok(store.read()?.secret(name)?)
    };
    let hex = match read(store)? {
        Some(hex) => hex,
        None => {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
            let mut tx = store.write()?;
            // Two nodes starting at once: the first insert wins and both
            // read it back.
            tx.put_secret_if_absent(name, &to_hex(&key))?;
            tx.commit()?;
            read(store)?.context("a shared key vanished")?
        }
    };
    from_hex(&hex).with_context(|| format!("the shared key {name} is damaged"))
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(hex: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Every second, picks up the token revocations other nodes recorded.
pub fn refresh_revocations(identity: Arc<ember_identity::IdentityService>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let identity = identity.clone();
            match tokio::task::spawn_blocking(move || identity.refresh_revocations()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "could not refresh token revocations"),
                Err(e) => tracing::warn!(error = %e, "revocation refresh panicked"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_round_trips() {
        let key: [u8; 32] = std::array::from_fn(|i| (i * 37) as u8);
        assert_eq!(super::from_hex(&super::to_hex(&key)), Some(key));
        assert_eq!(super::from_hex("zz"), None);
    }
}
