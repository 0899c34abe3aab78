//! Point-in-time backups from btrfs snapshots, against the real binary on a btrfs file system
//! in a loop-mounted image: a tree in motion backed up consistently (and the live tree not),
//! no snapshot left however a backup ends, the same image as a live backup of a still tree,
//! and what `auto` and `btrfs` do on an export that is not on btrfs.

mod common;

use common::btrfs::{paused_backup, run, Btrfs};
use common::served::{start, Server};
use ndmpd::client::Client;
use ndmpd::wire::header::Body;
use ndmpd::wire::messages::*;
use ndmpd::wire::types::*;
use ndmpd::wire::{Reply, Request};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn config_text(dir: &Path, export: &Path, snapshot: &str) -> String {
    format!(
        "listen = [\"127.0.0.1:0\"]\nrest_listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\
         [[export]]\npath = \"{}\"\nsnapshot = \"{snapshot}\"\n\
         [[tape]]\nname = \"vtape0\"\nkind = \"virtual\"\n\
         [[changer]]\nname = \"changer0\"\nkind = \"virtual\"\n",
        dir.join("data").display(),
        export.display()
    )
}

fn serve(dir: &Path, export: &Path, snapshot: &str) -> Server {
    let config = dir.join("ndmpd.toml");
    std::fs::write(&config, config_text(dir, export, snapshot)).unwrap();
    start(dir, &config)
}

impl Server {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }

    /// An ndmjob backup (dump unless `extra` has a -B, LOCAL) of `tree` onto vtape0, from its beginning; returns
    /// ndmjob's output and the index it wrote.
    fn ndmjob_backup(&self, tree: &Path, extra: &[&str]) -> (String, String) {
        let dir = self.config.parent().unwrap();
        let index = dir.join("index");
        let _ = std::fs::remove_file(&index);
        let agent = format!("127.0.0.1:{}/4t,ndmp,{}", self.addr.port(), self.password);
        let mut args = vec!["-c", "-v", "-D", &agent, "-f", "vtape0"];
        if !extra.contains(&"-B") {
            args.extend(["-B", "dump"]);
        }
        let (tree, index_s) = (tree.to_str().unwrap(), index.to_str().unwrap());
        args.extend(["-C", tree, "-I", index_s]);
        args.extend(extra);
        let text = common::ndmjob(&args);
        (text, std::fs::read_to_string(&index).unwrap_or_default())
    }

    /// Tape file 0 of vtape0, through `ndmpd vtape cat`.
    fn image(&self) -> Vec<u8> {
        let out = Command::new(env!("CARGO_BIN_EXE_ndmpd"))
            .arg("vtape")
            .arg("--config")
            .arg(&self.config)
            .args(["cat", "vtape0"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "vtape cat: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    async fn client(&self) -> Client {
        let mut c = Client::connect(self.addr).await.unwrap();
        c.auth_md5("ndmp", self.password.as_bytes()).await.unwrap();
        c
    }
}

/// Restores `image` with the stock `restore -rf` into a fresh directory under `dir`.
fn restore_r(dir: &Path, name: &str, image: &[u8]) -> PathBuf {
    let img = dir.join(format!("{name}.dump"));
    std::fs::write(&img, image).unwrap();
    let dest = dir.join(name);
    std::fs::create_dir(&dest).unwrap();
    let out = Command::new("restore")
        .arg("-rf")
        .arg(&img)
        .current_dir(&dest)
        .output()
        .expect("restore is missing: apt-get install dump (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "restore -rf: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(dest.join("restoresymtable")).unwrap();
    dest
}

/// Every path under `root` with its kind, mode, size and content digest, sorted.
fn listing(root: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let what = if m.is_dir() {
                stack.push(p.clone());
                "dir".to_string()
            } else {
                let data = std::fs::read(&p).unwrap();
                let sum = data.iter().fold(0u64, |h, b| {
                    h.wrapping_mul(1_000_003).wrapping_add(u64::from(*b))
                });
                format!("file {} {sum:x}", data.len())
            };
            out.push(format!(
                "{rel} {what} {:o} {} {}",
                m.mode(),
                m.uid(),
                m.mtime()
            ));
        }
    }
    out.sort();
    out
}

/// The dump image with each header's date (c_date) and checksum zeroed: two backups of the
/// same tree at different moments differ only there.
fn without_dates(img: &[u8]) -> Vec<u8> {
    const NFS_MAGIC: u32 = 60012;
    let mut v = img.to_vec();
    for blk in v.chunks_mut(1024) {
        if blk.len() == 1024 && u32::from_le_bytes(blk[24..28].try_into().unwrap()) == NFS_MAGIC {
            blk[4..8].fill(0);
            blk[28..32].fill(0);
        }
    }
    v
}

// ---- the tree in motion ----

/// Files the writer updates in this order, each holding a fixed-width counter rewritten in
/// place; the pairs are (0,1), (2,3), ... and the last one is a 4 KiB page rewritten whole.
const PAIRS: usize = 6;

fn moving_names() -> Vec<String> {
    let mut v = Vec::new();
    for i in 0..PAIRS {
        v.push(format!("pair{i}/a"));
        v.push(format!("pair{i}/b"));
    }
    v.push("page".into());
    v
}

fn record(n: u64, len: usize) -> Vec<u8> {
    let unit = format!("{n:015}\n").into_bytes();
    unit.iter().cycle().take(len).copied().collect()
}

fn value(data: &[u8]) -> Option<u64> {
    let first = std::str::from_utf8(data.get(..15)?).ok()?.parse().ok()?;
    (data == record(first, data.len()).as_slice()).then_some(first)
}

/// Builds the tree: the moving files created in the reverse of the writer's order, so dump
/// (which reads in inode order) reads them backwards, with 32 MiB of data in the middle; and
/// `dirX/inner`, which the writer renames to `dirY` and back.
fn build_moving(vol: &Path) {
    let names = moving_names();
    for i in 0..PAIRS {
        std::fs::create_dir_all(vol.join(format!("pair{i}"))).unwrap();
    }
    for (k, name) in names.iter().enumerate().rev() {
        let len = if name == "page" { 4096 } else { 16 };
        std::fs::write(vol.join(name), record(0, len)).unwrap();
        if k == names.len() / 2 {
            std::fs::write(vol.join("filler"), record(7, 32 << 20)).unwrap();
            // the writers read small files ahead of the image (at most 256 files): enough
            // small files after the filler that the second half is still read only once the
            // 32 MiB are written, so a live backup's two halves stay apart in time
            std::fs::create_dir_all(vol.join("pad")).unwrap();
            for j in 0..400 {
                std::fs::write(vol.join(format!("pad/{j}")), b"p").unwrap();
            }
        }
    }
    std::fs::create_dir(vol.join("dirX")).unwrap();
    std::fs::write(vol.join("dirX/inner"), b"inside the renamed directory\n").unwrap();
}

/// Rewrites every moving file with the next counter (one write each, in place, synced before
/// the next), then renames the directory, until told to stop; counts completed rounds.
fn writer(vol: PathBuf, stop: Arc<AtomicBool>, rounds: Arc<AtomicU64>) {
    let files: Vec<(std::fs::File, usize)> = moving_names()
        .iter()
        .map(|n| {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(vol.join(n))
                .unwrap();
            (f, if n == "page" { 4096 } else { 16 })
        })
        .collect();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        for (f, len) in &files {
            f.write_all_at(&record(n, *len), 0).unwrap();
            // ordered as a database orders its writes: durable before the next one starts.
            // A snapshot holds what a crash at its instant would leave, so writes not yet
            // synced may be in it in any combination (a run without this showed it)
            f.sync_data().unwrap();
        }
        let (from, to) = if vol.join("dirX").exists() {
            ("dirX", "dirY")
        } else {
            ("dirY", "dirX")
        };
        std::fs::rename(vol.join(from), vol.join(to)).unwrap();
        rounds.store(n, Ordering::Relaxed);
        // a busy application, not a spinning one: the machine's other work goes on
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// What is wrong with a restored moving tree, if anything: its counters must be those after
/// some prefix of the writer's writes (v0 >= v1 >= ... >= v_last >= v0 - 1: every pair equal
/// but the one pair whose second write had not happened at that instant), and the directory
/// must be there under exactly one name, with its file.
fn inconsistency(tree: &Path) -> Option<String> {
    let mut vals = Vec::new();
    for name in moving_names() {
        match std::fs::read(tree.join(&name))
            .ok()
            .as_deref()
            .and_then(value)
        {
            Some(v) => vals.push(v),
            None => return Some(format!("{name} is missing or torn")),
        }
    }
    let monotone = vals.windows(2).all(|w| w[0] >= w[1]);
    if !monotone || vals[vals.len() - 1] + 1 < vals[0] {
        return Some(format!("counters {vals:?} are from different moments"));
    }
    let unequal = (0..PAIRS)
        .filter(|i| vals[2 * i] != vals[2 * i + 1])
        .count();
    if unequal > 1 {
        return Some(format!("{unequal} pairs differ: {vals:?}"));
    }
    let names: Vec<&str> = ["dirX", "dirY"]
        .into_iter()
        .filter(|d| tree.join(d).is_dir())
        .collect();
    if names.len() != 1 {
        return Some(format!("the renamed directory is there as {names:?}"));
    }
    match std::fs::read(tree.join(names[0]).join("inner")) {
        Ok(d) if d == b"inside the renamed directory\n" => None,
        _ => Some(format!("{}/inner is missing or wrong", names[0])),
    }
}

/// Backs up the subvolume while the writer runs; returns ndmjob's output and the restored
/// tree's inconsistency.
fn backup_in_motion(
    fs: &Btrfs,
    s: &Server,
    name: &str,
    extra: &[&str],
) -> (String, Option<String>) {
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let w = {
        let (vol, stop, rounds) = (fs.vol.clone(), stop.clone(), rounds.clone());
        std::thread::spawn(move || writer(vol, stop, rounds))
    };
    while rounds.load(Ordering::Relaxed) < 10 {
        assert!(!w.is_finished(), "the writer stopped");
        std::thread::sleep(Duration::from_millis(1));
    }
    let before = rounds.load(Ordering::Relaxed);
    let (text, _) = s.ndmjob_backup(&fs.vol, extra);
    let after = rounds.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    w.join().unwrap();
    assert!(text.contains("Operation ended OKAY"), "{text}");
    // the writer really ran during the backup
    assert!(after > before, "the writer stood still ({before})");
    let dest = restore_r(fs.dir.path(), name, &s.image());
    (text, inconsistency(&dest))
}

#[test]
fn a_tree_in_motion_is_backed_up_at_one_moment_and_the_live_tree_is_not() {
    let Some(fs) = Btrfs::make() else { return };
    build_moving(&fs.vol);
    let work = tempfile::tempdir().unwrap();
    let s = serve(work.path(), &fs.vol, "auto");
    let (text, bad) = backup_in_motion(&fs, &s, "snap", &[]);
    assert_eq!(bad, None, "the snapshot backup is inconsistent");
    assert!(
        text.contains("from btrfs snapshot") && text.contains("/vol/.ndmpd-snap/"),
        "{text}"
    );
    fs.wait_no_snapshots();
    // the same with SNAPSHOT=N: dump reads the moving files in reverse of the writer's
    // order with 32 MiB in between, so the writer laps it
    let (text, bad) = backup_in_motion(&fs, &s, "live", &["-E", "SNAPSHOT=N"]);
    assert!(
        text.contains("SNAPSHOT=N: reading the live tree of"),
        "{text}"
    );
    let bad = bad.expect("the live backup of a tree in motion came out consistent");
    eprintln!("live backup: {bad}");
    assert_eq!(fs.snapshots(), Vec::<String>::new());
}

// ---- the same image as a live backup ----

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_backup_gives_the_image_of_a_live_backup_of_the_same_still_tree() {
    let Some(fs) = Btrfs::make() else { return };
    common::tree::build(&fs.vol.join("tree"));
    std::fs::write(fs.vol.join("top.txt"), b"at the subvolume root\n").unwrap();
    let work = tempfile::tempdir().unwrap();
    let s = serve(work.path(), &fs.vol, "auto");
    // CONFIG_GET_FS_INFO says what backups of the export read
    let mut c = s.client().await;
    let Reply::ConfigGetFsInfo(r) = c.call_ok(Request::ConfigGetFsInfo(Void)).await.unwrap() else {
        panic!("not an FS_INFO reply")
    };
    let env = &r.fs_info[0].fs_env;
    assert!(
        env.iter()
            .any(|p| p.name.to_string() == "SNAPSHOT" && p.value.to_string() == "btrfs"),
        "{env:?}"
    );
    drop(c);
    let (snap_text, snap_index) =
        tokio::task::block_in_place(|| s.ndmjob_backup(&fs.vol, &["-E", "HIST=y"]));
    assert!(snap_text.contains("Operation ended OKAY"), "{snap_text}");
    assert!(snap_text.contains("from btrfs snapshot"), "{snap_text}");
    // success: the snapshot is gone by the time the DMA hears the end
    assert_eq!(fs.snapshots(), Vec::<String>::new());
    let snap_img = s.image();
    let (live_text, live_index) = tokio::task::block_in_place(|| {
        s.ndmjob_backup(&fs.vol, &["-E", "HIST=y", "-E", "SNAPSHOT=N"])
    });
    assert!(live_text.contains("Operation ended OKAY"), "{live_text}");
    let live_img = s.image();
    // file history: the same entries, names relative to FILESYSTEM, same inodes and offsets
    let hist = |idx: &str| -> Vec<String> {
        idx.lines()
            .filter(|l| !l.starts_with("DE "))
            .map(str::to_string)
            .collect()
    };
    assert!(snap_index.contains("DHd 2 top.txt UNIX"), "{snap_index}");
    assert!(!snap_index.contains(".ndmpd-snap"), "{snap_index}");
    let fs_line = format!("DE FILESYSTEM={}", fs.vol.display());
    assert!(snap_index.lines().any(|l| l == fs_line), "{snap_index}");
    assert_eq!(hist(&snap_index), hist(&live_index));
    // the image: byte for byte, apart from the dump date and the checksums it changes
    assert_eq!(snap_img.len(), live_img.len());
    assert!(
        without_dates(&snap_img) == without_dates(&live_img),
        "the images differ"
    );
    // the restored trees: equal, and equal to the subvolume
    let a = restore_r(work.path(), "from-snap", &snap_img);
    let b = restore_r(work.path(), "from-live", &live_img);
    assert_eq!(listing(&a), listing(&b));
    assert!(!a.join(".ndmpd-snap").exists());
    common::tree::assert_same(&fs.vol.join("tree"), &a.join("tree"));
    // dumpdates keeps FILESYSTEM, never the snapshot's path
    let dumpdates = std::fs::read_to_string(work.path().join("data/dumpdates")).unwrap_or_default();
    assert!(!dumpdates.contains(".ndmpd-snap"), "{dumpdates}");
    assert!(dumpdates.contains(fs.vol.to_str().unwrap()), "{dumpdates}");
    // the REST job says which snapshot the first backup read; the second read none
    let out = Command::new("curl")
        .args(["-s", "-u"])
        .arg(format!("ndmp:{}", s.password))
        .arg(format!(
            "http://{}/api/cluster/jobs?fields=description,snapshot,start_time&order_by=start_time",
            s.rest
        ))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let recs = v["records"].as_array().unwrap();
    let snaps: Vec<&serde_json::Value> = recs.iter().map(|r| &r["snapshot"]).collect();
    assert_eq!(snaps.len(), 2, "{v}");
    let shown = format!("{v}");
    assert!(shown.contains("/vol/.ndmpd-snap/"), "{v}");
    assert!(snaps.iter().any(|s| s.is_null()), "{v}");
    // and the server log said which snapshot it took and that it removed it
    let log = s.log_text();
    assert!(log.contains("snapshot ") && log.contains(" taken"), "{log}");
    assert!(log.contains(" removed"), "{log}");
}

// ---- no snapshot left, however the backup ends ----

/// A tree big enough that a backup into a paused mover fills the pipe and waits.
fn build_big(vol: &Path) {
    std::fs::create_dir_all(vol.join("data")).unwrap();
    for i in 0..4 {
        std::fs::write(vol.join(format!("data/f{i}")), record(i, 2 << 20)).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn data_abort_mid_backup_removes_the_snapshot() {
    let Some(fs) = Btrfs::make() else { return };
    build_big(&fs.vol);
    let work = tempfile::tempdir().unwrap();
    let s = serve(work.path(), &fs.vol, "btrfs");
    let mut c = s.client().await;
    paused_backup(&mut c, &fs.vol).await;
    let held = fs.snapshots();
    assert_eq!(held.len(), 1, "{held:?}");
    let Reply::DataGetState(d) = c.call_ok(Request::DataGetState(Void)).await.unwrap() else {
        panic!()
    };
    assert_eq!(d.state, DataState::ACTIVE);
    c.call_ok(Request::DataAbort(Void)).await.unwrap();
    let halted = c.take_posts().into_iter().any(|m| {
        matches!(m.body, Body::Request(Request::NotifyDataHalted(h)) if h.reason == DataHaltReason::ABORTED)
    });
    assert!(halted);
    tokio::task::block_in_place(|| fs.wait_no_snapshots());
    // the session goes on: a second backup, to its end, leaves none either
    c.call_ok(Request::DataStop(Void)).await.unwrap();
    drop(c);
    let (text, _) = tokio::task::block_in_place(|| s.ndmjob_backup(&fs.vol, &[]));
    assert!(text.contains("Operation ended OKAY"), "{text}");
    assert_eq!(fs.snapshots(), Vec::<String>::new());
}

/// Not a test on its own: the DMA process `a_killed_dma_leaves_no_snapshot` starts and
/// kills. It starts a backup that waits in the middle, says so, and waits to be killed.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "helper process of a_killed_dma_leaves_no_snapshot"]
async fn helper_dma_with_a_paused_backup() {
    let (Ok(addr), Ok(pw), Ok(fs)) = (
        std::env::var("SNAP_HELPER_ADDR"),
        std::env::var("SNAP_HELPER_PW"),
        std::env::var("SNAP_HELPER_FS"),
    ) else {
        panic!("run by a_killed_dma_leaves_no_snapshot only");
    };
    let mut c = Client::connect(addr.as_str()).await.unwrap();
    c.auth_md5("ndmp", pw.as_bytes()).await.unwrap();
    paused_backup(&mut c, Path::new(&fs)).await;
    println!("HELPER PAUSED");
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

#[test]
fn a_killed_dma_leaves_no_snapshot() {
    let Some(fs) = Btrfs::make() else { return };
    build_big(&fs.vol);
    let work = tempfile::tempdir().unwrap();
    let s = serve(work.path(), &fs.vol, "auto");
    let mut dma = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "helper_dma_with_a_paused_backup",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SNAP_HELPER_ADDR", s.addr.to_string())
        .env("SNAP_HELPER_PW", &s.password)
        .env("SNAP_HELPER_FS", &fs.vol)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = BufReader::new(dma.stdout.take().unwrap());
    let paused = out
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains("HELPER PAUSED"));
    assert!(paused, "the helper DMA did not get its backup going");
    assert_eq!(fs.snapshots().len(), 1, "no snapshot while the backup runs");
    // SIGKILL: the DMA closes nothing, its sockets just go
    dma.kill().unwrap();
    dma.wait().unwrap();
    fs.wait_no_snapshots();
    let log = s.log_text();
    assert!(log.contains("did not finish"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_killed_mid_backup_leaves_a_snapshot_the_restart_removes() {
    let Some(fs) = Btrfs::make() else { return };
    build_big(&fs.vol);
    let work = tempfile::tempdir().unwrap();
    let mut s = serve(work.path(), &fs.vol, "auto");
    let mut c = s.client().await;
    paused_backup(&mut c, &fs.vol).await;
    let held = fs.snapshots();
    assert_eq!(held.len(), 1, "{held:?}");
    // SIGKILL: no destructor runs, the snapshot stays behind
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    drop(c);
    assert_eq!(fs.snapshots(), held);
    let config = s.config.clone();
    drop(s);
    let s = start(work.path(), &config);
    assert_eq!(fs.snapshots(), Vec::<String>::new());
    let log = s.log_text();
    assert!(
        log.contains(&format!(
            "removed leftover snapshot {}",
            fs.vol.join(".ndmpd-snap").join(&held[0]).display()
        )),
        "{log}"
    );
    // a graceful shutdown mid-backup (SIGTERM) removes it itself
    let mut c = s.client().await;
    paused_backup(&mut c, &fs.vol).await;
    assert_eq!(fs.snapshots().len(), 1);
    run(Command::new("kill").arg(s.child.id().to_string()));
    let mut s = s;
    let status = s.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    drop(c);
    assert_eq!(fs.snapshots(), Vec::<String>::new());
}

// ---- what cannot be snapshotted ----

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_that_cannot_be_taken_fails_the_backup_unless_optional() {
    let Some(fs) = Btrfs::make() else { return };
    build_big(&fs.vol);
    // where the snapshot directory should be, a file: no snapshot can be made
    std::fs::write(fs.vol.join(".ndmpd-snap"), b"in the way\n").unwrap();
    let work = tempfile::tempdir().unwrap();
    let s = serve(work.path(), &fs.vol, "auto");
    let (text, _) = tokio::task::block_in_place(|| s.ndmjob_backup(&fs.vol, &[]));
    assert!(!text.contains("Operation ended OKAY"), "{text}");
    assert!(
        text.contains("cannot take a btrfs snapshot of") && text.contains("SNAPSHOT=optional"),
        "{text}"
    );
    let (text, _) =
        tokio::task::block_in_place(|| s.ndmjob_backup(&fs.vol, &["-E", "SNAPSHOT=optional"]));
    assert!(text.contains("Operation ended OKAY"), "{text}");
    assert!(
        text.contains("SNAPSHOT=optional: cannot take a btrfs snapshot of")
            && text.contains("reading the live tree"),
        "{text}"
    );
    let dest = restore_r(work.path(), "restored", &s.image());
    assert_eq!(listing(&dest.join("data")), listing(&fs.vol.join("data")));
    // a bad value is refused in words
    let (text, _) =
        tokio::task::block_in_place(|| s.ndmjob_backup(&fs.vol, &["-E", "SNAPSHOT=maybe"]));
    assert!(
        text.contains("SNAPSHOT \\\"maybe\\\" is not Y, N or optional")
            || text.contains("SNAPSHOT \"maybe\" is not Y, N or optional"),
        "{text}"
    );
}

#[test]
fn a_read_only_subvolume_is_read_as_it_is() {
    let Some(fs) = Btrfs::make() else { return };
    build_big(&fs.vol);
    let ro = fs.mnt.join("ro");
    run(Command::new("btrfs")
        .args(["subvolume", "snapshot", "-r"])
        .arg(&fs.vol)
        .arg(&ro));
    let work = tempfile::tempdir().unwrap();
    let s = serve(work.path(), &ro, "btrfs");
    let (text, _) = s.ndmjob_backup(&ro, &[]);
    assert!(text.contains("Operation ended OKAY"), "{text}");
    assert!(
        text.contains("is in a read-only subvolume") && text.contains("read as it is"),
        "{text}"
    );
    assert!(!ro.join(".ndmpd-snap").exists());
    let dest = restore_r(work.path(), "restored", &s.image());
    assert_eq!(listing(&dest.join("data")), listing(&fs.vol.join("data")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nested_subvolume_is_snapshotted_into_the_exports_snapshot_directory() {
    let Some(fs) = Btrfs::make() else { return };
    let nested = fs.vol.join("nested");
    run(Command::new("btrfs")
        .args(["subvolume", "create"])
        .arg(&nested));
    build_big(&nested);
    let work = tempfile::tempdir().unwrap();
    let mut s = serve(work.path(), &fs.vol, "btrfs");
    let (text, _) = tokio::task::block_in_place(|| s.ndmjob_backup(&nested, &[]));
    assert!(text.contains("Operation ended OKAY"), "{text}");
    let from = format!("from btrfs snapshot {}/.ndmpd-snap/", fs.vol.display());
    assert!(text.contains(&from), "{text}");
    assert!(!nested.join(".ndmpd-snap").exists());
    let dest = restore_r(work.path(), "restored", &s.image());
    assert_eq!(listing(&dest.join("data")), listing(&nested.join("data")));
    assert_eq!(fs.snapshots(), Vec::<String>::new());
    // a leftover of the nested subvolume is where the start-up cleanup looks
    let mut c = s.client().await;
    paused_backup(&mut c, &nested).await;
    assert_eq!(fs.snapshots().len(), 1);
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    drop(c);
    let config = s.config.clone();
    drop(s);
    let _s = start(work.path(), &config);
    assert_eq!(fs.snapshots(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_on_a_non_btrfs_export_takes_none_and_says_so() {
    let t = common::tmpfs::Tmpfs::mount(64 << 20);
    let export = t.path().to_path_buf();
    std::fs::write(export.join("f"), b"plain\n").unwrap();
    let work = tempfile::tempdir().unwrap();
    let s = serve(work.path(), &export, "auto");
    let log = s.log_text();
    assert!(
        log.contains(&format!(
            "export {}: backups read the live tree, no snapshot ({} is on tmpfs, not btrfs)",
            export.display(),
            export.display()
        )),
        "{log}"
    );
    let mut c = s.client().await;
    let Reply::ConfigGetFsInfo(r) = c.call_ok(Request::ConfigGetFsInfo(Void)).await.unwrap() else {
        panic!()
    };
    let env = &r.fs_info[0].fs_env;
    assert!(
        env.iter()
            .any(|p| p.name.to_string() == "SNAPSHOT" && p.value.to_string() == "none"),
        "{env:?}"
    );
    drop(c);
    let (text, _) = tokio::task::block_in_place(|| s.ndmjob_backup(&export, &[]));
    assert!(text.contains("Operation ended OKAY"), "{text}");
    assert!(
        text.contains("reading the live tree of") && text.contains("no snapshot"),
        "{text}"
    );
    assert!(!export.join(".ndmpd-snap").exists());
}

#[test]
fn btrfs_on_a_non_btrfs_export_is_a_start_up_error() {
    let t = common::tmpfs::Tmpfs::mount(16 << 20);
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("ndmpd.toml");
    std::fs::write(&config, config_text(work.path(), t.path(), "btrfs")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ndmpd"))
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "ndmpd: export {}: snapshot = \"btrfs\", but {} is on tmpfs, not btrfs",
            t.path().display(),
            t.path().display()
        )),
        "{err}"
    );
    // and an unknown provider is a config error naming the choices
    std::fs::write(&config, config_text(work.path(), t.path(), "zfs")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ndmpd"))
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("zfs") && err.contains("auto") && err.contains("none"),
        "{err}"
    );
}

// ---- incrementals from the kept base snapshot ----

/// The tree of `tree::build` plus `n` small files in ten directories.
fn build_many(root: &Path, n: usize) {
    common::tree::build(&root.join("tree"));
    for i in 0..n {
        let d = root.join(format!("many/d{}", i % 10));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("f{i}")), format!("file {i}\n")).unwrap();
    }
}

/// Changes of every kind an incremental must see, and reads that must not count.
fn change_many(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let many = root.join("many");
    for i in (0..100).step_by(10) {
        std::fs::write(many.join(format!("d0/f{i}")), format!("changed {i}\n")).unwrap();
    }
    std::fs::set_permissions(many.join("d1/f1"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(many.join("d2/new"), b"a new file\n").unwrap();
    std::fs::remove_file(many.join("d3/f3")).unwrap();
    std::fs::rename(many.join("d4/f4"), many.join("d5/f4-moved")).unwrap();
    std::fs::hard_link(many.join("d6/f6"), many.join("d7/link-to-f6")).unwrap();
    std::fs::rename(many.join("d8"), many.join("d8-renamed")).unwrap();
    // read in the live tree: relatime writes the atime of a file never read since it was
    // written, which touches its inode (a candidate) but not its ctime (not dumped)
    for i in [9, 19, 29] {
        std::fs::read(many.join(format!("d9/f{i}"))).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_incremental_from_the_kept_base_snapshot_equals_the_walk() {
    let Some(fs) = Btrfs::make() else { return };
    build_many(&fs.vol, 400);
    // dates are in seconds: the walk would take files written in the level 0's second for
    // changed (the snapshot's generation knows better)
    std::thread::sleep(Duration::from_millis(1100));
    let work = tempfile::tempdir().unwrap();
    let s = serve(work.path(), &fs.vol, "auto");
    let backup = |extra: &[&str]| {
        let mut args = vec!["-E", "HIST=y"];
        args.extend(extra);
        let (text, index) = tokio::task::block_in_place(|| s.ndmjob_backup(&fs.vol, &args));
        assert!(text.contains("Operation ended OKAY"), "{text}");
        (text, index, s.image())
    };
    // level 0, UPDATE=Y (the default): its snapshot is kept as the base
    let (text, _, l0) = backup(&["-E", "LEVEL=0"]);
    assert!(text.contains("snapshot kept as"), "{text}");
    assert_eq!(fs.snapshots(), Vec::<String>::new());
    let kept = fs.kept();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].starts_with("L0-"), "{kept:?}");
    std::thread::sleep(Duration::from_millis(1100));
    change_many(&fs.vol);
    // level 1 both ways, UPDATE=N so that both start from the level 0
    let (walk_text, walk_index, walk_img) =
        backup(&["-E", "LEVEL=1", "-E", "UPDATE=N", "-E", "FIND_CHANGES=walk"]);
    assert!(walk_text.contains("FIND_CHANGES=walk"), "{walk_text}");
    assert!(!walk_text.contains("btrfs generations"), "{walk_text}");
    let (gen_text, gen_index, gen_img) = backup(&["-E", "LEVEL=1", "-E", "UPDATE=N"]);
    assert!(
        gen_text.contains("found from btrfs generations"),
        "{gen_text}"
    );
    assert!(gen_text.contains("(level 0)"), "{gen_text}");
    // the same history and the same image, but for the dump date
    let hist = |idx: &str| -> Vec<String> {
        idx.lines()
            .filter(|l| !l.starts_with("DE "))
            .map(str::to_string)
            .collect()
    };
    assert!(gen_index.contains("new"), "{gen_index}");
    assert_eq!(hist(&gen_index), hist(&walk_index));
    assert_eq!(gen_img.len(), walk_img.len());
    assert!(
        without_dates(&gen_img) == without_dates(&walk_img),
        "the images differ"
    );
    // tar too: the same archive, byte for byte
    let tar_walk = backup(&[
        "-B",
        "tar",
        "-E",
        "LEVEL=1",
        "-E",
        "UPDATE=N",
        "-E",
        "FIND_CHANGES=walk",
    ]);
    let tar_gen = backup(&["-B", "tar", "-E", "LEVEL=1", "-E", "UPDATE=N"]);
    assert!(
        tar_gen.0.contains("found from btrfs generations"),
        "{}",
        tar_gen.0
    );
    assert!(tar_gen.1.contains("/many/d2/new"), "{}", tar_gen.1);
    assert_eq!(hist(&tar_gen.1), hist(&tar_walk.1));
    assert!(tar_gen.2 == tar_walk.2, "the tar archives differ");
    // and the level 0 then that level 1, through the stock restore -r, give the tree
    let dest = work.path().join("restored");
    std::fs::create_dir(&dest).unwrap();
    for (name, img) in [("l0", &l0), ("l1", &gen_img)] {
        let file = work.path().join(format!("{name}.dump"));
        std::fs::write(&file, img).unwrap();
        let out = Command::new("restore")
            .args(["-r", "-y", "-f"])
            .arg(&file)
            .current_dir(&dest)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "restore -r {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    common::tree::assert_same(&fs.vol.join("many"), &dest.join("many"));
    common::tree::assert_same(&fs.vol.join("tree"), &dest.join("tree"));
    // a level 1 with UPDATE=Y keeps its own; a level 2 starts from it; a new level 0
    // supersedes both
    std::fs::write(fs.vol.join("many/d0/f0"), b"again\n").unwrap();
    let (text, _, _) = backup(&["-E", "LEVEL=1"]);
    assert!(text.contains("(level 0)"), "{text}");
    let kept = fs.kept();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(
        kept[0].starts_with("L0-") && kept[1].starts_with("L1-"),
        "{kept:?}"
    );
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(fs.vol.join("many/d0/f10"), b"and again\n").unwrap();
    let (text, index, _) = backup(&["-E", "LEVEL=2", "-E", "UPDATE=N"]);
    assert!(text.contains("(level 1)"), "{text}");
    // only f10's node: f0 changed before the level 1, the rest not at all
    let files: Vec<&str> = index.lines().filter(|l| l.contains(" UNIX f- ")).collect();
    assert_eq!(files.len(), 1, "{index}");
    assert!(files[0].contains(" s10 "), "{index}");
    let (_, _, _) = backup(&["-E", "LEVEL=0"]);
    let kept = fs.kept();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].starts_with("L0-"), "{kept:?}");
    // the REST view lists the kept base; DELETE frees it, and the next incremental walks
    let curl = |args: &[&str]| -> serde_json::Value {
        let out = Command::new("curl")
            .args(["-s", "-u"])
            .arg(format!("ndmp:{}", s.password))
            .args(args)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    };
    let url = format!("http://{}/api/protocols/ndmp/snapshots", s.rest);
    let v = curl(&[&format!("{url}?fields=name,held_by")]);
    let recs = v["records"].as_array().unwrap();
    assert_eq!(recs.len(), 1, "{v}");
    let held_by = recs[0]["held_by"].as_str().unwrap();
    assert_eq!(
        held_by,
        format!("incremental base of {} level 0", fs.vol.display())
    );
    let name = recs[0]["name"].as_str().unwrap().to_string();
    curl(&["-X", "DELETE", &format!("{url}/{name}")]);
    assert_eq!(fs.kept(), Vec::<String>::new());
    let (text, _, _) = backup(&["-E", "LEVEL=1", "-E", "UPDATE=N"]);
    assert!(
        text.contains(
            "finding the changed files by a full walk: no snapshot of the base backup is kept"
        ),
        "{text}"
    );
}
