//! User messages (Cinder API 3.3+): what went wrong for a project without
//! failing its request, kept for 30 days or until deleted.

use crate::{Caller, Result, Service, ServiceError};
use ember_model::{ProjectId, Timestamp, UserMessage};
use ember_store::Tx;

const KEEP_MICROS: i64 = 30 * 24 * 3600 * 1_000_000;

fn not_found(id: &str) -> ServiceError {
    ServiceError::NotFound(format!("Message {id} could not be found."))
}

/// Records a message in the caller's transaction.
pub(crate) fn record(
    tx: &mut dyn Tx,
    project: &ProjectId,
    request_id: Option<&str>,
    event_id: &str,
    resource_type: &str,
    resource_uuid: Option<String>,
    text: &str,
) -> Result<()> {
    let now = Timestamp::now();
    tx.put_message(&UserMessage {
        id: uuid::Uuid::new_v4().to_string(),
        project_id: project.clone(),
        request_id: request_id
            .map(str::to_string)
            .unwrap_or_else(|| format!("req-{}", uuid::Uuid::new_v4())),
        event_id: event_id.into(),
        message_level: "ERROR".into(),
        resource_type: resource_type.into(),
        resource_uuid,
        user_message: text.into(),
        created_at: now,
        guaranteed_until: Timestamp(now.0 + KEEP_MICROS),
    })?;
    Ok(())
}

impl Service {
    /// The caller's project's messages (every project's for an admin
    /// asking for all tenants).
    pub async fn list_messages(
        &self,
        caller: &Caller,
        all_tenants: bool,
    ) -> Result<Vec<UserMessage>> {
        let core = self.core.clone();
        let project = (!(all_tenants && caller.is_admin())).then(|| caller.project_id.clone());
        self.run_blocking(move || Ok(core.store.read()?.messages(project.as_ref())?))
            .await
    }

    pub async fn message(&self, caller: &Caller, id: String) -> Result<UserMessage> {
        let core = self.core.clone();
        let caller = caller.clone();
        self.run_blocking(move || match core.store.read()?.message(&id)? {
            Some(m) if caller.sees(&m.project_id) => Ok(m),
            _ => Err(not_found(&id)),
        })
        .await
    }

    pub async fn delete_message(&self, caller: &Caller, id: String) -> Result<()> {
        crate::volumes::require_writer(caller, "message:delete")?;
        let core = self.core.clone();
        let caller = caller.clone();
        self.run_blocking(move || {
            let mut tx = core.store.write()?;
            match tx.message(&id)? {
                Some(m) if caller.sees(&m.project_id) => {}
                _ => return Err(not_found(&id)),
            }
            tx.delete_message(&id)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }
}
