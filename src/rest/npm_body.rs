//! The request bodies of the npm.backup resources: servers, scheduled backups and restores,
//! checked field by field into what the catalog stores, every refusal in words (HTTP 400).

use super::query::RestError;
use serde_json::{Map, Value};
use std::path::PathBuf;

/// A 400 about `field`, ONTAP's invalid-value code, the message in words.
pub fn invalid(field: &str, message: impl Into<String>) -> RestError {
    RestError::invalid_value(field, message)
}

/// The body as a JSON object, or a 400 saying what was expected.
pub fn object(body: &[u8], what: &str) -> Result<Map<String, Value>, RestError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| invalid("body", format!("the body is not JSON ({e}); send {what}")))?;
    match v {
        Value::Object(o) => Ok(o),
        _ => Err(invalid(
            "body",
            format!("the body must be a JSON object: {what}"),
        )),
    }
}

/// Refuses keys outside `known` (ONTAP's unexpected argument).
fn only(o: &Map<String, Value>, known: &[&str]) -> Result<(), RestError> {
    match o.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(RestError::unexpected_argument(k)),
        None => Ok(()),
    }
}

fn string(o: &Map<String, Value>, k: &str) -> Result<Option<String>, RestError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(invalid(k, format!("{k} must be a string, not {v}"))),
    }
}

fn integer(o: &Map<String, Value>, k: &str, lo: i64, hi: i64) -> Result<Option<i64>, RestError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(v) if (lo..=hi).contains(&v) => Ok(Some(v)),
            _ => Err(invalid(k, format!("{k} {n} is out of range {lo}-{hi}"))),
        },
        Some(v) => Err(invalid(k, format!("{k} must be an integer, not {v}"))),
    }
}

fn boolean(o: &Map<String, Value>, k: &str) -> Result<Option<bool>, RestError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(invalid(k, format!("{k} must be true or false, not {v}"))),
    }
}

/// A name: 1 to 64 characters, no control characters.
fn name_ok(k: &str, s: &str) -> Result<(), RestError> {
    if s.trim().is_empty() {
        return Err(invalid(k, format!("{k} must not be empty")));
    }
    if s.chars().count() > 64 || s.chars().any(char::is_control) {
        return Err(invalid(
            k,
            format!("{k} must be at most 64 characters without control characters"),
        ));
    }
    Ok(())
}

/// A backup server (filer) as a request describes it, whole after a PATCH is applied.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerBody {
    /// Unique name.
    pub name: String,
    /// Free text.
    pub desc: String,
    /// Host name or address of its NDMP service.
    pub host: String,
    /// Its NDMP port.
    pub port: u16,
    /// The path backed up there.
    pub path: String,
    /// The NDMP login.
    pub user: String,
    /// "dump" or "tar".
    pub butype: String,
    /// A password to store (write-only); it goes to a file under the data directory.
    pub password: Option<String>,
    /// Or a file holding the password, kept where it is.
    pub password_file: Option<PathBuf>,
}

const SERVER_KEYS: &[&str] = &[
    "name",
    "desc",
    "host",
    "port",
    "path",
    "user",
    "butype",
    "password",
    "password_file",
    // read-only fields a client may send back unchanged
    "id",
    "source",
    "public_key",
    "new_private_key",
];

/// The server `body` describes; `base` is the stored one a PATCH changes (None for a POST,
/// where name, host, port, path and user are required).
pub fn server(body: &[u8], base: Option<&ServerBody>) -> Result<ServerBody, RestError> {
    let o = object(
        body,
        "{\"name\", \"desc\", \"host\", \"port\", \"path\", \"user\", \"butype\", \"password\"}",
    )?;
    only(&o, SERVER_KEYS)?;
    if string(&o, "new_private_key")?.is_some_and(|k| !k.is_empty()) {
        return Err(invalid(
            "new_private_key",
            "ndmpd logs in to NDMP servers with user and password, not keys: give password or password_file",
        ));
    }
    let mut s = base.cloned().unwrap_or_else(|| ServerBody {
        butype: "dump".into(),
        ..Default::default()
    });
    let posting = base.is_none();
    let required = |k: &str| invalid(k, format!("{k} is required"));
    for (k, slot) in [
        ("name", &mut s.name),
        ("host", &mut s.host),
        ("path", &mut s.path),
        ("user", &mut s.user),
    ] {
        match string(&o, k)? {
            Some(v) => *slot = v,
            None if posting => return Err(required(k)),
            None => {}
        }
    }
    if let Some(d) = string(&o, "desc")? {
        s.desc = d;
    }
    match integer(&o, "port", 1, 65535)? {
        Some(p) => s.port = p as u16,
        None if posting => return Err(required("port")),
        None => {}
    }
    if let Some(b) = string(&o, "butype")? {
        s.butype = b;
    }
    name_ok("name", &s.name)?;
    if s.host.trim().is_empty() || s.host.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(invalid(
            "host",
            format!(
                "host \"{}\" is not a host name or address (no spaces or slashes)",
                s.host
            ),
        ));
    }
    if !s.path.starts_with('/') {
        return Err(invalid(
            "path",
            format!("path \"{}\" must be absolute (start with /)", s.path),
        ));
    }
    if s.user.is_empty() || s.user.chars().any(char::is_control) {
        return Err(invalid("user", "user must not be empty"));
    }
    if !matches!(s.butype.as_str(), "dump" | "tar") {
        return Err(invalid(
            "butype",
            format!("butype \"{}\" must be dump or tar", s.butype),
        ));
    }
    let password = string(&o, "password")?;
    let file = string(&o, "password_file")?;
    if password.is_some() && file.is_some() {
        return Err(invalid(
            "password",
            "give password or password_file, not both",
        ));
    }
    if let Some(p) = password {
        if p.is_empty() || p.contains('\n') {
            return Err(invalid(
                "password",
                "password must not be empty or hold a line break",
            ));
        }
        s.password = Some(p);
        s.password_file = None;
    }
    if let Some(f) = file {
        let f = PathBuf::from(f);
        if !f.is_absolute() {
            return Err(invalid(
                "password_file",
                format!("password_file {} must be an absolute path", f.display()),
            ));
        }
        if let Err(e) = std::fs::metadata(&f) {
            return Err(invalid(
                "password_file",
                format!("password_file {} cannot be read: {e}", f.display()),
            ));
        }
        s.password = None;
        s.password_file = Some(f);
    }
    Ok(s)
}

/// How a request gave the recurrence rule.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleGiven {
    /// The seed's `recurrence_rule` object.
    Object(Value),
    /// RFC 5545 text (`FREQ=DAILY;BYHOUR=1`).
    Text(String),
}

/// A scheduled backup as a request describes it, whole after a PATCH is applied. The rule is
/// RFC 5545 text, checked by the scheduler's parser.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScheduleBody {
    /// Name.
    pub name: String,
    /// Free text.
    pub desc: String,
    /// Whether it runs.
    pub active: bool,
    /// Completed backups kept, 1-9999.
    pub retention: u32,
    /// Retries of a failed run, 0-9999.
    pub retry_attempts: u32,
    /// Seconds between retries (the seed's minutes times 60).
    pub retry_delay_secs: u64,
    /// RFC 5545 RRULE text.
    pub rrule: String,
    /// The backup server (filer) it backs up.
    pub server_id: i64,
    /// Dump level.
    pub level: u32,
}

const SCHEDULE_KEYS: &[&str] = &[
    "name",
    "desc",
    "active",
    "retention",
    "retry_attempts",
    "retry_delay",
    "rrule",
    "server_id",
    "contents",
    "level",
    // read-only fields a client may send back unchanged
    "id",
    "last_backup",
    "next_backup",
    "rrule_text",
    "source",
];

/// The scheduled backup `body` describes; `base` is the stored one a PATCH changes (None for
/// a POST, where name, retention, rrule and server_id are required). `rule` turns the given
/// rule into checked RFC 5545 text, or says in words what is wrong.
pub fn schedule(
    body: &[u8],
    base: Option<&ScheduleBody>,
    rule: impl Fn(&RuleGiven) -> Result<String, String>,
) -> Result<ScheduleBody, RestError> {
    let o = object(
        body,
        "{\"name\", \"desc\", \"active\", \"retention\", \"retry_attempts\", \"retry_delay\", \"rrule\", \"server_id\", \"contents\"}",
    )?;
    only(&o, SCHEDULE_KEYS)?;
    let posting = base.is_none();
    let mut s = base.cloned().unwrap_or(ScheduleBody {
        active: true,
        ..Default::default()
    });
    let required = |k: &str| invalid(k, format!("{k} is required"));
    match string(&o, "name")? {
        Some(n) => s.name = n,
        None if posting => return Err(required("name")),
        None => {}
    }
    name_ok("name", &s.name)?;
    if let Some(d) = string(&o, "desc")? {
        s.desc = d;
    }
    if let Some(a) = boolean(&o, "active")? {
        s.active = a;
    }
    match integer(&o, "retention", 1, 9999)? {
        Some(r) => s.retention = r as u32,
        None if posting => return Err(required("retention")),
        None => {}
    }
    if let Some(r) = integer(&o, "retry_attempts", 0, 9999)? {
        s.retry_attempts = r as u32;
    }
    if let Some(r) = integer(&o, "retry_delay", 0, 9999)? {
        s.retry_delay_secs = r as u64 * 60;
    }
    if let Some(l) = integer(&o, "level", 0, 9)? {
        s.level = l as u32;
    }
    match integer(&o, "server_id", 1, i64::MAX)? {
        Some(id) => s.server_id = id,
        None if posting => return Err(required("server_id")),
        None => {}
    }
    if let Some(c) = o.get("contents").filter(|c| !c.is_null()) {
        contents(c)?;
    }
    let given = match o.get("rrule") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => Some(RuleGiven::Text(t.clone())),
        Some(v @ Value::Object(_)) => Some(RuleGiven::Object(v.clone())),
        Some(v) => {
            return Err(invalid(
                "rrule",
                format!("rrule must be a recurrence_rule object or RFC 5545 text, not {v}"),
            ))
        }
    };
    match given {
        Some(g) => s.rrule = rule(&g).map_err(|why| invalid("rrule", format!("rrule: {why}")))?,
        None if posting => return Err(required("rrule")),
        None => {}
    }
    Ok(s)
}

/// Checks a `content_info` a client sent: ndmpd backs up file systems, never configuration
/// only; what is backed up is the server's path with its butype.
fn contents(c: &Value) -> Result<(), RestError> {
    let Some(o) = c.as_object() else {
        return Err(invalid(
            "contents",
            "contents must be an object {\"config_only\": false}",
        ));
    };
    if let Some(k) = o.keys().find(|k| *k != "config_only" && *k != "modules") {
        return Err(RestError::unexpected_argument(&format!("contents.{k}")));
    }
    match o.get("config_only") {
        None | Some(Value::Bool(false)) => Ok(()),
        Some(Value::Bool(true)) => Err(invalid(
            "contents.config_only",
            "ndmpd backs up the server's path, never configuration only: config_only must be false",
        )),
        Some(v) => Err(invalid(
            "contents.config_only",
            format!("contents.config_only must be true or false, not {v}"),
        )),
    }
}

/// A restore request: the paths (none: the whole backup) and where to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreBody {
    /// Paths inside the backup, as its file history names them.
    pub paths: Vec<String>,
    /// The directory on the backup's DATA server to restore into.
    pub destination: String,
}

/// Reads `{"paths": [...], "destination": "/dir"}`.
pub fn restore(body: &[u8]) -> Result<RestoreBody, RestError> {
    let o = object(
        body,
        "{\"paths\": [\"dir/file\"], \"destination\": \"/dir\"}",
    )?;
    only(&o, &["paths", "destination", "contents"])?;
    let destination = string(&o, "destination")?
        .ok_or_else(|| invalid("destination", "destination is required"))?;
    if !destination.starts_with('/') {
        return Err(invalid(
            "destination",
            format!("destination \"{destination}\" must be an absolute path"),
        ));
    }
    let paths = match o.get("paths") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|p| match p {
                Value::String(s) if !s.is_empty() && !s.split('/').any(|c| c == "..") => {
                    Ok(s.clone())
                }
                v => Err(invalid(
                    "paths",
                    format!("each path must be a non-empty string without \"..\", not {v}"),
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(v) => {
            return Err(invalid(
                "paths",
                format!("paths must be an array of strings, not {v}"),
            ))
        }
    };
    Ok(RestoreBody { paths, destination })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(g: &RuleGiven) -> Result<String, String> {
        match g {
            RuleGiven::Text(t) if t.starts_with("FREQ=") => Ok(t.clone()),
            RuleGiven::Text(t) => Err(format!("{t} has no FREQ")),
            RuleGiven::Object(_) => Ok("FREQ=DAILY".into()),
        }
    }

    #[test]
    fn server_post_needs_fields_and_checks_them() {
        let e = server(br#"{"name":"f"}"#, None).unwrap_err();
        assert_eq!(e.body()["error"]["message"], "host is required");
        let ok =
            br#"{"name":"f","host":"h","port":10000,"path":"/srv","user":"u","password":"pw"}"#;
        let s = server(ok, None).unwrap();
        assert_eq!((s.port, s.butype.as_str()), (10000, "dump"));
        assert_eq!(s.password.as_deref(), Some("pw"));
        let e = server(
            br#"{"name":"f","host":"h","port":70000,"path":"/srv","user":"u"}"#,
            None,
        )
        .unwrap_err();
        assert_eq!(
            e.body()["error"]["message"],
            "port 70000 is out of range 1-65535"
        );
        let e = server(br#"{"path":"srv"}"#, Some(&s)).unwrap_err();
        assert!(e.message.contains("must be absolute"), "{}", e.message);
        let e = server(br#"{"butype":"cpio"}"#, Some(&s)).unwrap_err();
        assert!(e.message.contains("dump or tar"), "{}", e.message);
        let e = server(br#"{"colour":"red"}"#, Some(&s)).unwrap_err();
        assert_eq!(e.code, super::super::query::CODE_UNEXPECTED_ARGUMENT);
    }

    #[test]
    fn schedule_post_checks_retention_and_rule() {
        let e = schedule(
            br#"{"name":"n","retention":0,"rrule":"FREQ=DAILY","server_id":1}"#,
            None,
            text,
        )
        .unwrap_err();
        assert_eq!(e.message, "retention 0 is out of range 1-9999");
        let e = schedule(
            br#"{"name":"n","retention":2,"rrule":"DAILY","server_id":1}"#,
            None,
            text,
        )
        .unwrap_err();
        assert_eq!(e.message, "rrule: DAILY has no FREQ");
        let s = schedule(
            br#"{"name":"n","retention":2,"rrule":{"freq":"DAILY"},"server_id":1,"retry_delay":3,"contents":{"config_only":false}}"#,
            None,
            text,
        )
        .unwrap();
        assert_eq!(
            (s.rrule.as_str(), s.retry_delay_secs, s.active),
            ("FREQ=DAILY", 180, true)
        );
        let e = schedule(br#"{"contents":{"config_only":true}}"#, Some(&s), text).unwrap_err();
        assert!(e.message.contains("config_only must be false"));
    }

    #[test]
    fn restore_body() {
        let r = restore(br#"{"destination":"/tmp/x"}"#).unwrap();
        assert!(r.paths.is_empty());
        assert!(restore(br#"{"paths":["../etc"],"destination":"/x"}"#).is_err());
        assert!(restore(br#"{"paths":["a"],"destination":"x"}"#).is_err());
    }
}
