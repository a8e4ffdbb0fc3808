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
pub use ids::{ProjectId, SnapshotId, UserId, VolumeId, WorkflowId};
pub use resources::*;
pub use time_util::Timestamp;

/// Metadata as every dialect sees it: string keys to string values, ordered.
pub type Metadata = std::collections::BTreeMap<String, String>;

pub const GIB: u64 = 1 << 30;
