//! What a backup administrator does with the bundled DMA, end to end against `ndmpd serve`:
//! several backups on one cartridge that all stay restorable, the catalog that names them,
//! --overwrite and --label, a backup spanning cartridges through the changer, and a clean
//! failure at the end of the tape when nothing can be loaded.

mod common;

use common::daemon::{spawn, Daemon};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PW: &str = "journey-pw";

/// A daemon with its own config, an export root with the trees, and a catalog file.
struct Site {
    d: Daemon,
    work: tempfile::TempDir,
    pw: PathBuf,
    catalog: PathBuf,
}

/// Starts `ndmpd serve` with drives vtape0 and vtape1, the changer when `changer`, and the
/// `[library]` lines given.
fn site(library: &str, changer: bool) -> Site {
    let work = tempfile::tempdir().unwrap();
    let pw = work.path().join("pw");
    std::fs::write(&pw, format!("{PW}\n")).unwrap();
    let mut cfg = format!("[library]\n{library}\n");
    for t in ["vtape0", "vtape1"] {
        cfg += &format!("[[tape]]\nname = \"{t}\"\nkind = \"virtual\"\n");
    }
    if changer {
        cfg += "[[changer]]\nname = \"changer0\"\nkind = \"virtual\"\n";
    }
    let cfg_path = work.path().join("ndmpd.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let d = spawn(&[
        "--config",
        s(&cfg_path),
        "--export",
        s(work.path()),
        "--user",
        "ndmp",
        "--password-file",
        s(&pw),
    ]);
    let catalog = work.path().join("state/catalog.db");
    Site {
        d,
        work,
        pw,
        catalog,
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

impl Site {
    fn path(&self, rel: &str) -> PathBuf {
        self.work.path().join(rel)
    }

    /// `ndmpd dma ARGS --server … --password-file … --catalog …`.
    fn dma(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_ndmpd"))
            .arg("dma")
            .args(args)
            .args(["--server", &self.d.addr.to_string()])
            .args([
                "--password-file",
                s(&self.pw),
                "--catalog",
                s(&self.catalog),
            ])
            .env_remove("NDMPD_PASSWORD")
            .env_remove("NDMPD_CATALOG")
            .output()
            .unwrap()
    }

    /// Runs `dma ARGS`, which must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.dma(args);
        assert!(
            out.status.success(),
            "dma {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A backup that must succeed: its id and the line saying where it went.
    fn backup(&self, args: &[&str]) -> (i64, String) {
        let mut all = vec!["backup"];
        all.extend(args);
        let text = self.ok(&all);
        let line = text
            .lines()
            .find(|l| l.starts_with("backup id "))
            .unwrap_or_else(|| panic!("no backup id in {text}"))
            .to_string();
        let id = line["backup id ".len()..]
            .split(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        (id, line)
    }

    /// `dma backups` (no server needed), as text or JSON.
    fn backups(&self, json: bool) -> String {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ndmpd"));
        cmd.args(["dma", "backups", "--catalog", s(&self.catalog)]);
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    fn catalog_json(&self) -> Vec<serde_json::Value> {
        serde_json::from_str(&self.backups(true)).unwrap()
    }

    /// Restores with `args` into a fresh directory `rel`, which is returned.
    fn restore(&self, rel: &str, args: &[&str]) -> PathBuf {
        let dest = self.path(rel);
        let mut all = vec!["restore"];
        all.extend(args);
        all.push(s(&dest));
        self.ok(&all);
        dest
    }
}

/// The cartridge and tape file list of catalog entry `b`, e.g. [("VT0001", 0)].
fn media(b: &serde_json::Value) -> Vec<(String, u64)> {
    b["media"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["cartridge"].as_str().unwrap_or("?").to_string(),
                m["file"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn diff_r(a: &Path, b: &Path) {
    let out = Command::new("diff")
        .arg("-r")
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "diff -r {} {}: {}",
        a.display(),
        b.display(),
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Bytes no compression or pattern shortcut can make smaller: a small LCG.
fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn level_0_level_1_and_tar_on_one_cartridge_all_restore_by_backup_id() {
    let site = site("spare_cartridges = 2", true);
    let tree = site.path("data");
    common::tree::build(&tree);
    let orig = site.path("orig");
    let cp = Command::new("cp")
        .arg("-a")
        .arg(&tree)
        .arg(&orig)
        .status()
        .unwrap();
    assert!(cp.success());
    // files made in the second the level 0 starts would count as changed for the level 1
    std::thread::sleep(std::time::Duration::from_millis(1100));

    let (l0, line) = site.backup(&[s(&tree)]);
    assert!(
        line.contains("cartridge VT0001 tape file 0, record size 262144"),
        "{line}"
    );
    // the level 1 must see the changes as newer than the level 0's date (whole seconds)
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(tree.join("sub/b.txt"), b"changed\n").unwrap();
    std::fs::write(tree.join("new.txt"), b"new file\n").unwrap();
    let (l1, line) = site.backup(&["--level", "1", s(&tree)]);
    assert!(line.contains("cartridge VT0001 tape file 1,"), "{line}");
    let (tar, line) = site.backup(&["--butype", "tar", "--record-size", "64K", s(&tree)]);
    assert!(
        line.contains("cartridge VT0001 tape file 2, record size 65536"),
        "{line}"
    );
    assert!(l0 < l1 && l1 < tar, "{l0} {l1} {tar}");

    let text = site.backups(false);
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{text}");
    for (row, (id, level, butype, file)) in
        rows.iter()
            .zip([(l0, 0, "dump", 0), (l1, 1, "dump", 1), (tar, 0, "tar", 2)])
    {
        let w: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(w[0], id.to_string(), "{row}");
        assert!(row.contains(&format!(":{}", tree.display())), "{row}");
        assert_eq!((w[4], w[5]), (level.to_string().as_str(), butype), "{row}");
        assert!(row.contains(&format!(" VT0001:{file} ")), "{row}");
        assert!(row.ends_with("completed"), "{row}");
    }
    let json = site.catalog_json();
    assert_eq!(json[0]["status"], "completed");
    assert_eq!(json[0]["complete"], true);
    assert_eq!(json[0]["drive"], "vtape0");
    assert_eq!(json[2]["record_size"], 65536);
    assert!(
        json[0]["dump_date"].as_str().is_some_and(|d| !d.is_empty()),
        "{json:?}"
    );

    // each image by its id, in reverse order of writing: none was overwritten
    let r_tar = site.restore("r-tar", &["--backup", &tar.to_string()]);
    common::tree::assert_same(&tree, &r_tar);
    diff_r(&tree, &r_tar);
    let r1 = site.restore("r1", &["--backup", &l1.to_string()]);
    assert_eq!(std::fs::read(r1.join("sub/b.txt")).unwrap(), b"changed\n");
    assert_eq!(std::fs::read(r1.join("new.txt")).unwrap(), b"new file\n");
    assert!(
        !r1.join("a.txt").exists(),
        "an unchanged file in the level 1"
    );
    assert!(!r1.join("sub/deeper/c.bin").exists());
    let r0 = site.restore("r0", &["--backup", &l0.to_string()]);
    common::tree::assert_same(&orig, &r0);
    diff_r(&orig, &r0);

    // list by id reads the right image too: the level 1 holds new.txt, the level 0 not
    let l1_list = site.ok(&["list", "--backup", &l1.to_string()]);
    assert!(l1_list.contains(" /new.txt @"), "{l1_list}");
    let l0_list = site.ok(&["list", "--backup", &l0.to_string()]);
    assert!(!l0_list.contains("/new.txt"), "{l0_list}");
    assert!(l0_list.contains(" /sub/deeper/c.bin @"), "{l0_list}");
    // without --backup or --file: the last file on the cartridge, the tar image
    let last = site.ok(&["list", "--butype", "tar", "--record-size", "64K"]);
    assert!(last.contains(" /new.txt @"), "{last}");
}

#[test]
fn a_second_backup_keeps_the_first_and_overwrite_and_label_do_what_they_say() {
    let site = site("spare_cartridges = 1", true);
    let (one, two) = (site.path("one"), site.path("two"));
    for (dir, seed) in [(&one, 1), (&two, 2)] {
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/f.bin"), noise(300_000, seed)).unwrap();
        std::fs::write(dir.join("name.txt"), format!("tree {seed}\n")).unwrap();
    }
    let (_, line) = site.backup(&[s(&one)]);
    assert!(line.contains("tape file 0"), "{line}");
    let (_, line) = site.backup(&[s(&two)]);
    assert!(line.contains("tape file 1"), "{line}");
    let r = site.restore("r-file0", &["--file", "0"]);
    diff_r(&one, &r);
    let r = site.restore("r-file1", &["--file", "1"]);
    diff_r(&two, &r);

    // a wrong label: refused in words, nothing written
    let out = site.dma(&["backup", "--label", "MONDAY", s(&two)]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "the cartridge in vtape0 has changer volume tag VT0001, not MONDAY: nothing written"
        ),
        "{err}"
    );
    let json = site.catalog_json();
    assert_eq!(json.len(), 3);
    assert_eq!(json[2]["status"], "failed");
    assert_eq!(json[2]["complete"], false);
    assert!(media(&json[2]).is_empty(), "{json:?}");
    // the right label writes, after the last file
    let (_, line) = site.backup(&["--label", "VT0001", s(&one)]);
    assert!(line.contains("cartridge VT0001 tape file 2"), "{line}");

    // --overwrite starts again at file 0: tree two is file 0, and file 1 is gone
    let (_, line) = site.backup(&["--overwrite", s(&two)]);
    assert!(line.contains("cartridge VT0001 tape file 0"), "{line}");
    let r = site.restore("r-over", &["--file", "0"]);
    diff_r(&two, &r);
    let out = site.dma(&["restore", "--file", "1", s(&site.path("r-gone"))]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("there is no tape file 1 on this cartridge: it holds 1 file(s), 0 to 0"),
        "{err}"
    );
}

#[test]
fn a_backup_spans_three_cartridges_through_the_changer_and_restores_identical() {
    // 1 MiB cartridges take three 256 KiB records each before their early warning
    let site = site("cartridge_capacity = \"1M\"\nspare_cartridges = 4", true);
    let tree = site.path("big");
    std::fs::create_dir_all(tree.join("d")).unwrap();
    std::fs::write(tree.join("d/noise.bin"), noise(1_900_000, 7)).unwrap();
    std::fs::write(tree.join("small.txt"), b"small\n").unwrap();
    let (id, line) = site.backup(&["--butype", "tar", s(&tree)]);
    assert!(
        line.contains(
            "cartridges VT0001 tape file 0, then VT0003 tape file 0, then VT0004 tape file 0"
        ),
        "{line}"
    );
    let json = site.catalog_json();
    let b = &json[0];
    assert_eq!(
        media(b),
        [
            ("VT0001".to_string(), 0),
            ("VT0003".to_string(), 0),
            ("VT0004".to_string(), 0)
        ]
    );
    assert_eq!(
        (&b["status"], &b["complete"]),
        (&"completed".into(), &true.into())
    );
    let offsets: Vec<u64> = b["media"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, [0, 3 << 18, 6 << 18]);
    let text = site.backups(false);
    assert!(text.contains("VT0001:0,VT0003:0,VT0004:0"), "{text}");

    // VT0004 is still in the drive: the restore loads VT0001 first, then the others
    let r = site.restore("r", &["--backup", &id.to_string()]);
    diff_r(&tree, &r);
    common::tree::assert_same(&tree, &r);
    let list = site.ok(&["list", "--backup", &id.to_string()]);
    assert!(list.contains(" /d/noise.bin @"), "{list}");
}

fn assert_eom_failure(site: &Site, tree: &Path, words: &[&str]) {
    let out = site.dma(&["backup", "--butype", "tar", s(tree)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for w in words {
        assert!(err.contains(w), "{w:?} not in {err}");
    }
    let json = site.catalog_json();
    let b = json.last().unwrap();
    assert_eq!(
        (&b["status"], &b["complete"]),
        (&"failed".into(), &false.into())
    );
    assert!(
        b["message"].as_str().unwrap().contains("is full after"),
        "{b}"
    );
    let text = site.backups(false);
    assert!(text.trim_end().ends_with("failed (incomplete)"), "{text}");
}

#[test]
fn at_the_end_of_the_tape_without_a_changer_or_a_blank_cartridge_the_backup_fails_in_words() {
    let big = |site: &Site| {
        let tree = site.path("big");
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::write(tree.join("noise.bin"), noise(1_500_000, 9)).unwrap();
        tree
    };
    // a changer, but no spare cartridge in its slots
    let site1 = site("cartridge_capacity = \"1M\"\nspare_cartridges = 0", true);
    let tree = big(&site1);
    assert_eom_failure(
        &site1,
        &tree,
        &[
            "the cartridge VT0001 in vtape0 is full after 786432 bytes of the image (tape file 0)",
            "changer changer0 has no blank cartridge left in a storage slot",
            "Put a blank cartridge into a slot",
        ],
    );
    // no changer at all
    let site2 = site("cartridge_capacity = \"1M\"\nspare_cartridges = 2", false);
    let tree = big(&site2);
    assert_eom_failure(
        &site2,
        &tree,
        &[
            "in vtape0 is full after 786432 bytes of the image (tape file 0)",
            "no changer serves vtape0",
            "Load a blank cartridge into vtape0",
        ],
    );
    // a backup that fits needs no changer; its restore by id finds the drive in the catalog
    let small = site2.path("small");
    std::fs::create_dir_all(&small).unwrap();
    std::fs::write(small.join("f"), noise(50_000, 5)).unwrap();
    let (id, line) = site2.backup(&["--tape", "vtape1", "--butype", "tar", s(&small)]);
    assert!(
        line.contains("cartridge (the cartridge in vtape1) tape file 0,"),
        "{line}"
    );
    let json = site2.catalog_json();
    assert_eq!(
        json.last().unwrap()["media"][0]["cartridge"],
        serde_json::Value::Null
    );
    let r = site2.restore("r", &["--backup", &id.to_string()]);
    diff_r(&small, &r);
}

#[test]
fn a_cartridge_labelled_by_ndmjob_keeps_its_label_and_is_checked_by_it() {
    let site = site("spare_cartridges = 1", true);
    let agent = format!("127.0.0.1:{}/4t,ndmp,{PW}", site.d.addr.port());
    let out = common::ndmjob(&[
        "-o",
        "init-labels",
        "-v",
        "-T",
        &agent,
        "-f",
        "vtape1",
        "-m",
        "WEEKLY7",
    ]);
    assert!(out.contains("Writing tape label 'WEEKLY7'"), "{out}");
    assert!(!out.contains("had problems"), "{out}");
    let tree = site.path("t");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("f.bin"), noise(100_000, 3)).unwrap();

    // the ndmjob label, not the volume tag, is what --label is checked against
    let out = site.dma(&["backup", "--tape", "vtape1", "--label", "VT0002", s(&tree)]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "the cartridge in vtape1 has ndmjob label WEEKLY7, not VT0002: nothing written"
        ),
        "{err}"
    );
    // appended after the label's files (ndmjob ends the label with two filemarks)
    let (id, line) = site.backup(&["--tape", "vtape1", "--label", "WEEKLY7", s(&tree)]);
    assert!(line.contains("cartridge VT0002 tape file 2,"), "{line}");
    let out = common::ndmjob(&["-l", "-v", "-T", &agent, "-f", "vtape1"]);
    assert!(out.contains("ME \"WEEKLY7\""), "the label is gone: {out}");
    let dest = site.path("r");
    site.ok(&[
        "restore",
        "--tape",
        "vtape1",
        "--backup",
        &id.to_string(),
        s(&dest),
    ]);
    diff_r(&tree, &dest);
}

#[test]
fn a_three_way_backup_with_two_logins_spans_cartridges_of_the_tape_server_and_restores_identical() {
    // B has the tape drives, the changer and the small cartridges; A has the data and a
    // login of its own (--user/--password-file), B's is --tape-user/--tape-password-file
    let b = site("cartridge_capacity = \"1M\"\nspare_cartridges = 3", true);
    let a_pw = b.path("filer.pw");
    std::fs::write(&a_pw, "filer-secret\n").unwrap();
    let a = spawn(&[
        "--export",
        s(b.work.path()),
        "--user",
        "filer",
        "--password-file",
        s(&a_pw),
    ]);
    let tree = b.path("big");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("noise.bin"), noise(1_200_000, 11)).unwrap();
    let three_way = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ndmpd"))
            .arg("dma")
            .args(args)
            .args(["--server", &a.addr.to_string()])
            .args(["--tape-server", &b.d.addr.to_string()])
            .args(["--user", "filer", "--password-file", s(&a_pw)])
            .args(["--tape-user", "ndmp", "--tape-password-file", s(&b.pw)])
            .args(["--catalog", s(&b.catalog)])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let text = three_way(&["backup", "--butype", "tar", s(&tree)]);
    assert!(
        text.contains("cartridges VT0001 tape file 0, then VT0003 tape file 0,"),
        "{text}"
    );
    let json = b.catalog_json();
    assert_eq!(json[0]["tape_server"], b.d.addr.to_string());
    assert_eq!(
        media(&json[0])[..2],
        [("VT0001".into(), 0), ("VT0003".into(), 0)]
    );
    let dest = b.path("r");
    three_way(&["restore", "--backup", "1", s(&dest)]);
    diff_r(&tree, &dest);
}

/// A restore killed in the middle of a file (the server gets SIGKILL while its DATA side
/// holds the large file open, partly written) leaves no partial file under that file's real
/// name: a file is written without a name (O_TMPFILE) or under a temporary one, and gets its
/// own only once complete.
#[test]
fn a_restore_killed_mid_file_leaves_no_partial_file_under_its_name() {
    let mut site = site("spare_cartridges = 0", false);
    let tree = site.path("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("a-small.txt"), b"small and complete\n").unwrap();
    let big = noise(96 << 20, 7);
    std::fs::write(tree.join("big.bin"), &big).unwrap();
    site.backup(&[s(&tree)]);

    let dest = site.path("r");
    let mut restore = Command::new(env!("CARGO_BIN_EXE_ndmpd"))
        .args(["dma", "restore", "--file", "0", s(&dest)])
        .args(["--server", &site.d.addr.to_string()])
        .args([
            "--password-file",
            s(&site.pw),
            "--catalog",
            s(&site.catalog),
        ])
        .env_remove("NDMPD_PASSWORD")
        .env_remove("NDMPD_CATALOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // the server's descriptors: one onto a file below `dest` that holds part of big.bin
    let fds = PathBuf::from(format!("/proc/{}/fd", site.d.child.id()));
    let mid_file = || {
        std::fs::read_dir(&fds).ok()?.flatten().find_map(|e| {
            let target = std::fs::read_link(e.path()).ok()?;
            let len = std::fs::metadata(e.path()).ok()?.len();
            (target.starts_with(&dest) && len >= 1 << 20 && len < big.len() as u64)
                .then_some(target)
        })
    };
    let caught = loop {
        if let Some(t) = mid_file() {
            break t;
        }
        assert!(
            restore.try_wait().unwrap().is_none(),
            "the restore ended before it was caught writing big.bin"
        );
        std::thread::yield_now();
    };
    site.d.child.kill().unwrap();
    site.d.child.wait().unwrap();
    let status = restore.wait().unwrap();
    assert!(
        !status.success(),
        "the restore succeeded although its server was killed"
    );
    assert!(
        !dest.join("big.bin").exists(),
        "a partial big.bin is under its real name (the server was writing {})",
        caught.display()
    );
    // whatever else is under a real name is complete
    if dest.join("a-small.txt").exists() {
        assert_eq!(
            std::fs::read(dest.join("a-small.txt")).unwrap(),
            b"small and complete\n"
        );
    }
}

#[test]
fn sixteen_dmas_opening_one_catalog_at_once_all_get_in() {
    // Parallel CLI runs (cron, a script per file system) open one catalog together, new or
    // left by runs that have all ended; SQLite refuses the WAL switch to all but one of them
    // without waiting, so each has to retry it rather than fail "database is locked".
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("catalog.db");
    let mut failed = Vec::new();
    for round in 0..30 {
        if round % 2 == 0 {
            for f in ["catalog.db", "catalog.db-wal", "catalog.db-shm"] {
                let _ = std::fs::remove_file(dir.path().join(f));
            }
        }
        let runs: Vec<_> = (0..16)
            .map(|_| {
                Command::new(env!("CARGO_BIN_EXE_ndmpd"))
                    .args(["dma", "backups"])
                    .env("NDMPD_CATALOG", &catalog)
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for run in runs {
            let o = run.wait_with_output().unwrap();
            if !o.status.success() {
                failed.push(String::from_utf8_lossy(&o.stderr).into_owned());
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} of 480 failed: {:?}",
        failed.len(),
        failed
    );
    let list = Command::new(env!("CARGO_BIN_EXE_ndmpd"))
        .args(["dma", "backups"])
        .env("NDMPD_CATALOG", &catalog)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).starts_with("   id  started"));
}
