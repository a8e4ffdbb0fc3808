//! Cinder's error bodies, in one place: `{"<kind>": {"code", "message"}}`.

use axum::http::StatusCode;
use ember_service::ServiceError;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct CinderError {
    pub status: StatusCode,
    pub message: String,
}

impl CinderError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        CinderError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        CinderError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
    pub fn snapshot_not_found(id: &str) -> Self {
        Self::not_found(format!("Snapshot {id} could not be found."))
    }
    pub fn volume_not_found(id: &str) -> Self {
        Self::not_found(format!("Volume {id} could not be found."))
    }

    /// The envelope key Cinder uses for a status code.
    pub fn kind(&self) -> &'static str {
        ember_api_common::fault_name(self.status.as_u16())
    }

    pub fn body(&self) -> Value {
        json!({ self.kind(): {"code": self.status.as_u16(), "message": self.message} })
    }
}

impl From<ServiceError> for CinderError {
    fn from(e: ServiceError) -> Self {
        if let ServiceError::Internal(detail) = &e {
            tracing::error!(error = %detail, "internal error");
            return CinderError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: "The server has either erred or is incapable of performing the requested operation.".into(),
            };
        }
        let status = ember_api_common::service_status(&e);
        CinderError {
            status,
            message: e.to_string(),
        }
    }
}
