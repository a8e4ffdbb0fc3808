//! Request handlers, one module per resource.

mod attachments;
mod backend;
mod backups;
mod blocks;
mod group_types;
mod groups;
mod manage;
mod messages;
mod misc;
mod nodes;
mod policies;
mod qos;
mod snapshots;
mod transfers;
mod types;
mod volumes;

use crate::{CinderError, CinderState, Endpoint, Reply, Req};
use axum::http::StatusCode;
use ember_api_common::schema::{Schema, validate};
use serde_json::Value;

pub async fn run(state: &CinderState, req: &Req, endpoint: Endpoint) -> Result<Reply, CinderError> {
    use Endpoint::*;
    let svc = &state.service;
    match endpoint {
        ListSnapshots { detail } => snapshots::list(svc, req, detail).await,
        CreateSnapshot => snapshots::create(svc, req).await,
        ShowSnapshot(id) => snapshots::show(svc, req, &id).await,
        UpdateSnapshot(id) => snapshots::update(svc, req, &id).await,
        DeleteSnapshot(id) => snapshots::delete(svc, req, &id).await,
        SnapshotAction(id) => snapshots::action(svc, req, &id).await,
        SnapshotMetadata(id) => snapshots::metadata(svc, req, &id).await,
        WriteSnapshotMetadata { id, replace } => {
            snapshots::write_metadata(svc, req, &id, replace).await
        }
        ShowSnapshotMetadataKey { id, key } => snapshots::metadata_key(svc, req, &id, &key).await,
        PutSnapshotMetadataKey { id, key } => {
            snapshots::put_metadata_key(svc, req, &id, &key).await
        }
        DeleteSnapshotMetadataKey { id, key } => {
            snapshots::delete_metadata_key(svc, req, &id, &key).await
        }
        ReadSnapshotData(id) => snapshots::read_data(svc, req, &id).await,

        ListBackups { detail } => backups::list(svc, req, detail).await,
        CreateBackup => backups::create(svc, req).await,
        ShowBackup(id) => backups::show(svc, req, &id).await,
        UpdateBackup(id) => backups::update(svc, req, &id).await,
        DeleteBackup(id) => backups::delete(svc, req, &id).await,
        BackupAction(id) => backups::action(svc, req, &id).await,
        RestoreBackup(id) => backups::restore(svc, req, &id).await,
        ExportBackupRecord(id) => backups::export_record(svc, req, &id).await,
        ImportBackupRecord => backups::import_record(svc, req).await,
        ListSnapshotBlocks(id) => blocks::list(svc, req, &id).await,
        GetSnapshotBlock { id, index } => blocks::get(svc, req, &id, &index).await,
        ListChangedBlocks(id) => blocks::changed(svc, req, &id).await,
        ListPolicies => policies::list(svc, req).await,
        CreatePolicy => policies::create(svc, req).await,
        ShowPolicy(id) => policies::show(svc, req, &id).await,
        UpdatePolicy(id) => policies::update(svc, req, &id).await,
        DeletePolicy(id) => policies::delete(svc, req, &id).await,
        ListNodes => nodes::list(svc, req).await,
        ForgetNode(id) => nodes::delete(svc, req, &id).await,

        ListVolumes { detail } => volumes::list(svc, req, detail).await,
        CreateVolume => volumes::create(svc, req).await,
        ShowVolume(id) => volumes::show(svc, req, &id).await,
        UpdateVolume(id) => volumes::update(svc, req, &id).await,
        DeleteVolume(id) => volumes::delete(svc, req, &id).await,
        VolumeAction(id) => volumes::action(svc, req, &id).await,
        VolumeMetadata(id) => volumes::metadata(svc, req, &id).await,
        WriteVolumeMetadata { id, replace } => {
            volumes::write_metadata(svc, req, &id, replace).await
        }
        ShowVolumeMetadataKey { id, key } => volumes::metadata_key(svc, req, &id, &key).await,
        PutVolumeMetadataKey { id, key } => volumes::put_metadata_key(svc, req, &id, &key).await,
        DeleteVolumeMetadataKey { id, key } => {
            volumes::delete_metadata_key(svc, req, &id, &key).await
        }
        ReadVolumeData(id) => volumes::read_data(svc, req, &id).await,
        WriteVolumeData(id) => volumes::write_data(svc, req, &id).await,

        ListTypes => types::list(svc, req).await,
        ShowType(id) => types::show(svc, req, &id).await,
        DefaultType => types::show(svc, req, ember_service::DEFAULT_VOLUME_TYPE_ID).await,
        CreateType => types::create(svc, req).await,
        UpdateType(id) => types::update(svc, req, &id).await,
        DeleteType(id) => types::delete(svc, req, &id).await,
        TypeExtraSpecs(id) => types::extra_specs(svc, req, &id).await,
        SetTypeExtraSpecs(id) => types::set_extra_specs(svc, req, &id).await,
        ShowTypeExtraSpec { id, key } => types::extra_spec(svc, req, &id, &key).await,
        PutTypeExtraSpec { id, key } => types::put_extra_spec(svc, req, &id, &key).await,
        DeleteTypeExtraSpec { id, key } => types::delete_extra_spec(svc, req, &id, &key).await,
        TypeAction(id) => types::action(svc, req, &id).await,
        TypeAccess(id) => types::access(svc, req, &id).await,
        ShowTypeEncryption { id, key } => {
            types::show_encryption(svc, req, &id, key.as_deref()).await
        }
        CreateTypeEncryption(id) => types::create_encryption(svc, req, &id).await,
        UpdateTypeEncryption(id) => types::update_encryption(svc, req, &id).await,
        DeleteTypeEncryption(id) => types::delete_encryption(svc, req, &id).await,
        AvailabilityZones => misc::availability_zones(svc),
        Limits => misc::limits(svc, req).await,
        ShowQuotas { project } => misc::show_quotas(svc, req, &project).await,
        UpdateQuotas { project } => misc::update_quotas(svc, req, &project).await,
        DeleteQuotas { project } => {
            svc.reset_quotas(&req.caller, ember_model::ProjectId(project))
                .await?;
            Ok(Reply::empty(StatusCode::OK))
        }
        QuotaDefaults { project } => misc::quota_defaults(svc, &project).await,
        ShowQuotaClass(class) => misc::show_quota_class(svc, req, &class).await,
        UpdateQuotaClass(class) => misc::update_quota_class(svc, req, &class).await,
        ListHosts => backend::list_hosts(svc, req).await,
        ShowHost(host) => backend::show_host(svc, req, &host).await,
        Pools => backend::pools(svc, req).await,
        Capabilities(host) => backend::capabilities(svc, req, &host).await,
        ManageVolume => manage::manage_volume(svc, req).await,
        ListManageableVolumes { detail, since_38 } => {
            manage::list(svc, req, detail, since_38, false).await
        }
        ManageSnapshot => manage::manage_snapshot(svc, req).await,
        ListManageableSnapshots { detail, since_38 } => {
            manage::list(svc, req, detail, since_38, true).await
        }
        Extensions => Ok(backend::extensions()),
        ListServices => backend::list_services(svc, req).await,
        ListGroups { detail } => groups::list(svc, req, detail).await,
        CreateGroup => groups::create(svc, req).await,
        CreateGroupFromSource => groups::create_from_source(svc, req).await,
        ShowGroup(id) => groups::show(svc, req, &id).await,
        UpdateGroup(id) => groups::update(svc, req, &id).await,
        GroupAction(id) => groups::action(svc, req, &id).await,
        ListGroupSnapshots { detail } => groups::list_snapshots(svc, req, detail).await,
        CreateGroupSnapshot => groups::create_snapshot(svc, req).await,
        ShowGroupSnapshot(id) => groups::show_snapshot(svc, req, &id).await,
        DeleteGroupSnapshot(id) => groups::delete_snapshot(svc, req, &id).await,
        GroupSnapshotAction(id) => groups::snapshot_action(svc, req, &id).await,
        ListGroupTypes => group_types::list(svc, req).await,
        CreateGroupType => group_types::create(svc, req).await,
        ShowGroupType(id) => group_types::show(svc, req, &id).await,
        UpdateGroupType(id) => group_types::update(svc, req, &id).await,
        DeleteGroupType(id) => group_types::delete(svc, req, &id).await,
        GroupSpecs(id) => group_types::list_specs(svc, req, &id).await,
        SetGroupSpecs(id) => group_types::set_specs(svc, req, &id).await,
        ShowGroupSpec { id, key } => group_types::show_spec(svc, req, &id, &key).await,
        PutGroupSpec { id, key } => group_types::put_spec(svc, req, &id, &key).await,
        DeleteGroupSpec { id, key } => group_types::delete_spec(svc, req, &id, &key).await,
        ListMessages => messages::list(svc, req).await,
        ShowMessage(id) => messages::show(svc, req, &id).await,
        DeleteMessage(id) => messages::delete(svc, req, &id).await,
        CreateQos => qos::create(svc, req).await,
        ListQos => qos::list(svc, req).await,
        ShowQos(id) => qos::show(svc, req, &id).await,
        SetQosKeys(id) => qos::set_keys(svc, req, &id).await,
        DeleteQosKeys(id) => qos::delete_keys(svc, req, &id).await,
        DeleteQos(id) => qos::delete(svc, req, &id).await,
        QosAssociations(id) => qos::associations(svc, req, &id).await,
        AssociateQos { id, op } => qos::associate(svc, req, &id, &op).await,
        UpdateService(action) => backend::update_service(svc, req, &action).await,
        // The 3.55 collection does not exist before 3.55.
        CreateTransfer(c)
        | ListTransfers { collection: c, .. }
        | ShowTransfer { collection: c, .. }
        | DeleteTransfer { collection: c, .. }
        | AcceptTransfer { collection: c, .. }
            if c == "volume-transfers" && !req.mv.at_least(55) =>
        {
            Err(CinderError::not_found("The resource could not be found."))
        }
        CreateTransfer(c) => transfers::create(svc, req, &c).await,
        CreateAttachment => attachments::create(svc, req).await,
        ListAttachments { detail } => attachments::list(svc, req, detail).await,
        ShowAttachment(id) => attachments::show(svc, req, &id).await,
        UpdateAttachment(id) => attachments::update(svc, req, &id).await,
        DeleteAttachment(id) => attachments::delete(svc, req, &id).await,
        AttachmentAction(id) => attachments::action(svc, req, &id).await,
        ListTransfers { collection, detail } => {
            transfers::list(svc, req, detail, &collection).await
        }
        ShowTransfer { collection, id } => transfers::show(svc, req, &id, &collection).await,
        DeleteTransfer { id, .. } => transfers::delete(svc, req, &id).await,
        AcceptTransfer { collection, id } => transfers::accept(svc, req, &id, &collection).await,
    }
}

/// Parses and validates a JSON body against a schema.
pub(crate) fn body(req: &Req, schema: &Schema) -> Result<Value, CinderError> {
    let value = req.json_body()?;
    validate(schema, &value).map_err(|e| CinderError::bad_request(e.to_message()))?;
    Ok(value)
}

pub(crate) fn metadata_map(value: Option<&Value>) -> ember_model::Metadata {
    value
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// The optional string field `key`, falling back to its legacy `display_`
/// name. `Some(None)` means explicitly null.
pub(crate) fn text_field(obj: &Value, key: &str, legacy: &str) -> Option<Option<String>> {
    let v = obj.get(key).or_else(|| obj.get(legacy))?;
    Some(v.as_str().map(str::to_string))
}
