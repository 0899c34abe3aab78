//! The REST view: ONTAP-shaped sessions, jobs and NDMP settings endpoints over the session
//! registry, over HTTPS (or plain HTTP on loopback), with HTTP basic authentication and roles.

pub mod accounts;
pub mod codes;
pub(crate) mod identity;
pub(crate) mod jobs;
pub mod library;
pub mod npm;
pub mod npm_body;
mod npm_schema;
mod npm_state;
pub mod openapi;
pub mod query;
pub(crate) mod sessions;
pub mod settings;
mod snapshots;
mod state;
pub mod tls;
mod web;

use crate::config::RestRole;
use axum::extract::{ConnectInfo, Path, RawQuery, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
pub use identity::{is_uuid, Identity};
use query::{Query, RestError};
use serde_json::{json, Value};
pub use state::RestState;
use state::{blocking, error, pairs, Failure, RestUser};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The routes, with authentication in front of all of them and ONTAP's response shape
/// (JSON errors for every status, `application/hal+json`) around everything.
pub fn router(state: Arc<RestState>) -> Router {
    let r = Router::new()
        .route(SESSIONS, get(list_sessions))
        .route(
            "/api/protocols/ndmp/sessions/{owner}/{id}",
            get(get_session).delete(delete_session),
        )
        .route(
            "/api/openapi.json",
            get(|| async { Json(openapi::document()) }),
        )
        .route(snapshots::PATH, get(list_snapshots).post(post_snapshot))
        .route(
            "/api/protocols/ndmp/snapshots/{name}",
            delete(delete_snapshot),
        )
        .route(JOBS, get(list_jobs))
        .route(
            "/metrics",
            get(|State(s): State<Arc<RestState>>| {
                crate::metrics::expose::handler(s.registry.clone(), s.identity.clone())
            }),
        )
        .route("/api/cluster/jobs/{uuid}", get(get_job).patch(patch_job))
        .route(settings::PATH, get(get_mode).patch(patch_mode))
        .route(settings::NODES, get(list_nodes).patch(patch_nodes))
        .route(
            "/api/protocols/ndmp/nodes/{uuid}",
            get(get_node_settings).patch(patch_node_settings),
        )
        .route(settings::SVMS, get(list_svms))
        .route("/api/protocols/ndmp/svms/{uuid}", get(get_svm_settings))
        .route("/api/cluster/nodes/{uuid}", get(get_node))
        .route("/api/svm/svms/{uuid}", get(get_svm))
        .route(library::PATH, get(get_library))
        .route(WHOAMI, get(whoami))
        .route("/", get(web::index))
        .route("/web/{file}", get(web_asset));
    npm::routes(r)
        .fallback(unknown_path)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::from_fn(ontap_shape))
        .with_state(state)
}

/// What no route takes. A DELETE under the sessions path that lacks the owner UUID or the
/// session id (`…/sessions/{uuid}`, `…/sessions//7`) is ONTAP's 68812806; anything else 404.
async fn unknown_path(method: Method, uri: Uri) -> Response {
    let under_sessions = uri.path().starts_with(&format!("{SESSIONS}/"));
    if method == Method::DELETE && under_sessions {
        let (code, msg) = codes::MISSING_IDS;
        return error(400, msg, code, Some("session.id")).into_response();
    }
    let (code, msg) = codes::NO_API;
    Failure(RestError::new(404, msg, code, None).with_arguments(&[uri.path()])).into_response()
}

/// Whether the client asked for plain JSON: an Accept naming `application/json` and not
/// `application/hal+json`. Everything else (no Accept, `*/*`, HAL) gets HAL, as ONTAP does.
fn wants_plain_json(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        let a = a.to_ascii_lowercase();
        a.contains("application/json") && !a.contains("application/hal+json")
    })
}

/// ONTAP's response shape around every answer: a status without a JSON body (405 from the
/// router, 400 from a path that does not decode, …) gets an ONTAP error body, and JSON goes
/// out as `application/hal+json` unless the client asked for `application/json`.
async fn ontap_shape(req: Request, next: Next) -> Response {
    let plain = wants_plain_json(
        req.headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok()),
    );
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let mut r = next.run(req).await;
    let is_json = r
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json && (r.status().is_client_error() || r.status().is_server_error()) {
        let status = r.status();
        let allow = r.headers().get(header::ALLOW).cloned();
        let e = if status == StatusCode::METHOD_NOT_ALLOWED {
            RestError::new(
                405,
                format!("The method \"{method}\" is not allowed on \"{path}\"."),
                codes::NO_METHOD,
                None,
            )
            .with_arguments(&[method.as_str(), path.as_str()])
        } else {
            let body = axum::body::to_bytes(std::mem::take(r.body_mut()), 4096)
                .await
                .unwrap_or_default();
            let said = String::from_utf8_lossy(&body).trim().to_string();
            let reason = status.canonical_reason().unwrap_or("error");
            let message = if said.is_empty() {
                reason.to_string()
            } else {
                format!("{reason}: {said}")
            };
            RestError::new(status.as_u16(), message, codes::OTHER, None)
        };
        let mut shaped = Failure(e).into_response();
        if let Some(a) = allow {
            shaped.headers_mut().insert(header::ALLOW, a);
        }
        r = shaped;
    }
    let is_json = r
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json && !plain {
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/hal+json"),
        );
    }
    r
}

/// Serves the REST view on `listener` until `shutdown`: over TLS with `tls`, else plain HTTP.
pub async fn serve_with(
    listener: TcpListener,
    state: Arc<RestState>,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
) {
    match tls {
        Some(config) => tls::serve(listener, router(state), config, shutdown).await,
        None => serve(listener, state, shutdown).await,
    }
}

/// Serves the REST view on `listener` over plain HTTP until `shutdown`.
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

async fn authenticate(State(s): State<Arc<RestState>>, mut req: Request, next: Next) -> Response {
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
    let (user, role) = match given.as_deref() {
        None => (None, None),
        Some(cred) => match cred.iter().position(|&b| b == b':') {
            None => (None, None),
            Some(i) => {
                let (user, pass) = (&cred[..i], &cred[i + 1..]);
                let role = s.accounts.check(user, pass);
                (Some(String::from_utf8_lossy(user).into_owned()), role)
            }
        },
    };
    if let Some(role) = role {
        s.throttle.success(peer);
        let user = user.unwrap_or_default();
        let reads = matches!(*req.method(), Method::GET | Method::HEAD);
        if role == RestRole::Readonly && !reads {
            tracing::warn!(
                user = %user,
                %peer,
                method = %req.method(),
                path = req.uri().path(),
                "REST request refused: the account is read-only"
            );
            let (code, msg) = codes::FORBIDDEN;
            return Failure(
                RestError::new(403, msg, code, None).with_arguments(&[req.method().as_str()]),
            )
            .into_response();
        }
        req.extensions_mut().insert(RestUser(user));
        req.extensions_mut().insert(role);
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
    let (code, msg) = codes::UNAUTHORIZED;
    error(401, msg, code, None).into_response()
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

/// The session an `{owner}/{id}` path names. Under this node's UUID the id is the session
/// number ("7"); under this SVM's UUID it may also take ONTAP's SVM-scope form "A:B", whose
/// halves are the session's number on the node and in the SVM — one number in ndmpd ("7:7").
/// A UUID that is neither is 404 for GET, and ONTAP's 68812804 (node-scope id) or 68812803
/// (SVM-scope id) for DELETE, as the reference names them there.
fn find(s: &RestState, owner: &str, id: &str, deleting: bool) -> Result<u64, Failure> {
    if owner.is_empty() || id.is_empty() {
        let (code, msg) = codes::MISSING_IDS;
        return Err(error(400, msg, code, Some("session.id")));
    }
    if !is_uuid(owner) {
        let (code, msg) = codes::INVALID_UUID;
        return Err(Failure(
            RestError::bad_request(msg, code, Some("owner.uuid")).with_arguments(&[owner]),
        ));
    }
    let gone = || {
        Failure(
            RestError::not_found("entry doesn't exist", Some("session.id"))
                .with_arguments(&[owner, id]),
        )
    };
    let svm_form = id.split_once(':');
    let number = if owner.eq_ignore_ascii_case(&s.identity.node_uuid) {
        id.parse::<u64>().ok()
    } else if owner.eq_ignore_ascii_case(&s.identity.svm_uuid) {
        match svm_form {
            Some((a, b)) if a == b => a.parse::<u64>().ok(),
            Some(_) => None,
            None => id.parse::<u64>().ok(),
        }
    } else if deleting {
        let (code, msg) = if svm_form.is_some() {
            codes::NO_SVM
        } else {
            codes::NO_NODE
        };
        return Err(Failure(
            RestError::bad_request(msg, code, Some("owner.uuid")).with_arguments(&[owner]),
        ));
    } else {
        return Err(Failure(
            RestError::not_found("entry doesn't exist", Some("owner.uuid"))
                .with_arguments(&[owner]),
        ));
    };
    let id = number.ok_or_else(gone)?;
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
        let id = find(&s, &owner, &id, false)?;
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
    let id = match find(&s, &owner, &id, true) {
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
                codes::OTHER,
                Some("session.id"),
            )
            .into_response();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Json(json!({})).into_response()
}

async fn list_snapshots(RawQuery(q): RawQuery) -> Response {
    let res = async {
        let pairs = pairs(q)?;
        let query = Query::parse(&pairs, &snapshots::SCHEMA).map_err(Failure)?;
        let records = blocking(crate::snapshot::operator::list)
            .await?
            .iter()
            .map(snapshots::record)
            .collect();
        query
            .try_collection(records, snapshots::PATH)
            .map_err(Failure)
    }
    .await;
    match res {
        Ok(v) => Json(v).into_response(),
        Err(f) => f.into_response(),
    }
}

/// `POST /api/protocols/ndmp/snapshots {"export", "name"}`: checks the request at once (400,
/// 409), then takes the snapshot as a job: 202 and ONTAP's job link.
async fn post_snapshot(State(s): State<Arc<RestState>>, body: axum::body::Bytes) -> Response {
    let res = async {
        let (export, name) = snapshots::parse_body(&body).map_err(Failure)?;
        let registry = s.registry.clone();
        blocking(move || snapshots::start(&registry, &export, &name))
            .await?
            .map_err(Failure)
    }
    .await;
    match res {
        Ok(uuid) => (
            StatusCode::ACCEPTED,
            Json(json!({"job": {
                "uuid": uuid,
                "_links": {"self": {"href": format!("{JOBS}/{uuid}")}},
            }})),
        )
            .into_response(),
        Err(f) => f.into_response(),
    }
}

/// `DELETE /api/protocols/ndmp/snapshots/{name}`: removes an operator snapshot; 404 for a name
/// ndmpd does not hold, 409 for a backup's snapshot or one a backup reads.
async fn delete_snapshot(State(s): State<Arc<RestState>>, Path(name): Path<String>) -> Response {
    let (registry, n) = (s.registry.clone(), name.clone());
    let res = blocking(move || {
        crate::snapshot::operator::delete(&n, |p| snapshots::in_use(&registry, p))
    })
    .await;
    match res {
        Ok(Ok(_)) => Json(json!({})).into_response(),
        Ok(Err(r)) => Failure(snapshots::refusal(r, &name)).into_response(),
        Err(f) => f.into_response(),
    }
}

const JOBS: &str = "/api/cluster/jobs";

/// `GET /api/ndmpd/library`: drives, slots and cartridges, with the catalog's holdings.
async fn get_library(State(s): State<Arc<RestState>>, RawQuery(q): RawQuery) -> Response {
    let res = async {
        if let Some((k, _)) = pairs(q)?.first() {
            return Err(Failure(RestError::unexpected_argument(k)));
        }
        let Some(lib) = s.library.clone() else {
            let (code, msg) = codes::NO_API;
            return Err(Failure(
                RestError::new(404, msg, code, None).with_arguments(&[library::PATH]),
            ));
        };
        let s = s.clone();
        blocking(move || library::record(&lib, s.catalog.as_ref())).await
    }
    .await;
    match res {
        Ok(v) => Json(v).into_response(),
        Err(f) => f.into_response(),
    }
}

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

/// The job `uuid` names; 404 (ONTAP's "entry doesn't exist") for anything else, well-formed
/// or not, since the jobs reference names no code for a malformed one.
fn find_job(s: &RestState, uuid: &str) -> Result<crate::registry::JobInfo, Failure> {
    s.registry
        .jobs()
        .into_iter()
        .find(|j| is_uuid(uuid) && j.uuid.eq_ignore_ascii_case(uuid))
        .ok_or_else(|| {
            Failure(
                RestError::not_found("entry doesn't exist", Some("uuid")).with_arguments(&[uuid]),
            )
        })
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

/// `PATCH /api/cluster/jobs/{uuid}[?action=pause|resume|cancel]`, as ONTAP answers it. Without
/// `action` nothing changes (200). `cancel` aborts the operation and answers 200 once the job
/// has ended ("failure", message "Canceled"); an ended job is 458762 (HTTP 409). No ndmpd job can be
/// paused or resumed on request (a mover pauses for the DMA, not for an operator): 458783.
async fn patch_job(
    State(s): State<Arc<RestState>>,
    Path(uuid): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    match patch(&s, &uuid, q).await {
        Ok(v) => Json(v).into_response(),
        Err(f) => f.into_response(),
    }
}

async fn patch(s: &RestState, uuid: &str, q: Option<String>) -> Result<Value, Failure> {
    let pairs = pairs(q)?;
    if let Some((k, _)) = pairs.iter().find(|(k, _)| k != "action") {
        return Err(Failure(RestError::unexpected_argument(k)));
    }
    let action = pairs
        .iter()
        .rev()
        .find(|(k, _)| k == "action")
        .map(|(_, v)| v.as_str());
    if let Some(a) = action {
        if !matches!(a, "pause" | "resume" | "cancel") {
            return Err(Failure(RestError::value_not_valid("action", a)));
        }
    }
    let job = find_job(s, uuid)?;
    match action {
        None => return Ok(json!({})),
        Some(a @ ("pause" | "resume")) => {
            let msg = format!("This job does not support {a}.");
            return Err(Failure(
                RestError::bad_request(msg, codes::JOB_NO_PAUSE, Some("action"))
                    .with_arguments(&[a]),
            ));
        }
        Some(_) => {}
    }
    let terminal = || {
        let (code, msg) = codes::JOB_TERMINAL;
        // 409 as before: DMAs (and the soak test) take it to mean "abort it yourself"
        Failure(RestError::new(409, msg, code, Some("uuid")).with_arguments(&[uuid]))
    };
    if job.state != "running" || !s.registry.job_cancel(&job.uuid) {
        return Err(terminal());
    }
    let deadline = tokio::time::Instant::now() + KILL_WAIT;
    loop {
        match find_job(s, &job.uuid) {
            Ok(j) if j.state == "running" => {}
            _ => break,
        }
        if tokio::time::Instant::now() >= deadline {
            let msg = "The job did not stop within 30 s of the cancel; it is still stopping.";
            return Err(error(500, msg, codes::JOB_FAILED, Some("uuid")));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(json!({}))
}

/// `GET /api/cluster/nodes/{uuid}`: this node, the target of records' `node._links`.
async fn get_node(
    State(s): State<Arc<RestState>>,
    Path(uuid): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let me = &s.identity;
    owner_record(q, &uuid, &me.node_uuid, sessions::node(me))
}

/// `GET /api/svm/svms/{uuid}`: this SVM, the target of records' `svm._links`.
async fn get_svm(
    State(s): State<Arc<RestState>>,
    Path(uuid): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let me = &s.identity;
    owner_record(q, &uuid, &me.svm_uuid, sessions::svm(me))
}

fn owner_record(q: Option<String>, asked: &str, mine: &str, record: Value) -> Response {
    let res = (|| {
        let pairs = pairs(q)?;
        let query = Query::parse_single(&pairs, &sessions::OWNER_SCHEMA).map_err(Failure)?;
        if !asked.eq_ignore_ascii_case(mine) {
            return Err(Failure(
                RestError::not_found("entry doesn't exist", Some("uuid")).with_arguments(&[asked]),
            ));
        }
        Ok(query.project(&record))
    })();
    match res {
        Ok(v) => Json(v).into_response(),
        Err(f) => f.into_response(),
    }
}

/// `GET /api/protocols/ndmp`: the NDMP mode.
async fn get_mode(State(s): State<Arc<RestState>>, RawQuery(q): RawQuery) -> Response {
    let res = (|| {
        let pairs = pairs(q)?;
        let query = Query::parse_single(&pairs, &settings::MODE_SCHEMA).map_err(Failure)?;
        Ok::<_, Failure>(query.project(&settings::mode_record(&s.settings.get())))
    })();
    match res {
        Ok(v) => Json(v).into_response(),
        Err(f) => f.into_response(),
    }
}

/// Persists a change of the NDMP settings; a change that cannot be written is a 500 and
/// changes nothing.
fn save(
    s: &RestState,
    who: &RestUser,
    what: &str,
    f: impl FnOnce(&mut crate::settings::Stored),
) -> Result<(), Failure> {
    s.settings.update(f).map_err(|e| {
        let msg = format!("the NDMP settings could not be saved: {e}");
        tracing::error!("{msg}");
        error(500, &msg, codes::OTHER, None)
    })?;
    tracing::info!(user = %who.0, "NDMP settings changed through the REST view: {what}");
    Ok(())
}

/// `PATCH /api/protocols/ndmp {"mode": "node"|"svm"}`: recorded and reported; ndmpd is one
/// node serving one SVM, so sessions answer under both UUIDs in either mode.
async fn patch_mode(
    State(s): State<Arc<RestState>>,
    axum::Extension(who): axum::Extension<RestUser>,
    body: axum::body::Bytes,
) -> Response {
    let res = (|| {
        if let Some(mode) = settings::parse_mode(&body).map_err(Failure)? {
            save(&s, &who, &format!("mode {}", mode.as_str()), |x| {
                x.mode = mode
            })?;
        }
        Ok::<_, Failure>(json!({}))
    })();
    match res {
        Ok(v) => Json(v).into_response(),
        Err(f) => f.into_response(),
    }
}

async fn list_nodes(State(s): State<Arc<RestState>>, RawQuery(q): RawQuery) -> Response {
    let res = (|| {
        let pairs = pairs(q)?;
        let query = Query::parse(&pairs, &settings::NODE_SCHEMA).map_err(Failure)?;
        let records = vec![settings::node_record(
            &s.identity,
            &s.settings,
            &s.auth_methods,
        )];
        query
            .try_collection(records, settings::NODES)
            .map_err(Failure)
    })();
    match res {
        Ok(v) => Json(v).into_response(),
        Err(f) => f.into_response(),
    }
}

async fn get_node_settings(
    State(s): State<Arc<RestState>>,
    Path(uuid): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let res = (|| {
        let pairs = pairs(q)?;
        let query = Query::parse_single(&pairs, &settings::NODE_SCHEMA).map_err(Failure)?;
        settings::check_node(&s.identity, &uuid, false).map_err(Failure)?;
        let record = settings::node_record(&s.identity, &s.settings, &s.auth_methods);
        Ok::<_, Failure>(query.project(&record))
    })();
    match res {
        Ok(v) => Json(v).into_response(),
        Err(f) => f.into_response(),
    }
}

/// `PATCH /api/protocols/ndmp/nodes`: this node is every node there is.
async fn patch_nodes(
    State(s): State<Arc<RestState>>,
    who: axum::Extension<RestUser>,
    RawQuery(q): RawQuery,
    body: axum::body::Bytes,
) -> Response {
    let uuid = s.identity.node_uuid.clone();
    patch_node_settings(State(s), who, Path(uuid), RawQuery(q), body).await
}

/// `PATCH /api/protocols/ndmp/nodes/{uuid}`: `enabled` applies to the next connection,
/// `authentication_types` to the next authentication, `user`/`password` add or replace a DMA
/// login; all persist in the data directory.
async fn patch_node_settings(
    State(s): State<Arc<RestState>>,
    axum::Extension(who): axum::Extension<RestUser>,
    Path(uuid): Path<String>,
    RawQuery(q): RawQuery,
    body: axum::body::Bytes,
) -> Response {
    let res = (|| {
        if let Some((k, _)) = pairs(q)?.first() {
            return Err(Failure(RestError::unexpected_argument(k)));
        }
        settings::check_node(&s.identity, &uuid, true).map_err(Failure)?;
        let p = settings::parse_node(&body, &s.settings.get()).map_err(Failure)?;
        if p != settings::NodePatch::default() {
            let mut what = Vec::new();
            if let Some(e) = p.enabled {
                what.push(format!("enabled {e}"));
            }
            if let Some(t) = &p.authentication_types {
                let t: Vec<&str> = t.iter().map(|t| t.as_str()).collect();
                what.push(format!("authentication_types {}", t.join(",")));
            }
            if let Some(u) = &p.user {
                what.push(format!("user {u}"));
            }
            if p.password.is_some() {
                what.push("password".into());
            }
            save(&s, &who, &what.join(", "), |x| settings::apply(p, x))?;
        }
        Ok::<_, Failure>(json!({}))
    })();
    match res {
        Ok(v) => Json(v).into_response(),
        Err(f) => f.into_response(),
    }
}

async fn list_svms(State(s): State<Arc<RestState>>, RawQuery(q): RawQuery) -> Response {
    let res = (|| {
        let pairs = pairs(q)?;
        let query = Query::parse(&pairs, &settings::SVM_SCHEMA).map_err(Failure)?;
        let records = vec![settings::svm_record(
            &s.identity,
            &s.settings,
            &s.auth_methods,
        )];
        query
            .try_collection(records, settings::SVMS)
            .map_err(Failure)
    })();
    match res {
        Ok(v) => Json(v).into_response(),
        Err(f) => f.into_response(),
    }
}

async fn get_svm_settings(
    State(s): State<Arc<RestState>>,
    Path(uuid): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let res = (|| {
        let pairs = pairs(q)?;
        let query = Query::parse_single(&pairs, &settings::SVM_SCHEMA).map_err(Failure)?;
        if !uuid.eq_ignore_ascii_case(&s.identity.svm_uuid) {
            return Err(Failure(
                RestError::not_found("entry doesn't exist", Some("svm.uuid"))
                    .with_arguments(&[uuid.as_str()]),
            ));
        }
        let record = settings::svm_record(&s.identity, &s.settings, &s.auth_methods);
        Ok(query.project(&record))
    })();
    match res {
        Ok(v) => Json(v).into_response(),
        Err(f) => f.into_response(),
    }
}

/// `GET /api/ndmpd/whoami`: who the page is logged in as, so it can disable what a read-only
/// account may not do.
pub const WHOAMI: &str = "/api/ndmpd/whoami";

/// `GET /api/ndmpd/whoami`: `{"user", "role"}` of the request's login.
async fn whoami(
    axum::Extension(user): axum::Extension<RestUser>,
    axum::Extension(role): axum::Extension<crate::config::RestRole>,
) -> Response {
    let role = match role {
        crate::config::RestRole::Admin => "admin",
        crate::config::RestRole::Readonly => "readonly",
    };
    Json(serde_json::json!({"user": user.0, "role": role})).into_response()
}

/// `GET /web/{file}`: the web page's script and style sheet; any other name is a 404 in the
/// ONTAP shape.
async fn web_asset(Path(file): Path<String>) -> Response {
    web::asset(&file).unwrap_or_else(|| {
        let (code, msg) = codes::NO_API;
        let path = format!("/web/{file}");
        Failure(RestError::new(404, msg, code, None).with_arguments(&[path.as_str()]))
            .into_response()
    })
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

    #[test]
    fn accept_picks_the_media_type() {
        assert!(!wants_plain_json(None));
        assert!(!wants_plain_json(Some("*/*")));
        assert!(!wants_plain_json(Some("application/hal+json")));
        assert!(!wants_plain_json(Some(
            "application/hal+json, application/json"
        )));
        assert!(wants_plain_json(Some("application/json")));
        assert!(wants_plain_json(Some("Application/JSON; q=0.9")));
    }
}
