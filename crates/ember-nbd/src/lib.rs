//! An NBD server for Ember's volumes and snapshots.
//!
//! Written here rather than taken from a crate: the published Rust NBD
//! servers are synchronous, GPL, or panic on options modern clients send
//! (`../shared/crates-evaluation.md`). Scope: the fixed-newstyle handshake
//! with `OPT_EXPORT_NAME`, `OPT_INFO`, `OPT_GO`, `OPT_LIST` and
//! `OPT_ABORT`; everything else (TLS, structured replies, extended headers,
//! meta contexts) is answered `NBD_REP_ERR_UNSUP`, and clients fall back to
//! simple replies. Transmission serves READ, WRITE, FLUSH, TRIM,
//! WRITE_ZEROES and FUA, pipelined: requests run concurrently and replies
//! go out as they finish, matched by cookie.
//!
//! The server knows nothing of volumes: an [`Exports`] resolves names to
//! [`Device`]s, and decides what a name grants.

#[doc(hidden)]
pub mod fuzzing;
pub mod proto;
mod server;

pub use server::{Device, Exports, Limits, serve, serve_connection};
