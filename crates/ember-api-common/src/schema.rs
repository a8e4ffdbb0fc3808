//! A small JSON-Schema subset with the error messages of Python's
//! `jsonschema`, which OpenStack APIs return verbatim. Keywords are checked
//! in the order Cinder's and Nova's schemas list them (type, properties,
//! required, additionalProperties), and the first failure is reported.

use crate::pyrepr::{repr, repr_str};
use serde_json::Value;

#[derive(Clone, Debug)]
pub enum Schema {
    Any,
    /// A string; `nullable` also accepts null.
    Str {
        nullable: bool,
        min: Option<usize>,
        max: Option<usize>,
        printable: bool,
    },
    /// `anyOf: [{type: string, format: uuid}, {type: null}]`.
    UuidOrNull,
    /// A UUID string (or, when `nullable`, null).
    Uuid {
        nullable: bool,
    },
    /// OpenStack's boolean: a JSON boolean or one of the accepted strings.
    Boolean,
    /// An integer, or a string of digits, at least `min` and (for
    /// integers, as jsonschema applies `maximum` to numbers only; the
    /// service checks the strings) at most `max`.
    IntLike {
        nullable: bool,
        min: i64,
        max: Option<i64>,
    },
    /// String-to-string map with keys matching `[a-zA-Z0-9-_:. ]{1,255}`
    /// and values of at most 255 characters.
    Metadata {
        nullable: bool,
        null_values: bool,
    },
    Object(ObjectSchema),
}

#[derive(Clone, Debug, Default)]
pub struct ObjectSchema {
    pub properties: Vec<(&'static str, Schema)>,
    pub required: Vec<&'static str>,
    pub additional: bool,
    pub nullable: bool,
    /// `anyOf: [{required: [a]}, {required: [b]}, …]`.
    pub any_of_required: Vec<&'static str>,
}

/// A validation failure as OpenStack renders it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaError {
    /// The last path element (field name) of the failing instance, if any.
    pub field: Option<String>,
    pub instance: Value,
    pub message: String,
}

impl SchemaError {
    /// Cinder's and Nova's wording: "Invalid input for field/attribute
    /// <field>. Value: <value>. <message>", or the bare message at the top.
    pub fn to_message(&self) -> String {
        match &self.field {
            Some(field) => format!(
                "Invalid input for field/attribute {field}. Value: {}. {}",
                crate::pyrepr::str(&self.instance),
                self.message
            ),
            None => self.message.clone(),
        }
    }
}

pub const BOOLEAN_TRUE: &[&str] = &[
    "True", "TRUE", "true", "1", "ON", "On", "on", "YES", "Yes", "yes", "y", "t",
];
pub const BOOLEAN_FALSE: &[&str] = &[
    "False", "FALSE", "false", "0", "OFF", "Off", "off", "NO", "No", "no", "n", "f",
];

/// Interprets a value that passed [`Schema::Boolean`].
pub fn as_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) if BOOLEAN_TRUE.contains(&s.as_str()) => Some(true),
        Value::String(s) if BOOLEAN_FALSE.contains(&s.as_str()) => Some(false),
        _ => None,
    }
}

fn type_error(instance: &Value, types: &[&str]) -> String {
    let names = types
        .iter()
        .map(|t| repr_str(t))
        .collect::<Vec<_>>()
        .join(", ");
    format!("{} is not of type {names}", repr(instance))
}

fn fail(path: &[String], instance: &Value, message: String) -> Result<(), SchemaError> {
    Err(SchemaError {
        field: path.last().cloned(),
        instance: instance.clone(),
        message,
    })
}

fn is_uuid_like(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
}

fn metadata_key_ok(key: &str) -> bool {
    let n = key.chars().count();
    (1..=255).contains(&n)
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.' | ' '))
}

/// Cinder's printable-character rule for descriptions: no control or
/// format characters, no separators other than plain spaces.
fn printable(s: &str) -> bool {
    s.chars()
        .all(|c| !c.is_control() && (c == ' ' || !c.is_whitespace()))
}

pub fn validate(schema: &Schema, value: &Value) -> Result<(), SchemaError> {
    check(schema, value, &mut Vec::new())
}

fn check(schema: &Schema, v: &Value, path: &mut Vec<String>) -> Result<(), SchemaError> {
    match schema {
        Schema::Any => Ok(()),
        Schema::Str {
            nullable,
            min,
            max,
            printable: only_printable,
        } => match v {
            Value::Null if *nullable => Ok(()),
            Value::String(s) => {
                let n = s.chars().count();
                if max.is_some_and(|m| n > m) {
                    return fail(path, v, format!("{} is too long", repr(v)));
                }
                if min.is_some_and(|m| n < m) {
                    return fail(path, v, format!("{} is too short", repr(v)));
                }
                if *only_printable && !printable(s) {
                    return fail(
                        path,
                        v,
                        format!("{} does not match the allowed characters", repr(v)),
                    );
                }
                Ok(())
            }
            _ => fail(
                path,
                v,
                type_error(
                    v,
                    if *nullable {
                        &["string", "null"]
                    } else {
                        &["string"]
                    },
                ),
            ),
        },
        Schema::UuidOrNull => match v {
            Value::Null => Ok(()),
            Value::String(s) if is_uuid_like(s) => Ok(()),
            _ => fail(
                path,
                v,
                format!("{} is not valid under any of the given schemas", repr(v)),
            ),
        },
        Schema::Uuid { nullable } => match v {
            Value::Null if *nullable => Ok(()),
            Value::String(s) if is_uuid_like(s) => Ok(()),
            Value::String(_) => fail(path, v, format!("{} is not a 'uuid'", repr(v))),
            _ => fail(
                path,
                v,
                type_error(
                    v,
                    if *nullable {
                        &["string", "null"]
                    } else {
                        &["string"]
                    },
                ),
            ),
        },
        Schema::Boolean => {
            if !matches!(v, Value::Bool(_) | Value::String(_)) {
                return fail(path, v, type_error(v, &["boolean", "string"]));
            }
            if as_bool(v).is_some() {
                return Ok(());
            }
            let mut options = vec!["True".to_string()];
            options.extend(BOOLEAN_TRUE.iter().map(|s| repr_str(s)));
            options.push("False".into());
            options.extend(BOOLEAN_FALSE.iter().map(|s| repr_str(s)));
            fail(
                path,
                v,
                format!("{} is not one of [{}]", repr(v), options.join(", ")),
            )
        }
        Schema::IntLike { nullable, min, max } => {
            let above_max = |v: &Value| {
                fail(
                    path,
                    v,
                    format!(
                        "{} is greater than the maximum of {}",
                        repr(v),
                        max.unwrap_or(i64::MAX)
                    ),
                )
            };
            let n = match v {
                Value::Null if *nullable => return Ok(()),
                Value::Number(n) if n.is_i64() => n.as_i64(),
                // Integers past i64 (a u64, or digits serde_json read as a
                // float): Python's jsonschema sees an integer too big.
                Value::Number(n) if n.is_u64() => return above_max(v),
                Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0 && f > 0.0) => {
                    return above_max(v);
                }
                Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                    // Digits past i64 are not below the minimum: the
                    // service refuses them by size.
                    return Ok(());
                }
                Value::String(_) => {
                    return fail(path, v, format!("{} does not match '^[0-9]+$'", repr(v)));
                }
                _ => {
                    return fail(
                        path,
                        v,
                        type_error(
                            v,
                            if *nullable {
                                &["integer", "string", "null"]
                            } else {
                                &["integer", "string"]
                            },
                        ),
                    );
                }
            };
            match n {
                Some(n) if n < *min => fail(
                    path,
                    v,
                    format!("{} is less than the minimum of {min}", repr(v)),
                ),
                Some(n) if max.is_some_and(|m| n > m) => above_max(v),
                _ => Ok(()),
            }
        }
        Schema::Metadata {
            nullable,
            null_values,
        } => match v {
            Value::Null if *nullable => Ok(()),
            Value::Object(map) => {
                for (k, value) in map {
                    if !metadata_key_ok(k) {
                        continue;
                    }
                    path.push(k.clone());
                    let r = match value {
                        Value::Null if *null_values => Ok(()),
                        Value::String(s) if s.chars().count() > 255 => {
                            fail(path, value, format!("{} is too long", repr(value)))
                        }
                        Value::String(_) => Ok(()),
                        _ => fail(
                            path,
                            value,
                            type_error(
                                value,
                                if *null_values {
                                    &["string", "null"]
                                } else {
                                    &["string"]
                                },
                            ),
                        ),
                    };
                    path.pop();
                    r?;
                }
                let extra: Vec<&String> = map.keys().filter(|k| !metadata_key_ok(k)).collect();
                if !extra.is_empty() {
                    return fail(path, v, additional_message(&extra));
                }
                Ok(())
            }
            _ => fail(
                path,
                v,
                type_error(
                    v,
                    if *nullable {
                        &["object", "null"]
                    } else {
                        &["object"]
                    },
                ),
            ),
        },
        Schema::Object(o) => {
            let map = match v {
                Value::Null if o.nullable => return Ok(()),
                Value::Object(map) => map,
                _ => {
                    return fail(
                        path,
                        v,
                        type_error(
                            v,
                            if o.nullable {
                                &["object", "null"]
                            } else {
                                &["object"]
                            },
                        ),
                    );
                }
            };
            for (name, sub) in &o.properties {
                if let Some(value) = map.get(*name) {
                    path.push(name.to_string());
                    let r = check(sub, value, path);
                    path.pop();
                    r?;
                }
            }
            for name in &o.required {
                if !map.contains_key(*name) {
                    return fail(
                        path,
                        v,
                        format!("{} is a required property", repr_str(name)),
                    );
                }
            }
            if !o.additional {
                let extra: Vec<&String> = map
                    .keys()
                    .filter(|k| !o.properties.iter().any(|(p, _)| p == k))
                    .collect();
                if !extra.is_empty() {
                    return fail(path, v, additional_message(&extra));
                }
            }
            if !o.any_of_required.is_empty()
                && !o.any_of_required.iter().any(|k| map.contains_key(*k))
            {
                return fail(
                    path,
                    v,
                    format!("{} is not valid under any of the given schemas", repr(v)),
                );
            }
            Ok(())
        }
    }
}

fn additional_message(extra: &[&String]) -> String {
    let names = extra
        .iter()
        .map(|k| repr_str(k))
        .collect::<Vec<_>>()
        .join(", ");
    let verb = if extra.len() == 1 { "was" } else { "were" };
    format!("Additional properties are not allowed ({names} {verb} unexpected)")
}

/// Shorthands for schema definitions.
pub fn object(properties: Vec<(&'static str, Schema)>, required: Vec<&'static str>) -> Schema {
    Schema::Object(ObjectSchema {
        properties,
        required,
        additional: false,
        ..Default::default()
    })
}

pub fn string_or_null(max: usize) -> Schema {
    Schema::Str {
        nullable: true,
        min: None,
        max: Some(max),
        printable: false,
    }
}

impl Schema {
    /// The same rules as a JSON Schema (2020-12, as OpenAPI 3.1 embeds
    /// it), for the OpenAPI document: what [`validate`] accepts is what
    /// the document says is valid. Cinder's printable-character rule has
    /// no portable regex form and is described instead.
    pub fn to_json_schema(&self) -> Value {
        use serde_json::json;
        let or_null = |nullable: bool, s: Value| {
            if nullable {
                json!({"anyOf": [s, {"type": "null"}]})
            } else {
                s
            }
        };
        match self {
            Schema::Any => json!({}),
            Schema::Str {
                nullable,
                min,
                max,
                printable,
            } => {
                let mut s = json!({"type": "string"});
                if let Some(m) = min {
                    s["minLength"] = json!(m);
                }
                if let Some(m) = max {
                    s["maxLength"] = json!(m);
                }
                if *printable {
                    s["description"] = json!(
                        "printable characters only: no control or format characters, no separators but the space"
                    );
                }
                or_null(*nullable, s)
            }
            Schema::UuidOrNull => or_null(true, json!({"type": "string", "format": "uuid"})),
            Schema::Uuid { nullable } => {
                or_null(*nullable, json!({"type": "string", "format": "uuid"}))
            }
            Schema::Boolean => {
                let words: Vec<&str> = BOOLEAN_TRUE.iter().chain(BOOLEAN_FALSE).copied().collect();
                json!({"anyOf": [{"type": "boolean"}, {"type": "string", "enum": words}]})
            }
            Schema::IntLike { nullable, min, max } => {
                let mut int = json!({"type": "integer", "minimum": min});
                if let Some(max) = max {
                    int["maximum"] = json!(max);
                }
                or_null(
                    *nullable,
                    json!({"anyOf": [
                        int,
                        {"type": "string", "pattern": "^[0-9]+$", "maxLength": 18}
                    ]}),
                )
            }
            Schema::Metadata {
                nullable,
                null_values,
            } => {
                let value = or_null(*null_values, json!({"type": "string", "maxLength": 255}));
                or_null(
                    *nullable,
                    json!({
                        "type": "object",
                        "patternProperties": {METADATA_KEY_PATTERN: value},
                        "additionalProperties": false
                    }),
                )
            }
            Schema::Object(o) => {
                let properties: serde_json::Map<String, Value> = o
                    .properties
                    .iter()
                    .map(|(k, s)| (k.to_string(), s.to_json_schema()))
                    .collect();
                let mut s = json!({"type": "object", "properties": properties});
                if !o.required.is_empty() {
                    s["required"] = json!(o.required);
                }
                if !o.additional {
                    s["additionalProperties"] = json!(false);
                }
                if !o.any_of_required.is_empty() {
                    let alternatives: Vec<Value> = o
                        .any_of_required
                        .iter()
                        .map(|k| json!({"required": [k]}))
                        .collect();
                    s["anyOf"] = json!(alternatives);
                }
                or_null(o.nullable, s)
            }
        }
    }
}

/// A metadata key, as [`metadata_key_ok`] checks it.
pub const METADATA_KEY_PATTERN: &str = "^[a-zA-Z0-9_:. -]{1,255}$";
