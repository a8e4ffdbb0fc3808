//! The identity rules: authentication, tokens, projects, users, roles.

use crate::password;
use crate::token::{Payload, Signer, write_private};
use ember_model::{DEFAULT_DOMAIN_ID, DEFAULT_DOMAIN_NAME, Project, Role, User, new_identity_id};
use ember_store::MetadataStore;
use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, RwLock};

#[derive(Debug, Clone, thiserror::Error)]
pub enum IdentityError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Internal(String),
    /// The change could not be stored for now (no space left).
    #[error("{0}")]
    Unavailable(String),
}

impl From<ember_store::StoreError> for IdentityError {
    fn from(e: ember_store::StoreError) -> Self {
        match e {
            ember_store::StoreError::Full(_) => IdentityError::Unavailable(
                "No space left on the storage device; the change was not made.".into(),
            ),
            ember_store::StoreError::Unavailable(_) => {
                IdentityError::Unavailable("The metadata store is unavailable; retry later.".into())
            }
            other => IdentityError::Internal(other.to_string()),
        }
    }
}

type Result<T> = std::result::Result<T, IdentityError>;

/// Keystone's default roles; each implies the ones after it.
pub const DEFAULT_ROLES: [&str; 3] = ["admin", "member", "reader"];

/// A validated token and what it names.
#[derive(Clone, Debug)]
pub struct TokenInfo {
    pub payload: Payload,
    pub user: User,
    pub project: Option<Project>,
}

/// What first start set up, for the log and the openrc file.
pub struct Bootstrap {
    pub admin_user_id: String,
    pub admin_project_id: String,
    pub password_generated: bool,
}

pub struct IdentityService {
    store: Arc<dyn MetadataStore>,
    signer: Signer,
    /// Derives EC2 secrets from their access ids (`secret_of`), so the
    /// metadata store holds none.
    secrets_key: [u8; 32],
    revoked: RwLock<Revocations>,
    ttl_secs: i64,
}

/// What `check` refuses without a database read: revoked tokens, and every
/// token of a subject issued before its revocation. Kept in memory (loaded
/// at start-up, updated after each commit that revokes), so a revocation
/// takes effect for the next request.
#[derive(Default)]
struct Revocations {
    tokens: HashSet<String>,
    /// subject → tokens issued before this moment (Unix ms) are revoked.
    subjects: std::collections::HashMap<String, i64>,
}

impl Revocations {
    fn remember(&mut self, subject: String, before_ms: i64) {
        let at = self.subjects.entry(subject).or_insert(before_ms);
        *at = (*at).max(before_ms);
    }

    fn refuses(&self, p: &Payload) -> bool {
        if self.tokens.contains(&p.audit_id) {
            return true;
        }
        let issued = p.issued_ms();
        let revoked = |subject: String| self.subjects.get(&subject).is_some_and(|&t| issued < t);
        revoked(subject_user(&p.user_id))
            || p.project_id.as_ref().is_some_and(|project| {
                revoked(subject_project(project)) || revoked(subject_grant(&p.user_id, project))
            })
            || p.roles.iter().any(|(id, _)| revoked(subject_role(id)))
    }
}

/// Every token of the user (deleted, disabled, or a new password).
pub fn subject_user(user: &str) -> String {
    format!("user:{user}")
}
/// Every token scoped to the project (deleted or disabled).
pub fn subject_project(project: &str) -> String {
    format!("project:{project}")
}
/// The user's tokens on the project (a role taken away there).
pub fn subject_grant(user: &str, project: &str) -> String {
    format!("grant:{user}:{project}")
}
/// Every token carrying the role (the role deleted).
pub fn subject_role(role: &str) -> String {
    format!("role:{role}")
}

/// The longest a token may live, whatever `--token-ttl-secs` asks: an
/// expiry must stay a real date, and revocations are kept this long.
pub const MAX_TOKEN_TTL_SECS: i64 = 30 * 24 * 3600;

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn unauthorized() -> IdentityError {
    IdentityError::Unauthorized("The request you have made requires authentication.".into())
}

/// How a request names a user or project: by id, or by name in a domain.
#[derive(Clone, Debug, Default)]
pub struct Reference {
    pub id: Option<String>,
    pub name: Option<String>,
    pub domain_id: Option<String>,
    pub domain_name: Option<String>,
}

impl Reference {
    fn in_default_domain(&self) -> bool {
        let id_ok = self
            .domain_id
            .as_deref()
            .is_none_or(|d| d == DEFAULT_DOMAIN_ID);
        let name_ok = self
            .domain_name
            .as_deref()
            .is_none_or(|d| d.eq_ignore_ascii_case(DEFAULT_DOMAIN_NAME));
        id_ok && name_ok
    }
}

impl IdentityService {
    /// Opens the identity service; tokens it issues live `ttl_secs`;
    /// `secrets_key` derives EC2 secrets.
    pub fn open(
        store: Arc<dyn MetadataStore>,
        data_dir: &Path,
        ttl_secs: i64,
        secrets_key: [u8; 32],
    ) -> Result<Self> {
        let signer = Signer::load_or_create(&data_dir.join("token.key"))
            .map_err(|e| IdentityError::Internal(e.to_string()))?;
        Self::open_with(store, signer, ttl_secs, secrets_key)
    }

    /// `open` with the token signing key given (nodes sharing a store
    /// share it through the store, so a token from one works on all).
    pub fn open_with_token_key(
        store: Arc<dyn MetadataStore>,
        token_key: Vec<u8>,
        ttl_secs: i64,
        secrets_key: [u8; 32],
    ) -> Result<Self> {
        Self::open_with(store, Signer::from_key(token_key), ttl_secs, secrets_key)
    }

    fn open_with(
        store: Arc<dyn MetadataStore>,
        signer: Signer,
        ttl_secs: i64,
        secrets_key: [u8; 32],
    ) -> Result<Self> {
        // Expired revocations are purged on the way; on a full disk that
        // waits for the next start.
        if let Err(e) = store.write().and_then(|mut tx| {
            tx.purge_revocations(now())?;
            tx.commit()
        }) {
            tracing::warn!(error = %e, "could not purge expired token revocations");
        }
        let revoked = {
            let mut tx = store.read()?;
            let mut r = Revocations {
                tokens: tx.revoked_tokens(now())?.into_iter().collect(),
                ..Default::default()
            };
            for (subject, before_ms) in tx.revoked_subjects(now())? {
                r.remember(subject, before_ms);
            }
            r
        };
        Ok(IdentityService {
            store,
            signer,
            secrets_key,
            revoked: RwLock::new(revoked),
            ttl_secs: ttl_secs.clamp(1, MAX_TOKEN_TTL_SECS),
        })
    }

    /// Adds the revocations other nodes sharing the store have recorded
    /// since start-up (or the last call); the binary calls it every second
    /// when the store is shared, so a revocation anywhere holds everywhere
    /// within about a second.
    pub fn refresh_revocations(&self) -> Result<()> {
        let (tokens, subjects) = {
            let mut tx = self.store.read()?;
            (tx.revoked_tokens(now())?, tx.revoked_subjects(now())?)
        };
        let mut revoked = self.revoked.write().unwrap_or_else(|p| p.into_inner());
        revoked.tokens.extend(tokens);
        for (subject, before_ms) in subjects {
            revoked.remember(subject, before_ms);
        }
        Ok(())
    }

    /// Records, in `tx` (the transaction making the change that causes
    /// it), that every token of `subjects` issued until now is revoked;
    /// commits; then makes `check` refuse them. Returns after the commit.
    pub fn commit_revoking(
        &self,
        mut tx: Box<dyn ember_store::Tx + '_>,
        subjects: &[String],
    ) -> Result<()> {
        let before_ms = now_ms() + 1;
        let keep_until = now() + MAX_TOKEN_TTL_SECS + 1;
        for subject in subjects {
            tx.revoke_subject(subject, before_ms, keep_until)?;
        }
        tx.commit()?;
        let mut revoked = self.revoked.write().unwrap_or_else(|p| p.into_inner());
        for subject in subjects {
            revoked.remember(subject.clone(), before_ms);
        }
        Ok(())
    }

    /// Makes sure the default roles, the `admin` project and the `admin`
    /// user (with the admin role there) exist. The password is set when
    /// given, generated when the user is new, and written to `openrc`.
    pub fn bootstrap(
        &self,
        admin_password: Option<&str>,
        data_dir: &Path,
        auth_url: &str,
    ) -> Result<Bootstrap> {
        let mut tx = self.store.write()?;
        let roles = tx.roles()?;
        let mut role_ids = vec![];
        for name in DEFAULT_ROLES {
            let id = match roles.iter().find(|r| r.name == name) {
                Some(r) => r.id.clone(),
                None => {
                    let r = Role {
                        id: new_identity_id(),
                        name: name.into(),
                    };
                    tx.put_role(&r)?;
                    r.id
                }
            };
            role_ids.push(id);
        }
        let project = match tx.projects()?.into_iter().find(|p| p.name == "admin") {
            Some(p) => p,
            None => {
                let p = Project {
                    id: new_identity_id(),
                    name: "admin".into(),
                    domain_id: DEFAULT_DOMAIN_ID.into(),
                    description: "Bootstrap project for initializing the cloud.".into(),
                    enabled: true,
                };
                tx.put_project(&p)?;
                p
            }
        };
        let existing = tx.users()?.into_iter().find(|u| u.name == "admin");
        let mut generated = None;
        let user = match existing {
            Some(mut u) => {
                // Rewritten only when it changed: a restart writes nothing
                // (and so starts on a full disk).
                if let Some(pw) = admin_password
                    && !password::verify(pw, &u.password_hash)
                {
                    u.password_hash = password::hash(pw);
                    tx.put_user(&u)?;
                }
                u
            }
            None => {
                let pw = match admin_password {
                    Some(pw) => pw.to_string(),
                    None => {
                        let mut raw = [0u8; 18];
                        getrandom::fill(&mut raw)
                            .map_err(|e| IdentityError::Internal(e.to_string()))?;
                        let pw: String = raw.iter().map(|b| format!("{b:02x}")).collect();
                        generated = Some(pw.clone());
                        pw
                    }
                };
                let u = User {
                    id: new_identity_id(),
                    name: "admin".into(),
                    domain_id: DEFAULT_DOMAIN_ID.into(),
                    password_hash: password::hash(&pw),
                    enabled: true,
                    default_project_id: Some(project.id.clone()),
                    email: None,
                    description: None,
                };
                tx.put_user(&u)?;
                if generated.is_none() {
                    generated = Some(pw);
                }
                u
            }
        };
        if !tx
            .role_assignments(&user.id, &project.id)?
            .contains(&role_ids[0])
        {
            tx.grant_role(&user.id, &project.id, &role_ids[0])?;
        }
        tx.commit()?;
        let password_generated = admin_password.is_none() && generated.is_some();
        let openrc = data_dir.join("openrc");
        if let Some(pw) = admin_password.map(str::to_string).or(generated) {
            let text = format!(
                "# Credentials of Ember's bootstrap admin. Use: source {}\n\
                 export OS_AUTH_TYPE=password\n\
                 export OS_AUTH_URL={auth_url}\n\
                 export OS_IDENTITY_API_VERSION=3\n\
                 export OS_USERNAME=admin\n\
                 export OS_PASSWORD='{pw}'\n\
                 export OS_PROJECT_NAME=admin\n\
                 export OS_USER_DOMAIN_NAME=Default\n\
                 export OS_PROJECT_DOMAIN_NAME=Default\n\
                 export OS_REGION_NAME=RegionOne\n\
                 export OS_INTERFACE=public\n\
                 export OS_VOLUME_API_VERSION=3\n",
                openrc.display()
            );
            // Unchanged on a restart: not rewritten (a full disk has no
            // room for the copy).
            if std::fs::read(&openrc).ok().as_deref() != Some(text.as_bytes()) {
                write_private(&openrc, text.as_bytes()).map_err(|e| {
                    IdentityError::Internal(format!("writing {}: {e}", openrc.display()))
                })?;
            }
        }
        Ok(Bootstrap {
            admin_user_id: user.id,
            admin_project_id: project.id,
            password_generated,
        })
    }

    fn find_user(&self, r: &Reference) -> Result<Option<User>> {
        let mut tx = self.store.read()?;
        if let Some(id) = &r.id {
            return Ok(tx.user(id)?);
        }
        if !r.in_default_domain() {
            return Ok(None);
        }
        let name = r.name.as_deref().unwrap_or_default();
        Ok(tx.users()?.into_iter().find(|u| u.name == name))
    }

    fn find_project(&self, r: &Reference) -> Result<Option<Project>> {
        let mut tx = self.store.read()?;
        if let Some(id) = &r.id {
            return Ok(tx.project(id)?);
        }
        if !r.in_default_domain() {
            return Ok(None);
        }
        let name = r.name.as_deref().unwrap_or_default();
        Ok(tx.projects()?.into_iter().find(|p| p.name == name))
    }

    /// The roles `user` has on `project`, with the implied ones.
    fn effective_roles(&self, user: &str, project: &str) -> Result<Vec<(String, String)>> {
        let mut tx = self.store.read()?;
        let granted = tx.role_assignments(user, project)?;
        let roles = tx.roles()?;
        let mut names: Vec<String> = roles
            .iter()
            .filter(|r| granted.contains(&r.id))
            .map(|r| r.name.clone())
            .collect();
        for (i, name) in DEFAULT_ROLES.iter().enumerate() {
            if names.iter().any(|n| n == name) {
                for implied in &DEFAULT_ROLES[i + 1..] {
                    if !names.iter().any(|n| n == implied) {
                        names.push(implied.to_string());
                    }
                }
            }
        }
        Ok(roles
            .into_iter()
            .filter(|r| names.contains(&r.name))
            .map(|r| (r.id, r.name))
            .collect())
    }

    fn issue(
        &self,
        user: User,
        scope: Option<Reference>,
        methods: Vec<String>,
        expires_at: Option<i64>,
    ) -> Result<(String, TokenInfo)> {
        if !user.enabled {
            return Err(unauthorized());
        }
        let project = match scope {
            Some(r) => Some(self.find_project(&r)?.ok_or_else(unauthorized)?),
            None => None,
        };
        let (project, roles) = match project {
            Some(p) => {
                if !p.enabled {
                    return Err(unauthorized());
                }
                let roles = self.effective_roles(&user.id, &p.id)?;
                if roles.is_empty() {
                    return Err(unauthorized());
                }
                (Some(p), roles)
            }
            None => (None, vec![]),
        };
        let issued = now();
        let payload = Payload {
            user_id: user.id.clone(),
            project_id: project.as_ref().map(|p| p.id.clone()),
            methods,
            issued_at: issued,
            issued_at_ms: Some(now_ms()),
            expires_at: expires_at.unwrap_or(issued + self.ttl_secs),
            audit_id: uuid::Uuid::new_v4().simple().to_string()[..22].to_string(),
            roles,
        };
        let token = self.signer.sign(&payload);
        Ok((
            token,
            TokenInfo {
                payload,
                user,
                project,
            },
        ))
    }

    pub fn authenticate_password(
        &self,
        user: &Reference,
        password_text: &str,
        scope: Option<Reference>,
    ) -> Result<(String, TokenInfo)> {
        let user = self.find_user(user)?.ok_or_else(unauthorized)?;
        if !password::verify(password_text, &user.password_hash) {
            return Err(unauthorized());
        }
        let scope = scope.or_else(|| {
            user.default_project_id.clone().map(|id| Reference {
                id: Some(id),
                ..Default::default()
            })
        });
        self.issue(user, scope, vec!["password".into()], None)
    }

    /// A new token from an existing one (rescoping); it expires no later.
    pub fn authenticate_token(
        &self,
        token: &str,
        scope: Option<Reference>,
    ) -> Result<(String, TokenInfo)> {
        let info = self.validate(token)?;
        self.issue(
            info.user,
            scope,
            vec!["token".into()],
            Some(info.payload.expires_at),
        )
    }

    /// Signature, expiry and revocation only: cheap enough for every API
    /// request, and needs no database.
    pub fn check(&self, token: &str) -> Result<Payload> {
        let payload = self.signer.verify(token).ok_or_else(unauthorized)?;
        if payload.expires_at <= now()
            || self
                .revoked
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .refuses(&payload)
        {
            return Err(unauthorized());
        }
        Ok(payload)
    }

    /// Full validation, with the user and project as they are now.
    pub fn validate(&self, token: &str) -> Result<TokenInfo> {
        let payload = self.check(token)?;
        let mut tx = self.store.read()?;
        let user = tx
            .user(&payload.user_id)?
            .filter(|u| u.enabled)
            .ok_or_else(unauthorized)?;
        let project = match &payload.project_id {
            Some(p) => Some(
                tx.project(p)?
                    .filter(|p| p.enabled)
                    .ok_or_else(unauthorized)?,
            ),
            None => None,
        };
        Ok(TokenInfo {
            payload,
            user,
            project,
        })
    }

    pub fn revoke(&self, token: &str) -> Result<()> {
        let payload = self.check(token)?;
        let mut tx = self.store.write()?;
        tx.revoke_token(&payload.audit_id, payload.expires_at)?;
        tx.commit()?;
        self.revoked
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .tokens
            .insert(payload.audit_id);
        Ok(())
    }

    /// A new access key pair for `user_id` in `project_id`, made by that
    /// user (holding a role there) or an admin.
    pub fn create_access_key(
        &self,
        acting: &Payload,
        user_id: &str,
        project_id: &str,
    ) -> Result<ember_model::AccessKey> {
        let admin = acting.roles.iter().any(|(_, n)| n == "admin");
        if acting.user_id != user_id && !admin {
            return Err(IdentityError::Forbidden(
                "You are not authorized to perform the requested action.".into(),
            ));
        }
        let mut tx = self.store.write()?;
        tx.user(user_id)?
            .ok_or_else(|| IdentityError::NotFound(format!("Could not find user: {user_id}.")))?;
        tx.project(project_id)?.ok_or_else(|| {
            IdentityError::NotFound(format!("Could not find project: {project_id}."))
        })?;
        drop(tx);
        if self.effective_roles(user_id, project_id)?.is_empty() {
            return Err(IdentityError::Forbidden(format!(
                "User {user_id} has no role on project {project_id}."
            )));
        }
        let hex = |n: usize| -> Result<String> {
            let mut raw = vec![0u8; n];
            getrandom::fill(&mut raw).map_err(|e| IdentityError::Internal(e.to_string()))?;
            Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
        };
        // The secret is derived, not stored (see `secret_of`).
        let key = ember_model::AccessKey {
            access: hex(16)?,
            secret: String::new(),
            user_id: user_id.into(),
            project_id: project_id.into(),
        };
        let mut tx = self.store.write()?;
        tx.put_access_key(&key)?;
        tx.commit()?;
        Ok(key)
    }

    /// An access key's secret: derived from its access id with the
    /// service's key (the metadata store keeps none; signatures need the
    /// secret itself, so a hash would not do), or the one stored by an
    /// earlier version.
    pub fn secret_of(&self, key: &ember_model::AccessKey) -> String {
        if key.secret.is_empty() {
            crate::token::derive_hex(&self.secrets_key, &format!("ember-ec2:{}", key.access))[..32]
                .to_string()
        } else {
            key.secret.clone()
        }
    }

    /// The user's access keys (their own, or any for an admin).
    pub fn access_keys(
        &self,
        acting: &Payload,
        user_id: &str,
    ) -> Result<Vec<ember_model::AccessKey>> {
        let admin = acting.roles.iter().any(|(_, n)| n == "admin");
        if acting.user_id != user_id && !admin {
            return Err(IdentityError::Forbidden(
                "You are not authorized to perform the requested action.".into(),
            ));
        }
        Ok(self
            .store
            .read()?
            .access_keys()?
            .into_iter()
            .filter(|k| k.user_id == user_id)
            .collect())
    }

    pub fn delete_access_key(&self, acting: &Payload, user_id: &str, access: &str) -> Result<()> {
        let keys = self.access_keys(acting, user_id)?;
        if !keys.iter().any(|k| k.access == access) {
            return Err(IdentityError::NotFound(format!(
                "Could not find credential: {access}."
            )));
        }
        let mut tx = self.store.write()?;
        tx.delete_access_key(access)?;
        tx.commit()?;
        Ok(())
    }

    /// Who an access key acts as now: its secret and the caller (roles as
    /// the user has them on the key's project today), if still allowed.
    pub fn access_key_caller(&self, access: &str) -> Option<(String, ember_service::Caller)> {
        let key = self.store.read().ok()?.access_key(access).ok()??;
        let mut tx = self.store.read().ok()?;
        let user = tx.user(&key.user_id).ok()??;
        let project = tx.project(&key.project_id).ok()??;
        drop(tx);
        if !user.enabled || !project.enabled {
            return None;
        }
        let roles: Vec<String> = self
            .effective_roles(&key.user_id, &key.project_id)
            .ok()?
            .into_iter()
            .map(|(_, n)| n)
            .collect();
        if roles.is_empty() {
            return None;
        }
        let caller = ember_service::Caller {
            user_id: ember_model::UserId(key.user_id.clone()),
            project_id: ember_model::ProjectId(key.project_id.clone()),
            roles,
        };
        Some((self.secret_of(&key), caller))
    }

    pub fn store(&self) -> &Arc<dyn MetadataStore> {
        &self.store
    }
}
