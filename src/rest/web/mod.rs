//! The operator's web page at `/`: one HTML page, its script and its style sheet, compiled into
//! the binary and served behind the REST login; the page drives everything through the REST API.

use super::{codes, Failure, RestError, RestUser};
use crate::config::RestRole;
use axum::extract::Path;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;

const INDEX: &str = include_str!("index.html");
const APP: &str = include_str!("app.js");
const STYLE: &str = include_str!("style.css");

/// `GET /api/ndmpd/whoami`: who the page is logged in as, so it can disable what a read-only
/// account may not do.
pub const WHOAMI: &str = "/api/ndmpd/whoami";

/// Only this origin: the page loads nothing from elsewhere and talks to nothing else.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn page(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // the binary is the version: a new one must not run an old cached script against its API
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// `GET /`: the page.
pub async fn index() -> Response {
    page(INDEX, "text/html; charset=utf-8")
}

/// `GET /web/{file}`: the page's script and style sheet.
pub async fn asset(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "app.js" => page(APP, "text/javascript; charset=utf-8"),
        "style.css" => page(STYLE, "text/css; charset=utf-8"),
        _ => {
            let (code, msg) = codes::NO_API;
            let path = format!("/web/{file}");
            Failure(RestError::new(404, msg, code, None).with_arguments(&[path.as_str()]))
                .into_response()
        }
    }
}

/// `GET /api/ndmpd/whoami`: `{"user", "role"}` of the request's login.
pub async fn whoami(
    Extension(user): Extension<RestUser>,
    Extension(role): Extension<RestRole>,
) -> Response {
    let role = match role {
        RestRole::Admin => "admin",
        RestRole::Readonly => "readonly",
    };
    Json(json!({"user": user.0, "role": role})).into_response()
}
