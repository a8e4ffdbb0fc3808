//! Group types (3.11+): admins create, change and delete them; everyone
//! sees the public ones. The default group type is built in.

use crate::volumes::require_admin;
use crate::{Caller, Result, Service, ServiceError};
use ember_model::{GroupType, Metadata, Timestamp};

pub const DEFAULT_GROUP_TYPE_ID: &str = "5f1e8b0a-2c4d-4e6f-8a9b-0c1d2e3f4a5b";

pub fn default_group_type() -> GroupType {
    GroupType {
        id: DEFAULT_GROUP_TYPE_ID.into(),
        name: "default_group_type".into(),
        description: Some("Default group type".into()),
        is_public: true,
        group_specs: Metadata::new(),
        created_at: Timestamp(0),
    }
}

fn not_found(id: &str) -> ServiceError {
    ServiceError::NotFound(format!("Group type with id {id} could not be found."))
}

/// What an update asks for; `None` leaves a field alone.
#[derive(Clone, Debug, Default)]
pub struct GroupTypeChange {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub is_public: Option<bool>,
}

fn check_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 255 {
        return Err(ServiceError::InvalidInput(
            "Group type name can not be empty and at most 255 characters.".into(),
        ));
    }
    Ok(name.to_string())
}

impl Service {
    /// Public types for everyone; admins may ask for private ones
    /// (`is_public: Some(false)`) or all (`None`).
    pub async fn list_group_types(
        &self,
        caller: &Caller,
        is_public: Option<bool>,
    ) -> Result<Vec<GroupType>> {
        let core = self.core.clone();
        let admin = caller.is_admin();
        self.run_blocking(move || {
            let mut all = vec![default_group_type()];
            all.extend(core.store.read()?.group_types()?);
            Ok(all
                .into_iter()
                .filter(|t| {
                    if admin {
                        is_public.is_none_or(|p| t.is_public == p)
                    } else {
                        t.is_public
                    }
                })
                .collect())
        })
        .await
    }

    pub async fn group_type(&self, caller: &Caller, id: String) -> Result<GroupType> {
        let core = self.core.clone();
        let admin = caller.is_admin();
        self.run_blocking(move || {
            let t = if id == DEFAULT_GROUP_TYPE_ID || id == "default" {
                default_group_type()
            } else {
                core.store
                    .read()?
                    .group_type(&id)?
                    .ok_or_else(|| not_found(&id))?
            };
            if !t.is_public && !admin {
                return Err(not_found(&id));
            }
            Ok(t)
        })
        .await
    }

    pub async fn create_group_type(
        &self,
        caller: &Caller,
        name: &str,
        description: Option<String>,
        is_public: bool,
        group_specs: Metadata,
    ) -> Result<GroupType> {
        require_admin(caller, "group:group_types:create")?;
        let name = check_name(name)?;
        let core = self.core.clone();
        self.run_blocking(move || {
            let mut tx = core.store.write()?;
            if name == default_group_type().name || tx.group_types()?.iter().any(|t| t.name == name)
            {
                return Err(ServiceError::Conflict(format!(
                    "Group Type {name} already exists."
                )));
            }
            let t = GroupType {
                id: uuid::Uuid::new_v4().to_string(),
                name,
                description,
                is_public,
                group_specs,
                created_at: Timestamp::now(),
            };
            tx.put_group_type(&t)?;
            tx.commit()?;
            Ok(t)
        })
        .await
    }

    /// Applies `f` to a stored group type (admin only; not the default).
    async fn mutate_group_type<F>(&self, caller: &Caller, id: String, f: F) -> Result<GroupType>
    where
        F: FnOnce(&mut Vec<GroupType>, &mut GroupType) -> Result<()> + Send + 'static,
    {
        require_admin(caller, "group:group_types:update")?;
        let core = self.core.clone();
        self.run_blocking(move || {
            let mut tx = core.store.write()?;
            if id == DEFAULT_GROUP_TYPE_ID {
                return Err(ServiceError::InvalidInput(
                    "The default group type cannot be changed.".into(),
                ));
            }
            let mut t = tx.group_type(&id)?.ok_or_else(|| not_found(&id))?;
            let mut others: Vec<GroupType> = tx
                .group_types()?
                .into_iter()
                .filter(|o| o.id != id)
                .collect();
            f(&mut others, &mut t)?;
            tx.put_group_type(&t)?;
            tx.commit()?;
            Ok(t)
        })
        .await
    }

    pub async fn update_group_type(
        &self,
        caller: &Caller,
        id: String,
        change: GroupTypeChange,
    ) -> Result<GroupType> {
        self.mutate_group_type(caller, id, move |others, t| {
            if let Some(name) = change.name {
                let name = check_name(&name)?;
                if name == default_group_type().name || others.iter().any(|o| o.name == name) {
                    return Err(ServiceError::Conflict(format!(
                        "Group Type {name} already exists."
                    )));
                }
                t.name = name;
            }
            if let Some(d) = change.description {
                t.description = d;
            }
            if let Some(p) = change.is_public {
                t.is_public = p;
            }
            Ok(())
        })
        .await
    }

    pub async fn delete_group_type(&self, caller: &Caller, id: String) -> Result<()> {
        require_admin(caller, "group:group_types:delete")?;
        let core = self.core.clone();
        self.run_blocking(move || {
            let mut tx = core.store.write()?;
            if id == DEFAULT_GROUP_TYPE_ID {
                return Err(ServiceError::InvalidInput(
                    "Default group type can not be deleted.".into(),
                ));
            }
            tx.group_type(&id)?.ok_or_else(|| not_found(&id))?;
            tx.delete_group_type(&id)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub async fn set_group_specs(
        &self,
        caller: &Caller,
        id: String,
        specs: Metadata,
    ) -> Result<GroupType> {
        self.mutate_group_type(caller, id, move |_, t| {
            t.group_specs.extend(specs);
            Ok(())
        })
        .await
    }

    pub async fn delete_group_spec(&self, caller: &Caller, id: String, key: String) -> Result<()> {
        self.mutate_group_type(caller, id.clone(), move |_, t| {
            t.group_specs.remove(&key).map(drop).ok_or_else(|| {
                ServiceError::NotFound(format!("Group Type {id} has no specs with key {key}."))
            })
        })
        .await
        .map(drop)
    }
}
