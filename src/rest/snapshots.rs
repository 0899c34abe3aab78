//! `/api/protocols/ndmp/snapshots`: the operator's named snapshots (taken as a job, listed,
//! removed) and the snapshots running backups hold, in ONTAP's record and error shapes.

use super::query::{RestError, Schema};
use crate::registry::Registry;
use crate::snapshot::operator::{self, Entry, Refused};
use crate::timefmt::iso8601;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// The collection's path.
pub const PATH: &str = "/api/protocols/ndmp/snapshots";

const FIELDS: &[&str] = &["name", "export", "path", "created", "held_by"];

/// Every field shows without `fields=`: a snapshot record is small.
pub const SCHEMA: Schema<'static> = Schema {
    fields: FIELDS,
    default_fields: FIELDS,
};

/// The names a filter may use, for openapi.json.
pub fn filter_names() -> Vec<&'static str> {
    FIELDS.to_vec()
}

/// One snapshot as a record; `created` is left out when the file system does not say.
pub fn record(e: &Entry) -> Value {
    let mut v = json!({
        "name": e.name,
        "export": e.export.display().to_string(),
        "path": e.path.display().to_string(),
        "held_by": e.held_by,
    });
    if let Some(t) = e.created {
        v["created"] = json!(iso8601(t));
    }
    v
}

/// A refusal of the snapshot module as an ONTAP error about its field, naming `value`.
pub fn refusal(r: Refused, value: &str) -> RestError {
    let code = match r.status {
        404 => super::query::CODE_NOT_FOUND,
        400 => super::query::CODE_INVALID_VALUE,
        _ => super::codes::SNAPSHOT_CONFLICT,
    };
    RestError::new(r.status, r.message, code, Some(r.field)).with_arguments(&[value])
}

/// Reads a POST body `{"export": "...", "name": "..."}`.
pub fn parse_body(body: &[u8]) -> Result<(String, String), RestError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        RestError::invalid_value(
            "body",
            format!("the body is not JSON ({e}); send {{\"export\": \"/path\", \"name\": \"snapshot-name\"}}"),
        )
    })?;
    let Some(obj) = v.as_object() else {
        return Err(RestError::invalid_value(
            "body",
            "the body must be a JSON object with \"export\" and \"name\"",
        ));
    };
    if let Some(k) = obj.keys().find(|k| *k != "export" && *k != "name") {
        return Err(RestError::unexpected_argument(k));
    }
    let field = |k: &str| match obj.get(k) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(RestError::invalid_value(
            k,
            format!("\"{k}\" must be a string"),
        )),
        None => Err(RestError::invalid_value(k, format!("\"{k}\" is required"))),
    };
    Ok((field("export")?, field("name")?))
}

/// Checks the request, then takes the snapshot in a job; answers the job's UUID.
pub fn start(registry: &Arc<Registry>, export: &str, name: &str) -> Result<String, RestError> {
    let pending = operator::check(export, name).map_err(|r| {
        let value = if r.field == "export" { export } else { name };
        refusal(r, value)
    })?;
    let uuid = registry.job_start(
        0,
        format!("Operator snapshot {name} of export {export}"),
        Arc::new(AtomicU64::new(0)),
    );
    registry.job_snapshot(&uuid, pending.path().display().to_string());
    let (reg, id) = (registry.clone(), uuid.clone());
    tokio::task::spawn_blocking(move || match operator::create(&pending) {
        Ok(_) => reg.job_end(&id, 0, "success".into()),
        Err(why) => reg.job_end(&id, 1, why),
    });
    Ok(uuid)
}

/// Whether a running backup reads a path inside `snapshot`.
pub fn in_use(registry: &Registry, snapshot: &Path) -> bool {
    registry.list().iter().any(|s| {
        s.data.data_path.as_deref().is_some_and(|p| {
            let p = Path::new(p);
            let p = p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
            p.starts_with(snapshot)
        })
    })
}
