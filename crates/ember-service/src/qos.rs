//! QoS specifications and their association with volume types (admin
//! only, as in Cinder). Ember records them for the consumers that enforce
//! them; see [`ember_model::QosSpecs`].

use crate::volumes::require_admin;
use crate::{Caller, Result, Service, ServiceError};
use ember_model::{Metadata, QosSpecs, Timestamp, VolumeType};

const CONSUMERS: [&str; 3] = ["front-end", "back-end", "both"];

fn not_found(id: &str) -> ServiceError {
    ServiceError::NotFound(format!("No such QoS spec {id}."))
}

impl Service {
    pub async fn create_qos(
        &self,
        caller: &Caller,
        name: String,
        consumer: Option<String>,
        specs: Metadata,
    ) -> Result<QosSpecs> {
        require_admin(caller, "volume_extension:qos_specs_manage:create")?;
        let name = name.trim().to_string();
        if name.is_empty() || name.chars().count() > 255 {
            return Err(ServiceError::InvalidInput(
                "QoS specs name can not be empty and at most 255 characters.".into(),
            ));
        }
        let consumer = consumer.unwrap_or_else(|| "back-end".into());
        if !CONSUMERS.contains(&consumer.as_str()) {
            return Err(ServiceError::InvalidInput(format!(
                "Invalid consumer {consumer}: must be one of front-end, back-end, both."
            )));
        }
        let core = self.core.clone();
        self.run_blocking(move || {
            let mut tx = core.store.write()?;
            if tx.all_qos_specs()?.iter().any(|q| q.name == name) {
                return Err(ServiceError::Conflict(format!(
                    "QoS Specs {name} already exists."
                )));
            }
            let q = QosSpecs {
                id: uuid::Uuid::new_v4().to_string(),
                name,
                consumer,
                specs,
                created_at: Timestamp::now(),
            };
            tx.put_qos_specs(&q)?;
            tx.commit()?;
            Ok(q)
        })
        .await
    }

    pub async fn list_qos(&self, caller: &Caller) -> Result<Vec<QosSpecs>> {
        require_admin(caller, "volume_extension:qos_specs_manage:get_all")?;
        let core = self.core.clone();
        self.run_blocking(move || Ok(core.store.read()?.all_qos_specs()?))
            .await
    }

    pub async fn qos(&self, caller: &Caller, id: String) -> Result<QosSpecs> {
        require_admin(caller, "volume_extension:qos_specs_manage:get")?;
        let core = self.core.clone();
        self.run_blocking(move || {
            core.store
                .read()?
                .qos_specs(&id)?
                .ok_or_else(|| not_found(&id))
        })
        .await
    }

    /// Refused while types use it, unless `force` (which dissociates them).
    pub async fn delete_qos(&self, caller: &Caller, id: String, force: bool) -> Result<()> {
        require_admin(caller, "volume_extension:qos_specs_manage:delete")?;
        let core = self.core.clone();
        self.run_blocking(move || {
            let mut tx = core.store.write()?;
            tx.qos_specs(&id)?.ok_or_else(|| not_found(&id))?;
            let users: Vec<VolumeType> = tx
                .volume_types()?
                .into_iter()
                .filter(|t| t.qos_specs_id.as_deref() == Some(id.as_str()))
                .collect();
            if !users.is_empty() && !force {
                return Err(ServiceError::InvalidInput(format!(
                    "QoS Specs {id} is still associated with entities."
                )));
            }
            for mut t in users {
                t.qos_specs_id = None;
                tx.put_volume_type(&t)?;
            }
            tx.delete_qos_specs(&id)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Sets keys (`Some`) or removes them (`None`; a missing one is 404).
    pub async fn change_qos_keys(
        &self,
        caller: &Caller,
        id: String,
        set: Metadata,
        unset: Vec<String>,
    ) -> Result<QosSpecs> {
        require_admin(caller, "volume_extension:qos_specs_manage:update")?;
        let core = self.core.clone();
        self.run_blocking(move || {
            let mut tx = core.store.write()?;
            let mut q = tx.qos_specs(&id)?.ok_or_else(|| not_found(&id))?;
            for key in &unset {
                if q.specs.remove(key).is_none() {
                    return Err(ServiceError::NotFound(format!(
                        "QoS spec {id} has no key {key}."
                    )));
                }
            }
            q.specs.extend(set);
            tx.put_qos_specs(&q)?;
            tx.commit()?;
            Ok(q)
        })
        .await
    }

    /// The types associated with the specs.
    pub async fn qos_associations(&self, caller: &Caller, id: String) -> Result<Vec<VolumeType>> {
        require_admin(caller, "volume_extension:qos_specs_manage:get")?;
        let core = self.core.clone();
        self.run_blocking(move || {
            let mut tx = core.store.read()?;
            tx.qos_specs(&id)?.ok_or_else(|| not_found(&id))?;
            Ok(tx
                .volume_types()?
                .into_iter()
                .filter(|t| t.qos_specs_id.as_deref() == Some(id.as_str()))
                .collect())
        })
        .await
    }

    /// Associates the specs with a type (`Some`), dissociates one
    /// (`None` for `associate == false`), or every type (`type_id: None`).
    pub async fn associate_qos(
        &self,
        caller: &Caller,
        id: String,
        type_id: Option<String>,
        associate: bool,
    ) -> Result<()> {
        require_admin(caller, "volume_extension:qos_specs_manage:update")?;
        let core = self.core.clone();
        self.run_blocking(move || {
            let mut tx = core.store.write()?;
            tx.qos_specs(&id)?.ok_or_else(|| not_found(&id))?;
            let types = tx.volume_types()?;
            let targets: Vec<VolumeType> = match &type_id {
                Some(t) => vec![types.into_iter().find(|x| &x.id == t).ok_or_else(|| {
                    ServiceError::NotFound(format!("Volume type {t} could not be found."))
                })?],
                None => types
                    .into_iter()
                    .filter(|t| t.qos_specs_id.as_deref() == Some(id.as_str()))
                    .collect(),
            };
            for mut t in targets {
                if associate {
                    if let Some(other) = t.qos_specs_id.as_deref().filter(|o| *o != id) {
                        return Err(ServiceError::InvalidInput(format!(
                            "Type {} is already associated with another qos specs: {other}",
                            t.id
                        )));
                    }
                    t.qos_specs_id = Some(id.clone());
                } else if t.qos_specs_id.as_deref() == Some(id.as_str()) {
                    t.qos_specs_id = None;
                }
                tx.put_volume_type(&t)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }
}
