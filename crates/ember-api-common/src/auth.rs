//! Authentication: turns request headers into a [`Caller`].
//!
//! `NoAuth` follows Cinder's `noauth` strategy: `X-Auth-Token:
//! user:project` names the caller; user `admin` gets the admin role, any
//! other user is a member. Ember adds an optional third part for tests and
//! development, `user:project:role1,role2`, to act as e.g. a reader. The
//! identity issue adds Keystone-backed authenticators behind this trait.

use axum::http::HeaderMap;
use ember_model::{ProjectId, UserId};
use ember_service::Caller;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No credentials, or invalid ones: 401.
    Unauthenticated,
    /// The identity service that validates tokens cannot be reached: 503,
    /// as keystonemiddleware answers.
    IdentityUnavailable,
}

/// What [`Authenticator::authenticate`] returns: a future, because some
/// authenticators ask a remote identity service.
pub type AuthFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Caller, AuthError>> + Send + 'a>>;

pub trait Authenticator: Send + Sync + 'static {
    /// `project_in_path` is the project named by the URL, if any.
    fn authenticate<'a>(
        &'a self,
        headers: &'a HeaderMap,
        project_in_path: Option<&'a str>,
    ) -> AuthFuture<'a>;

    /// Whether this is development mode (`noauth`), where Cinder's noauth
    /// pipeline answers a token-less version request with 204 rather than
    /// keystonemiddleware's 401.
    fn is_noauth(&self) -> bool {
        false
    }
}

/// The `X-Auth-Token` header, trimmed, if present and not empty.
pub fn auth_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Access keys for signed requests (the Huawei SDK's AK/SK): the secret of
/// `access` and who it acts as, if the key exists and may act.
pub trait AccessKeys: Send + Sync + 'static {
    fn lookup(&self, access: &str) -> Option<(String, Caller)>;
}

pub struct NoAuth;

impl Authenticator for NoAuth {
    fn authenticate<'a>(
        &'a self,
        headers: &'a HeaderMap,
        project_in_path: Option<&'a str>,
    ) -> AuthFuture<'a> {
        Box::pin(std::future::ready(Self::caller(headers, project_in_path)))
    }

    fn is_noauth(&self) -> bool {
        true
    }
}

impl NoAuth {
    fn caller(headers: &HeaderMap, project_in_path: Option<&str>) -> Result<Caller, AuthError> {
        let token = auth_token(headers).ok_or(AuthError::Unauthenticated)?;
        let mut parts = token.splitn(3, ':');
        let user = parts.next().unwrap_or_default().to_string();
        let project = parts
            .next()
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .or_else(|| project_in_path.map(str::to_string))
            .unwrap_or_else(|| user.clone());
        let roles = match parts.next() {
            Some(list) => list
                .split(',')
                .filter(|r| !r.is_empty())
                .map(str::to_string)
                .collect(),
            None if user == "admin" => vec!["admin".into(), "member".into(), "reader".into()],
            None => vec!["member".into(), "reader".into()],
        };
        Ok(Caller {
            user_id: UserId(user),
            project_id: ProjectId(project),
            roles,
        })
    }
}
