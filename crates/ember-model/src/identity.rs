//! Identity records of the embedded Keystone-compatible service: projects,
//! users, roles and role assignments, all in the default domain.

use serde::{Deserialize, Serialize};

pub const DEFAULT_DOMAIN_ID: &str = "default";
pub const DEFAULT_DOMAIN_NAME: &str = "Default";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Project {
    /// 32 hex digits, as Keystone makes them.
    pub id: String,
    pub name: String,
    pub domain_id: String,
    pub description: String,
    pub enabled: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub name: String,
    pub domain_id: String,
    /// PHC-style `pbkdf2-sha256$<iterations>$<salt b64>$<hash b64>`.
    pub password_hash: String,
    pub enabled: bool,
    pub default_project_id: Option<String>,
    pub email: Option<String>,
    pub description: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Role {
    pub id: String,
    pub name: String,
}

/// An access key / secret key pair for request signing (Keystone's EC2
/// credentials; the Huawei SDK's AK/SK), bound to a user and a project.
/// The secret is kept because verifying a signature needs it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccessKey {
    pub access: String,
    pub secret: String,
    pub user_id: String,
    pub project_id: String,
}

/// A new identity id: 32 lowercase hex digits.
pub fn new_identity_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
