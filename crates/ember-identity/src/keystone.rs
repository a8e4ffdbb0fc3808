//! `--auth keystone`: incoming tokens are validated by a real Keystone, the
//! way keystonemiddleware's auth_token does it. Ember authenticates as its
//! own service user, asks `GET /v3/auth/tokens` (with `X-Subject-Token`)
//! about each token it has not seen recently, and caches the answer (valid
//! or not) for a short time, never past the token's expiry.

use axum::http::HeaderMap;
use ember_api_common::auth::{AuthFuture, auth_token};
use ember_api_common::{AuthError, Authenticator};
use ember_model::{ProjectId, UserId};
use ember_service::Caller;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where Keystone is and who Ember is to it.
#[derive(Clone)]
pub struct KeystoneSettings {
    /// The identity v3 endpoint, e.g. `http://keystone:5000/v3`.
    pub url: String,
    pub username: String,
    pub password: String,
    pub project: String,
    pub domain: String,
    /// How long an answer is reused (keystonemiddleware: `token_cache_time`).
    pub cache_for: Duration,
}

impl std::fmt::Debug for KeystoneSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeystoneSettings")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .field("project", &self.project)
            .field("cache_for", &self.cache_for)
            .finish()
    }
}

pub struct KeystoneAuthenticator {
    settings: KeystoneSettings,
    http: reqwest::Client,
    service_token: tokio::sync::Mutex<Option<(String, Instant)>>,
    /// sha256(token) → (answer, until when it may be reused).
    cache: Mutex<HashMap<[u8; 32], CachedAnswer>>,
}

/// Keystone's answer for one token (`None`: invalid) and until when it
/// may be reused.
type CachedAnswer = (Option<Caller>, Instant);

/// Tokens are not kept in memory in the clear.
fn token_key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Seconds from now until an ISO 8601 `expires_at`, if it parses.
fn remaining(expires_at: &str) -> Option<Duration> {
    let at =
        time::OffsetDateTime::parse(expires_at, &time::format_description::well_known::Rfc3339)
            .ok()?;
    let left = at - time::OffsetDateTime::now_utc();
    Some(Duration::from_secs(left.whole_seconds().max(0) as u64))
}

impl KeystoneAuthenticator {
    pub fn new(mut settings: KeystoneSettings) -> Self {
        settings.url = settings.url.trim_end_matches('/').to_string();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("http client");
        KeystoneAuthenticator {
            settings,
            http,
            service_token: Default::default(),
            cache: Default::default(),
        }
    }

    /// Ember's own token, reused until shortly before it expires.
    async fn service_token(&self, renew: bool) -> Result<String, AuthError> {
        let mut held = self.service_token.lock().await;
        if let Some((token, until)) = held.as_ref()
            && !renew
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let s = &self.settings;
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": s.username, "password": s.password, "domain": {"name": s.domain}}}},
            "scope": {"project": {"name": s.project, "domain": {"name": s.domain}}}}});
        let resp = self
            .http
            .post(format!("{}/auth/tokens?nocatalog", s.url))
            .json(&body)
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "keystone unreachable");
                AuthError::IdentityUnavailable
            })?;
        if !resp.status().is_success() {
            tracing::error!(
                status = resp.status().as_u16(),
                "keystone refused Ember's service credentials"
            );
            return Err(AuthError::IdentityUnavailable);
        }
        let token = resp
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or(AuthError::IdentityUnavailable)?;
        let body: Value = resp
            .json()
            .await
            .map_err(|_| AuthError::IdentityUnavailable)?;
        let life = body
            .pointer("/token/expires_at")
            .and_then(Value::as_str)
            .and_then(remaining)
            .unwrap_or(Duration::from_secs(300));
        let until = Instant::now()
            + life
                .saturating_sub(Duration::from_secs(60))
                .max(Duration::from_secs(1));
        *held = Some((token.clone(), until));
        Ok(token)
    }

    /// Asks Keystone about `token`: `Ok(None)` when it is not valid.
    async fn ask(&self, token: &str) -> Result<Option<(Caller, Duration)>, AuthError> {
        for renew in [false, true] {
            let service = self.service_token(renew).await?;
            let resp = self
                .http
                .get(format!("{}/auth/tokens?nocatalog", self.settings.url))
                .header("X-Auth-Token", service)
                .header("X-Subject-Token", token)
                .send()
                .await
                .map_err(|_| AuthError::IdentityUnavailable)?;
            match resp.status().as_u16() {
                200 => {
                    let body: Value = resp
                        .json()
                        .await
                        .map_err(|_| AuthError::IdentityUnavailable)?;
                    return Ok(caller_of(&body));
                }
                // Our own token expired or was revoked: renew once.
                401 if !renew => continue,
                404 | 401 => return Ok(None),
                other => {
                    tracing::warn!(status = other, "keystone could not validate a token");
                    return Err(AuthError::IdentityUnavailable);
                }
            }
        }
        Ok(None)
    }

    async fn caller(&self, headers: &HeaderMap) -> Result<Caller, AuthError> {
        let token = auth_token(headers).ok_or(AuthError::Unauthenticated)?;
        let key = token_key(token);
        let now = Instant::now();
        if let Some((answer, until)) = self.cache.lock().unwrap().get(&key)
            && now < *until
        {
            return answer.clone().ok_or(AuthError::Unauthenticated);
        }
        let answer = self.ask(token).await?;
        let cache_for = self.settings.cache_for;
        let (caller, until) = match answer {
            Some((caller, left)) => (Some(caller), now + cache_for.min(left)),
            None => (None, now + cache_for),
        };
        let mut cache = self.cache.lock().unwrap();
        if cache.len() > 10_000 {
            cache.retain(|_, (_, until)| *until > now);
        }
        if !cache_for.is_zero() {
            cache.insert(key, (caller.clone(), until));
        }
        caller.ok_or(AuthError::Unauthenticated)
    }
}

/// The caller a Keystone token body names; `None` unless project-scoped.
fn caller_of(body: &Value) -> Option<(Caller, Duration)> {
    let token = body.get("token")?;
    let project = token.pointer("/project/id")?.as_str()?;
    let user = token.pointer("/user/id")?.as_str()?;
    let roles = token
        .get("roles")?
        .as_array()?
        .iter()
        .filter_map(|r| r.get("name")?.as_str().map(str::to_string))
        .collect();
    let left = token
        .get("expires_at")
        .and_then(Value::as_str)
        .and_then(remaining)
        .unwrap_or_default();
    if left.is_zero() {
        return None;
    }
    Some((
        Caller {
            user_id: UserId(user.into()),
            project_id: ProjectId(project.into()),
            roles,
        },
        left,
    ))
}

impl Authenticator for KeystoneAuthenticator {
    fn authenticate<'a>(
        &'a self,
        headers: &'a HeaderMap,
        _project_in_path: Option<&'a str>,
    ) -> AuthFuture<'a> {
        Box::pin(self.caller(headers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_project_scoped_token_names_its_caller() {
        let expires = (time::OffsetDateTime::now_utc() + time::Duration::hours(1))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let body = json!({"token": {"project": {"id": "p1"}, "user": {"id": "u1"}, "expires_at": expires,
            "roles": [{"id": "r", "name": "member"}, {"id": "s", "name": "reader"}]}});
        let (caller, left) = caller_of(&body).unwrap();
        assert_eq!(
            (caller.project_id.0.as_str(), caller.user_id.0.as_str()),
            ("p1", "u1")
        );
        assert_eq!(caller.roles, vec!["member", "reader"]);
        assert!(left > Duration::from_secs(3500));
    }

    #[test]
    fn unscoped_or_expired_tokens_name_nobody() {
        assert!(caller_of(&json!({"token": {"user": {"id": "u"}, "roles": [], "expires_at": "2999-01-01T00:00:00Z"}})).is_none());
        let past = json!({"token": {"project": {"id": "p"}, "user": {"id": "u"}, "roles": [], "expires_at": "2001-01-01T00:00:00.000000Z"}});
        assert!(caller_of(&past).is_none());
    }
}
