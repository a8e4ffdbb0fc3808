//! The one error type of the service layer. Dialects map each variant to
//! their own status code and body; none of them is a 500 except `Internal`.

use ember_model::QuotaResource;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    #[error("Volume {0} could not be found.")]
    VolumeNotFound(String),
    #[error("Snapshot {0} could not be found.")]
    SnapshotNotFound(String),
    #[error("Snapshot {snapshot} has no metadata with key {key}.")]
    SnapshotMetadataNotFound { snapshot: String, key: String },
    #[error("Volume {volume} has no metadata with key {key}.")]
    VolumeMetadataNotFound { volume: String, key: String },
    /// The volume is in a state that does not allow the operation.
    #[error("Invalid volume: {0}")]
    InvalidVolume(String),
    #[error("Invalid snapshot: {0}")]
    InvalidSnapshot(String),
    /// Anything else that does not exist (or that the caller may not see).
    #[error("{0}")]
    NotFound(String),
    /// The request would duplicate something unique.
    #[error("{0}")]
    Conflict(String),
    /// The request is well-formed but asks for something impossible.
    #[error("Invalid input received: {0}")]
    InvalidInput(String),
    #[error("{}", quota_message(*resource, *requested, *in_use, *limit))]
    QuotaExceeded {
        resource: QuotaResource,
        requested: i64,
        in_use: i64,
        limit: i64,
    },
    #[error("Policy doesn't allow {0} to be performed.")]
    Forbidden(String),
    /// The resource is protected from the change (whoever asks).
    #[error("{0}")]
    Protected(String),
    #[error("No space left on the storage device.")]
    StorageFull,
    /// A bounded resource (e.g. memory for data transfers) is in use by
    /// other requests; the client may retry.
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    Internal(String),
}

fn quota_message(resource: QuotaResource, requested: i64, in_use: i64, limit: i64) -> String {
    match resource {
        QuotaResource::Gigabytes => format!(
            "VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds allowed gigabytes quota. \
             Requested {requested}G, quota is {limit}G and {in_use}G has been consumed."
        ),
        QuotaResource::Volumes => {
            format!(
                "VolumeLimitExceeded: Maximum number of volumes allowed ({limit}) exceeded for quota 'volumes'."
            )
        }
        QuotaResource::Snapshots => {
            format!("SnapshotLimitExceeded: Maximum number of snapshots allowed ({limit}) exceeded")
        }
        QuotaResource::PerVolumeGigabytes => {
            format!(
                "VolumeSizeExceedsLimit: Requested volume size {requested}G is larger than maximum allowed limit {limit}G."
            )
        }
        QuotaResource::Backups | QuotaResource::BackupGigabytes | QuotaResource::Groups => {
            format!(
                "QuotaError: Quota exceeded for resources: ['{}']",
                resource.as_str()
            )
        }
    }
}

impl From<ember_store::StoreError> for ServiceError {
    fn from(e: ember_store::StoreError) -> Self {
        match e {
            // One answer for both kinds of full: the images' and the
            // metadata's file system are usually the same one.
            ember_store::StoreError::Full(_) => ServiceError::StorageFull,
            ember_store::StoreError::Unavailable(e) => {
                tracing::warn!(error = %e, "metadata store unavailable");
                ServiceError::Busy("The metadata store is unavailable; retry later.".into())
            }
            other => ServiceError::Internal(other.to_string()),
        }
    }
}

impl From<ember_storage::StorageError> for ServiceError {
    fn from(e: ember_storage::StorageError) -> Self {
        match e {
            ember_storage::StorageError::NoSpace => ServiceError::StorageFull,
            ember_storage::StorageError::OutOfRange { .. } => {
                ServiceError::InvalidInput(e.to_string())
            }
            other => ServiceError::Internal(other.to_string()),
        }
    }
}

pub type Result<T> = std::result::Result<T, ServiceError>;

impl From<ember_backend::BackendError> for ServiceError {
    fn from(e: ember_backend::BackendError) -> Self {
        use ember_backend::BackendError as B;
        match e {
            B::Store(e) => e.into(),
            B::Storage(e) => e.into(),
            B::Conflict(m) => ServiceError::Conflict(m),
            B::Unsupported(m) => ServiceError::InvalidInput(m),
            B::Internal(m) => ServiceError::Internal(m),
        }
    }
}
