//! What the REST handlers share: the state behind every route, the login a request carries,
//! and the ONTAP-shaped failure with the small helpers that make one.

use super::codes;
use super::identity::Identity;
use super::query::RestError;
use crate::config::AuthMethod;
use crate::registry::Registry;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::Arc;

/// What the handlers share.
pub struct RestState {
    /// The live sessions and the recent jobs the endpoints report.
    pub registry: Arc<Registry>,
    /// Who may call the API (HTTP basic authentication), each with a role.
    pub accounts: super::accounts::Accounts,
    /// The node and SVM the records name.
    pub identity: Identity,
    /// The failure throttle NDMP authentication uses too, per source address: guessing a
    /// password over REST costs the same time, and counts against the same peer.
    pub throttle: Arc<crate::auth::Throttle>,
    /// The NDMP settings the settings endpoints read and change.
    pub settings: Arc<crate::settings::Settings>,
    /// The configured NDMP authentication methods, which `authentication_types` narrows.
    pub auth_methods: Vec<AuthMethod>,
    /// The tape library `/api/ndmpd/library` shows; None in a router built without a server
    /// (benches), where that path answers 404.
    pub library: Option<Arc<crate::tape::library::Library>>,
    /// The catalog whose holdings `/api/ndmpd/library` adds, read only when the file exists.
    pub catalog: Option<super::library::CatalogReader>,
    /// The npm.backup resources' catalog and scheduler; None when no scheduler is configured
    /// (those paths then answer 404 "not configured").
    pub npm: Option<Arc<super::npm_state::Npm>>,
}

/// The REST user a request authenticated as, for the handlers' logs.
#[derive(Clone)]
pub(super) struct RestUser(pub(super) String);

/// An ONTAP error body with its status.
pub(super) struct Failure(pub(super) RestError);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut r = (status, Json(self.0.body())).into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"ndmpd\""),
            );
        }
        r
    }
}

pub(super) fn error(status: u16, message: &str, code: &str, target: Option<&str>) -> Failure {
    Failure(RestError::new(status, message, code, target))
}

pub(super) fn pairs(q: Option<String>) -> Result<Vec<(String, String)>, Failure> {
    match q {
        None => Ok(Vec::new()),
        Some(q) => serde_urlencoded::from_str(&q).map_err(|_| {
            Failure(
                RestError::invalid_value("query", "The query string is malformed.")
                    .with_arguments(&[q.as_str()]),
            )
        }),
    }
}

/// Runs `f`, which touches the disk (a snapshot, a directory scan), off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Failure> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| error(500, &format!("internal error: {e}"), codes::OTHER, None))
}
