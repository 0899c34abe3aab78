//! Prometheus metrics, served by the REST view at `GET /metrics` in the text exposition format
//! (0.0.4): NetApp Harvest's `ndmp_session_*` series per session, and ndmpd's own `ndmpd_*`.
//!
//! The exposition is written here rather than with a client crate: most series (sessions,
//! jobs, snapshots) are read from the registry at scrape time with label sets that come and go
//! with the sessions, which a client library's registry of pre-declared metrics does not model
//! without a custom collector, and what is left (a few counters, one histogram kind) is a
//! handful of atomics. The format itself is small and fixed; [`Exposition`] is its writer.
//!
//! The counters are process-wide statics, as in every Prometheus client: the code that counts
//! (the tape device wrapper, the admission counters, the failure throttle, the file-history
//! queue) has no handle on a server object, and one process serves one set of metrics.

use crate::registry::Registry;
use crate::rest::{Identity, RestState};
use crate::tape::{Spaced, TapeDevice, TapeError, TapeStatus, Written};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The media type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Failed authentications, NDMP and REST alike (both go through the failure throttle).
pub static AUTH_FAILURES: AtomicU64 = AtomicU64::new(0);

/// Connections admitted and not yet authenticated.
pub static UNAUTHENTICATED: AtomicI64 = AtomicI64::new(0);

/// File-history entries (files, directories, nodes) sent to DMAs.
pub static FH_POSTED: AtomicU64 = AtomicU64::new(0);

/// File-history entries a backup produced that wait for the session to post them.
pub static FH_QUEUED: AtomicI64 = AtomicI64::new(0);

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

/// Upper bounds of the latency buckets, in seconds: from a page-cache write of a virtual
/// cartridge (tens of microseconds) to a real drive repositioning (seconds).
pub const BOUNDS: [f64; 16] = [
    0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    1.0, 5.0, 30.0,
];

/// A latency histogram over [`BOUNDS`], lock-free.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket, not cumulative; the last one is above every bound.
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Counts `n` observations of `each`.
    pub fn observe_n(&self, each: Duration, n: u64) {
        let secs = each.as_secs_f64();
        let i = BOUNDS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BOUNDS.len());
        self.buckets[i].fetch_add(n, Ordering::Relaxed);
        let nanos = u64::try_from(each.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos
            .fetch_add(nanos.saturating_mul(n), Ordering::Relaxed);
    }

    /// The cumulative counts per bound, the total count and the sum in seconds. The count is
    /// the buckets' own total, so `+Inf` and `_count` always agree with the buckets.
    pub fn read(&self) -> (Vec<u64>, u64, f64) {
        let mut acc = 0;
        let mut cumulative = Vec::with_capacity(BOUNDS.len());
        for (i, b) in self.buckets.iter().enumerate() {
            acc += b.load(Ordering::Relaxed);
            if i < BOUNDS.len() {
                cumulative.push(acc);
            }
        }
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        (cumulative, acc, sum)
    }
}

/// What one tape drive has done since the server started.
#[derive(Debug, Default)]
pub struct DriveStats {
    /// Bytes written in records (filemarks are not data).
    pub written: AtomicU64,
    /// Bytes read from records.
    pub read: AtomicU64,
    /// How long each record write took.
    pub write_latency: Histogram,
}

type Drives = BTreeMap<String, Arc<DriveStats>>;
static DRIVES: Mutex<Drives> = Mutex::new(BTreeMap::new());

fn drives() -> std::sync::MutexGuard<'static, Drives> {
    DRIVES.lock().unwrap_or_else(|p| p.into_inner())
}

/// The counters of drive `name`, made at its first open.
pub fn drive(name: &str) -> Arc<DriveStats> {
    drives().entry(name.to_string()).or_default().clone()
}

/// A tape device that counts what goes through it into its drive's [`DriveStats`]; everything
/// else passes straight on. The library wraps every drive it opens in one.
#[derive(Debug)]
pub struct Metered {
    inner: Box<dyn TapeDevice>,
    stats: Arc<DriveStats>,
}

/// `device`, counted as drive `name`.
pub fn metered(name: &str, device: Box<dyn TapeDevice>) -> Box<dyn TapeDevice> {
    Box::new(Metered {
        inner: device,
        stats: drive(name),
    })
}

impl TapeDevice for Metered {
    fn write_record(&mut self, data: &[u8]) -> Result<Written, TapeError> {
        let t = Instant::now();
        let r = self.inner.write_record(data);
        if let Ok(w) = &r {
            self.stats.write_latency.observe_n(t.elapsed(), 1);
            self.stats
                .written
                .fetch_add(w.bytes as u64, Ordering::Relaxed);
        }
        r
    }

    /// A batch written in one call counts as that many records of an equal share of its time:
    /// the device does not say how long each took.
    fn write_records(&mut self, records: &[&[u8]]) -> (usize, Result<(), TapeError>) {
        let t = Instant::now();
        let (n, r) = self.inner.write_records(records);
        if n > 0 {
            let each = t.elapsed() / n as u32;
            self.stats.write_latency.observe_n(each, n as u64);
            let bytes: usize = records[..n].iter().map(|r| r.len()).sum();
            self.stats
                .written
                .fetch_add(bytes as u64, Ordering::Relaxed);
        }
        (n, r)
    }

    fn read_record(&mut self, buf: &mut [u8]) -> Result<(usize, usize), TapeError> {
        let r = self.inner.read_record(buf);
        if let Ok((n, _)) = &r {
            self.stats.read.fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }

    fn write_filemarks(&mut self, count: u32) -> Result<(), TapeError> {
        self.inner.write_filemarks(count)
    }

    fn space_filemarks(&mut self, count: i64) -> Result<Spaced, TapeError> {
        self.inner.space_filemarks(count)
    }

    fn space_records(&mut self, count: i64) -> Result<Spaced, TapeError> {
        self.inner.space_records(count)
    }

    fn rewind(&mut self) -> Result<(), TapeError> {
        self.inner.rewind()
    }

    fn unload(&mut self) -> Result<(), TapeError> {
        self.inner.unload()
    }

    fn ready(&mut self) -> Result<(), TapeError> {
        self.inner.ready()
    }

    fn status(&mut self) -> Result<TapeStatus, TapeError> {
        self.inner.status()
    }

    fn flush(&mut self) -> Result<(), TapeError> {
        self.inner.flush()
    }
}

/// The file-history entries `r` carries: files, directories or nodes of an FH_ADD_* post.
pub fn fh_entries(r: &crate::wire::Request) -> u64 {
    use crate::wire::Request as R;
    let n = match r {
        R::FhAddFile(p) => p.files.len(),
        R::FhAddDir(p) => p.dirs.len(),
        R::FhAddNode(p) => p.nodes.len(),
        _ => 0,
    };
    n as u64
}

fn out_entries(o: &crate::data::backup::Out) -> u64 {
    match o {
        crate::data::backup::Out::Post(r) => fh_entries(r),
        _ => 0,
    }
}

/// `o` is about to go into a session's queue; returns its file-history entries, which
/// [`fh_unqueue`] takes back if the queue refuses it.
pub fn fh_enqueue(o: &crate::data::backup::Out) -> u64 {
    let n = out_entries(o);
    FH_QUEUED.fetch_add(n as i64, Ordering::Relaxed);
    n
}

/// `n` entries left the queue without being taken by the session.
pub fn fh_unqueue(n: u64) {
    FH_QUEUED.fetch_sub(n as i64, Ordering::Relaxed);
}

/// The session took `o` from its queue; returns its file-history entries for [`fh_posted`].
pub fn fh_dequeue(o: &crate::data::backup::Out) -> u64 {
    let n = out_entries(o);
    fh_unqueue(n);
    n
}

/// `n` entries were posted to the DMA.
pub fn fh_posted(n: u64) {
    FH_POSTED.fetch_add(n, Ordering::Relaxed);
}

/// Closes a queue whose session is going away and takes what is left in it off the count.
pub fn fh_drain(rx: &mut tokio::sync::mpsc::Receiver<crate::data::backup::Out>) {
    rx.close();
    while let Ok(o) = rx.try_recv() {
        fh_dequeue(&o);
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
pub async fn handler(State(s): State<Arc<RestState>>) -> Response {
    match tokio::task::spawn_blocking(move || render(&s.registry, &s.identity)).await {
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
