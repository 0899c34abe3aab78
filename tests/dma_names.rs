//! `ndmpd dma list` and `restore` as an operator runs them, against `ndmpd serve`: every
//! hard-link name and the special mode bits listed, names that are not UTF-8 restored by the
//! escaped form `list` prints, the record size and butype read off the tape, honest exit
//! codes, and the connection flags accepted after the subcommand's action.

mod common;

use common::daemon::{spawn, Daemon};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The name that is not UTF-8, and a sibling one byte away from it.
const ODD: &[u8] = b"n\xff\xfe";
const ODD_SIBLING: &[u8] = b"n\xff\xfd";

/// A server and the password file of its DMA login.
struct Server {
    d: Daemon,
    pw: PathBuf,
}

fn server() -> Server {
    let d = spawn(&[]);
    let pw = d.dir.path().join("pw");
    std::fs::write(&pw, format!("{}\n", d.password)).unwrap();
    Server { d, pw }
}

impl Server {
    /// `ndmpd dma ARGS…` with the connection flags after everything else.
    fn dma<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_ndmpd"))
            .arg("dma")
            .args(args)
            .arg("--server")
            .arg(self.d.addr.to_string())
            .arg("--password-file")
            .arg(&self.pw)
            .env_remove("NDMPD_PASSWORD")
            .output()
            .unwrap()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.d.dir.path().join(name)
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}stderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Stdout of a command that must have succeeded.
fn ok(o: Output) -> String {
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    String::from_utf8(o.stdout).unwrap()
}

/// A tree with a hard link across directories, a setuid file, a sticky directory and two
/// names that are not UTF-8.
fn tree(root: &Path) {
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("a"), b"hello\n").unwrap();
    std::fs::hard_link(root.join("a"), root.join("sub/a-link")).unwrap();
    std::fs::write(root.join("suid"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(root.join("suid"), PermissionsExt::from_mode(0o4755)).unwrap();
    std::fs::create_dir(root.join("sticky")).unwrap();
    std::fs::set_permissions(root.join("sticky"), PermissionsExt::from_mode(0o1777)).unwrap();
    std::fs::write(root.join(OsStr::from_bytes(ODD)), b"not utf-8\n").unwrap();
    std::fs::write(root.join(OsStr::from_bytes(ODD_SIBLING)), b"its sibling\n").unwrap();
}

/// Backs `tree` up onto `tape` with the extra flags, flags after the path.
fn backup(s: &Server, tree: &Path, tape: &str, extra: &[&str]) {
    let mut args: Vec<OsString> = vec!["backup".into(), tree.into()];
    args.extend(["--tape", tape].iter().chain(extra).map(OsString::from));
    ok(s.dma(&args));
}

/// The line of `list` output for `path`.
fn line<'a>(list: &'a str, path: &str) -> &'a str {
    list.lines()
        .find(|l| l.split(' ').rev().nth(1) == Some(path))
        .unwrap_or_else(|| panic!("no {path} in:\n{list}"))
}

#[test]
fn list_shows_every_hard_link_name_and_the_special_bits() {
    let s = server();
    let src = s.path("tree");
    tree(&src);
    backup(&s, &src, "vtape0", &[]);
    backup(&s, &src, "vtape1", &["--butype", "tar"]);
    for tape in ["vtape0", "vtape1"] {
        let list = ok(s.dma(&["list", "--tape", tape]));
        // the two names of one file, each on its own line with the same size
        assert!(line(&list, "/a").starts_with("-rw-r--r--"), "{list}");
        assert!(
            line(&list, "/sub/a-link").starts_with("-rw-r--r--"),
            "{list}"
        );
        assert!(line(&list, "/a").contains(" 6 "), "{list}");
        assert!(line(&list, "/sub/a-link").contains(" 6 "), "{list}");
        assert!(line(&list, "/suid").starts_with("-rwsr-xr-x"), "{list}");
        assert!(line(&list, "/sticky").starts_with("drwxrwxrwt"), "{list}");
        assert!(
            line(&list, "/n\\xff\\xfe").starts_with("-rw-r--r--"),
            "{list}"
        );
        assert!(line(&list, "/n\\xff\\xfd").contains(" 12 "), "{list}");
    }
}

#[test]
fn a_name_that_is_not_utf8_restores_by_its_escaped_or_raw_form() {
    let s = server();
    let src = s.path("tree");
    tree(&src);
    backup(&s, &src, "vtape0", &[]);
    let list = ok(s.dma(&["list"]));
    // the name exactly as list printed it
    let printed = line(&list, "/n\\xff\\xfe").split(' ').rev().nth(1).unwrap();
    let dest = s.path("escaped");
    std::fs::create_dir(&dest).unwrap();
    let out = ok(s.dma(&["restore", dest.to_str().unwrap(), printed]));
    assert!(out.contains("1 of 1 named paths restored"), "{out}");
    let names: Vec<Vec<u8>> = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    assert_eq!(names, [ODD.to_vec()]);
    assert_eq!(
        std::fs::read(dest.join(OsStr::from_bytes(ODD))).unwrap(),
        b"not utf-8\n"
    );
    // the raw bytes on the command line work as well
    let raw = s.path("raw");
    std::fs::create_dir(&raw).unwrap();
    let mut arg = b"/".to_vec();
    arg.extend_from_slice(ODD_SIBLING);
    let args: [&OsStr; 3] = ["restore".as_ref(), raw.as_os_str(), OsStr::from_bytes(&arg)];
    ok(s.dma(&args));
    let names: Vec<Vec<u8>> = std::fs::read_dir(&raw)
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    assert_eq!(names, [ODD_SIBLING.to_vec()]);
    assert_eq!(
        std::fs::read(raw.join(OsStr::from_bytes(ODD_SIBLING))).unwrap(),
        b"its sibling\n"
    );
    // an escape that means nothing is refused in words before anything runs
    let o = s.dma(&["restore", raw.to_str().unwrap(), "/n\\q"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("a backslash is written \\\\"),
        "{}",
        text(&o)
    );
}

#[test]
fn record_size_and_butype_are_read_off_the_tape() {
    let s = server();
    let src = s.path("tree");
    tree(&src);
    // more than one 256 KiB record, so the first is a whole one
    let noise: Vec<u8> = (0u32..700_000)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(src.join("big"), noise).unwrap();
    // dump in 10 KiB records, tar in the default 256 KiB ones
    backup(&s, &src, "vtape0", &["--record-size", "10k"]);
    backup(&s, &src, "vtape1", &["--butype", "tar"]);
    for (tape, summary) in [
        ("vtape0", "(dump image, 10240-byte records)"),
        ("vtape1", "(tar image, 262144-byte records)"),
    ] {
        let dest = s.path(&format!("back-{tape}"));
        std::fs::create_dir(&dest).unwrap();
        let out = ok(s.dma(&["restore", "--tape", tape, dest.to_str().unwrap()]));
        assert!(out.contains(summary), "{out}");
        common::tree::assert_same(&src, &dest);
    }
    // flags that contradict the tape stop the job, in words, before anything is written
    let dest = s.path("contradicted");
    std::fs::create_dir(&dest).unwrap();
    let d = dest.to_str().unwrap();
    let o = s.dma(&["restore", "--tape", "vtape0", "--record-size", "256k", d]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("the image was written with 10240-byte records, not the 262144 given"),
        "{}",
        text(&o)
    );
    let o = s.dma(&["list", "--tape", "vtape1", "--butype", "dump"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("the image is a tar image, not dump"),
        "{}",
        text(&o)
    );
    assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 0);
    // the same flags, agreeing with the tape, are accepted
    let o = s.dma(&["restore", "--tape", "vtape0", "--record-size", "10k", d]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn a_restore_that_writes_less_than_asked_fails_and_says_why() {
    let s = server();
    let src = s.path("tree");
    tree(&src);
    backup(&s, &src, "vtape0", &[]);
    let dest = s.path("back");
    std::fs::create_dir(&dest).unwrap();
    let d = dest.to_str().unwrap();
    ok(s.dma(&["restore", d]));
    // again: every file exists and is kept
    let o = s.dma(&["restore", d]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("5 kept because they exist, not replaced (--force replaces them)"),
        "{}",
        text(&o)
    );
    assert!(
        err.contains("ndmpd dma restore: incomplete"),
        "{}",
        text(&o)
    );
    // named paths: one kept, one not in the image, each said
    std::fs::write(dest.join("a"), b"changed").unwrap();
    let o = s.dma(&["restore", d, "/a", "/nope"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("/a: kept because it exists, not replaced (--force replaces it)"),
        "{}",
        text(&o)
    );
    assert!(err.contains("/nope: not in the image"), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("0 of 2 named paths restored"),
        "{}",
        text(&o)
    );
    assert_eq!(std::fs::read(dest.join("a")).unwrap(), b"changed");
    // a named directory whose file exists: the directory is there, the file kept and said
    let o = s.dma(&["restore", d, "/sub"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(
            "1 kept because they exist, not replaced (--force replaces them): sub/a-link"
        ),
        "{}",
        text(&o)
    );
    // --force replaces it
    let out = ok(s.dma(&["restore", "--force", d, "/a"]));
    assert!(out.contains("1 of 1 named paths restored"), "{out}");
    assert_eq!(std::fs::read(dest.join("a")).unwrap(), b"hello\n");
}

#[test]
fn connection_flags_go_before_or_after_the_action() {
    let s = server();
    let addr = s.d.addr.to_string();
    // after the action (the helper puts them last)
    let out = ok(s.dma(&["changer", "unload", "--tape", "vtape1"]));
    assert_eq!(out, "unloaded 2 (vtape1) -> 1002\n");
    let out = ok(s.dma(&["changer", "load", "1003", "--tape", "vtape1"]));
    assert_eq!(out, "loaded 1003 -> 2 (vtape1)\n");
    // before the subcommand, and between it and its action
    let before = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_ndmpd"))
            .args(["dma", "--server", &addr, "--password-file"])
            .arg(&s.pw)
            .args(args)
            .env_remove("NDMPD_PASSWORD")
            .output()
            .unwrap();
        ok(o)
    };
    let inv = before(&["changer", "status"]);
    let drive = inv
        .lines()
        .find(|l| l.ends_with(" vtape1"))
        .unwrap_or_else(|| panic!("{inv}"));
    assert!(drive.contains("VT0003"), "{inv}");
    // a blank cartridge holds no image: said, not guessed at
    let o = s.dma(&["list", "--tape", "vtape1"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("the cartridge is blank: there is no image to read"),
        "{}",
        text(&o)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_ndmpd"))
        .args([
            "dma", "changer", "--server", &addr, "unload", "--tape", "vtape1",
        ])
        .arg("--password-file")
        .arg(&s.pw)
        .output()
        .unwrap();
    assert_eq!(ok(out), "unloaded 2 (vtape1) -> 1003\n");
    // backup and list with the flags after the path
    let src = s.path("tree");
    tree(&src);
    backup(&s, &src, "vtape0", &[]);
    let list = ok(s.dma(&["list"]));
    line(&list, "/sub/a-link");
    let list = before(&["list"]);
    line(&list, "/sub/a-link");
    // without a password anywhere: exit 2 and the words
    let o = Command::new(env!("CARGO_BIN_EXE_ndmpd"))
        .args(["dma", "list", "--server", &addr])
        .env_remove("NDMPD_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("give the password with --password-file"),
        "{}",
        text(&o)
    );
}
