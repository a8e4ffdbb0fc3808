//! Volume types: Cinder's rules for creating, changing, sharing and
//! deleting them. The default type `__DEFAULT__` is built in (never
//! stored, never deleted); every other type lives in the metadata store.

use crate::volumes::require_admin;
use crate::{Caller, DEFAULT_VOLUME_TYPE_ID, Result, Service, ServiceError};
use ember_model::{Encryption, Metadata, ProjectId, Timestamp, VolumeType};
use ember_store::Tx;

/// Extra specs a non-admin may see (Cinder's user-visible keys).
const USER_VISIBLE_SPECS: [&str; 3] = [
    "multiattach",
    "RESKEY:availability_zones",
    "replication_enabled",
];

pub fn default_type(name: &str) -> VolumeType {
    VolumeType {
        id: DEFAULT_VOLUME_TYPE_ID.into(),
        name: name.into(),
        description: Some("Default Volume Type".into()),
        is_public: true,
        extra_specs: Metadata::new(),
        access: vec![],
        encryption: None,
        qos_specs_id: None,
        created_at: Timestamp(0),
        updated_at: None,
    }
}

/// The type a volume recorded, by its name and id (the default's id when
/// it recorded none), for volumes that inherit their source's type.
pub(crate) fn recorded_type(name: &str, id: Option<String>) -> VolumeType {
    let mut t = default_type(name);
    if let Some(id) = id {
        t.id = id;
    }
    t
}

fn type_not_found(id: &str) -> ServiceError {
    ServiceError::NotFound(format!("Volume type {id} could not be found."))
}

/// What a change to a type asks for; `None` leaves a field alone.
#[derive(Clone, Debug, Default)]
pub struct TypeChange {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub is_public: Option<bool>,
}

/// Looks a type up by id or name; private types only for admins and the
/// projects they are shared with (others get the not-found answer).
pub(crate) fn find_type(
    tx: &mut dyn Tx,
    default_name: &str,
    caller: &Caller,
    id_or_name: &str,
) -> Result<VolumeType> {
    if id_or_name == DEFAULT_VOLUME_TYPE_ID || id_or_name == default_name {
        return Ok(default_type(default_name));
    }
    let found = match tx.volume_type(id_or_name)? {
        Some(t) => Some(t),
        None => tx
            .volume_types()?
            .into_iter()
            .find(|t| t.name == id_or_name),
    };
    match found {
        Some(t) if t.is_public || caller.is_admin() || t.access.contains(&caller.project_id) => {
            Ok(t)
        }
        _ => Err(type_not_found(id_or_name)),
    }
}

fn check_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 255 {
        return Err(ServiceError::InvalidInput(
            "Volume type name can not be empty and at most 255 characters.".into(),
        ));
    }
    Ok(name.to_string())
}

fn unique_name(
    tx: &mut dyn Tx,
    default_name: &str,
    name: &str,
    except: Option<&str>,
) -> Result<()> {
    let taken = name == default_name
        || tx
            .volume_types()?
            .iter()
            .any(|t| t.name == name && Some(t.id.as_str()) != except);
    if taken {
        return Err(ServiceError::Conflict(format!(
            "Volume Type {name} already exists."
        )));
    }
    Ok(())
}

impl Service {
    fn default_type_name(&self) -> String {
        self.core.config.default_volume_type.clone()
    }

    /// Types the caller may use: public ones, and private ones shared with
    /// its project (admins see all). `is_public` filters as Cinder's query.
    pub async fn list_types(
        &self,
        caller: &Caller,
        is_public: Option<bool>,
    ) -> Result<Vec<VolumeType>> {
        let core = self.core.clone();
        let caller = caller.clone();
        let default_name = self.default_type_name();
        self.run_blocking(move || {
            let mut all = vec![default_type(&default_name)];
            all.extend(core.store.read()?.volume_types()?);
            Ok(all
                .into_iter()
                .filter(|t| match is_public {
                    Some(p) => {
                        t.is_public == p
                            && (p || caller.is_admin() || t.access.contains(&caller.project_id))
                    }
                    None => {
                        t.is_public || caller.is_admin() || t.access.contains(&caller.project_id)
                    }
                })
                .map(|t| visible(t, &caller))
                .collect())
        })
        .await
    }

    pub async fn volume_type(&self, caller: &Caller, id: String) -> Result<VolumeType> {
        let core = self.core.clone();
        let caller = caller.clone();
        let default_name = self.default_type_name();
        self.run_blocking(move || {
            let t = find_type(core.store.read()?.as_mut(), &default_name, &caller, &id)?;
            Ok(visible(t, &caller))
        })
        .await
    }

    pub async fn create_type(
        &self,
        caller: &Caller,
        name: &str,
        description: Option<String>,
        is_public: bool,
        extra_specs: Metadata,
    ) -> Result<VolumeType> {
        require_admin(caller, "volume_extension:types_manage")?;
        let name = check_name(name)?;
        let core = self.core.clone();
        let default_name = self.default_type_name();
        self.run_blocking(move || {
            let mut tx = core.store.write()?;
            unique_name(tx.as_mut(), &default_name, &name, None)?;
            let t = VolumeType {
                id: uuid::Uuid::new_v4().to_string(),
                name,
                description,
                is_public,
                extra_specs,
                access: vec![],
                encryption: None,
                qos_specs_id: None,
                created_at: Timestamp::now(),
                updated_at: None,
            };
            tx.put_volume_type(&t)?;
            tx.commit()?;
            Ok(t)
        })
        .await
    }

    /// Applies `f` to a stored type in one transaction (admin only; the
    /// default type cannot be changed).
    async fn mutate_type<F>(
        &self,
        caller: &Caller,
        id: String,
        action: &'static str,
        f: F,
    ) -> Result<VolumeType>
    where
        F: FnOnce(&mut dyn Tx, &mut VolumeType) -> Result<()> + Send + 'static,
    {
        require_admin(caller, action)?;
        let core = self.core.clone();
        self.run_blocking(move || {
            let mut tx = core.store.write()?;
            if id == DEFAULT_VOLUME_TYPE_ID {
                return Err(ServiceError::InvalidInput(
                    "The default volume type cannot be changed.".into(),
                ));
            }
            let mut t = tx.volume_type(&id)?.ok_or_else(|| type_not_found(&id))?;
            f(tx.as_mut(), &mut t)?;
            t.updated_at = Some(Timestamp::now());
            tx.put_volume_type(&t)?;
            tx.commit()?;
            Ok(t)
        })
        .await
    }

    pub async fn update_type(
        &self,
        caller: &Caller,
        id: String,
        change: TypeChange,
    ) -> Result<VolumeType> {
        let default_name = self.default_type_name();
        self.mutate_type(caller, id, "volume_extension:types_manage", move |tx, t| {
            if let Some(name) = change.name {
                let name = check_name(&name)?;
                unique_name(tx, &default_name, &name, Some(&t.id))?;
                if name != t.name {
                    // Volumes show their type's current name.
                    for mut v in tx
                        .all_volumes()?
                        .into_iter()
                        .filter(|v| v.volume_type_id.as_deref() == Some(t.id.as_str()))
                    {
                        v.volume_type = name.clone();
                        tx.put_volume(&v)?;
                    }
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

    /// Refused while any volume has the type, and for the default type.
    pub async fn delete_type(&self, caller: &Caller, id: String) -> Result<()> {
        require_admin(caller, "volume_extension:types_manage")?;
        let core = self.core.clone();
        self.run_blocking(move || {
            let mut tx = core.store.write()?;
            if id == DEFAULT_VOLUME_TYPE_ID {
                return Err(ServiceError::InvalidInput(
                    "Default volume type can not be deleted.".into(),
                ));
            }
            tx.volume_type(&id)?.ok_or_else(|| type_not_found(&id))?;
            if tx
                .all_volumes()?
                .iter()
                .any(|v| v.volume_type_id.as_deref() == Some(id.as_str()))
            {
                return Err(ServiceError::InvalidInput(
                    "Target volume type is still in use.".into(),
                ));
            }
            tx.delete_volume_type(&id)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Merges `specs` into the type's extra specs.
    pub async fn set_type_extra_specs(
        &self,
        caller: &Caller,
        id: String,
        specs: Metadata,
    ) -> Result<VolumeType> {
        self.mutate_type(
            caller,
            id,
            "volume_extension:types_extra_specs:create",
            move |_, t| {
                t.extra_specs.extend(specs);
                Ok(())
            },
        )
        .await
    }

    pub async fn delete_type_extra_spec(
        &self,
        caller: &Caller,
        id: String,
        key: String,
    ) -> Result<()> {
        self.mutate_type(
            caller,
            id.clone(),
            "volume_extension:types_extra_specs:delete",
            move |_, t| {
                t.extra_specs.remove(&key).map(drop).ok_or_else(|| {
                    ServiceError::NotFound(format!(
                        "Volume Type {id} has no extra specs with key {key}."
                    ))
                })
            },
        )
        .await
        .map(drop)
    }

    /// Shares a private type with a project (`add`), or stops sharing it.
    pub async fn set_type_access(
        &self,
        caller: &Caller,
        id: String,
        project: ProjectId,
        add: bool,
    ) -> Result<()> {
        self.mutate_type(caller, id.clone(), "volume_extension:volume_type_access:addProjectAccess", move |_, t| {
            if t.is_public {
                return Err(ServiceError::InvalidInput("Invalid volume type: Type access modification is not applicable to public volume type.".into()));
            }
            let present = t.access.contains(&project);
            match (add, present) {
                (true, true) => Err(ServiceError::Conflict(format!(
                    "Volume type access for {id}/{project} already exists."
                ))),
                (true, false) => {
                    t.access.push(project);
                    Ok(())
                }
                (false, true) => {
                    t.access.retain(|p| p != &project);
                    Ok(())
                }
                (false, false) => Err(ServiceError::NotFound(format!("Volume type access not found for {id}/{project} combination."))),
            }
        })
        .await
        .map(drop)
    }

    /// Creates (`replace == false`, refused when one exists) or changes the
    /// type's encryption; `None` fields keep their value on a change.
    pub async fn set_type_encryption(
        &self,
        caller: &Caller,
        id: String,
        e: EncryptionChange,
        create: bool,
    ) -> Result<Encryption> {
        let t = self
            .mutate_type(
                caller,
                id.clone(),
                "volume_extension:volume_type_encryption:create",
                move |tx, t| {
                    if tx
                        .all_volumes()?
                        .iter()
                        .any(|v| v.volume_type_id.as_deref() == Some(t.id.as_str()))
                    {
                        return Err(ServiceError::InvalidInput(
                            "Cannot create or update encryption of a volume type that is in use."
                                .into(),
                        ));
                    }
                    match (&mut t.encryption, create) {
                        (Some(_), true) => Err(ServiceError::InvalidInput(format!(
                            "Volume type encryption for type {id} already exists."
                        ))),
                        (None, false) => Err(ServiceError::NotFound(format!(
                            "Volume type encryption for type {id} does not exist."
                        ))),
                        (None, true) => {
                            t.encryption = Some(Encryption {
                                encryption_id: uuid::Uuid::new_v4().to_string(),
                                provider: e.provider.ok_or_else(|| {
                                    ServiceError::InvalidInput("provider is required.".into())
                                })?,
                                cipher: e.cipher.flatten(),
                                key_size: e.key_size.flatten(),
                                control_location: e
                                    .control_location
                                    .unwrap_or_else(|| "front-end".into()),
                                created_at: Timestamp::now(),
                                updated_at: None,
                            });
                            Ok(())
                        }
                        (Some(enc), false) => {
                            if let Some(p) = e.provider {
                                enc.provider = p;
                            }
                            if let Some(c) = e.cipher {
                                enc.cipher = c;
                            }
                            if let Some(k) = e.key_size {
                                enc.key_size = k;
                            }
                            if let Some(c) = e.control_location {
                                enc.control_location = c;
                            }
                            enc.updated_at = Some(Timestamp::now());
                            Ok(())
                        }
                    }
                },
            )
            .await?;
        Ok(t.encryption.expect("set above"))
    }

    pub async fn delete_type_encryption(&self, caller: &Caller, id: String) -> Result<()> {
        self.mutate_type(
            caller,
            id.clone(),
            "volume_extension:volume_type_encryption:delete",
            move |tx, t| {
                if tx
                    .all_volumes()?
                    .iter()
                    .any(|v| v.volume_type_id.as_deref() == Some(t.id.as_str()))
                {
                    return Err(ServiceError::InvalidInput(
                        "Cannot delete encryption of a volume type that is in use.".into(),
                    ));
                }
                t.encryption.take().map(drop).ok_or_else(|| {
                    ServiceError::NotFound(format!(
                        "Volume type encryption for type {id} does not exist."
                    ))
                })
            },
        )
        .await
        .map(drop)
    }
}

/// Encryption fields a request sets; `Some(None)` clears an optional one.
#[derive(Clone, Debug, Default)]
pub struct EncryptionChange {
    pub provider: Option<String>,
    pub cipher: Option<Option<String>>,
    pub key_size: Option<Option<i64>>,
    pub control_location: Option<String>,
}

/// Non-admins see only the user-visible extra specs and no access list.
fn visible(mut t: VolumeType, caller: &Caller) -> VolumeType {
    if !caller.is_admin() {
        t.extra_specs
            .retain(|k, _| USER_VISIBLE_SPECS.contains(&k.as_str()));
        t.access.clear();
    }
    t
}
