//! The one place where failures become HTTP status codes. A fault outside the server
//! (database, disk, permissions) is a 503 with `Retry-After`; 500 is for bugs. Bodies are a short plain-text
//! line; causes are logged where they happened (or here, once, for the few that only
//! show up here), never sent (no SQL, no paths, no chains).

use crate::service::access::Denied;
use crate::service::admin::AdminError;
use crate::service::limits::Refusal;
use crate::service::{Fault, ServiceError};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use thiserror::Error;

/// `Retry-After` when the admin job registry is full: jobs take seconds to minutes.
const TOO_MANY_JOBS_RETRY_SECS: u64 = 30;
/// draft-ietf-httpapi-ratelimit-headers: the quota policies of a server.
pub(crate) const RATELIMIT_POLICY: header::HeaderName =
    header::HeaderName::from_static("ratelimit-policy");
/// draft-ietf-httpapi-ratelimit-headers: what is left of a policy's quota.
pub(crate) const RATELIMIT: header::HeaderName = header::HeaderName::from_static("ratelimit");

#[derive(Debug, Error)]
pub(crate) enum HttpError {
    /// The path or body is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// Unknown style, zoom outside the style, tile outside the grid, unknown job.
    #[error("{0}")]
    NotFound(String),
    /// A method other than GET or HEAD on a public path.
    #[error("only GET and HEAD are allowed here")]
    MethodNotAllowed,
    /// Admin request without the right bearer token.
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// A style's access rules refused the request (API key, Origin/Referer).
    #[error("{0}")]
    Forbidden(Denied),
    /// The client spent a budget (requests or renders caused).
    #[error("too many {}: retry in {} s", .0.budget.as_str(), .0.retry_after_secs())]
    TooManyRequests(Refusal),
    #[error("request body larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// The input is within the byte limits but names too much to hold.
    #[error("{0}")]
    InputTooLarge(String),
    /// The render queue is full: try again shortly.
    #[error("busy rendering, retry in {retry_after} s")]
    Busy { retry_after: u64 },
    /// The render did not finish within the miss timeout; it goes on in the background.
    #[error("still rendering, retry in {retry_after} s")]
    StillRendering { retry_after: u64 },
    /// Too many admin jobs are queued or running: try again later.
    #[error("{0}")]
    TooManyJobs(String),
    /// Shutting down.
    #[error("service unavailable")]
    Unavailable { retry_after: u64 },
    /// A fault outside the server (database, disk, permissions): try again later.
    #[error("{what} unavailable, retry in {retry_after} s")]
    Fault {
        what: &'static str,
        retry_after: u64,
    },
    /// `/ready` while the database does not answer.
    #[error("database unavailable")]
    NotReady,
    /// `/ready` while the node drains before stopping.
    #[error("draining")]
    Draining,
    /// Anything else; the cause was logged where it happened.
    #[error("internal error")]
    Internal,
}

impl HttpError {
    /// A service failure as the client sees it; `retry_after` for the 503s.
    pub(crate) fn from_service(e: ServiceError, retry_after: u64) -> Self {
        match e {
            ServiceError::UnknownStyle(name) => {
                HttpError::NotFound(format!("unknown style {name}"))
            }
            ServiceError::ZoomOutOfRange { z, min, max } => {
                HttpError::NotFound(format!("zoom {z} is outside this style's {min}-{max}"))
            }
            ServiceError::NoGrid(name) => {
                HttpError::NotFound(format!("style {name} has no UTFGrid"))
            }
            ServiceError::NotInArchive { .. } => HttpError::NotFound("no such tile".into()),
            // Logged where the archive failed.
            ServiceError::Archive { .. } => HttpError::Internal,
            ServiceError::QueueFull => HttpError::Busy { retry_after },
            ServiceError::Throttled(refusal) => HttpError::TooManyRequests(refusal),
            // Not the client's doing: the node is busy, as with a full queue.
            ServiceError::RenderCeiling(refusal) => HttpError::Busy {
                retry_after: refusal.retry_after_secs(),
            },
            ServiceError::MissTimeout => HttpError::StillRendering { retry_after },
            ServiceError::ShuttingDown => HttpError::Unavailable { retry_after },
            // Logged once: when the database went down, or by the render backend.
            e @ (ServiceError::SourceUnavailable(_) | ServiceError::RenderFailed(_)) => {
                match e.fault() {
                    Some(Fault::Database) => HttpError::Fault {
                        what: "database",
                        retry_after,
                    },
                    Some(Fault::DiskFull | Fault::Permission | Fault::Io) => HttpError::Fault {
                        what: "tile storage",
                        retry_after,
                    },
                    None => HttpError::Internal,
                }
            }
            e @ ServiceError::MissingAfterRender(_) => {
                tracing::error!(error = %e, "tile missing after its render");
                HttpError::Internal
            }
        }
    }
}

impl From<AdminError> for HttpError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::BadRequest(m) => HttpError::BadRequest(m),
            e @ AdminError::UnknownStyle(_) => HttpError::NotFound(e.to_string()),
            e @ AdminError::UnknownJob(_) => HttpError::NotFound(e.to_string()),
            AdminError::TooManyJobs(e) => HttpError::TooManyJobs(e.to_string()),
            AdminError::Busy(m) => HttpError::TooManyJobs(m),
            AdminError::TooLarge(m) => HttpError::InputTooLarge(m),
            // Logged where it happened.
            AdminError::Internal(_) => HttpError::Internal,
        }
    }
}

impl ResponseError for HttpError {
    fn status_code(&self) -> StatusCode {
        match self {
            HttpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HttpError::NotFound(_) => StatusCode::NOT_FOUND,
            HttpError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            HttpError::Unauthorized => StatusCode::UNAUTHORIZED,
            HttpError::Forbidden(_) => StatusCode::FORBIDDEN,
            HttpError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            HttpError::PayloadTooLarge(_) | HttpError::InputTooLarge(_) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            HttpError::Busy { .. }
            | HttpError::StillRendering { .. }
            | HttpError::TooManyJobs(_)
            | HttpError::Unavailable { .. }
            | HttpError::Fault { .. }
            | HttpError::NotReady
            | HttpError::Draining => StatusCode::SERVICE_UNAVAILABLE,
            HttpError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        // Errors are never cached for long: a 404 may become a 200 once a style is added.
        res.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        res.content_type("text/plain; charset=utf-8");
        match self {
            HttpError::Busy { retry_after }
            | HttpError::StillRendering { retry_after }
            | HttpError::Unavailable { retry_after }
            | HttpError::Fault { retry_after, .. } => {
                res.insert_header((header::RETRY_AFTER, retry_after.to_string()));
            }
            HttpError::Unauthorized => {
                res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            HttpError::MethodNotAllowed => {
                res.insert_header((header::ALLOW, "GET, HEAD, OPTIONS"));
            }
            HttpError::TooManyRequests(refusal) => {
                // draft-ietf-httpapi-ratelimit-headers: the policy that refused and
                // what is left of it (nothing, for `t` seconds).
                let name = refusal.budget.as_str();
                let secs = refusal.retry_after_secs();
                res.insert_header((header::RETRY_AFTER, secs.to_string()));
                res.insert_header((
                    RATELIMIT_POLICY,
                    format!("\"{name}\";q={};w={}", refusal.quota, refusal.window_secs),
                ));
                res.insert_header((RATELIMIT, format!("\"{name}\";r=0;t={secs}")));
            }
            HttpError::TooManyJobs(_) => {
                res.insert_header((header::RETRY_AFTER, TOO_MANY_JOBS_RETRY_SECS.to_string()));
            }
            _ => {}
        }
        res.body(format!("{self}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::CacheError;
    use crate::queue::RenderFailure;
    use crate::source::Unavailable;
    use std::sync::Arc;

    fn status_and_retry(e: ServiceError) -> (u16, Option<String>) {
        let res = HttpError::from_service(e, 2).error_response();
        let retry = res
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_string());
        (res.status().as_u16(), retry)
    }

    fn io_failure(errno: i32) -> ServiceError {
        ServiceError::RenderFailed(RenderFailure::caused_by(
            "storing the metatile",
            CacheError::Io {
                action: "write",
                path: "/cache/osm/1.meta".into(),
                source: std::io::Error::from_raw_os_error(errno),
            },
        ))
    }

    #[test]
    fn faults_outside_the_server_are_503s_with_retry_after_and_bugs_are_500s() {
        let down = Unavailable {
            since: std::time::SystemTime::now(),
            cause: Arc::from("connection refused"),
        };
        let retry = Some("2".to_string());
        assert_eq!(
            status_and_retry(ServiceError::SourceUnavailable(down.clone())),
            (503, retry.clone())
        );
        assert_eq!(
            status_and_retry(ServiceError::RenderFailed(RenderFailure::caused_by(
                "the metatile's data",
                down
            ))),
            (503, retry.clone())
        );
        for errno in [28, 13, 30, 5] {
            assert_eq!(status_and_retry(io_failure(errno)), (503, retry.clone()));
        }
        assert_eq!(
            status_and_retry(ServiceError::RenderFailed(RenderFailure::new(
                "the renderer panicked"
            ))),
            (500, None)
        );
    }
}
