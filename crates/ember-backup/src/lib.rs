//! Where backups go, and the format they are kept in.
//!
//! A backup is a list of content-addressed chunks: a volume is cut into
//! fixed [`CHUNK_SIZE`] pieces, and each piece that holds data is stored
//! once per project under the SHA-256 of its bytes, compressed with zstd.
//! A backup's manifest (chunk index → hash) is complete on its own, also
//! for an incremental backup, so a restore never walks a chain of parents;
//! what an incremental saves is the reading (only what changed is read)
//! and the storing (unchanged chunks are already there).
//!
//! Targets are object stores through the `object_store` crate (Apache
//! Arrow's): one interface for a local directory (the embedded default)
//! and for S3-compatible stores (AWS S3, Ceph RGW, MinIO), maintained and
//! far lighter to build than the AWS SDK, which would bring a second HTTP
//! and TLS stack for the same three calls (put, get, delete).
//!
//! Chunks are scoped by project, never shared across projects: a project
//! cannot learn whether another holds some content by seeing its own
//! backup take no space.

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The fixed piece a volume is cut into (EBS's direct APIs use 512 KiB too).
pub const CHUNK_SIZE: u64 = 512 * 1024;

/// zstd's level: the default, a good ratio at several hundred MB/s.
const ZSTD_LEVEL: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("backup target {target}: {message}")]
    Unavailable { target: String, message: String },
    #[error("backup object {0} is missing from the target")]
    Missing(String),
    #[error("backup object {0} is corrupt: {1}")]
    Corrupt(String, String),
    #[error("invalid backup target {0}: {1}")]
    Config(String, String),
}

pub type Result<T> = std::result::Result<T, TargetError>;

/// The hex SHA-256 of a chunk's bytes: its name on the target.
pub fn chunk_hash(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    let mut hex = String::with_capacity(64);
    for b in digest.iter() {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

/// Where backups are written. Calls block (a runtime of its own drives the
/// object store), so they are made from blocking threads, never from an
/// async task (tokio refuses to block one).
pub struct Target {
    store: Arc<dyn ObjectStore>,
    /// The directory of a local target: `sync` makes its writes durable
    /// (object_store's local store renames files into place but never
    /// fsyncs them). None for object stores, which are durable on return.
    local_dir: Option<std::path::PathBuf>,
    /// What operators and admins see: the URL without credentials.
    describe: String,
    /// Always Some until dropped (then shut down without blocking, which
    /// is allowed even on an async worker thread).
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("describe", &self.describe)
            .finish()
    }
}

impl Target {
    /// A target from its URL: a path or `file:///path` (a local directory,
    /// created if missing), or `s3://bucket[/prefix]` with the query
    /// options `endpoint` (for RGW, MinIO), `region` and
    /// `allow_http=true`; S3 credentials come from the environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`), never from the URL,
    /// which is shown to admins.
    pub fn open(url: &str) -> Result<Target> {
        let config = |m: String| TargetError::Config(url.to_string(), m);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ember-backup-io")
            .enable_all()
            .build()
            .map_err(|e| config(e.to_string()))?;
        if let Some(rest) = url.strip_prefix("s3://") {
            let parsed = url::Url::parse(url).map_err(|e| config(e.to_string()))?;
            if !parsed.username().is_empty() || parsed.password().is_some() {
                return Err(config(
                    "credentials do not belong in the URL; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into(),
                ));
            }
            let bucket = parsed
                .host_str()
                .filter(|b| !b.is_empty())
                .ok_or_else(|| config("no bucket".into()))?
                .to_string();
            let prefix = parsed.path().trim_matches('/').to_string();
            // An unreachable store answers within seconds, not the
            // crate's default three minutes of retries: requests that touch
            // the target (import) answer 503 while a client still waits.
            let retry = object_store::RetryConfig {
                max_retries: 5,
                retry_timeout: std::time::Duration::from_secs(30),
                ..Default::default()
            };
            let client = object_store::ClientOptions::new()
                .with_connect_timeout(std::time::Duration::from_secs(5));
            let mut builder = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(&bucket)
                .with_virtual_hosted_style_request(false)
                .with_retry(retry)
                .with_client_options(client);
            for (key, value) in parsed.query_pairs() {
                builder = match key.as_ref() {
                    "endpoint" => builder.with_endpoint(value.as_ref()),
                    "region" => builder.with_region(value.as_ref()),
                    "allow_http" => builder.with_allow_http(value == "true"),
                    other => return Err(config(format!("unknown option {other}"))),
                };
            }
            if parsed.query_pairs().all(|(k, _)| k != "region") {
                builder = builder.with_region("us-east-1");
            }
            let store = builder.build().map_err(|e| config(e.to_string()))?;
            let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                Arc::new(store)
            } else {
                Arc::new(object_store::prefix::PrefixStore::new(store, prefix))
            };
            let describe = format!("s3://{}", rest.split('?').next().unwrap_or(rest));
            return Ok(Target {
                store,
                local_dir: None,
                describe,
                runtime: Some(runtime),
            });
        }
        let dir = url.strip_prefix("file://").unwrap_or(url);
        if !dir.starts_with('/') {
            return Err(config("a local target needs an absolute path".into()));
        }
        std::fs::create_dir_all(dir).map_err(|e| config(e.to_string()))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| config(e.to_string()))?;
        Ok(Target {
            store: Arc::new(store),
            local_dir: Some(dir.into()),
            describe: format!("file://{dir}"),
            runtime: Some(runtime),
        })
    }

    /// The target as admins see it (no credentials).
    pub fn describe(&self) -> &str {
        &self.describe
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        self.runtime
            .as_ref()
            .expect("the runtime lives as long as the target")
    }

    fn unavailable(&self, e: object_store::Error) -> TargetError {
        TargetError::Unavailable {
            target: self.describe.clone(),
            message: e.to_string(),
        }
    }

    fn chunk_path(project: &str, hash: &str) -> ObjectPath {
        let fan = hash.get(..2).unwrap_or("00");
        ObjectPath::from(format!("chunks/{project}/{fan}/{hash}"))
    }

    fn manifest_path(project: &str, backup: &str) -> ObjectPath {
        ObjectPath::from(format!("manifests/{project}/{backup}.zst"))
    }

    fn put(&self, path: ObjectPath, body: Vec<u8>) -> Result<()> {
        self.rt()
            .block_on(self.store.put(&path, PutPayload::from(body)))
            .map(|_| ())
            .map_err(|e| self.unavailable(e))
    }

    fn get(&self, path: &ObjectPath) -> Result<Vec<u8>> {
        self.rt()
            .block_on(async {
                let got = self.store.get(path).await?;
                got.bytes().await
            })
            .map(|b| b.to_vec())
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => TargetError::Missing(path.to_string()),
                e => self.unavailable(e),
            })
    }

    fn delete(&self, path: &ObjectPath) -> Result<()> {
        match self.rt().block_on(self.store.delete(path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.unavailable(e)),
        }
    }

    /// Stores one chunk (compressed) under its hash; returns the bytes it
    /// takes on the target. Idempotent: the same bytes under the same name.
    pub fn put_chunk(&self, project: &str, hash: &str, data: &[u8]) -> Result<u64> {
        let body = zstd::bulk::compress(data, ZSTD_LEVEL)
            .map_err(|e| TargetError::Corrupt(hash.to_string(), e.to_string()))?;
        let stored = body.len() as u64;
        self.put(Self::chunk_path(project, hash), body)?;
        Ok(stored)
    }

    /// Reads one chunk back, decompressed and checked against its hash.
    pub fn get_chunk(&self, project: &str, hash: &str) -> Result<Vec<u8>> {
        let path = Self::chunk_path(project, hash);
        let body = self.get(&path)?;
        let data = zstd::bulk::decompress(&body, CHUNK_SIZE as usize)
            .map_err(|e| TargetError::Corrupt(path.to_string(), e.to_string()))?;
        if chunk_hash(&data) != hash {
            return Err(TargetError::Corrupt(
                path.to_string(),
                "its SHA-256 does not match its name".into(),
            ));
        }
        Ok(data)
    }

    pub fn delete_chunk(&self, project: &str, hash: &str) -> Result<()> {
        self.delete(&Self::chunk_path(project, hash))
    }

    /// Stores a backup's manifest (what `import_record` reads back).
    pub fn put_manifest(&self, project: &str, backup: &str, manifest: &Manifest) -> Result<()> {
        let json = serde_json::to_vec(manifest).expect("manifests serialize");
        let body = zstd::bulk::compress(&json, ZSTD_LEVEL)
            .map_err(|e| TargetError::Corrupt(backup.to_string(), e.to_string()))?;
        self.put(Self::manifest_path(project, backup), body)
    }

    pub fn get_manifest(&self, project: &str, backup: &str) -> Result<Manifest> {
        let path = Self::manifest_path(project, backup);
        let body = self.get(&path)?;
        let mut json = Vec::new();
        zstd::stream::copy_decode(&body[..], &mut json)
            .map_err(|e| TargetError::Corrupt(path.to_string(), e.to_string()))?;
        serde_json::from_slice(&json)
            .map_err(|e| TargetError::Corrupt(path.to_string(), e.to_string()))
    }

    pub fn delete_manifest(&self, project: &str, backup: &str) -> Result<()> {
        self.delete(&Self::manifest_path(project, backup))
    }

    /// Makes everything written so far durable: on a local target one
    /// `syncfs` of its file system (one call for a whole backup, rather
    /// than an fsync per chunk); nothing to do on an object store.
    pub fn sync(&self) -> Result<()> {
        let Some(dir) = &self.local_dir else {
            return Ok(());
        };
        let failed = |e: std::io::Error| TargetError::Unavailable {
            target: self.describe.clone(),
            message: e.to_string(),
        };
        let handle = std::fs::File::open(dir).map_err(failed)?;
        use std::os::fd::AsRawFd;
        // SAFETY: a valid descriptor, open for the call.
        if unsafe { libc::syncfs(handle.as_raw_fd()) } != 0 {
            return Err(failed(std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// How many chunk objects the target holds (all projects).
    pub fn count_chunks(&self) -> Result<usize> {
        use futures::StreamExt;
        self.rt().block_on(async {
            let mut list = self.store.list(Some(&ObjectPath::from("chunks")));
            let mut n = 0;
            while let Some(item) = list.next().await {
                item.map_err(|e| self.unavailable(e))?;
                n += 1;
            }
            Ok(n)
        })
    }

    /// Whether the target answers (the health check): a listing of at
    /// most one object.
    pub fn check(&self) -> Result<()> {
        use futures::StreamExt;
        self.rt().block_on(async {
            let mut list = self.store.list(Some(&ObjectPath::from("manifests")));
            match list.next().await {
                Some(Err(e)) => Err(self.unavailable(e)),
                _ => Ok(()),
            }
        })
    }
}

/// A backup's complete list of chunks, kept next to them on the target so
/// that a backup record exported from one Ember can be imported by another
/// that reaches the same target.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub format: String,
    pub chunk_size: u64,
    /// The volume's size in bytes.
    pub size: u64,
    /// (chunk index, hash) of every chunk holding data, ascending; the
    /// others read as zeroes.
    pub chunks: Vec<(u64, String)>,
}

pub const MANIFEST_FORMAT: &str = "ember-backup-1";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_round_trip_and_corruption_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let target = Target::open(dir.path().to_str().unwrap()).unwrap();
        let data = vec![7u8; CHUNK_SIZE as usize];
        let hash = chunk_hash(&data);
        let stored = target.put_chunk("p1", &hash, &data).unwrap();
        assert!(stored < 1024, "a repeated byte compresses: {stored}");
        assert_eq!(target.get_chunk("p1", &hash).unwrap(), data);
        // Another project does not see it.
        assert!(matches!(
            target.get_chunk("p2", &hash),
            Err(TargetError::Missing(_))
        ));
        // A chunk whose bytes changed on the target is refused.
        let other = vec![8u8; CHUNK_SIZE as usize];
        let path = dir.path().join(format!("chunks/p1/{}/{hash}", &hash[..2]));
        std::fs::write(&path, zstd::bulk::compress(&other, 3).unwrap()).unwrap();
        assert!(matches!(
            target.get_chunk("p1", &hash),
            Err(TargetError::Corrupt(..))
        ));
        target.delete_chunk("p1", &hash).unwrap();
        target.delete_chunk("p1", &hash).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn manifests_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let target = Target::open(&format!("file://{}", dir.path().display())).unwrap();
        let m = Manifest {
            format: MANIFEST_FORMAT.into(),
            chunk_size: CHUNK_SIZE,
            size: 1 << 30,
            chunks: vec![(0, "ab".repeat(32)), (9, "cd".repeat(32))],
        };
        target.put_manifest("p", "b1", &m).unwrap();
        assert_eq!(target.get_manifest("p", "b1").unwrap(), m);
        target.check().unwrap();
        target.delete_manifest("p", "b1").unwrap();
        assert!(matches!(
            target.get_manifest("p", "b1"),
            Err(TargetError::Missing(_))
        ));
    }

    #[test]
    fn credentials_in_the_url_are_refused() {
        assert!(matches!(
            Target::open("s3://key:secret@bucket/x"),
            Err(TargetError::Config(..))
        ));
        assert!(matches!(
            Target::open("relative/dir"),
            Err(TargetError::Config(..))
        ));
    }
}
