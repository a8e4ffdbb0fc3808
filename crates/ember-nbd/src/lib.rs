//! An NBD server for Ember's volumes and snapshots.
//!
//! Written here rather than taken from a crate: the published Rust NBD
//! servers are synchronous, GPL, or panic on options modern clients send
//! (`../shared/crates-evaluation.md`). Scope: the fixed-newstyle handshake
//! with `OPT_EXPORT_NAME`, `OPT_INFO`, `OPT_GO`, `OPT_LIST`, `OPT_ABORT`,
//! `OPT_STRUCTURED_REPLY` and the meta-context options: `base:allocation`
//! for every export (so `nbdcopy`, `qemu-img convert` and backup tools
//! skip holes), and whatever contexts a [`Device`] adds (Ember's snapshot
//! exports: `ember:changed-since:<snapshot>`); TLS and extended headers are answered
//! `NBD_REP_ERR_UNSUP`, and clients fall back. Transmission serves READ,
//! WRITE, FLUSH, TRIM, WRITE_ZEROES, FUA and BLOCK_STATUS, pipelined:
//! requests run concurrently and replies go out as they finish, matched by
//! cookie, as simple replies or (once negotiated) structured ones.
//!
//! The server knows nothing of volumes: an [`Exports`] resolves names to
//! [`Device`]s, and decides what a name grants.

#[doc(hidden)]
pub mod fuzzing;
pub mod proto;
mod server;

pub use server::{Device, Exports, Limits, serve, serve_connection};
