//! The REST view: ONTAP-shaped sessions and jobs endpoints over the session registry, with
//! HTTP basic authentication against the configured DMA users.

mod identity;
mod jobs;
pub mod openapi;
pub mod query;
mod sessions;

use crate::config::Credentials;
use crate::registry::Registry;
use axum::extract::{ConnectInfo, Path, RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
pub use identity::{is_uuid, Identity};
use query::{Query, RestError};
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What the handlers share.
pub struct RestState {
    /// The live sessions and the recent jobs the endpoints report.
    pub registry: Arc<Registry>,
    /// Who may call the API (HTTP basic authentication): the configured DMA users.
    pub users: Vec<Credentials>,
    /// The node and SVM the records name.
    pub identity: Identity,
    /// The failure throttle NDMP authentication uses too, per source address: guessing a
    /// password over REST costs the same time, and counts against the same peer.
    pub throttle: Arc<crate::auth::Throttle>,
}

/// An ONTAP error body with its status.
struct Failure(RestError);

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

fn error(status: u16, message: &str, code: &str, target: Option<&str>) -> Failure {
    Failure(RestError {
        status,
        message: message.to_string(),
        code: code.to_string(),
        target: target.map(String::from),
    })
}

/// The routes, with authentication in front of all of them.
pub fn router(state: Arc<RestState>) -> Router {
    Router::new()
        .route("/api/protocols/ndmp/sessions", get(list_sessions))
        .route(
            "/api/protocols/ndmp/sessions/{owner}/{id}",
            get(get_session).delete(delete_session),
        )
        .route(
            "/api/openapi.json",
            get(|| async { Json(openapi::document()) }),
        )
        .route("/api/cluster/jobs", get(list_jobs))
        .route("/api/cluster/jobs/{uuid}", get(get_job).patch(patch_job))
        .fallback(|| async { error(404, "API not found", "3", None) })
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state)
}

/// Serves the REST view on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, state: Arc<RestState>, shutdown: CancellationToken) {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let done = async move { shutdown.cancelled().await };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(done)
        .await
    {
        tracing::warn!("REST server stopped: {e}");
    }
}

async fn authenticate(State(s): State<Arc<RestState>>, req: Request, next: Next) -> Response {
    // the router served without connection info (tests, benches) counts as loopback
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0.ip());
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64_decode(b.trim()));
    let (user, ok) = match given.as_deref() {
        None => (None, false),
        Some(cred) => match cred.iter().position(|&b| b == b':') {
            None => (None, false),
            Some(i) => {
                let (user, pass) = (&cred[..i], &cred[i + 1..]);
                // both comparisons for every user: no early exit tells which names exist
                let ok = s.users.iter().fold(false, |found, u| {
                    let name = crate::auth::ct_eq(u.name.as_bytes(), user);
                    let pw = crate::auth::ct_eq(&u.password, pass);
                    found | (name & pw & !u.password.is_empty())
                });
                (Some(String::from_utf8_lossy(user).into_owned()), ok)
            }
        },
    };
    if ok {
        s.throttle.success(peer);
        return next.run(req).await;
    }
    if given.is_some() {
        let delay = s.throttle.failure(peer);
        tracing::warn!(
            user = user.as_deref().unwrap_or("(none)"),
            %peer,
            failures = s.throttle.failures(peer),
            "REST authentication failed"
        );
        tokio::time::sleep(delay).await;
    }
    // the same answer whether the user exists or not
    error(401, "not authorized for that operation", "6", None).into_response()
}

/// RFC 4648 base64 (the standard alphabet, padding optional); None if malformed.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

fn pairs(q: Option<String>) -> Result<Vec<(String, String)>, Failure> {
    match q {
        None => Ok(Vec::new()),
        Some(q) => serde_urlencoded::from_str(&q)
            .map_err(|_| error(400, "malformed query string", "262179", None)),
    }
}

const SESSIONS: &str = "/api/protocols/ndmp/sessions";

async fn list_sessions(State(s): State<Arc<RestState>>, RawQuery(q): RawQuery) -> Response {
    let pairs = match pairs(q) {
        Ok(p) => p,
        Err(f) => return f.into_response(),
    };
    let query = match Query::parse(&pairs, &sessions::SCHEMA) {
        Ok(q) => q,
        Err(e) => return Failure(e).into_response(),
    };
    let mut list = s.registry.list();
    list.sort_by_key(|i| i.id);
    let records: Vec<Value> = list
        .iter()
        .map(|i| sessions::record(i, &s.identity))
        .collect();
    match query.try_collection(records, SESSIONS) {
        Ok(v) => Json(v).into_response(),
        Err(e) => Failure(e).into_response(),
    }
}

/// The session an `{owner}/{id}` path names: the owner is this node's or this SVM's UUID.
fn find(s: &RestState, owner: &str, id: &str) -> Result<u64, Failure> {
    if !is_uuid(owner) {
        return Err(error(
            400,
            &format!("Invalid UUID \"{owner}\"."),
            "68812802",
            Some("owner.uuid"),
        ));
    }
    let gone = || error(404, "entry doesn't exist", "4", Some("session.id"));
    if !owner.eq_ignore_ascii_case(&s.identity.node_uuid)
        && !owner.eq_ignore_ascii_case(&s.identity.svm_uuid)
    {
        return Err(gone());
    }
    let id: u64 = id.parse().map_err(|_| gone())?;
    s.registry.get(id).map(|_| id).ok_or_else(gone)
}

async fn get_session(
    State(s): State<Arc<RestState>>,
    Path((owner, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    let res = (|| {
        let pairs = pairs(q)?;
        let query = Query::parse_single(&pairs, &sessions::SCHEMA).map_err(Failure)?;
        let id = find(&s, &owner, &id)?;
        let info = s
            .registry
            .get(id)
            .ok_or_else(|| error(404, "entry doesn't exist", "4", Some("session.id")))?;
        Ok::<_, Failure>(query.project(&sessions::record(&info, &s.identity)))
    })();
    match res {
        Ok(v) => Json(v).into_response(),
        Err(f) => f.into_response(),
    }
}

/// How long a killed session may take to close its devices before DELETE gives up waiting.
const KILL_WAIT: Duration = Duration::from_secs(30);

async fn delete_session(
    State(s): State<Arc<RestState>>,
    Path((owner, id)): Path<(String, String)>,
) -> Response {
    let id = match find(&s, &owner, &id) {
        Ok(id) => id,
        Err(f) => return f.into_response(),
    };
    tracing::info!(session = id, "killed through the REST view");
    s.registry.kill(id);
    // 200 only once the session is gone: its halts posted, its tape closed, its drive free
    let deadline = tokio::time::Instant::now() + KILL_WAIT;
    while s.registry.get(id).is_some() {
        if tokio::time::Instant::now() >= deadline {
            return error(
                500,
                "the session did not end in time; it is still closing",
                "1",
                Some("session.id"),
            )
            .into_response();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Json(json!({})).into_response()
}

const JOBS: &str = "/api/cluster/jobs";

async fn list_jobs(State(s): State<Arc<RestState>>, RawQuery(q): RawQuery) -> Response {
    let res = (|| {
        let pairs = pairs(q)?;
        let query = Query::parse(&pairs, &jobs::SCHEMA).map_err(Failure)?;
        let records = s
            .registry
            .jobs()
            .iter()
            .map(|j| jobs::record(j, &s.registry))
            .collect();
        query.try_collection(records, JOBS).map_err(Failure)
    })();
    match res {
        Ok(v) => Json(v).into_response(),
        Err(f) => f.into_response(),
    }
}

fn find_job(s: &RestState, uuid: &str) -> Result<crate::registry::JobInfo, Failure> {
    if !is_uuid(uuid) {
        return Err(error(
            400,
            &format!("Invalid UUID \"{uuid}\"."),
            "68812802",
            Some("uuid"),
        ));
    }
    s.registry
        .jobs()
        .into_iter()
        .find(|j| j.uuid.eq_ignore_ascii_case(uuid))
        .ok_or_else(|| error(404, "entry doesn't exist", "4", Some("uuid")))
}

async fn get_job(
    State(s): State<Arc<RestState>>,
    Path(uuid): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let res = (|| {
        let pairs = pairs(q)?;
        let query = Query::parse_single(&pairs, &jobs::SCHEMA).map_err(Failure)?;
        let j = find_job(&s, &uuid)?;
        Ok::<_, Failure>(query.project(&jobs::record(&j, &s.registry)))
    })();
    match res {
        Ok(v) => Json(v).into_response(),
        Err(f) => f.into_response(),
    }
}

/// `PATCH /api/cluster/jobs/{uuid}?action=cancel`: aborts the operation; 200 once the job has
/// ended ("failure", message "Canceled").
async fn patch_job(
    State(s): State<Arc<RestState>>,
    Path(uuid): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let pairs = match pairs(q) {
        Ok(p) => p,
        Err(f) => return f.into_response(),
    };
    if let Some((k, _)) = pairs.iter().find(|(k, _)| k != "action") {
        return error(
            400,
            &format!("Unexpected argument \"{k}\"."),
            "262197",
            Some(k),
        )
        .into_response();
    }
    match pairs
        .iter()
        .find(|(k, _)| k == "action")
        .map(|(_, v)| v.as_str())
    {
        Some("cancel") => {}
        Some(other) => {
            let msg = format!("\"{other}\" is not a valid value for \"action\"; use \"cancel\".");
            return error(400, &msg, "262179", Some("action")).into_response();
        }
        None => {
            return error(
                400,
                "Missing \"action\"; use action=cancel.",
                "262179",
                Some("action"),
            )
            .into_response()
        }
    }
    let job = match find_job(&s, &uuid) {
        Ok(j) => j,
        Err(f) => return f.into_response(),
    };
    if job.state != "running" || !s.registry.job_cancel(&job.uuid) {
        return error(409, "the job is not running", "1", Some("uuid")).into_response();
    }
    let deadline = tokio::time::Instant::now() + KILL_WAIT;
    loop {
        match find_job(&s, &job.uuid) {
            Ok(j) if j.state == "running" => {}
            _ => break,
        }
        if tokio::time::Instant::now() >= deadline {
            return error(500, "the job did not stop in time", "1", Some("uuid")).into_response();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Json(json!({})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64() {
        assert_eq!(base64_decode("bmRtcDpwdw==").unwrap(), b"ndmp:pw");
        assert_eq!(base64_decode("bmRtcDpwdw").unwrap(), b"ndmp:pw");
        assert!(base64_decode("bm!").is_none());
    }
}
