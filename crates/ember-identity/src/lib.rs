//! Embedded identity: the subset of the Keystone v3 API that the OpenStack
//! clients use (version discovery, tokens with a service catalog, and the
//! projects/users/roles admin calls), so that `openstack`, openstacksdk,
//! cinderclient and Tempest work against Ember with no Keystone installed.
//!
//! Tokens are self-contained and signed (HMAC-SHA256 with a key kept in the
//! data directory, so they survive restarts), expire, and can be revoked
//! (revocations are stored by audit id until the token would have expired).

mod api;
mod auth;
mod fields;
mod keystone;
mod openapi;
mod password;
mod service;
mod token;

pub use api::router;
pub use auth::{IdentityAccessKeys, TokenAuthenticator};
pub use keystone::{KeystoneAuthenticator, KeystoneSettings};
pub use openapi::operations as openapi_operations;
pub use service::{
    Bootstrap, IdentityError, IdentityService, MAX_TOKEN_TTL_SECS, Reference, TokenInfo,
};
pub use token::load_or_create_key;
