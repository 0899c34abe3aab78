//! Backup and recover operations as ONTAP `/api/cluster/jobs` records: state, message, code,
//! times and byte progress; finished ones stay for `registry::JOB_KEEP`.

use super::query::Schema;
use crate::registry::{JobInfo, Registry};
use crate::timefmt::iso8601;
use serde_json::{json, Value};

const FIELDS: &[&str] = &[
    "uuid",
    "description",
    "state",
    "message",
    "code",
    "start_time",
    "end_time",
    "session",
    "session.id",
    "progress",
    "progress.bytes",
    "progress.estimated_total",
    "progress.rate",
    "snapshot",
];

/// The fields ndmpd adds to ONTAP's `job`; openapi.json marks them as extensions.
pub const EXTENSIONS: &[&str] = &[
    "session",
    "session.id",
    "progress",
    "progress.bytes",
    "progress.estimated_total",
    "progress.rate",
];

/// The leaves of [`SCHEMA`]: the names a filter may use, for openapi.json.
pub fn filter_names() -> Vec<&'static str> {
    super::sessions::leaves(FIELDS)
}

/// What a record shows without `fields=`: its UUID, as ONTAP does.
pub const SCHEMA: Schema<'static> = Schema {
    fields: FIELDS,
    default_fields: &["uuid"],
};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A running job whose session's mover waits for the DMA (end of tape, window) is "paused".
pub fn record(j: &JobInfo, registry: &Registry) -> Value {
    let paused = j.state == "running"
        && registry
            .get(j.session)
            .is_some_and(|s| s.mover.state == "PAUSED");
    let secs = j
        .end_time
        .unwrap_or_else(now)
        .saturating_sub(j.start_time)
        .max(1);
    json!({
        "uuid": j.uuid,
        "description": j.description,
        "state": if paused { "paused" } else { j.state },
        "message": j.message,
        "code": j.code,
        "start_time": iso8601(j.start_time),
        "end_time": j.end_time.map(iso8601),
        "session": {"id": j.session.to_string()},
        "progress": {
            "bytes": j.bytes,
            "estimated_total": j.estimate,
            "rate": j.bytes / secs,
        },
        "snapshot": j.snapshot,
        "_links": {"self": {"href": format!("/api/cluster/jobs/{}", j.uuid)}},
    })
}
