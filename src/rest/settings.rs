//! ONTAP's NDMP settings endpoints over [`crate::settings`]: `/api/protocols/ndmp` (mode),
//! `/api/protocols/ndmp/nodes[/{uuid}]` and `/api/protocols/ndmp/svms[/{uuid}]`.

use super::identity::{is_uuid, Identity};
use super::query::{RestError, Schema};
use super::sessions;
use crate::config::AuthMethod;
use crate::settings::{AuthType, Mode, Settings, Stored};
use serde_json::{json, Map, Value};

/// The mode resource.
pub const PATH: &str = "/api/protocols/ndmp";
/// The node settings collection.
pub const NODES: &str = "/api/protocols/ndmp/nodes";
/// The SVM settings collection.
pub const SVMS: &str = "/api/protocols/ndmp/svms";

/// What `GET /api/protocols/ndmp` may project.
pub const MODE_SCHEMA: Schema<'static> = Schema {
    fields: &["mode"],
    default_fields: &["mode"],
};

/// The fields of a node settings record.
pub const NODE_SCHEMA: Schema<'static> = Schema {
    fields: &[
        "node",
        "node.name",
        "node.uuid",
        "enabled",
        "authentication_types",
        "user",
    ],
    default_fields: &["node"],
};

/// The fields of an SVM settings record.
pub const SVM_SCHEMA: Schema<'static> = Schema {
    fields: &[
        "svm",
        "svm.name",
        "svm.uuid",
        "enabled",
        "authentication_types",
    ],
    default_fields: &["svm"],
};

/// ONTAP's "The UUID is not valid." for a node path that is not a UUID.
pub const BAD_NODE_UUID: (&str, &str) = ("68812802", "The UUID is not valid.");
/// ONTAP's code for a node UUID that names no node (PATCH).
pub const NO_NODE: (&str, &str) = (
    "68812804",
    "Failed to get the node name from the specified node UUID.",
);

/// `GET /api/protocols/ndmp`.
pub fn mode_record(s: &Stored) -> Value {
    json!({"mode": s.mode.as_str(), "_links": {"self": {"href": PATH}}})
}

fn types(settings: &Settings, configured: &[AuthMethod]) -> Vec<&'static str> {
    settings
        .authentication_types(configured)
        .iter()
        .map(|t| t.as_str())
        .collect()
}

/// A node settings record: this node's NDMP service.
pub fn node_record(me: &Identity, settings: &Settings, configured: &[AuthMethod]) -> Value {
    let s = settings.get();
    json!({
        "node": sessions::node(me),
        "enabled": s.enabled,
        "authentication_types": types(settings, configured),
        "user": s.user,
        "_links": {"self": {"href": format!("{NODES}/{}", me.node_uuid)}},
    })
}

/// An SVM settings record: the same service seen from the SVM.
pub fn svm_record(me: &Identity, settings: &Settings, configured: &[AuthMethod]) -> Value {
    let s = settings.get();
    json!({
        "svm": sessions::svm(me),
        "enabled": s.enabled,
        "authentication_types": types(settings, configured),
        "_links": {"self": {"href": format!("{SVMS}/{}", me.svm_uuid)}},
    })
}

/// Checks `{uuid}` of a node path against this node: 400 68812802 when it is no UUID; for
/// another UUID, 404 on GET and 400 68812804 on PATCH, as ONTAP names them.
pub fn check_node(me: &Identity, uuid: &str, patching: bool) -> Result<(), RestError> {
    if !is_uuid(uuid) {
        let (code, msg) = BAD_NODE_UUID;
        return Err(RestError::bad_request(msg, code, Some("node.uuid")).with_arguments(&[uuid]));
    }
    if uuid.eq_ignore_ascii_case(&me.node_uuid) {
        return Ok(());
    }
    if patching {
        let (code, msg) = NO_NODE;
        Err(RestError::bad_request(msg, code, Some("node.uuid")).with_arguments(&[uuid]))
    } else {
        Err(RestError::not_found("entry doesn't exist", Some("node.uuid")).with_arguments(&[uuid]))
    }
}

/// The request body as a JSON object; ONTAP's `_links` in it is ignored.
fn object(body: &[u8]) -> Result<Map<String, Value>, RestError> {
    let text = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    match serde_json::from_slice::<Value>(text) {
        Ok(Value::Object(mut m)) => {
            m.remove("_links");
            Ok(m)
        }
        _ => Err(RestError::invalid_value(
            "body",
            "The request body is not a JSON object.",
        )),
    }
}

fn read_only(field: &str) -> RestError {
    RestError::invalid_value(
        field,
        format!("Field \"{field}\" cannot be set in this operation."),
    )
}

/// The body of `PATCH /api/protocols/ndmp`: `{"mode": "node"|"svm"}`.
pub fn parse_mode(body: &[u8]) -> Result<Option<Mode>, RestError> {
    let m = object(body)?;
    let mut mode = None;
    for (k, v) in &m {
        match k.as_str() {
            "mode" => {
                mode = Some(match v.as_str() {
                    Some("node") => Mode::Node,
                    Some("svm") => Mode::Svm,
                    _ => return Err(RestError::value_not_valid("mode", &value_text(v))),
                })
            }
            other => return Err(RestError::unexpected_argument(other)),
        }
    }
    Ok(mode)
}

fn value_text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

/// What a node PATCH changes: each field given, checked.
#[derive(Debug, Default, PartialEq)]
pub struct NodePatch {
    /// New `enabled`.
    pub enabled: Option<bool>,
    /// New `authentication_types`.
    pub authentication_types: Option<Vec<AuthType>>,
    /// New DMA login name.
    pub user: Option<String>,
    /// New DMA login password.
    pub password: Option<String>,
}

/// Parses and checks the body of `PATCH /api/protocols/ndmp/nodes[/{uuid}]` against the
/// current settings (a password needs a user, a new user needs a password).
pub fn parse_node(body: &[u8], now: &Stored) -> Result<NodePatch, RestError> {
    let m = object(body)?;
    let mut p = NodePatch::default();
    for (k, v) in &m {
        match k.as_str() {
            "enabled" => {
                p.enabled = Some(
                    v.as_bool()
                        .ok_or_else(|| RestError::value_not_valid("enabled", &value_text(v)))?,
                )
            }
            "authentication_types" => p.authentication_types = Some(auth_types(v)?),
            "user" => p.user = Some(name(v)?),
            "password" => match v.as_str() {
                Some(pw) if !pw.is_empty() && pw.len() <= 255 => p.password = Some(pw.into()),
                _ => {
                    return Err(RestError::invalid_value(
                        "password",
                        "The password must be a non-empty string of at most 255 bytes.",
                    ))
                }
            },
            "node" => return Err(read_only("node")),
            other => return Err(RestError::unexpected_argument(other)),
        }
    }
    let same_user = p.user.is_some() && p.user == now.user;
    if p.user.is_some() && p.password.is_none() && !same_user {
        return Err(RestError::invalid_value(
            "password",
            "A new NDMP user needs its password: give \"user\" and \"password\" together.",
        ));
    }
    if p.password.is_some() && p.user.is_none() && now.user.is_none() {
        return Err(RestError::invalid_value(
            "user",
            "No NDMP user is set to take this password: give \"user\" and \"password\" together.",
        ));
    }
    Ok(p)
}

fn name(v: &Value) -> Result<String, RestError> {
    match v.as_str() {
        Some(n)
            if !n.is_empty()
                && n.len() <= 255
                && !n.contains(':')
                && !n.chars().any(char::is_control) =>
        {
            Ok(n.to_string())
        }
        _ => Err(RestError::invalid_value(
            "user",
            "The user must be a non-empty name of at most 255 bytes, without ':' or control \
             characters.",
        )),
    }
}

fn auth_types(v: &Value) -> Result<Vec<AuthType>, RestError> {
    let bad = |what: String| RestError::invalid_value("authentication_types", what);
    let Some(list) = v.as_array() else {
        return Err(bad(
            "authentication_types must be a list: [\"challenge\"], [\"plaintext\"] or both.".into(),
        ));
    };
    if list.is_empty() {
        return Err(bad(
            "authentication_types must name at least one type: no DMA could log in.".into(),
        ));
    }
    let mut out = Vec::new();
    for item in list {
        let t = match item.as_str() {
            Some("plaintext_sso") => {
                return Err(bad(
                    "The authentication type \"plaintext_sso\" is not supported by ndmpd \
                     (\"plaintext\" and \"challenge\" are)."
                        .into(),
                ))
            }
            Some(s) => AuthType::parse(s),
            None => None,
        };
        match t {
            Some(t) if !out.contains(&t) => out.push(t),
            Some(_) => {}
            None => {
                return Err(RestError::value_not_valid(
                    "authentication_types",
                    &value_text(item),
                ))
            }
        }
    }
    Ok(out)
}

/// Applies a checked node PATCH to the settings as one change.
pub fn apply(p: NodePatch, s: &mut Stored) {
    if let Some(e) = p.enabled {
        s.enabled = e;
    }
    if let Some(t) = p.authentication_types {
        s.authentication_types = Some(t);
    }
    if let Some(u) = p.user {
        s.user = Some(u);
    }
    if let Some(pw) = p.password {
        s.password = Some(pw);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_bodies_are_checked_with_the_field_named() {
        let now = Stored::default();
        let ok = parse_node(
            br#"{"enabled": false, "authentication_types": ["challenge", "challenge"]}"#,
            &now,
        )
        .unwrap();
        assert_eq!(ok.enabled, Some(false));
        assert_eq!(ok.authentication_types, Some(vec![AuthType::Challenge]));
        for (body, target) in [
            (r#"{"enabled": "no"}"#, "enabled"),
            (r#"{"authentication_types": []}"#, "authentication_types"),
            (
                r#"{"authentication_types": ["md5"]}"#,
                "authentication_types",
            ),
            (
                r#"{"authentication_types": ["plaintext_sso"]}"#,
                "authentication_types",
            ),
            (r#"{"user": "bob"}"#, "password"),
            (r#"{"password": "x"}"#, "user"),
            (r#"{"user": "a:b", "password": "x"}"#, "user"),
            (r#"{"speed": 3}"#, "speed"),
            (r#"{"node": {}}"#, "node"),
            ("[1]", "body"),
        ] {
            let e = parse_node(body.as_bytes(), &now).unwrap_err();
            assert_eq!(e.status, 400, "{body}");
            assert_eq!(e.target.as_deref(), Some(target), "{body}: {e:?}");
        }
        assert_eq!(parse_mode(br#"{"mode": "svm"}"#).unwrap(), Some(Mode::Svm));
        let e = parse_mode(br#"{"mode": "cluster"}"#).unwrap_err();
        assert_eq!(e.target.as_deref(), Some("mode"));
    }
}
