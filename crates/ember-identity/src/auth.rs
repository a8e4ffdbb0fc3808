//! The Cinder (and later dialects') authenticator backed by embedded
//! identity tokens: `X-Auth-Token` must be a valid, unexpired, unrevoked
//! token scoped to a project.

use crate::IdentityService;
use axum::http::HeaderMap;
use ember_api_common::auth::{AuthFuture, auth_token};
use ember_api_common::{AuthError, Authenticator};
use ember_model::{ProjectId, UserId};
use ember_service::Caller;
use std::sync::Arc;

pub struct TokenAuthenticator(pub Arc<IdentityService>);

impl Authenticator for TokenAuthenticator {
    fn authenticate<'a>(
        &'a self,
        headers: &'a HeaderMap,
        _project_in_path: Option<&'a str>,
    ) -> AuthFuture<'a> {
        Box::pin(std::future::ready(self.caller(headers)))
    }
}

impl TokenAuthenticator {
    fn caller(&self, headers: &HeaderMap) -> Result<Caller, AuthError> {
        let token = auth_token(headers).ok_or(AuthError::Unauthenticated)?;
        let payload = self
            .0
            .check(token)
            .map_err(|_| AuthError::Unauthenticated)?;
        let project = payload.project_id.ok_or(AuthError::Unauthenticated)?;
        Ok(Caller {
            user_id: UserId(payload.user_id),
            project_id: ProjectId(project),
            roles: payload.roles.into_iter().map(|(_, name)| name).collect(),
        })
    }
}

/// Access keys (EC2-style credentials) for signed requests, from the
/// embedded identity service.
pub struct IdentityAccessKeys(pub Arc<IdentityService>);

impl ember_api_common::auth::AccessKeys for IdentityAccessKeys {
    fn lookup(&self, access: &str) -> Option<(String, Caller)> {
        self.0.access_key_caller(access)
    }
}
