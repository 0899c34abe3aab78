//! `GET /metrics` in the Prometheus text exposition format (0.0.4): NetApp Harvest's
//! `ndmp_session_*` series per session, and ndmpd's own `ndmpd_*` series.
//!
//! The exposition is written here rather than with a client crate: most series (sessions,
//! jobs, snapshots) are read from the registry at scrape time with label sets that come and go
//! with the sessions, which a client library's registry of pre-declared metrics does not model
//! without a custom collector, and what is left (a few counters, one histogram kind) is a
//! handful of atomics. The format itself is small and fixed; [`Exposition`] is its writer.

use super::{drives, DriveStats, Histogram, BOUNDS};
use super::{AUTH_FAILURES, FH_POSTED, FH_QUEUED, UNAUTHENTICATED};
use crate::registry::Registry;
use crate::rest::identity::Identity;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The media type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What kind of series a family is (`# TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (names end in `_total`).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Cumulative buckets, `_sum` and `_count`.
    Histogram,
}

/// A text exposition being written: families, each a `# HELP` and `# TYPE` line and its samples.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

/// A label value as the format quotes it: backslash, double quote and newline escaped.
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// HELP text as the format takes it: backslash and newline escaped.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts the family `name`; its samples follow.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample line: `name{labels} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// The samples of histogram `name` with `labels`: cumulative buckets, `+Inf`, sum, count.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) {
        let (buckets, count, sum) = h.read();
        let bucket = format!("{name}_bucket");
        for (bound, n) in BOUNDS.iter().zip(buckets) {
            let le = bound.to_string();
            let mut l = labels.to_vec();
            l.push(("le", &le));
            self.sample(&bucket, &l, n);
        }
        let mut l = labels.to_vec();
        l.push(("le", "+Inf"));
        self.sample(&bucket, &l, count);
        self.sample(&format!("{name}_sum"), labels, sum);
        self.sample(&format!("{name}_count"), labels, count);
    }

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }
}

/// The value at `path` ("a.b") in a REST record; null where it is missing.
fn at<'a>(v: &'a serde_json::Value, path: &str) -> &'a serde_json::Value {
    path.split('.').fold(v, |v, k| &v[k])
}

/// The string at `path` ("a.b") in a REST record; "" where it is missing or null.
fn text(v: &serde_json::Value, path: &str) -> String {
    match at(v, path) {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Harvest's labels of an `ndmp_session` instance, from the REST record it reads them from
/// (conf/rest/9.7.0/ndmp_sessions.yaml: `data.operation` becomes `operation`, `mover.mode`
/// becomes `mode`, `node.name` and `svm.name` become `node` and `svm`).
const SESSION_LABELS: [(&str, &str); 12] = [
    ("uuid", "uuid"),
    ("backup_engine", "backup_engine"),
    ("client_address", "client_address"),
    ("client_port", "client_port"),
    ("operation", "data.operation"),
    ("data_path", "data_path"),
    ("mode", "mover.mode"),
    ("node", "node.name"),
    ("source_address", "source_address"),
    ("svm", "svm.name"),
    ("tape_device", "tape_device"),
    ("tape_mode", "tape_mode"),
];

/// The DATA and MOVER states as the REST view names them: every one is shown, zeros included.
const DATA_STATES: [&str; 5] = ["idle", "listen", "connected", "active", "halted"];
const MOVER_STATES: [&str; 6] = ["idle", "listen", "connected", "active", "paused", "halted"];
const JOB_STATES: [&str; 4] = ["running", "paused", "success", "failure"];

/// Counts of `values`, every name of `known` present (zero when absent), others after.
fn tally(known: &[&str], values: impl Iterator<Item = String>) -> Vec<(String, u64)> {
    let mut t: Vec<(String, u64)> = known.iter().map(|k| (k.to_string(), 0)).collect();
    for v in values {
        match t.iter_mut().find(|(k, _)| *k == v) {
            Some((_, n)) => *n += 1,
            None => t.push((v, 1)),
        }
    }
    t
}

/// Snapshots held now: (by running backups, by the operator).
fn snapshots_held() -> (u64, u64) {
    let all = crate::snapshot::operator::list();
    let operator = all.iter().filter(|e| e.held_by == "operator").count() as u64;
    (all.len() as u64 - operator, operator)
}

/// The whole exposition: the sessions and jobs of `registry`, owned by node and SVM `me`, and
/// the process-wide counters.
pub fn render(registry: &Registry, me: &Identity) -> String {
    let mut e = Exposition::new();
    let mut sessions = registry.list();
    sessions.sort_by_key(|i| i.id);
    let records: Vec<serde_json::Value> = sessions
        .iter()
        .map(|i| crate::rest::sessions::record(i, me))
        .collect();

    for (name, field, help) in [
        (
            "ndmp_session_data_bytes_processed",
            "data.bytes_processed",
            "Bytes the session's DATA server has processed (NetApp Harvest's ndmp_session).",
        ),
        (
            "ndmp_session_mover_bytes_moved",
            "mover.bytes_moved",
            "Bytes the session's MOVER has moved (NetApp Harvest's ndmp_session).",
        ),
    ] {
        e.family(name, Kind::Gauge, help);
        for r in &records {
            let values: Vec<String> = SESSION_LABELS.iter().map(|(_, f)| text(r, f)).collect();
            let labels: Vec<(&str, &str)> = SESSION_LABELS
                .iter()
                .zip(&values)
                .map(|((l, _), v)| (*l, v.as_str()))
                .collect();
            e.sample(name, &labels, at(r, field).as_u64().unwrap_or(0));
        }
    }

    e.family(
        "ndmpd_sessions_data",
        Kind::Gauge,
        "Sessions by the state of their DATA server.",
    );
    for (state, n) in tally(&DATA_STATES, records.iter().map(|r| text(r, "data.state"))) {
        e.sample("ndmpd_sessions_data", &[("state", &state)], n);
    }
    e.family(
        "ndmpd_sessions_mover",
        Kind::Gauge,
        "Sessions by the state of their MOVER.",
    );
    for (state, n) in tally(
        &MOVER_STATES,
        records.iter().map(|r| text(r, "mover.state")),
    ) {
        e.sample("ndmpd_sessions_mover", &[("state", &state)], n);
    }
    e.family(
        "ndmpd_connections_unauthenticated",
        Kind::Gauge,
        "NDMP connections accepted and waiting to authenticate.",
    );
    let waiting = UNAUTHENTICATED.load(Ordering::Relaxed).max(0);
    e.sample("ndmpd_connections_unauthenticated", &[], waiting);
    e.family(
        "ndmpd_auth_failures_total",
        Kind::Counter,
        "Failed authentications, NDMP and REST.",
    );
    let failures = AUTH_FAILURES.load(Ordering::Relaxed);
    e.sample("ndmpd_auth_failures_total", &[], failures);

    let drives: Vec<(String, Arc<DriveStats>)> = drives()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    e.family(
        "ndmpd_tape_written_bytes_total",
        Kind::Counter,
        "Bytes written to tape records, per drive.",
    );
    for (d, st) in &drives {
        let n = st.written.load(Ordering::Relaxed);
        e.sample("ndmpd_tape_written_bytes_total", &[("drive", d)], n);
    }
    e.family(
        "ndmpd_tape_read_bytes_total",
        Kind::Counter,
        "Bytes read from tape records, per drive.",
    );
    for (d, st) in &drives {
        let n = st.read.load(Ordering::Relaxed);
        e.sample("ndmpd_tape_read_bytes_total", &[("drive", d)], n);
    }
    e.family(
        "ndmpd_tape_record_write_seconds",
        Kind::Histogram,
        "Time to write one tape record, per drive.",
    );
    for (d, st) in &drives {
        e.histogram(
            "ndmpd_tape_record_write_seconds",
            &[("drive", d)],
            &st.write_latency,
        );
    }

    e.family(
        "ndmpd_file_history_posted_total",
        Kind::Counter,
        "File-history entries (files, directories, nodes) posted to DMAs.",
    );
    let posted = FH_POSTED.load(Ordering::Relaxed);
    e.sample("ndmpd_file_history_posted_total", &[], posted);
    e.family(
        "ndmpd_file_history_queued",
        Kind::Gauge,
        "File-history entries produced by backups and waiting to be posted.",
    );
    let queued = FH_QUEUED.load(Ordering::Relaxed).max(0);
    e.sample("ndmpd_file_history_queued", &[], queued);

    e.family(
        "ndmpd_jobs",
        Kind::Gauge,
        "Backup and recover jobs kept by the REST view, by state.",
    );
    let jobs: Vec<String> = registry
        .jobs()
        .iter()
        .map(|j| text(&crate::rest::jobs::record(j, registry), "state"))
        .collect();
    for (state, n) in tally(&JOB_STATES, jobs.into_iter()) {
        e.sample("ndmpd_jobs", &[("state", &state)], n);
    }

    e.family(
        "ndmpd_snapshots_held",
        Kind::Gauge,
        "Snapshots ndmpd holds, by who holds them.",
    );
    let (backup, operator) = snapshots_held();
    e.sample("ndmpd_snapshots_held", &[("held_by", "backup")], backup);
    e.sample("ndmpd_snapshots_held", &[("held_by", "operator")], operator);

    e.family(
        "ndmpd_build_info",
        Kind::Gauge,
        "Always 1; the labels say which ndmpd this is.",
    );
    e.sample(
        "ndmpd_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    e.finish()
}

/// `GET /metrics`: the exposition, built off the async threads (the snapshot count reads the
/// exports' snapshot directories).
pub async fn handler(registry: Arc<Registry>, me: Identity) -> Response {
    match tokio::task::spawn_blocking(move || render(&registry, &me)).await {
        Ok(body) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the metrics could not be gathered: {e}"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn label_values_are_escaped() {
        let mut e = Exposition::new();
        e.family("x_bytes", Kind::Gauge, "a \\ help\nline");
        e.sample(
            "x_bytes",
            &[("data_path", "/srv/a \"b\"\\c\nd"), ("n", "1")],
            7,
        );
        assert_eq!(
            e.finish(),
            "# HELP x_bytes a \\\\ help\\nline\n\
             # TYPE x_bytes gauge\n\
             x_bytes{data_path=\"/srv/a \\\"b\\\"\\\\c\\nd\",n=\"1\"} 7\n"
        );
        assert_eq!(escape_label("plain/ü"), "plain/ü");
    }

    #[test]
    fn histograms_are_cumulative_and_agree() {
        let h = Histogram::default();
        h.observe_n(Duration::from_micros(5), 3);
        h.observe_n(Duration::from_millis(2), 1);
        h.observe_n(Duration::from_secs(60), 1);
        let mut e = Exposition::new();
        e.histogram("w_seconds", &[("drive", "d")], &h);
        let text = e.finish();
        let line = |le: &str| {
            let head = format!("w_seconds_bucket{{drive=\"d\",le=\"{le}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(head.as_str()))
                .unwrap_or_else(|| panic!("no bucket {le} in {text}"))
                .to_string()
        };
        assert_eq!(line("0.00001"), "3");
        assert_eq!(line("0.001"), "3");
        assert_eq!(line("0.0025"), "4");
        assert_eq!(line("30"), "4");
        assert_eq!(line("+Inf"), "5");
        assert!(text.contains("w_seconds_count{drive=\"d\"} 5\n"), "{text}");
        assert!(
            text.contains("w_seconds_sum{drive=\"d\"} 60.002015\n"),
            "{text}"
        );
    }

    #[test]
    fn sessions_carry_harvests_labels_and_live_bytes() {
        let reg = Arc::new(Registry::new());
        let me = Identity {
            node_name: "n1".into(),
            node_uuid: "11111111-1111-4111-8111-111111111111".into(),
            svm_name: "svm1".into(),
            svm_uuid: "22222222-2222-4222-8222-222222222222".into(),
        };
        let client = "10.0.0.5:40312".parse().unwrap();
        let local = "10.0.0.1:10000".parse().unwrap();
        let r = reg.register(client, local, tokio_util::sync::CancellationToken::new());
        r.entry().set_counters(Box::new(|| (7, 20480)));
        r.entry().update(|i| {
            i.data.state = "ACTIVE";
            i.data.operation = "BACKUP";
            i.data.data_path = Some("/srv/a \"b\"".into());
            i.data.backup_engine = Some("dump");
            i.mover.state = "PAUSED";
            i.mover.mode = "READ";
            i.tape.device = Some("vtape0".into());
            i.tape.mode = Some("read_write");
        });
        let text = render(&reg, &me);
        let labels = "uuid=\"11111111-1111-4111-8111-111111111111\",backup_engine=\"dump\",\
             client_address=\"10.0.0.5\",client_port=\"40312\",operation=\"backup\",\
             data_path=\"/srv/a \\\"b\\\"\",mode=\"read\",node=\"n1\",\
             source_address=\"10.0.0.1\",svm=\"svm1\",tape_device=\"vtape0\",tape_mode=\"write\"";
        for line in [
            format!("ndmp_session_mover_bytes_moved{{{labels}}} 20480"),
            format!("ndmp_session_data_bytes_processed{{{labels}}} 7"),
            "ndmpd_sessions_data{state=\"active\"} 1".into(),
            "ndmpd_sessions_data{state=\"idle\"} 0".into(),
            "ndmpd_sessions_mover{state=\"paused\"} 1".into(),
        ] {
            assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
        }
    }

    #[test]
    fn known_states_are_shown_as_zero() {
        let t = tally(&["a", "b"], ["b", "c", "b"].map(String::from).into_iter());
        assert_eq!(t, [("a".into(), 0), ("b".into(), 2), ("c".into(), 1)]);
    }
}
