//! What every API dialect shares: authentication, request ids, body
//! handling, and a Python-compatible `repr` for error messages that quote
//! request values the way OpenStack services do.

pub mod auth;
pub mod body;
pub mod pyrepr;
pub mod schema;

pub use auth::{AuthError, Authenticator, NoAuth};

/// `req-<uuid>`, as OpenStack services name requests.
pub fn new_request_id() -> String {
    format!("req-{}", uuid::Uuid::new_v4())
}
