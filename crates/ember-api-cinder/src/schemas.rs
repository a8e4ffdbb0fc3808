//! Request schemas, as Cinder 29.0.0 declares them.

use ember_api_common::schema::{ObjectSchema, Schema, object};

fn name() -> Schema {
    Schema::Str {
        nullable: true,
        min: Some(0),
        max: Some(255),
        printable: false,
    }
}

fn description() -> Schema {
    Schema::Str {
        nullable: true,
        min: Some(0),
        max: Some(255),
        printable: true,
    }
}

fn metadata_allows_null() -> Schema {
    Schema::Metadata {
        nullable: true,
        null_values: false,
    }
}

pub fn snapshot_create() -> Schema {
    object(
        vec![(
            "snapshot",
            object(
                vec![
                    ("name", name()),
                    ("display_name", name()),
                    ("description", description()),
                    ("display_description", description()),
                    ("volume_id", Schema::UuidOrNull),
                    ("force", Schema::Boolean),
                    ("metadata", metadata_allows_null()),
                ],
                vec!["volume_id"],
            ),
        )],
        vec!["snapshot"],
    )
}

pub fn snapshot_update() -> Schema {
    object(
        vec![(
            "snapshot",
            Schema::Object(ObjectSchema {
                properties: vec![
                    ("name", name()),
                    ("description", description()),
                    ("display_name", name()),
                    ("display_description", description()),
                ],
                any_of_required: vec!["name", "description", "display_name", "display_description"],
                ..Default::default()
            }),
        )],
        vec!["snapshot"],
    )
}

/// `{"metadata": {...}}` for POST/PUT of a whole metadata map.
pub fn metadata_body() -> Schema {
    object(
        vec![(
            "metadata",
            Schema::Metadata {
                nullable: false,
                null_values: false,
            },
        )],
        vec!["metadata"],
    )
}

/// `{"meta": {key: value}}` for PUT of one key.
pub fn meta_item_body() -> Schema {
    object(
        vec![(
            "meta",
            Schema::Metadata {
                nullable: false,
                null_values: false,
            },
        )],
        vec!["meta"],
    )
}

/// Cinder's `create`, `create_volume_v313` (group_id), `_v347`
/// (backup_id) and `_v353` (no keys but these): below 3.53 unknown keys
/// in the volume are accepted and ignored.
pub fn volume_create(mv: crate::version::Microversion) -> Schema {
    let loose_name = Schema::Str {
        nullable: true,
        min: None,
        max: Some(255),
        printable: false,
    };
    object(
        vec![
            (
                "volume",
                Schema::Object(ObjectSchema {
                    properties: vec![
                        ("name", loose_name.clone()),
                        ("description", description()),
                        ("display_name", loose_name.clone()),
                        ("display_description", description()),
                        ("volume_type", name()),
                        ("metadata", metadata_allows_null()),
                        ("snapshot_id", Schema::Uuid { nullable: true }),
                        ("source_volid", Schema::Uuid { nullable: true }),
                        ("consistencygroup_id", Schema::Uuid { nullable: true }),
                        (
                            "size",
                            Schema::IntLike {
                                nullable: true,
                                min: 1,
                                max: Some(ember_model::MAX_SIZE_GIB as i64),
                            },
                        ),
                        (
                            "availability_zone",
                            Schema::Str {
                                nullable: true,
                                min: Some(1),
                                max: Some(255),
                                printable: false,
                            },
                        ),
                        ("multiattach", Schema::Boolean),
                        (
                            "image_id",
                            Schema::Str {
                                nullable: true,
                                min: Some(0),
                                max: Some(255),
                                printable: false,
                            },
                        ),
                        (
                            "imageRef",
                            Schema::Str {
                                nullable: true,
                                min: Some(0),
                                max: Some(255),
                                printable: false,
                            },
                        ),
                    ]
                    .into_iter()
                    .chain(mv.at_least(13).then_some((
                        "group_id",
                        Schema::Str {
                            nullable: true,
                            min: Some(0),
                            max: Some(255),
                            printable: false,
                        },
                    )))
                    .chain(
                        mv.at_least(47)
                            .then_some(("backup_id", Schema::Uuid { nullable: true })),
                    )
                    .collect(),
                    additional: !mv.at_least(53),
                    ..Default::default()
                }),
            ),
            ("OS-SCH-HNT:scheduler_hints", Schema::Any),
        ],
        vec!["volume"],
    )
}

/// Cinder's `update`, and from 3.53 `update_volume_v353` (at least one
/// of the fields).
pub fn volume_update(mv: crate::version::Microversion) -> Schema {
    let loose_name = Schema::Str {
        nullable: true,
        min: None,
        max: Some(255),
        printable: false,
    };
    object(
        vec![(
            "volume",
            Schema::Object(ObjectSchema {
                properties: vec![
                    ("name", loose_name.clone()),
                    ("description", description()),
                    ("display_name", loose_name),
                    ("display_description", description()),
                    (
                        "metadata",
                        Schema::Metadata {
                            nullable: false,
                            null_values: false,
                        },
                    ),
                ],
                any_of_required: if mv.at_least(53) {
                    vec![
                        "name",
                        "description",
                        "display_name",
                        "display_description",
                        "metadata",
                    ]
                } else {
                    vec![]
                },
                ..Default::default()
            }),
        )],
        vec!["volume"],
    )
}

/// `POST os-volume-manage` (`volume_manage_create`, `_v316` adds
/// `cluster`). `ref` is an object or a string; its meaning is checked by
/// the handler.
pub fn volume_manage(mv: crate::version::Microversion) -> Schema {
    let host = Schema::Str {
        nullable: true,
        min: Some(0),
        max: Some(255),
        printable: false,
    };
    object(
        vec![(
            "volume",
            object(
                vec![
                    ("description", description()),
                    ("availability_zone", name()),
                    ("bootable", Schema::Boolean),
                    ("volume_type", name()),
                    ("name", name()),
                    ("host", host.clone()),
                    ("ref", Schema::Any),
                    ("metadata", metadata_allows_null()),
                ]
                .into_iter()
                .chain(mv.at_least(16).then_some(("cluster", host)))
                .collect(),
                vec!["ref"],
            ),
        )],
        vec!["volume"],
    )
}

/// `POST os-snapshot-manage`.
pub fn snapshot_manage() -> Schema {
    object(
        vec![(
            "snapshot",
            object(
                vec![
                    ("description", description()),
                    ("metadata", metadata_allows_null()),
                    ("name", name()),
                    ("volume_id", Schema::Uuid { nullable: false }),
                    ("ref", Schema::Any),
                ],
                vec!["ref", "volume_id"],
            ),
        )],
        vec!["snapshot"],
    )
}

/// Cinder's backup `create` (3.43 adds metadata, 3.51 availability_zone;
/// before those the keys are refused as unknown).
pub fn backup_create(mv: crate::version::Microversion) -> Schema {
    let mut properties = vec![
        ("volume_id", Schema::Uuid { nullable: false }),
        (
            "container",
            Schema::Str {
                nullable: true,
                min: Some(0),
                max: Some(255),
                printable: false,
            },
        ),
        ("description", description()),
        ("incremental", Schema::Boolean),
        ("force", Schema::Boolean),
        ("name", name()),
        ("snapshot_id", Schema::UuidOrNull),
    ];
    if mv.at_least(43) {
        properties.push(("metadata", metadata_allows_null()));
    }
    if mv.at_least(51) {
        properties.push(("availability_zone", name()));
    }
    object(
        vec![(
            "backup",
            Schema::Object(ObjectSchema {
                properties,
                required: vec!["volume_id"],
                ..Default::default()
            }),
        )],
        vec!["backup"],
    )
}

/// Cinder's backup `update` (3.9; 3.43 adds metadata).
pub fn backup_update(mv: crate::version::Microversion) -> Schema {
    let mut properties = vec![("name", name()), ("description", description())];
    if mv.at_least(43) {
        properties.push(("metadata", metadata_allows_null()));
    }
    object(
        vec![(
            "backup",
            Schema::Object(ObjectSchema {
                properties,
                ..Default::default()
            }),
        )],
        vec!["backup"],
    )
}

pub fn backup_restore() -> Schema {
    object(
        vec![(
            "restore",
            Schema::Object(ObjectSchema {
                properties: vec![("volume_id", Schema::UuidOrNull), ("name", name())],
                nullable: true,
                ..Default::default()
            }),
        )],
        vec!["restore"],
    )
}

pub fn backup_import() -> Schema {
    let text = |max| Schema::Str {
        nullable: false,
        min: Some(0),
        max,
        printable: false,
    };
    object(
        vec![(
            "backup-record",
            object(
                vec![
                    ("backup_service", text(Some(255))),
                    ("backup_url", text(None)),
                ],
                vec!["backup_service", "backup_url"],
            ),
        )],
        vec!["backup-record"],
    )
}
