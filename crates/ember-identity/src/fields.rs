//! The request bodies of the identity admin API (projects, users, roles)
//! as one table each: the handlers validate with it and the OpenAPI
//! document is written from it, as Keystone's JSON schemas do both.

use crate::service::IdentityError;
use serde_json::{Map, Value, json};

#[derive(Clone, Copy)]
pub(crate) enum Field {
    /// A non-empty string of at most this many characters.
    Name(usize),
    /// A string or null.
    Text,
    Bool,
}

pub(crate) struct BodySpec {
    /// The wrapper key: `{"project": {...}}`.
    pub key: &'static str,
    pub fields: &'static [(&'static str, Field)],
    pub required: &'static [&'static str],
}

pub(crate) const PROJECT_CREATE: BodySpec = BodySpec {
    key: "project",
    fields: &[
        ("name", Field::Name(64)),
        ("description", Field::Text),
        ("enabled", Field::Bool),
    ],
    required: &["name"],
};
pub(crate) const PROJECT_UPDATE: BodySpec = BodySpec {
    required: &[],
    ..PROJECT_CREATE
};
pub(crate) const USER_CREATE: BodySpec = BodySpec {
    key: "user",
    fields: &[
        ("name", Field::Name(255)),
        ("password", Field::Text),
        ("enabled", Field::Bool),
        ("default_project_id", Field::Text),
        ("email", Field::Text),
        ("description", Field::Text),
    ],
    required: &["name"],
};
pub(crate) const USER_UPDATE: BodySpec = BodySpec {
    required: &[],
    ..USER_CREATE
};
pub(crate) const ROLE_CREATE: BodySpec = BodySpec {
    key: "role",
    fields: &[("name", Field::Name(255))],
    required: &["name"],
};

fn invalid(field: &str) -> IdentityError {
    IdentityError::BadRequest(format!("Invalid input for field '{field}'."))
}

impl BodySpec {
    /// The wrapped object, once every listed field present has its type.
    pub fn check<'a>(&self, body: &'a Value) -> Result<&'a Map<String, Value>, IdentityError> {
        let obj = body
            .get(self.key)
            .ok_or_else(|| {
                IdentityError::BadRequest(format!("'{}' is a required property", self.key))
            })?
            .as_object()
            .ok_or_else(|| invalid(self.key))?;
        for name in self.required {
            if !obj.contains_key(*name) {
                return Err(invalid(name));
            }
        }
        for (name, field) in self.fields {
            let Some(v) = obj.get(*name) else { continue };
            let ok = match field {
                Field::Name(max) => v
                    .as_str()
                    .is_some_and(|s| !s.is_empty() && s.chars().count() <= *max),
                Field::Text => v.is_string() || v.is_null(),
                Field::Bool => v.is_boolean(),
            };
            if !ok {
                return Err(invalid(name));
            }
        }
        Ok(obj)
    }

    pub fn json_schema(&self) -> Value {
        let props: Map<String, Value> = self
            .fields
            .iter()
            .map(|(name, f)| {
                let s = match f {
                    Field::Name(max) => {
                        json!({"type": "string", "minLength": 1, "maxLength": max})
                    }
                    Field::Text => json!({"type": ["string", "null"]}),
                    Field::Bool => json!({"type": "boolean"}),
                };
                (name.to_string(), s)
            })
            .collect();
        json!({
            "type": "object",
            "required": [self.key],
            "properties": {self.key: {"type": "object", "properties": props, "required": self.required}}
        })
    }
}
