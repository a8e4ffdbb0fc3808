//! Nova's fault bodies: `{"<faultName>": {"code", "message"}}`, and the
//! one place service errors become HTTP.

use crate::version::{self, Microversion};
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use ember_service::ServiceError;
use serde_json::json;

#[derive(Debug, Clone)]
pub struct NovaError {
    pub status: StatusCode,
    pub message: String,
}

impl NovaError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        NovaError {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    fn fault_name(&self) -> &'static str {
        ember_api_common::fault_name(self.status.as_u16())
    }

    /// The fault response; versioned faults carry the version headers.
    pub fn into_response(self, mv: Option<Microversion>) -> Response {
        let body =
            json!({ self.fault_name(): {"code": self.status.as_u16(), "message": self.message} });
        let mut r = Response::new(Body::from(body.to_string()));
        *r.status_mut() = self.status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=UTF-8"),
        );
        if let Some(mv) = mv {
            version::stamp(r.headers_mut(), mv);
        }
        r
    }
}

impl From<ServiceError> for NovaError {
    fn from(e: ServiceError) -> Self {
        match &e {
            // Nova turns Cinder's over-quota into 403 with its own wording.
            ServiceError::QuotaExceeded { resource, .. } => NovaError::new(
                StatusCode::FORBIDDEN,
                format!("Quota exceeded for resources: {}", resource.as_str()),
            ),
            ServiceError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                NovaError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Unexpected API Error. Please contact the administrator",
                )
            }
            _ => NovaError::new(ember_api_common::service_status(&e), e.to_string()),
        }
    }
}
