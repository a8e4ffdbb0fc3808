//! Ember's domain model: the resources every API dialect talks about.
//!
//! These types carry no wire format. Each dialect (Cinder, Nova, EVS)
//! renders them in its own views; the metadata store persists them.

mod identity;
mod ids;
mod resources;
mod time_util;

pub use ember_storage::ImageId;
pub use identity::*;
pub use ids::{BackupId, ProjectId, SnapshotId, UserId, VolumeId, WorkflowId};
pub use resources::*;
pub use time_util::Timestamp;

/// Metadata as every dialect sees it: string keys to string values, ordered.
pub type Metadata = std::collections::BTreeMap<String, String>;

pub const GIB: u64 = 1 << 30;

/// The largest size in GiB of anything sized in GiB (volumes, snapshots,
/// extends), and the largest quota limit: Cinder's `DB_MAX_INT` (2^31 - 1).
/// Every byte count (`size × GIB` < 2^61) and every sum of sizes Ember
/// keeps then fits an `i64` with room to spare.
pub const MAX_SIZE_GIB: u64 = i32::MAX as u64;
pub const MAX_QUOTA_LIMIT: i64 = i32::MAX as i64;

/// `gib` GiB in bytes; `None` past `MAX_SIZE_GIB` (a size that entered
/// before sizes were checked).
pub fn gib_to_bytes(gib: u64) -> Option<u64> {
    (gib <= MAX_SIZE_GIB).then(|| gib * GIB)
}
