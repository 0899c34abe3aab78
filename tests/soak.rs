//! Soak test (issue 16, item 9). NOT part of the normal suite: it is `#[ignore]`d and runs for
//! minutes. It starts one real `ndmpd serve` process (data dir, export root with a generated
//! tree of ~3,000 files / ~40 MB, the two default virtual drives vtape0 and vtape1, the REST
//! view on a loopback port, a password file) and lets 20 concurrent DMA workers loose on it:
//! backups (dump and tar, by our DMA library and by Amanda's ndmjob), full restores compared
//! with the source tree, Direct Access Recovery of one file, REST kills of a running session,
//! job cancels, and DMAs that vanish (kill -9 of ndmjob, a client dropping its socket).
//! At the end it checks that every job ended, every cartridge passes `ndmpd vtape inspect`,
//! both drives open, RSS and open fds are back near their starting level, no restore differed
//! and no operation failed unexpectedly; then prints a summary and fails if a check failed.
//!
//! Run it (10 minutes by default):
//!
//! ```sh
//! cargo test --release --test soak -- --ignored --nocapture
//! SOAK_SECS=120 cargo test --release --test soak -- --ignored --nocapture   # 2 minutes
//! ```
//!
//! Settings from the environment: `SOAK_SECS` (duration, default 600), `SOAK_SESSIONS`
//! (concurrent workers, default 20), `SOAK_SEED` (random seed, default from the clock; printed
//! so a run can be repeated). Needs `curl` and `/usr/lib/amanda/ndmjob` (scripts/test.sh
//! installs amanda-common). Everything talks to 127.0.0.1 only.

use ndmpd::client::backup::{backup, BackupJob};
use ndmpd::client::restore::{restore, RestoreJob};
use ndmpd::client::{login, AuthMethod, Client, ClientError};
use ndmpd::wire::header::Body;
use ndmpd::wire::messages::*;
use ndmpd::wire::types::*;
use ndmpd::wire::{NdmpError, Reply, Request};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NDMJOB: &str = "/usr/lib/amanda/ndmjob";
const USER: &str = "ndmp";
const DRIVES: [&str; 2] = ["vtape0", "vtape1"];
/// One record size for every backup (ndmjob `-b 128` = 64 KiB), so any restore can read any
/// image without knowing who wrote it.
const RECORD: u32 = 65536;
/// An operation that takes longer than this is reported as hung (a healthy one takes seconds).
const OP_LIMIT: Duration = Duration::from_secs(180);
/// How often the server's RSS and fds are sampled while the workers run.
const SAMPLE_EVERY: Duration = Duration::from_secs(30);
/// Tolerances for "back to the starting level". fds: exact, since every socket, tape file and
/// lock a session holds must be closed once it is gone. RSS: some growth is no leak (the
/// allocator keeps freed memory cached, see [`arenas`], the runtime keeps per-thread caches,
/// finished jobs stay listed for 300 s); a leak of a few KB per operation over the thousands
/// of operations of a 10-minute run shows above this bound.
const FD_TOLERANCE: usize = 0;
const RSS_TOLERANCE_KIB: u64 = 16 * 1024;

// ---------------------------------------------------------------------------------------
// small utilities

/// splitmix64: a small, seedable generator, so a run can be repeated with SOAK_SEED.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn coin(&mut self) -> bool {
        self.next() & 1 == 0
    }
    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
        Err(_) => default,
    }
}

fn busy(e: &ClientError) -> bool {
    e.ndmp_error() == Some(NdmpError::DEVICE_BUSY_ERR)
}

/// The last `n` lines of a text, for a failure message.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// What went wrong in ndmjob's words: its error and log lines (the last `n`), or its last
/// lines when it printed none.
fn ndmjob_why(out: &str, n: usize) -> String {
    let errs: Vec<&str> = out
        .lines()
        .filter(|l| {
            l.contains(" ERR")
                || l.starts_with("DLMe")
                || l.starts_with("DLMw")
                || l.starts_with("DLF")
                || l.contains("failed")
        })
        .collect();
    if errs.is_empty() {
        tail(out, n)
    } else {
        errs[errs.len().saturating_sub(n)..].join(" | ")
    }
}

// ---------------------------------------------------------------------------------------
// the source tree and comparing restored trees with it

/// Builds ~3,000 files (~40 MB) in 64 directories: mostly small files, some of 8-128 KiB and
/// a few of 1-2 MiB, assorted modes, a name with a space and UTF-8, a symlink, a hard link
/// and an empty directory per top directory. Returns the files a DAR may pick: plain names of
/// regular files with one link (a tar hard link cannot be restored alone, and ndmjob's index
/// lookup splits on spaces).
fn build_tree(root: &Path, rng: &mut Rng) -> (Vec<String>, u64, u64) {
    let (mut dar, mut files, mut bytes) = (Vec::new(), 0u64, 0u64);
    let modes = [0o644, 0o600, 0o640, 0o755, 0o444];
    for a in 0..8 {
        for b in 0..8 {
            let rel = format!("d{a}/s{b}");
            std::fs::create_dir_all(root.join(&rel)).unwrap();
            for f in 0..47 {
                let size = match rng.below(1000) {
                    0..5 => (1 << 20) + rng.below(1 << 20),
                    5..50 => 8192 + rng.below(120 << 10),
                    _ => rng.below(8192),
                } as usize;
                let mut data = vec![0u8; size];
                rng.fill(&mut data);
                let name = format!("{rel}/f{f:04}");
                let p = root.join(&name);
                std::fs::write(&p, &data).unwrap();
                let mode = modes[rng.below(modes.len() as u64) as usize];
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
                files += 1;
                bytes += size as u64;
                if !(b == 1 && f == 1) {
                    dar.push(format!("/{name}"));
                }
            }
        }
        let top = root.join(format!("d{a}"));
        std::fs::write(top.join("name with space ü.txt"), b"odd name\n").unwrap();
        std::os::unix::fs::symlink("s0/f0000", top.join("link")).unwrap();
        std::fs::hard_link(top.join("s1/f0001"), top.join("s1/hard")).unwrap();
        std::fs::create_dir(top.join("empty")).unwrap();
        files += 2;
    }
    (dar, files, bytes)
}

#[derive(Debug, PartialEq)]
struct Meta {
    kind: &'static str,
    mode: u32,
    /// Seconds; restore keeps them for files and directories, not for symlinks.
    mtime: Option<i64>,
    nlink: u64,
    len: u64,
    target: Option<PathBuf>,
}

fn meta(p: &Path) -> std::io::Result<Meta> {
    let m = std::fs::symlink_metadata(p)?;
    let ft = m.file_type();
    let kind = if ft.is_dir() {
        "dir"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_file() {
        "file"
    } else {
        "other"
    };
    Ok(Meta {
        kind,
        mode: m.mode() & 0o7777,
        mtime: (kind != "symlink").then(|| m.mtime()),
        nlink: if kind == "file" { m.nlink() } else { 0 },
        len: if kind == "file" { m.len() } else { 0 },
        target: ft
            .is_symlink()
            .then(|| std::fs::read_link(p).unwrap_or_default()),
    })
}

fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, Meta>) -> std::io::Result<()> {
    for e in std::fs::read_dir(root.join(rel))? {
        let r = rel.join(e?.file_name());
        let m = meta(&root.join(&r))?;
        let dir = m.kind == "dir";
        out.insert(r.clone(), m);
        if dir {
            walk(root, &r, out)?;
        }
    }
    Ok(())
}

fn same_content(a: &Path, b: &Path) -> std::io::Result<bool> {
    let (mut fa, mut fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(fb.read(&mut bb[..1])? == 0);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

/// Compares a restored tree with the source: names, kinds, modes, mtimes, link counts,
/// symlink targets and every byte. Returns the number of entries, or the first difference.
fn compare_trees(src: &Path, restored: &Path) -> Result<usize, String> {
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    walk(src, Path::new(""), &mut a).map_err(|e| format!("reading the source: {e}"))?;
    walk(restored, Path::new(""), &mut b).map_err(|e| format!("reading the restore: {e}"))?;
    if let Some(p) = a.keys().find(|k| !b.contains_key(*k)) {
        return Err(format!("{} is missing", p.display()));
    }
    if let Some(p) = b.keys().find(|k| !a.contains_key(*k)) {
        return Err(format!("{} is extra", p.display()));
    }
    for (p, ma) in &a {
        let mb = &b[p];
        if ma != mb {
            return Err(format!("{} differs: {ma:?} vs {mb:?}", p.display()));
        }
        if ma.kind == "file" && !same_content(&src.join(p), &restored.join(p)).unwrap_or(false) {
            return Err(format!("{}: the bytes differ", p.display()));
        }
    }
    Ok(a.len())
}

/// Compares one restored file (`rel` = "/d1/s2/f0003") with the source.
fn compare_file(src: &Path, dest: &Path, rel: &str) -> Result<(), String> {
    let rel = rel.trim_start_matches('/');
    let (a, b) = (src.join(rel), dest.join(rel));
    let ma = meta(&a).map_err(|e| format!("{}: {e}", a.display()))?;
    let mb = meta(&b).map_err(|e| format!("{rel} not restored: {e}"))?;
    // the source file may have a hard link elsewhere; the lone restored file cannot
    if (ma.kind, ma.mode, ma.mtime, ma.len) != (mb.kind, mb.mode, mb.mtime, mb.len) {
        return Err(format!("{rel} differs: {ma:?} vs {mb:?}"));
    }
    if !same_content(&a, &b).unwrap_or(false) {
        return Err(format!("{rel}: the bytes differ"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// the server process

/// The `ndmpd serve` child; killed if the test ends early.
struct Server {
    child: Child,
    ndmp: String,
    rest: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Server {
    fn spawn(data: &Path, export: &Path, pw: &Path, log: &Path) -> Server {
        // the embedded defaults' drives and changer, and the DMA login as REST admin (DMA
        // logins are no REST logins by default)
        let conf = data.with_extension("toml");
        std::fs::write(
            &conf,
            "[rest]\ndma_users_are_admins = true\n\
             [[tape]]\nname = \"vtape0\"\nkind = \"virtual\"\n\
             [[tape]]\nname = \"vtape1\"\nkind = \"virtual\"\n\
             [[changer]]\nname = \"changer0\"\nkind = \"virtual\"\n",
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_ndmpd"))
            .arg("serve")
            .arg("--config")
            .arg(&conf)
            .arg("--data-dir")
            .arg(data)
            .args(["--listen", "127.0.0.1:0", "--rest-listen", "127.0.0.1:0"])
            .arg("--export")
            .arg(export)
            .args(["--user", USER])
            .arg("--password-file")
            .arg(pw)
            .env_remove("NDMPD_PASSWORD")
            .env("MALLOC_ARENA_MAX", arenas())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("ndmpd serve starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut ndmp, mut rest) = (None, None);
        while ndmp.is_none() {
            let line = lines
                .next()
                .expect("ndmpd serve printed no listen address")
                .unwrap();
            if let Some(a) = line.strip_prefix("ndmpd: REST view on http://") {
                rest = a.split('/').next().map(str::to_string);
            }
            if let Some(a) = line.strip_prefix("ndmpd: NDMP v4 listening on ") {
                ndmp = Some(a.trim().to_string());
            }
        }
        // keep draining stdout so the server never blocks on a full pipe
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            ndmp: ndmp.unwrap(),
            rest: rest.expect("ndmpd serve printed no REST address"),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// glibc malloc arenas for the server. Its default (8 per core) lets memory freed by one of
/// the ~30 threads a busy server runs stay cached in that thread's arena: after 45 s of this
/// test RSS stayed 45 MB above the start with the default, 6 MB with one arena. Two keep the
/// RSS check about memory in use, so a leak shows; MALLOC_ARENA_MAX in the environment wins.
fn arenas() -> String {
    std::env::var("MALLOC_ARENA_MAX").unwrap_or_else(|_| "2".into())
}

/// VmRSS in KiB, the number of open fds and of threads of a process.
fn rss_fds_threads(pid: u32) -> Option<(u64, usize, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some((field("VmRSS:")?, fds, field("Threads:")?))
}

// ---------------------------------------------------------------------------------------
// shared state of the workers

/// A complete image on a drive's cartridge, as far as the workers know.
#[derive(Clone, Debug)]
struct Image {
    butype: &'static str,
    /// ndmjob's `-I` index of that backup, for `-J` (DAR).
    index: Option<PathBuf>,
}

/// One backup attempt on a drive, on the logical clock of [`Drives`].
struct Writer {
    began: u64,
    /// When it ended, and whether it got the drive (anything but DEVICE_BUSY).
    ended: Option<(u64, bool)>,
}

/// What the workers know of a drive: the image a finished backup left on it, and every
/// backup attempt. A restore that fails (or differs) while no attempt that overlapped it got
/// the drive read the image we think it read; if one did, that backup may have replaced the
/// image between our look and our TAPE_OPEN, and the failure is counted as "raced" instead.
#[derive(Default)]
struct Drive {
    image: Option<Image>,
    writers: Vec<Writer>,
}

/// Both drives and a logical clock that orders looks, restores and write attempts.
#[derive(Default)]
struct Drives {
    clock: u64,
    d: [Drive; 2],
}

/// How a write attempt left the cartridge.
enum Wrote {
    /// TAPE_OPEN said DEVICE_BUSY: nothing touched.
    Nothing,
    Image(Image),
    /// Started writing and did not finish (killed, canceled, dropped, or an error).
    Spoiled,
}

#[derive(Default)]
struct Tally {
    /// (operation kind, outcome) -> count
    counts: BTreeMap<(String, String), u64>,
    failures: Vec<String>,
    full_compared: u64,
    dar_compared: u64,
    /// Why restores counted as "raced" failed, to show that they are what they seem.
    raced: Vec<String>,
}

struct Soak {
    ndmp: String,
    rest: String,
    password: String,
    src: PathBuf,
    restores: PathBuf,
    index_dir: PathBuf,
    logs: PathBuf,
    dar_files: Vec<String>,
    drives: Mutex<Drives>,
    /// REST session id -> what our own backup in that session was doing, to name the
    /// operation behind a job that never ends.
    session_kinds: Mutex<BTreeMap<String, String>>,
    tally: Mutex<Tally>,
    seq: AtomicU64,
    /// When the workers stop; set once the warm-up is over.
    deadline: Mutex<Instant>,
}

impl Soak {
    fn deadline(&self) -> Instant {
        *self.deadline.lock().unwrap()
    }

    fn next_id(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    fn count(&self, kind: &str, outcome: &str) {
        *self
            .tally
            .lock()
            .unwrap()
            .counts
            .entry((kind.to_string(), outcome.to_string()))
            .or_default() += 1;
    }

    /// An outcome that makes the run fail.
    fn fail(&self, kind: &str, detail: String) {
        eprintln!("soak: FAILED {kind}: {detail}");
        let mut t = self.tally.lock().unwrap();
        *t.counts
            .entry((kind.to_string(), "FAILED".to_string()))
            .or_default() += 1;
        t.failures.push(format!("{kind}: {detail}"));
    }

    /// A backup attempt on drive `d` starts; returns its ticket for `end_write`.
    fn begin_write(&self, d: usize) -> usize {
        let mut g = self.drives.lock().unwrap();
        g.clock += 1;
        let began = g.clock;
        let w = &mut g.d[d].writers;
        w.push(Writer { began, ended: None });
        w.len() - 1
    }

    fn end_write(&self, d: usize, ticket: usize, how: Wrote) {
        let mut g = self.drives.lock().unwrap();
        g.clock += 1;
        let now = g.clock;
        let drive = &mut g.d[d];
        drive.writers[ticket].ended = Some((now, !matches!(how, Wrote::Nothing)));
        match how {
            Wrote::Nothing => {}
            Wrote::Image(i) => drive.image = Some(i),
            Wrote::Spoiled => drive.image = None,
        }
    }

    /// The image on drive `d` now, and the time of the look.
    fn look(&self, d: usize) -> (u64, Option<Image>) {
        let mut g = self.drives.lock().unwrap();
        g.clock += 1;
        (g.clock, g.d[d].image.clone())
    }

    fn now(&self) -> u64 {
        let mut g = self.drives.lock().unwrap();
        g.clock += 1;
        g.clock
    }

    /// Whether a backup attempt that overlapped [start, end] got drive `d`; waits for the
    /// overlapping attempts still running to end (at most OP_LIMIT, then says yes).
    async fn raced(&self, d: usize, start: u64, end: u64) -> bool {
        let deadline = Instant::now() + OP_LIMIT;
        loop {
            {
                let g = self.drives.lock().unwrap();
                let overlapping = g.d[d]
                    .writers
                    .iter()
                    .filter(|w| w.began < end && w.ended.is_none_or(|(t, _)| t > start));
                let (mut running, mut touched) = (false, false);
                for w in overlapping {
                    match w.ended {
                        None => running = true,
                        Some((_, got_drive)) => touched |= got_drive,
                    }
                }
                if touched || !running {
                    return touched;
                }
            }
            if Instant::now() >= deadline {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Sets the image directly (the warm-up, with nobody else around).
    fn set_image(&self, d: usize, image: Image) {
        self.drives.lock().unwrap().d[d].image = Some(image);
    }

    fn password(&self) -> Vec<u8> {
        self.password.as_bytes().to_vec()
    }

    /// ndmjob's agent string, TEXT or MD5 auth.
    fn agent(&self, md5: bool) -> String {
        let flag = if md5 { "m" } else { "t" };
        format!("{}/4{flag},{USER},{}", self.ndmp, self.password)
    }

    /// A fresh, empty directory in the export root for one restore.
    fn fresh_dest(&self) -> PathBuf {
        let p = self.restores.join(format!("r{}", self.next_id()));
        std::fs::create_dir(&p).unwrap();
        p
    }

    /// curl against the REST view: (HTTP status, JSON body); status 0 if curl failed.
    async fn rest(&self, method: &str, path: &str) -> (u16, Value) {
        let out = tokio::process::Command::new("curl")
            .args(["-s", "-g", "--max-time", "30", "-X", method])
            .args(["-w", "\n%{http_code}", "-u"])
            .arg(format!("{USER}:{}", self.password))
            .arg(format!("http://{}{}", self.rest, path))
            .output()
            .await;
        let Ok(out) = out else {
            return (0, Value::Null);
        };
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        let v = serde_json::from_str(body).unwrap_or(Value::Null);
        (code.trim().parse().unwrap_or(0), v)
    }

    /// The REST record of the session whose DMA socket has local port `port`.
    async fn session_of(&self, port: u16) -> Result<Value, String> {
        let path = format!("/api/protocols/ndmp/sessions?client_port={port}&fields=*");
        let (code, v) = self.rest("GET", &path).await;
        match v["records"].as_array().and_then(|r| r.first()) {
            Some(r) if code == 200 => Ok(r.clone()),
            _ => Err(format!("no session with client_port {port}: {code} {v}")),
        }
    }

    /// Every job record, following `_links.next`.
    async fn jobs(&self) -> Result<Vec<Value>, String> {
        let mut path = "/api/cluster/jobs?fields=*".to_string();
        let mut all = Vec::new();
        for _ in 0..1000 {
            let (code, v) = self.rest("GET", &path).await;
            if code != 200 {
                return Err(format!("GET {path}: {code} {v}"));
            }
            all.extend(v["records"].as_array().cloned().unwrap_or_default());
            match v["_links"]["next"]["href"].as_str() {
                Some(next) => path = next.to_string(),
                None => return Ok(all),
            }
        }
        Err("more than 1000 pages of jobs".into())
    }

    async fn session_count(&self) -> Option<u64> {
        let (code, v) = self.rest("GET", "/api/protocols/ndmp/sessions").await;
        (code == 200).then(|| v["num_records"].as_u64()).flatten()
    }
}

// ---------------------------------------------------------------------------------------
// ndmjob

struct NdmjobRun {
    output: String,
    /// We killed it (asked to, or it overran its time).
    killed: bool,
}

/// The local TCP ports of a process's IPv4 sockets, from its fds and /proc/net/tcp.
fn client_ports(pid: u32) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let l = std::fs::read_link(e.path()).ok()?;
            let l = l.to_str()?;
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let port = f.get(1)?.rsplit(':').next()?;
            inodes
                .contains(&f.get(9)?.to_string())
                .then(|| u16::from_str_radix(port, 16).ok())?
        })
        .collect()
}

/// Runs ndmjob with `args`; kills it with SIGKILL after `kill_after` (or after OP_LIMIT).
/// Its output goes through a file, line-buffered by stdbuf so a killed ndmjob has still
/// written what it did. When it is killed on purpose, its session is remembered as `kind`.
async fn ndmjob(s: &Soak, args: &[String], kill_after: Option<Duration>, kind: &str) -> NdmjobRun {
    let log = s.logs.join(format!("ndmjob-{}.txt", s.next_id()));
    let f = std::fs::File::create(&log).unwrap();
    let mut child = tokio::process::Command::new("stdbuf")
        .args(["-oL", "-eL", NDMJOB])
        .args(args)
        .stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .kill_on_drop(true)
        .spawn()
        .expect("stdbuf and ndmjob run");
    let limit = kill_after.unwrap_or(OP_LIMIT);
    let killed = match tokio::time::timeout(limit, child.wait()).await {
        Ok(_) => false,
        Err(_) => {
            if kill_after.is_some() {
                for port in child.id().map(client_ports).unwrap_or_default() {
                    if let Ok(r) = s.session_of(port).await {
                        let id = r["id"].as_str().unwrap_or("").to_string();
                        s.session_kinds.lock().unwrap().insert(id, kind.to_string());
                    }
                }
            }
            let _ = child.start_kill();
            let _ = child.wait().await;
            true
        }
    };
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    NdmjobRun { output, killed }
}

enum JobEnd {
    Ok,
    Busy,
    Failed,
}

/// ndmjob exits 0 whatever happened; its words say how it went.
fn ndmjob_end(out: &str) -> JobEnd {
    if out.contains("Operation ended OKAY")
        && out.contains("Operation complete")
        && !out.contains("had problems")
    {
        JobEnd::Ok
    } else if out.contains("DEVICE_BUSY") && !out.contains("Operation started") {
        JobEnd::Busy
    } else {
        JobEnd::Failed
    }
}

fn ndmjob_backup_args(s: &Soak, d: usize, butype: &str, index: &Path, md5: bool) -> Vec<String> {
    [
        "-c",
        "-vv",
        "-D",
        &s.agent(md5),
        "-B",
        butype,
        "-f",
        DRIVES[d],
        "-C",
        s.src.to_str().unwrap(),
        "-I",
        index.to_str().unwrap(),
        "-b",
        "128",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect()
}

// ---------------------------------------------------------------------------------------
// the operations

/// A full backup by our DMA library (`ndmpd dma backup`'s code).
async fn op_backup(s: &Soak, rng: &mut Rng) {
    let d = rng.below(2) as usize;
    let butype = if rng.coin() { "dump" } else { "tar" };
    let kind = format!("backup {butype} (ndmpd dma)");
    let job = BackupJob {
        server: s.ndmp.clone(),
        tape_server: None,
        user: USER.into(),
        password: s.password(),
        tape_login: None,
        auth: if rng.coin() {
            AuthMethod::Md5
        } else {
            AuthMethod::Text
        },
        version: 4,
        tape: DRIVES[d].into(),
        path: s.src.to_str().unwrap().into(),
        level: 0,
        record_size: RECORD,
        history: rng.coin(),
        butype: butype.into(),
        // one image per drive, as the model expects
        overwrite: true,
        changer: "changer0".into(),
        label: None,
        extra_env: Vec::new(),
    };
    let ticket = s.begin_write(d);
    match backup(&job, |_| {}).await {
        Ok(_) => {
            let image = Image {
                butype,
                index: None,
            };
            s.end_write(d, ticket, Wrote::Image(image));
            s.count(&kind, "ok");
        }
        Err(e) if busy(&e.error) => {
            s.end_write(d, ticket, Wrote::Nothing);
            s.count(&kind, "busy");
        }
        Err(e) => {
            s.end_write(d, ticket, Wrote::Spoiled);
            s.fail(&kind, format!("{}: {e}", DRIVES[d]));
        }
    }
}

/// A backup by Amanda's ndmjob with an index (`-I`), which makes DAR possible later.
async fn op_backup_ndmjob(s: &Soak, rng: &mut Rng) {
    let d = rng.below(2) as usize;
    let butype = if rng.coin() { "dump" } else { "tar" };
    let kind = format!("backup {butype} (ndmjob)");
    let index = s.index_dir.join(format!("index-{}", s.next_id()));
    let args = ndmjob_backup_args(s, d, butype, &index, rng.coin());
    let ticket = s.begin_write(d);
    let run = ndmjob(s, &args, None, &kind).await;
    match (run.killed, ndmjob_end(&run.output)) {
        (false, JobEnd::Ok) => {
            let image = Image {
                butype,
                index: Some(index),
            };
            s.end_write(d, ticket, Wrote::Image(image));
            s.count(&kind, "ok");
        }
        (false, JobEnd::Busy) => {
            let _ = std::fs::remove_file(&index);
            s.end_write(d, ticket, Wrote::Nothing);
            s.count(&kind, "busy");
        }
        (killed, _) => {
            let _ = std::fs::remove_file(&index);
            s.end_write(d, ticket, Wrote::Spoiled);
            let why = if killed { "hung, killed: " } else { "" };
            s.fail(
                &kind,
                format!("{}: {why}{}", DRIVES[d], ndmjob_why(&run.output, 4)),
            );
        }
    }
}

/// How a restore attempt went, before comparing.
enum Restored {
    Done,
    Busy,
    Failed(String),
}

/// Picks a drive holding a known image (one with an index when `need_index`).
/// Returns the drive, the time of the look and the image.
fn pick_image(s: &Soak, rng: &mut Rng, need_index: bool) -> Option<(usize, u64, Image)> {
    let first = rng.below(2) as usize;
    [first, 1 - first].into_iter().find_map(|d| {
        let (at, image) = s.look(d);
        image
            .filter(|i| !need_index || i.index.is_some())
            .map(|i| (d, at, i))
    })
}

/// Judges a restore that started with a look at time `start`: compared identical (a
/// difference is always a failure), busy, or an error, which is a failure only when no backup
/// attempt that overlapped the restore got the drive.
async fn judge_restore(
    s: &Soak,
    kind: &str,
    d: usize,
    start: u64,
    result: Restored,
    compare: impl FnOnce() -> Result<(), String> + Send + 'static,
    dest: PathBuf,
) {
    let end = s.now();
    match result {
        Restored::Busy => s.count(kind, "busy"),
        Restored::Failed(why) => {
            if s.raced(d, start, end).await {
                s.count(kind, "raced (image replaced meanwhile)");
                let what = format!("{kind}: {}: {why}", DRIVES[d]);
                s.tally.lock().unwrap().raced.push(what);
            } else {
                s.fail(kind, format!("{}: {why}", DRIVES[d]))
            }
        }
        Restored::Done => {
            let verdict = tokio::task::spawn_blocking(compare).await.unwrap();
            match verdict {
                Ok(()) => s.count(kind, "ok, identical"),
                Err(diff) => {
                    let note = if s.raced(d, start, end).await {
                        " (a backup may have replaced the image meanwhile)"
                    } else {
                        ""
                    };
                    s.fail(kind, format!("{}: DIFFERS{note}: {diff}", DRIVES[d]));
                }
            }
        }
    }
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dest)).await;
}

/// A full restore by our DMA library into a fresh directory, compared with the source.
async fn op_restore(s: &Arc<Soak>, rng: &mut Rng) {
    let Some((d, start, image)) = pick_image(s, rng, false) else {
        s.count("restore full (ndmpd dma)", "no image on either drive");
        return;
    };
    let kind = format!("restore {} full (ndmpd dma)", image.butype);
    let dest = s.fresh_dest();
    let job = RestoreJob {
        server: s.ndmp.clone(),
        tape_server: None,
        user: USER.into(),
        password: s.password(),
        tape_login: None,
        auth: AuthMethod::Md5,
        version: 4,
        tape: DRIVES[d].into(),
        dest: dest.to_str().unwrap().into(),
        paths: vec![],
        record_size: RECORD,
        butype: image.butype.into(),
        force: false,
        file: Some(0),
        media: vec![],
        changer: "changer0".into(),
    };
    let result = match restore(&job, |_| {}).await {
        Ok(_) => Restored::Done,
        Err(e) if busy(&e) => Restored::Busy,
        Err(e) => Restored::Failed(e.to_string()),
    };
    let (src, d2, s2) = (s.src.clone(), dest.clone(), s.clone());
    let compare = move || {
        compare_trees(&src, &d2)?;
        s2.tally.lock().unwrap().full_compared += 1;
        Ok(())
    };
    judge_restore(s, &kind, d, start, result, compare, dest).await;
}

/// A full restore by ndmjob (`-x`, no name list) into a fresh directory.
async fn op_restore_ndmjob(s: &Arc<Soak>, rng: &mut Rng) {
    let Some((d, start, image)) = pick_image(s, rng, false) else {
        s.count("restore full (ndmjob)", "no image on either drive");
        return;
    };
    let kind = format!("restore {} full (ndmjob)", image.butype);
    let dest = s.fresh_dest();
    let args: Vec<String> = [
        "-x",
        "-vv",
        "-D",
        &s.agent(rng.coin()),
        "-B",
        image.butype,
        "-f",
        DRIVES[d],
        "-C",
        dest.to_str().unwrap(),
        "-b",
        "128",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    let run = ndmjob(s, &args, None, &kind).await;
    let result = match (run.killed, ndmjob_end(&run.output)) {
        (false, JobEnd::Ok) => Restored::Done,
        (false, JobEnd::Busy) => Restored::Busy,
        (killed, _) => Restored::Failed(format!(
            "{}{}",
            if killed { "hung, killed: " } else { "" },
            ndmjob_why(&run.output, 4)
        )),
    };
    let (src, d2, s2) = (s.src.clone(), dest.clone(), s.clone());
    let compare = move || {
        compare_trees(&src, &d2)?;
        s2.tally.lock().unwrap().full_compared += 1;
        Ok(())
    };
    judge_restore(s, &kind, d, start, result, compare, dest).await;
}

/// Direct Access Recovery of one file by ndmjob (`-J` with the backup's index).
async fn op_dar(s: &Arc<Soak>, rng: &mut Rng) {
    let Some((d, start, image)) = pick_image(s, rng, true) else {
        s.count("DAR one file (ndmjob)", "no indexed image on either drive");
        return;
    };
    let kind = format!("DAR {} one file (ndmjob)", image.butype);
    let file = s.dar_files[rng.below(s.dar_files.len() as u64) as usize].clone();
    let dest = s.fresh_dest();
    let index = image.index.unwrap();
    let args: Vec<String> = [
        "-x",
        "-vv",
        "-D",
        &s.agent(rng.coin()),
        "-B",
        image.butype,
        "-f",
        DRIVES[d],
        "-C",
        dest.to_str().unwrap(),
        "-J",
        index.to_str().unwrap(),
        "-b",
        "128",
        &file,
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    let run = ndmjob(s, &args, None, &kind).await;
    let result = match (run.killed, ndmjob_end(&run.output)) {
        (false, JobEnd::Ok) if run.output.contains("LOG_FILE messages: 1 OK") => Restored::Done,
        (false, JobEnd::Busy) => Restored::Busy,
        (killed, _) => Restored::Failed(format!(
            "{file}: {}{}",
            if killed { "hung, killed: " } else { "" },
            ndmjob_why(&run.output, 4)
        )),
    };
    let (src, d2, s2) = (s.src.clone(), dest.clone(), s.clone());
    let compare = move || {
        compare_file(&src, &d2, &file)?;
        s2.tally.lock().unwrap().dar_compared += 1;
        Ok(())
    };
    judge_restore(s, &kind, d, start, result, compare, dest).await;
}

/// Starts a backup driven here message by message, so the test holds the DMA socket (and
/// knows its port). With `window`, the mover pauses (EOW) after that many bytes and the job
/// waits for the DMA, which gives the interrupting operations a job that is surely running.
async fn start_own_backup(
    s: &Soak,
    d: usize,
    butype: &str,
    window: Option<u64>,
) -> Result<Client, ClientError> {
    let mut c = login(&s.ndmp, USER, &s.password(), AuthMethod::Md5).await?;
    c.call_ok(Request::MoverSetRecordSize(MoverSetRecordSizeRequest {
        len: RECORD,
    }))
    .await?;
    c.call_ok(Request::TapeOpen(TapeOpenRequest {
        device: DRIVES[d].into(),
        mode: TapeOpenMode::RDWR,
    }))
    .await?;
    c.call_ok(Request::TapeMtio(TapeMtioRequest {
        tape_op: MtioOp::REW,
        count: 1,
    }))
    .await?;
    c.call_ok(Request::MoverSetWindow(MoverRangeRequest {
        offset: 0,
        length: window.unwrap_or(u64::MAX),
    }))
    .await?;
    let r = c
        .call_ok(Request::MoverListen(MoverListenRequest {
            mode: MoverMode::READ,
            addr_type: AddrType::LOCAL,
        }))
        .await?;
    let Reply::MoverListen(ListenReply { connect_addr, .. }) = r else {
        return Err(ClientError::Unexpected(format!("MOVER_LISTEN: {r:?}")));
    };
    c.call_ok(Request::DataConnect(DataConnectRequest {
        addr: connect_addr,
    }))
    .await?;
    let env = vec![
        Pval::new("FILESYSTEM", s.src.to_str().unwrap()),
        Pval::new("LEVEL", "0"),
        Pval::new("HIST", "n"),
        Pval::new("TYPE", butype),
    ];
    c.call_ok(Request::DataStartBackup(DataStartBackupRequest {
        butype_name: butype.into(),
        env,
    }))
    .await?;
    Ok(c)
}

/// Waits for a post matching `want`; other posts are dropped.
async fn wait_post(
    c: &mut Client,
    limit: Duration,
    want: impl Fn(&Request) -> bool,
) -> Result<Request, String> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("no such post within {limit:?}"));
        }
        match c.recv(left).await {
            Ok(Some(m)) => {
                if let Body::Request(r) = m.body {
                    if want(&r) {
                        return Ok(r);
                    }
                }
            }
            Ok(None) => return Err("connection closed".into()),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Reads until the server hangs up; true if it did within `limit`.
async fn until_closed(c: &mut Client, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        match c.recv(left).await {
            Ok(Some(_)) => {}
            Ok(None) | Err(ClientError::Closed) | Err(ClientError::Io(_)) => return true,
            Err(ClientError::Timeout(_)) => return false,
            Err(_) => return true,
        }
    }
}

/// After DATA halted: DATA_STOP, the mover to HALTED (aborted if it still waits), MOVER_STOP,
/// TAPE_CLOSE, CONNECT_CLOSE; what a careful DMA does after a canceled job.
async fn wind_down(mut c: Client) -> Result<(), ClientError> {
    c.call_ok(Request::DataStop(Void)).await?;
    let started = Instant::now();
    loop {
        if let Reply::MoverGetState(m) = c.call_ok(Request::MoverGetState(Void)).await? {
            if m.state == MoverState::HALTED {
                break;
            }
            // still waiting at the window's end, or slow to notice the closed data connection;
            // an ILLEGAL_STATE answer (it halted meanwhile) is fine, the loop looks again
            if m.state == MoverState::PAUSED || started.elapsed() > Duration::from_secs(5) {
                c.call(Request::MoverAbort(Void)).await?;
            }
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err(ClientError::Unexpected("the mover never halted".into()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.call_ok(Request::MoverStop(Void)).await?;
    c.call_ok(Request::TapeClose(Void)).await?;
    c.close().await
}

#[derive(Clone, Copy)]
enum Interrupt {
    /// DELETE /api/protocols/ndmp/sessions/{node}/{id}
    RestKill,
    /// PATCH /api/cluster/jobs/{uuid}?action=cancel
    JobCancel,
    /// The DMA closes its socket without a word.
    Drop,
}

/// A backup of our own that something interrupts: a REST kill, a job cancel or the DMA
/// vanishing; either while the job waits at a window's end (paused) or while it streams.
async fn op_interrupt(s: &Soak, rng: &mut Rng, how: Interrupt) {
    let d = rng.below(2) as usize;
    let butype = if rng.coin() { "dump" } else { "tar" };
    let paused = rng.coin();
    let name = match how {
        Interrupt::RestKill => "REST kill of a backup",
        Interrupt::JobCancel => "job cancel of a backup",
        Interrupt::Drop => "DMA drops socket mid-backup",
    };
    let kind = format!("{name} ({})", if paused { "paused" } else { "streaming" });
    // 1-16 MiB, in whole records: well inside the ~40 MB image
    let window = paused.then(|| (1 + rng.below(16)) << 20);
    let ticket = s.begin_write(d);
    let mut c = match start_own_backup(s, d, butype, window).await {
        Ok(c) => c,
        Err(e) if busy(&e) => {
            s.end_write(d, ticket, Wrote::Nothing);
            s.count(&kind, "busy");
            return;
        }
        Err(e) => {
            s.end_write(d, ticket, Wrote::Spoiled);
            s.fail(&kind, format!("{}: starting the backup: {e}", DRIVES[d]));
            return;
        }
    };
    let port = c.local_addr().port();
    let result: Result<&str, String> = async {
        // our session as the REST view sees it; remembered to name a job that never ends
        let r = s.session_of(port).await?;
        let id = r["id"].as_str().unwrap_or("").to_string();
        let href = r["_links"]["self"]["href"]
            .as_str()
            .unwrap_or("")
            .to_string();
        s.session_kinds
            .lock()
            .unwrap()
            .insert(id.clone(), kind.clone());
        if paused {
            wait_post(&mut c, Duration::from_secs(60), |r| {
                matches!(r, Request::NotifyMoverPaused(_))
            })
            .await
            .map_err(|e| format!("waiting for the mover to pause: {e}"))?;
        } else {
            tokio::time::sleep(rng.ms(0, 100)).await;
        }
        match how {
            Interrupt::Drop => {
                drop(c);
                Ok("dropped")
            }
            Interrupt::RestKill => {
                let (code, v) = s.rest("DELETE", &href).await;
                if code != 200 {
                    return Err(format!("DELETE {href}: {code} {v}"));
                }
                // the session is gone when DELETE answers: our socket must be closed
                if !until_closed(&mut c, Duration::from_secs(30)).await {
                    return Err(format!(
                        "DELETE {href} answered 200 but the socket stays open"
                    ));
                }
                Ok("killed")
            }
            Interrupt::JobCancel => {
                let jobs = s.jobs().await?;
                let job = jobs
                    .iter()
                    .find(|j| j["session"]["id"].as_str() == Some(&id))
                    .ok_or_else(|| format!("no job for session {id}"))?;
                let state = job["state"].as_str().unwrap_or("").to_string();
                let uuid = job["uuid"].as_str().unwrap_or("").to_string();
                let (code, v) = s
                    .rest("PATCH", &format!("/api/cluster/jobs/{uuid}?action=cancel"))
                    .await;
                let outcome = match (code, state.as_str()) {
                    (200, _) => {
                        let h = wait_post(&mut c, Duration::from_secs(30), |r| {
                            matches!(r, Request::NotifyDataHalted(_))
                        })
                        .await
                        .map_err(|e| format!("after cancel 200: {e}"))?;
                        match h {
                            Request::NotifyDataHalted(h) if h.reason == DataHaltReason::ABORTED => {
                                "canceled"
                            }
                            // the backup reached its end as the cancel came: PATCH still
                            // answers 200 (noted, not a failure: the job is over either way)
                            Request::NotifyDataHalted(h)
                                if h.reason == DataHaltReason::SUCCESSFUL =>
                            {
                                "200, but DATA halted SUCCESSFUL (cancel raced the end)"
                            }
                            other => return Err(format!("canceled, then {other:?}")),
                        }
                    }
                    // the job had ended on its own, or waits paused (cancel takes running
                    // jobs only): the DMA aborts it itself
                    (409, _) => {
                        match c.call_ok(Request::DataAbort(Void)).await {
                            Ok(_) => {}
                            // it ended by itself meanwhile
                            Err(e) if e.ndmp_error() == Some(NdmpError::ILLEGAL_STATE_ERR) => {}
                            Err(e) => return Err(format!("DATA_ABORT after 409: {e}")),
                        }
                        wait_post(&mut c, Duration::from_secs(30), |r| {
                            matches!(r, Request::NotifyDataHalted(_))
                        })
                        .await
                        .map_err(|e| format!("DATA halt after 409: {e}"))?;
                        if state == "paused" {
                            "409 for a paused job; DMA aborted"
                        } else {
                            "409, job already over"
                        }
                    }
                    _ => return Err(format!("PATCH cancel of {uuid} ({state}): {code} {v}")),
                };
                wind_down(c)
                    .await
                    .map_err(|e| format!("winding down after cancel: {e}"))?;
                Ok(outcome)
            }
        }
    }
    .await;
    s.end_write(d, ticket, Wrote::Spoiled);
    match result {
        Ok(outcome) => s.count(&kind, outcome),
        Err(e) => s.fail(&kind, format!("{}: {e}", DRIVES[d])),
    }
}

/// An ndmjob backup killed with SIGKILL after a random 0.1-1.5 s: the DMA vanishes.
async fn op_ndmjob_kill(s: &Soak, rng: &mut Rng) {
    let d = rng.below(2) as usize;
    let butype = if rng.coin() { "dump" } else { "tar" };
    let kind = format!("kill -9 of ndmjob backup {butype}");
    let index = s.index_dir.join(format!("index-{}", s.next_id()));
    let args = ndmjob_backup_args(s, d, butype, &index, rng.coin());
    let ticket = s.begin_write(d);
    let run = ndmjob(s, &args, Some(rng.ms(100, 1500)), &kind).await;
    let end = ndmjob_end(&run.output);
    match (run.killed, end) {
        (true, JobEnd::Busy) => {
            s.end_write(d, ticket, Wrote::Nothing);
            s.count(&kind, "busy");
        }
        (true, _) => {
            s.end_write(d, ticket, Wrote::Spoiled);
            s.count(&kind, "killed");
        }
        (false, JobEnd::Ok) => {
            let image = Image {
                butype,
                index: Some(index.clone()),
            };
            s.end_write(d, ticket, Wrote::Image(image));
            s.count(&kind, "finished before the kill");
            return;
        }
        (false, JobEnd::Busy) => {
            s.end_write(d, ticket, Wrote::Nothing);
            s.count(&kind, "busy");
        }
        (false, JobEnd::Failed) => {
            s.end_write(d, ticket, Wrote::Spoiled);
            s.fail(
                &kind,
                format!("{}: {}", DRIVES[d], ndmjob_why(&run.output, 4)),
            );
        }
    }
    let _ = std::fs::remove_file(&index);
}

/// One worker: random operations until the deadline, each bounded by OP_LIMIT.
async fn worker(s: Arc<Soak>, mut rng: Rng) {
    // weights: backups and restores most often, the destructive ones less
    const OPS: [(&str, u64); 10] = [
        ("backup", 14),
        ("backup-ndmjob", 14),
        ("restore", 18),
        ("restore-ndmjob", 8),
        ("dar", 14),
        ("rest-kill", 7),
        ("job-cancel", 7),
        ("drop", 7),
        ("ndmjob-kill", 7),
        ("idle", 4),
    ];
    let total: u64 = OPS.iter().map(|o| o.1).sum();
    while Instant::now() < s.deadline() {
        let mut x = rng.below(total);
        let op = OPS
            .iter()
            .find(|o| {
                if x < o.1 {
                    true
                } else {
                    x -= o.1;
                    false
                }
            })
            .unwrap()
            .0;
        let run = async {
            match op {
                "backup" => op_backup(&s, &mut rng).await,
                "backup-ndmjob" => op_backup_ndmjob(&s, &mut rng).await,
                "restore" => op_restore(&s, &mut rng).await,
                "restore-ndmjob" => op_restore_ndmjob(&s, &mut rng).await,
                "dar" => op_dar(&s, &mut rng).await,
                "rest-kill" => op_interrupt(&s, &mut rng, Interrupt::RestKill).await,
                "job-cancel" => op_interrupt(&s, &mut rng, Interrupt::JobCancel).await,
                "drop" => op_interrupt(&s, &mut rng, Interrupt::Drop).await,
                "ndmjob-kill" => op_ndmjob_kill(&s, &mut rng).await,
                // a breather: sessions come and go at different rates
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        };
        if tokio::time::timeout(OP_LIMIT, run).await.is_err() {
            s.fail(op, format!("did not finish within {OP_LIMIT:?}"));
        }
        tokio::time::sleep(rng.ms(50, 400)).await;
    }
}

// ---------------------------------------------------------------------------------------
// the test

struct Sample {
    when: &'static str,
    /// What each open fd is (socket, file, pipe...), to name the ones left over.
    fd_targets: Vec<String>,
    secs: u64,
    rss_kib: u64,
    fds: usize,
    /// Not checked, shown: threads left behind point at work that never ended.
    threads: u64,
    sessions: Option<u64>,
}

fn sample(pid: u32, when: &'static str, t0: Instant, sessions: Option<u64>) -> Sample {
    let (rss_kib, fds, threads) = rss_fds_threads(pid).unwrap_or((0, 0, 0));
    let mut fd_targets: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let target = std::fs::read_link(e.path()).unwrap_or_default();
            format!("{}->{}", e.file_name().to_string_lossy(), target.display())
        })
        .collect();
    fd_targets.sort();
    Sample {
        when,
        fd_targets,
        secs: t0.elapsed().as_secs(),
        rss_kib,
        fds,
        threads,
        sessions,
    }
}

/// Polls until the REST view lists no session, at most `limit`.
async fn sessions_gone(s: &Soak, limit: Duration) -> Option<u64> {
    let deadline = Instant::now() + limit;
    loop {
        let n = s.session_count().await;
        if n == Some(0) || Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "soak test, minutes long: cargo test --release --test soak -- --ignored --nocapture"]
async fn soak() {
    assert!(
        Path::new(NDMJOB).exists(),
        "{NDMJOB} is missing: apt-get install amanda-common (scripts/test.sh installs it)"
    );
    let secs = env_u64("SOAK_SECS", 600);
    let sessions = env_u64("SOAK_SESSIONS", 20) as usize;
    let seed = env_u64(
        "SOAK_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    let mut rng = Rng(seed);
    println!("soak: {secs} s, {sessions} sessions, SOAK_SEED={seed}");

    let base = tempfile::tempdir().unwrap();
    let export = base.path().join("export");
    let src = export.join("src");
    let restores = export.join("restores");
    let (index_dir, logs, data) = (
        base.path().join("index"),
        base.path().join("logs"),
        base.path().join("data"),
    );
    for d in [&src, &restores, &index_dir, &logs] {
        std::fs::create_dir_all(d).unwrap();
    }
    let t_build = Instant::now();
    let (dar_files, files, bytes) = build_tree(&src, &mut rng);
    println!(
        "soak: tree of {files} files, {:.1} MB in {:.1} s",
        bytes as f64 / 1e6,
        t_build.elapsed().as_secs_f64()
    );
    let password = format!("soak{:016x}", rng.next());
    let pw = base.path().join("password");
    std::fs::write(&pw, format!("{password}\n")).unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let server_log = base.path().join("server.log");
    let mut server = Server::spawn(&data, &export, &pw, &server_log);
    let pid = server.pid();
    println!(
        "soak: ndmpd serve pid {pid}, NDMP {}, REST {}, MALLOC_ARENA_MAX={}, log {}",
        server.ndmp,
        server.rest,
        arenas(),
        server_log.display()
    );

    let s = Arc::new(Soak {
        ndmp: server.ndmp.clone(),
        rest: server.rest.clone(),
        password,
        src: src.clone(),
        restores,
        index_dir,
        logs,
        dar_files,
        drives: Mutex::new(Drives::default()),
        session_kinds: Mutex::new(BTreeMap::new()),
        tally: Mutex::new(Tally::default()),
        seq: AtomicU64::new(0),
        deadline: Mutex::new(Instant::now()),
    });

    // Warm-up, one at a time: every code path once (both butypes, our DMA and ndmjob, a
    // restore, REST), so buffers, thread pools and allocator arenas exist before the
    // starting sample. It also leaves an image on each drive for the first restores.
    let mut warm = Rng(seed ^ 0x5eed);
    let job = |tape: &str, butype: &str| BackupJob {
        server: s.ndmp.clone(),
        tape_server: None,
        user: USER.into(),
        password: s.password(),
        tape_login: None,
        auth: AuthMethod::Md5,
        version: 4,
        tape: tape.into(),
        path: src.to_str().unwrap().into(),
        level: 0,
        record_size: RECORD,
        history: true,
        butype: butype.into(),
        overwrite: true,
        changer: "changer0".into(),
        label: None,
        extra_env: Vec::new(),
    };
    backup(&job("vtape1", "tar"), |_| {})
        .await
        .expect("warm-up tar backup");
    backup(&job("vtape0", "dump"), |_| {})
        .await
        .expect("warm-up dump backup");
    s.set_image(
        0,
        Image {
            butype: "dump",
            index: None,
        },
    );
    op_restore(&s, &mut warm).await;
    let index = s.index_dir.join("index-warm");
    let args = ndmjob_backup_args(&s, 1, "tar", &index, true);
    let run = ndmjob(&s, &args, None, "warm-up").await;
    assert!(
        matches!(ndmjob_end(&run.output), JobEnd::Ok),
        "warm-up ndmjob backup: {}",
        run.output
    );
    s.set_image(
        1,
        Image {
            butype: "tar",
            index: Some(index),
        },
    );
    op_dar(&s, &mut warm).await;
    {
        let t = s.tally.lock().unwrap();
        assert!(
            t.failures.is_empty() && t.full_compared == 1 && t.dar_compared == 1,
            "warm-up failed: {:?}",
            t.failures
        );
    }
    s.tally.lock().unwrap().counts.clear();
    s.tally.lock().unwrap().full_compared = 0;
    s.tally.lock().unwrap().dar_compared = 0;
    assert!(s.jobs().await.is_ok());
    assert_eq!(sessions_gone(&s, Duration::from_secs(30)).await, Some(0));
    tokio::time::sleep(Duration::from_secs(2)).await;

    let t0 = Instant::now();
    let mut samples = vec![sample(pid, "start", t0, Some(0))];
    println!(
        "soak: start RSS {} KiB, {} fds, {} threads",
        samples[0].rss_kib, samples[0].fds, samples[0].threads
    );
    // the workers' time counts from now
    *s.deadline.lock().unwrap() = Instant::now() + Duration::from_secs(secs);
    let workers: Vec<_> = (0..sessions)
        .map(|i| {
            let r = Rng(seed.wrapping_add(0x1000 * (i as u64 + 1)));
            tokio::spawn(worker(s.clone(), r))
        })
        .collect();
    // sample while they run
    while Instant::now() < s.deadline() {
        let left = s.deadline().saturating_duration_since(Instant::now());
        tokio::time::sleep(left.min(SAMPLE_EVERY)).await;
        if Instant::now() >= s.deadline() {
            break;
        }
        let mut smp = sample(pid, "during", t0, None);
        let n = s.session_count().await;
        smp.sessions = n;
        let ops: u64 = s.tally.lock().unwrap().counts.values().sum();
        println!(
            "soak: t={:>4} s  RSS {:>7} KiB  fds {:>4}  threads {:>3}  sessions {:>3}  operations {ops}",
            smp.secs,
            smp.rss_kib,
            smp.fds,
            smp.threads,
            n.map_or("?".into(), |n| n.to_string())
        );
        samples.push(smp);
    }
    for w in workers {
        w.await.unwrap();
    }
    println!("soak: workers done after {} s", t0.elapsed().as_secs());

    // ---- checks
    let mut checks: Vec<(bool, String, String)> = Vec::new();
    let alive = server.child.try_wait().ok().flatten().is_none();
    checks.push((alive, "server alive".into(), format!("pid {pid}")));

    let left = sessions_gone(&s, Duration::from_secs(30)).await;
    checks.push((
        left == Some(0),
        "sessions gone".into(),
        format!(
            "{} session(s) listed 30 s after the workers stopped",
            left.map_or("?".into(), |n| n.to_string())
        ),
    ));

    // jobs: give the last ones a moment to end, then judge
    let mut jobs = Vec::new();
    let ended = |j: &Value| {
        matches!(j["state"].as_str(), Some("success" | "failure")) && j["end_time"].is_string()
    };
    for _ in 0..30 {
        jobs = s.jobs().await.unwrap_or_default();
        if jobs.iter().all(ended) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let kinds = s.session_kinds.lock().unwrap().clone();
    let open: Vec<String> = jobs
        .iter()
        .filter(|j| !ended(j))
        .map(|j| {
            let session = j["session"]["id"].as_str().unwrap_or("?");
            format!(
                "\n    {} state={} end_time={} session={session} bytes={} [{}] {}",
                j["uuid"].as_str().unwrap_or("?"),
                j["state"],
                j["end_time"],
                j["progress"]["bytes"],
                kinds
                    .get(session)
                    .map_or("not labeled: ndmpd dma library or ndmjob", |k| k.as_str()),
                j["description"].as_str().unwrap_or("?"),
            )
        })
        .collect();
    let by_state = jobs
        .iter()
        .fold(BTreeMap::<String, u64>::new(), |mut m, j| {
            *m.entry(j["state"].as_str().unwrap_or("?").to_string())
                .or_default() += 1;
            m
        });
    checks.push((
        open.is_empty() && !jobs.is_empty(),
        "every job ended".into(),
        format!(
            "{} job(s) listed (last 300 s), by state {:?}{}",
            jobs.len(),
            by_state,
            if open.is_empty() {
                String::new()
            } else {
                format!("; NOT ENDED ({}):{}", open.len(), open.join(""))
            }
        ),
    ));

    // drives: a TAPE_OPEN of each must succeed now
    let mut locked = Vec::new();
    match login(&s.ndmp, USER, &s.password(), AuthMethod::Md5).await {
        Ok(mut c) => {
            for drive in DRIVES {
                let r = c
                    .call_ok(Request::TapeOpen(TapeOpenRequest {
                        device: drive.into(),
                        mode: TapeOpenMode::READ,
                    }))
                    .await;
                match r {
                    Ok(_) => {
                        if let Err(e) = c.call_ok(Request::TapeClose(Void)).await {
                            locked.push(format!("{drive}: TAPE_CLOSE {e}"));
                        }
                    }
                    Err(e) => locked.push(format!("{drive}: {e}")),
                }
            }
            let _ = c.close().await;
        }
        Err(e) => locked.push(format!("login: {e}")),
    }
    checks.push((
        locked.is_empty(),
        "no drive locked".into(),
        if locked.is_empty() {
            "TAPE_OPEN of vtape0 and vtape1 succeeded".into()
        } else {
            locked.join("; ")
        },
    ));

    // cartridges: each passes `ndmpd vtape inspect`
    let bin = env!("CARGO_BIN_EXE_ndmpd");
    let list = Command::new(bin)
        .args(["vtape", "--data-dir"])
        .arg(&data)
        .arg("list")
        .output()
        .unwrap();
    let labels: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    let mut bad_carts = Vec::new();
    for label in &labels {
        let out = Command::new(bin)
            .args(["vtape", "--data-dir"])
            .arg(&data)
            .args(["inspect", label])
            .output()
            .unwrap();
        if !out.status.success() {
            bad_carts.push(format!(
                "{label}: exit {:?}: {}{}",
                out.status.code(),
                tail(&String::from_utf8_lossy(&out.stdout), 3),
                tail(&String::from_utf8_lossy(&out.stderr), 3)
            ));
        }
    }
    checks.push((
        list.status.success() && !labels.is_empty() && bad_carts.is_empty(),
        "cartridges inspect clean".into(),
        if bad_carts.is_empty() {
            format!("{} cartridge(s) {labels:?}: exit 0", labels.len())
        } else {
            bad_carts.join("; ")
        },
    ));

    // resources, once the check session above is gone too
    let _ = sessions_gone(&s, Duration::from_secs(10)).await;
    // an idle server gives freed heap back within 10 s (server::IDLE_CHECK) and tokio's
    // blocking threads leave after 10 s idle: the end sample is taken after both
    tokio::time::sleep(Duration::from_secs(15)).await;
    // the sample first: a REST call of our own would show as one more socket
    let mut end = sample(pid, "end", t0, None);
    end.sessions = s.session_count().await;
    samples.push(end);
    let (start, end) = (&samples[0], samples.last().unwrap());
    checks.push((
        end.fds > 0 && end.fds <= start.fds + FD_TOLERANCE,
        "fds back to start".into(),
        format!(
            "start {} / end {} (tolerance +{FD_TOLERANCE}); max during {}{}",
            start.fds,
            end.fds,
            samples.iter().map(|x| x.fds).max().unwrap(),
            {
                let new: Vec<&String> = end
                    .fd_targets
                    .iter()
                    .filter(|f| !start.fd_targets.contains(f))
                    .collect();
                if new.is_empty() {
                    String::new()
                } else {
                    format!("; new at the end: {new:?}")
                }
            }
        ),
    ));
    checks.push((
        end.rss_kib > 0 && end.rss_kib <= start.rss_kib + RSS_TOLERANCE_KIB,
        "RSS back to start".into(),
        format!(
            "start {} KiB / end {} KiB (tolerance +{RSS_TOLERANCE_KIB} KiB); max during {} KiB",
            start.rss_kib,
            end.rss_kib,
            samples.iter().map(|x| x.rss_kib).max().unwrap()
        ),
    ));

    let tally = std::mem::take(&mut *s.tally.lock().unwrap());
    checks.push((
        tally.full_compared + tally.dar_compared > 0
            && !tally.failures.iter().any(|f| f.contains("DIFFERS")),
        "restores identical".into(),
        format!(
            "{} full restore(s) and {} DAR file(s) compared identical; {} differed",
            tally.full_compared,
            tally.dar_compared,
            tally
                .failures
                .iter()
                .filter(|f| f.contains("DIFFERS"))
                .count()
        ),
    ));
    checks.push((
        tally.failures.is_empty(),
        "no unexpected operation failure".into(),
        format!("{} failure(s)", tally.failures.len()),
    ));

    // a graceful stop still works after all that
    // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let stop = Instant::now();
    let status = loop {
        if let Some(st) = server.child.try_wait().unwrap() {
            break Some(st);
        }
        if stop.elapsed() > Duration::from_secs(30) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    checks.push((
        status.is_some_and(|s| s.success()),
        "SIGTERM exits 0".into(),
        format!("{status:?}"),
    ));

    // the server's own account: a panic in any task or thread is a bug even if it recovered
    let log = std::fs::read_to_string(&server_log).unwrap_or_default();
    let panics: Vec<&str> = log.lines().filter(|l| l.contains("panicked")).collect();
    checks.push((
        panics.is_empty(),
        "no panic in the server log".into(),
        match panics.first() {
            None => format!("{} log lines", log.lines().count()),
            Some(first) => format!("{} panic line(s), first: {first}", panics.len()),
        },
    ));

    // ---- summary
    println!();
    println!("== soak summary: {secs} s, {sessions} sessions, SOAK_SEED={seed}, tree {files} files / {:.1} MB", bytes as f64 / 1e6);
    println!();
    println!("{:<44} {:<36} {:>6}", "operation", "outcome", "count");
    let mut per_kind: BTreeMap<&str, u64> = BTreeMap::new();
    for ((kind, outcome), n) in &tally.counts {
        println!("{kind:<44} {outcome:<36} {n:>6}");
        *per_kind.entry(kind).or_default() += n;
    }
    let total: u64 = per_kind.values().sum();
    println!("{:<44} {:<36} {total:>6}", "all operations", "");
    println!();
    println!(
        "{:<8} {:>6} {:>10} {:>6} {:>8} {:>9}",
        "sample", "t (s)", "RSS (KiB)", "fds", "threads", "sessions"
    );
    for x in &samples {
        println!(
            "{:<8} {:>6} {:>10} {:>6} {:>8} {:>9}",
            x.when,
            x.secs,
            x.rss_kib,
            x.fds,
            x.threads,
            x.sessions.map_or("?".into(), |n| n.to_string())
        );
    }
    println!();
    for (ok, name, detail) in &checks {
        println!("[{}] {name}: {detail}", if *ok { "PASS" } else { "FAIL" });
    }
    if !tally.raced.is_empty() {
        println!();
        println!(
            "restores that failed while a backup had the drive (\"raced\"), first 10 of {}:",
            tally.raced.len()
        );
        for r in tally.raced.iter().take(10) {
            println!("  {r}");
        }
    }
    if !tally.failures.is_empty() {
        println!();
        println!(
            "unexpected failures (first 40 of {}):",
            tally.failures.len()
        );
        for f in tally.failures.iter().take(40) {
            println!("  {f}");
        }
    }
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| !c.0)
        .map(|c| c.1.as_str())
        .collect();
    if !failed.is_empty() {
        // keep the server's log for the post-mortem
        let kept = std::env::temp_dir().join(format!("ndmpd-soak-{seed}.log"));
        let _ = std::fs::copy(&server_log, &kept);
        println!("server log kept in {}", kept.display());
    }
    assert!(failed.is_empty(), "soak checks failed: {failed:?}");
}
