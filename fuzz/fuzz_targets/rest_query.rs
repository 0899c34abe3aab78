//! Fuzz target for the REST query language: a URL query string parsed as the server parses
//! it, against the session and job schemas, then matched, sorted and projected over records.
#![no_main]

use std::collections::BTreeSet;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ndmpd::rest::query::{Query, Schema};
use serde_json::{json, Map, Value};

/// Session records shaped as `rest::sessions::record` builds them (that module is private),
/// with the value kinds a filter meets: nulls, huge counters, odd strings, missing objects.
fn sessions() -> Vec<Value> {
    let node = json!({"name": "node1", "uuid": "0b4f6a52-7d3c-4f0e-9a61-2c1d5e8f9a10"});
    let svm = json!({"name": "svm1", "uuid": "6c2e9d14-1f3b-4a8c-b5d7-3e9f0a1b2c3d"});
    let one = |id: u64, state: &str, bytes: u64, conn: Value, user: Value| {
        json!({
            "id": id.to_string(),
            "uuid": format!("0b4f6a52-7d3c-4f0e-9a61-2c1d5e8f9a10-{id}"),
            "node": node, "svm": svm,
            "client_address": "10.0.0.5", "client_port": 40000 + id,
            "source_address": "::1", "user": user, "auth_type": "md5",
            "start_time": 1_764_000_000 + id, "backup_engine": "dump",
            "data_path": "/srv/data/vol*", "tape_device": format!("vtape{id}"),
            "tape_mode": "read_write",
            "data": {
                "state": state, "operation": "backup", "reason": "na",
                "bytes_processed": bytes, "connection": conn,
            },
            "mover": {
                "state": "paused", "mode": "read", "reason": "end_of_media",
                "bytes_moved": bytes / 2, "record_size": 65536,
                "connection": {"type": "local"},
            },
            "scsi": {"device_id": null, "host_adapter": 0, "target_id": 1, "lun_id": 2},
            "_links": {"self": {"href": format!("/api/protocols/ndmp/sessions/x/{id}")}},
        })
    };
    let tcp = json!({"type": "tcp", "address": "10.0.0.9", "port": 40312});
    vec![
        one(1, "active", u64::MAX, tcp, json!("ndmp")),
        one(2, "idle", 0, Value::Null, Value::Null),
        one(
            3,
            "halted",
            1 << 53,
            json!({"type": "tcp", "address": "fe80::1"}),
            json!("Ä|*"),
        ),
    ]
}

/// Job records shaped as `rest::jobs::record` builds them.
fn jobs() -> Vec<Value> {
    let one = |uuid: &str, state: &str, end: Value, bytes: u64| {
        json!({
            "uuid": uuid, "description": "backup of /srv", "state": state,
            "message": "", "code": 0, "start_time": "2026-11-23T10:00:00Z", "end_time": end,
            "session": {"id": "7"},
            "progress": {"bytes": bytes, "estimated_total": null, "rate": bytes / 3},
            "_links": {"self": {"href": format!("/api/cluster/jobs/{uuid}")}},
        })
    };
    vec![
        one(
            "5a0e2c4d-0000-4000-8000-000000000001",
            "running",
            Value::Null,
            1 << 40,
        ),
        one(
            "5a0e2c4d-0000-4000-8000-000000000002",
            "success",
            json!("2026-11-23T11:00:00Z"),
            0,
        ),
    ]
}

/// Every dotted path in `records` but `_links`, objects included, as the schemas list them.
fn fields(records: &[Value]) -> Vec<String> {
    fn walk(prefix: &str, v: &Map<String, Value>, out: &mut BTreeSet<String>) {
        for (k, child) in v {
            if k == "_links" {
                continue;
            }
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            if let Value::Object(m) = child {
                walk(&path, m, out);
            }
            out.insert(path);
        }
    }
    let mut out = BTreeSet::new();
    for r in records {
        if let Value::Object(m) = r {
            walk("", m, &mut out);
        }
    }
    out.into_iter().collect()
}

/// The schema of `records`, built once and kept for the process.
fn schema(
    cell: &'static OnceLock<Vec<&'static str>>,
    records: &[Value],
    default_fields: &'static [&'static str],
) -> Schema<'static> {
    let list = cell.get_or_init(|| {
        fields(records)
            .into_iter()
            .map(|f| &*Box::leak(f.into_boxed_str()))
            .collect()
    });
    Schema {
        fields: list,
        default_fields,
    }
}

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

fn run(pairs: &[(String, String)], schema: &Schema, records: Vec<Value>) {
    if let Ok(q) = Query::parse(pairs, schema) {
        let total = records.len() as u64;
        let loose = q.collection(records.clone(), "/api/x");
        if let Ok(v) = q.try_collection(records.clone(), "/api/x") {
            assert_eq!(v, loose, "try_collection and collection differ");
            let n = v["num_records"].as_u64().expect("num_records");
            assert!(n <= total, "{n} records out of {total}");
            if let Some(list) = v["records"].as_array() {
                assert_eq!(list.len() as u64, n, "num_records is not the page size");
            }
        }
    }
    if let Ok(q) = Query::parse_single(pairs, schema) {
        for r in &records {
            let shown = q.project(r);
            assert!(
                keys(&shown).is_subset(&keys(r)),
                "projection invented fields"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // The raw query string, then (optionally, after a newline) one more record as JSON.
    let (query, extra) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let Ok(query) = std::str::from_utf8(query) else {
        return;
    };
    // As the server decodes `RawQuery`.
    let Ok(pairs) = serde_urlencoded::from_str::<Vec<(String, String)>>(query) else {
        return;
    };
    let extra = extra
        .and_then(|e| serde_json::from_slice::<Value>(e).ok())
        .filter(Value::is_object);

    static SESSIONS: OnceLock<Vec<&'static str>> = OnceLock::new();
    static JOBS: OnceLock<Vec<&'static str>> = OnceLock::new();
    let mut s = sessions();
    let mut j = jobs();
    let ss = schema(&SESSIONS, &s, &["id", "node"]);
    let js = schema(&JOBS, &j, &["uuid"]);
    if let Some(e) = extra {
        s.push(e.clone());
        j.push(e);
    }
    run(&pairs, &ss, s);
    run(&pairs, &js, j);
});
