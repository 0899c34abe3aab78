//! The operator's web page at `/`: one HTML page, its script and its style sheet, compiled into
//! the binary and served behind the REST login; the page drives everything through the REST API.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("index.html");
const APP: &str = include_str!("app.js");
const STYLE: &str = include_str!("style.css");

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

/// The page's script or style sheet named `file` (`GET /web/{file}`); `None` for any other
/// name, which the router answers with its 404.
pub fn asset(file: &str) -> Option<Response> {
    match file {
        "app.js" => Some(page(APP, "text/javascript; charset=utf-8")),
        "style.css" => Some(page(STYLE, "text/css; charset=utf-8")),
        _ => None,
    }
}
