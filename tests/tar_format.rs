//! The tar format: archives of our writer read back by `read_tar` and by GNU tar, GNU tar's
//! archives read by `read_tar`, selections, DAR with `read_one_tar`, listing, incremental
//! and excluded archives, and the damage only tar has (pax headers, sparse maps, end
//! markers). Damaged and hostile archives, as for the dump reader, are in
//! reader_scenarios.rs.
//!
//! Owners and device nodes are only compared as root; the GNU tar tests print a note and
//! pass when `tar` is not GNU tar (under CI they fail).

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::io::{Cursor, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;

mod common;
use common::fulltree::*;
use common::readers::{
    names, opts, recover_tar as recover, sel, small_tree, tar_image as tar, tar_with, Log,
};
use common::surgery::{add, end, hdr, pad, pax_records, seal};

use ndmpd::format::recover::{RecoverError, Selection};
use ndmpd::format::tar::{list_tar, read_one_tar, read_tar, write_tar, FileKind, TarOptions};

// ------------------------------------------------------------------ GNU tar and trees

/// Whether GNU tar is installed; false (after a note, or a failure under CI) when not.
fn gnu_tar() -> bool {
    let gnu = Command::new("tar")
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("GNU tar"));
    if !gnu {
        common::skip("GNU tar is not installed: apt-get install tar (scripts/test.sh installs it)");
    }
    gnu
}

/// Runs tar; returns stdout, panicking with stderr on failure.
fn run_tar(args: &[&OsStr]) -> (Vec<u8>, String) {
    let o = Command::new("tar").args(args).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "tar {args:?} failed: {err}");
    (o.stdout, err)
}

/// The full tree of the dump tests, without its socket (tar archives none), plus what only
/// tar has to work for: paths longer than 255 bytes, names split into ustar prefix and
/// name, a long non-UTF-8 name, a hard link with a long name, 0600 and 0750 modes.
fn build_tree(root: &Path) {
    build_full_tree(root);
    fs::remove_file(root.join("sock")).unwrap();
    // The common comparison reads files whole: the 5 GiB one is checked on its own, in
    // `sparse_beyond_8_gib`.
    fs::remove_file(root.join("huge_sparse")).unwrap();
    let f = fs::File::create(root.join("big_sparse")).unwrap();
    f.write_all_at(&pattern(3000, 4), (40 << 20) + 12345)
        .unwrap();
    f.set_len(64 << 20).unwrap();
    drop(f);
    let deep = root
        .join("d".repeat(60))
        .join("e".repeat(60))
        .join("f".repeat(60))
        .join("g".repeat(60));
    fs::create_dir_all(&deep).unwrap();
    write(&deep.join("h".repeat(80)), b"deep");
    fs::hard_link(root.join("link_a"), deep.join("l".repeat(120))).unwrap();
    let split = root.join("p".repeat(120));
    fs::create_dir(&split).unwrap();
    write(&split.join("q".repeat(90)), b"split name");
    let mut odd = b"odd-\xfe".to_vec();
    odd.extend(std::iter::repeat_n(b'\xe9', 120));
    write(&root.join(OsStr::from_bytes(&odd)), b"latin-1 and long");
    if is_root() {
        // Ids too large for the ustar fields.
        write(&root.join("bigid"), b"big ids");
        lchown(&root.join("bigid"), 3_000_000, 4_000_000);
    }
    write(&root.join("m600"), b"private");
    chmod(&root.join("m600"), 0o600);
    fs::create_dir(root.join("m750")).unwrap();
    write(&root.join("m750/inside"), b"x");
    chmod(&root.join("m750"), 0o750);
    chmod(root, 0o750);
    stamp_times(root);
}

fn assert_same(src: &Path, out: &Path) {
    let diffs = compare(src, out, true);
    assert!(
        diffs.is_empty(),
        "restored tree differs:\n{}",
        diffs.join("\n")
    );
}

// ------------------------------------------------------------------ 1. round trip

/// Every kind of object written by `write_tar` and read back by `read_tar` gives the same
/// tree (names, types, modes, owners as root, mtimes to the microsecond including
/// directories and the root, contents, holes, symlinks, devices, hard-link groups, user
/// xattrs and ACLs); restoring a second time over the first gives the same again.
#[test]
fn round_trip_every_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    build_tree(&src);
    let (img, hist) = tar(&src);
    let objects = walk(&src);
    assert_eq!(hist.files.len(), objects.len(), "one File event per name");
    assert!(hist.estimate.is_some_and(|e| e > 0));
    let out = tmp.path().join("out");
    let (r, log) = recover(&img, &opts(&out));
    let sum = r.unwrap();
    assert!(log.warnings.is_empty(), "warnings: {:?}", log.warnings);
    assert!(log.failed().is_empty(), "failed: {:?}", log.failed());
    assert_same(&src, &out);
    assert_eq!(log.restored.len(), objects.len());
    let dirs = objects.values().filter(|m| m.is_dir()).count() as u64;
    assert_eq!(sum.dirs, dirs);
    assert_eq!(sum.bytes, img.len() as u64);
    let inodes: BTreeSet<u64> = objects
        .values()
        .filter(|m| !m.is_dir())
        .map(|m| m.ino())
        .collect();
    assert_eq!(sum.files, inodes.len() as u64);
    let big = fs::metadata(out.join("big_sparse")).unwrap();
    assert_eq!(big.len(), 64 << 20);
    assert!(big.blocks() * 512 < 1 << 20);
    // Sub-second times survive to the nanosecond.
    let (a, b) = (
        fs::metadata(src.join("small.txt")).unwrap(),
        fs::metadata(out.join("small.txt")).unwrap(),
    );
    assert_eq!(a.mtime_nsec(), b.mtime_nsec());

    let (r, log) = recover(&img, &opts(&out));
    r.unwrap();
    assert!(log.failed().is_empty(), "second pass: {:?}", log.failed());
    assert_same(&src, &out);
}

/// Sockets are left out with a warning and counted as skipped.
#[test]
fn sockets_are_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    write(&src.join("a"), b"a");
    drop(std::os::unix::net::UnixListener::bind(src.join("sock")).unwrap());
    let (_, hist, sum) = tar_with(&src, &TarOptions::default());
    assert_eq!(sum.skipped, 1);
    assert_eq!((sum.files, sum.dirs), (1, 1));
    assert!(
        hist.warnings.len() == 1 && hist.warnings[0].contains("sock"),
        "{:?}",
        hist.warnings
    );
}

// ------------------------------------------------------------------ 2. GNU tar reads ours

/// GNU tar extracts our archive into the same tree, holes, xattrs and ACLs included, and
/// lists it without complaint (bar the one keyword it does not know, `hdrcharset`).
/// An archive holding each path twice in a row (as `tar rf` appends newer copies): the
/// last member of each path wins, although small files are written by several threads at
/// once, and a hard link after them reaches the newest copy.
#[test]
fn a_path_twice_the_last_member_wins() {
    let content = |i: usize, round: u8| -> Vec<u8> {
        let len = 100 + (i * 37 + usize::from(round) * 1000) % 6000;
        (0..len).map(|k| (k as u8) ^ round ^ (i as u8)).collect()
    };
    let n = 400;
    let mut img = Vec::new();
    // one member ahead, so that the pairs straddle the batches files are handed over in
    add(&mut img, b"a", b'0', b"a", b"");
    for i in 0..n {
        for round in [1, 2] {
            add(
                &mut img,
                format!("f{i:03}").as_bytes(),
                b'0',
                &content(i, round),
                b"",
            );
        }
    }
    add(&mut img, b"zlink", b'1', b"", b"f000");
    end(&mut img);
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("dest");
    let (r, log) = recover(&img, &opts(&dest));
    r.unwrap();
    assert!(log.failed().is_empty(), "{:?}", log.failed());
    for i in 0..n {
        let got = fs::read(dest.join(format!("f{i:03}"))).unwrap();
        assert!(got == content(i, 2), "f{i:03} is not the last copy");
    }
    let a = fs::metadata(dest.join("f000")).unwrap();
    let b = fs::metadata(dest.join("zlink")).unwrap();
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
    assert_eq!(fs::read_dir(&dest).unwrap().count(), n + 2);
}

#[test]
fn gnu_tar_extracts_ours() {
    if !gnu_tar() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    build_tree(&src);
    let (img, _) = tar(&src);
    let arch = tmp.path().join("ours.tar");
    fs::write(&arch, &img).unwrap();
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    let (_, err) = run_tar(&[
        "-x".as_ref(),
        "-p".as_ref(),
        "--xattrs".as_ref(),
        "--xattrs-include=*".as_ref(),
        "--acls".as_ref(),
        "-f".as_ref(),
        arch.as_os_str(),
        "-C".as_ref(),
        out.as_os_str(),
    ]);
    let known = |l: &str| l.contains("unknown extended header keyword 'hdrcharset'");
    assert!(err.lines().all(known), "GNU tar complained: {err}");
    assert_same(&src, &out);
    // GNU tar's own comparison of the archive with the tree finds no difference.
    let (_, err) = run_tar(&[
        "-d".as_ref(),
        "-f".as_ref(),
        arch.as_os_str(),
        "-C".as_ref(),
        src.as_os_str(),
    ]);
    assert!(err.lines().all(known), "GNU tar found differences: {err}");
    let (list, err) = run_tar(&["-t".as_ref(), "-f".as_ref(), arch.as_os_str()]);
    assert!(err.lines().all(known), "GNU tar complained: {err}");
    assert_eq!(
        list.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count(),
        walk(&src).len()
    );
}

/// Checks a restored copy of a sparse file without reading its holes: size, data extents
/// and the bytes in them.
fn same_sparse(a: &Path, b: &Path) {
    let (ma, mb) = (fs::metadata(a).unwrap(), fs::metadata(b).unwrap());
    assert_eq!(ma.len(), mb.len(), "{}", b.display());
    let ext = data_extents(a);
    assert_eq!(ext, data_extents(b), "{}", b.display());
    let (fa, fb) = (fs::File::open(a).unwrap(), fs::File::open(b).unwrap());
    for (from, to) in ext {
        let mut x = vec![0u8; (to - from) as usize];
        let mut y = x.clone();
        fa.read_exact_at(&mut x, from).unwrap();
        fb.read_exact_at(&mut y, from).unwrap();
        assert!(x == y, "{}: data at {from} differs", b.display());
    }
}

/// A 9 GiB file with data past 8 GiB and a hole at its end (the real size needs a pax
/// record, the data does not): our reader and GNU tar restore it with the same holes, and
/// we read GNU tar's archive of it.
#[test]
fn sparse_beyond_8_gib() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let f = fs::File::create(src.join("huge")).unwrap();
    f.write_all_at(&pattern(5000, 1), 4096).unwrap();
    f.write_all_at(&pattern(3000, 4), (8u64 << 30) + 12345)
        .unwrap();
    f.set_len(9 << 30).unwrap();
    drop(f);
    let (img, hist) = tar(&src);
    assert!(img.len() < 64 * 1024);
    assert_eq!(hist.entry("/huge").1.size, 9 << 30);
    let out = tmp.path().join("out");
    let (r, log) = recover(&img, &opts(&out));
    r.unwrap();
    assert!(
        log.failed().is_empty() && log.warnings.is_empty(),
        "{log:?}"
    );
    same_sparse(&src.join("huge"), &out.join("huge"));
    if !gnu_tar() {
        return;
    }
    let arch = tmp.path().join("ours.tar");
    fs::write(&arch, &img).unwrap();
    let gnu_out = tmp.path().join("gnu-out");
    fs::create_dir(&gnu_out).unwrap();
    run_tar(&[
        "-x".as_ref(),
        "-f".as_ref(),
        arch.as_os_str(),
        "-C".as_ref(),
        gnu_out.as_os_str(),
    ]);
    same_sparse(&src.join("huge"), &gnu_out.join("huge"));
    let (gnu_img, _) = run_tar(&[
        "--format=pax".as_ref(),
        "--sparse".as_ref(),
        "-c".as_ref(),
        "-f".as_ref(),
        "-".as_ref(),
        "-C".as_ref(),
        src.as_os_str(),
        ".".as_ref(),
    ]);
    let out2 = tmp.path().join("from-gnu");
    let (r, log) = recover(&gnu_img, &opts(&out2));
    r.unwrap();
    assert!(
        log.failed().is_empty() && log.warnings.is_empty(),
        "{log:?}"
    );
    same_sparse(&src.join("huge"), &out2.join("huge"));
}

// ------------------------------------------------------------------ 3. we read GNU tar's

/// GNU tar's pax archive (sparse 1.0, xattrs, ACLs) of the full tree restores identically.
#[test]
fn reads_gnu_tar_pax() {
    if !gnu_tar() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    build_tree(&src);
    let (img, _) = run_tar(&[
        "--format=pax".as_ref(),
        "--sparse".as_ref(),
        "--xattrs".as_ref(),
        "--xattrs-include=*".as_ref(),
        "--acls".as_ref(),
        "-c".as_ref(),
        "-f".as_ref(),
        "-".as_ref(),
        "-C".as_ref(),
        src.as_os_str(),
        ".".as_ref(),
    ]);
    let out = tmp.path().join("out");
    let (r, log) = recover(&img, &opts(&out));
    r.unwrap();
    assert!(log.warnings.is_empty(), "warnings: {:?}", log.warnings);
    assert!(log.failed().is_empty(), "failed: {:?}", log.failed());
    // GNU tar archives the two names of a FIFO as two FIFOs: the archive has no link.
    let diffs: Vec<String> = compare(&src, &out, true)
        .into_iter()
        .filter(|d| !(d.contains("fifo") && d.contains("hard-link group 2 -> 1")))
        .collect();
    assert!(
        diffs.is_empty(),
        "restored tree differs:\n{}",
        diffs.join("\n")
    );
    let big = fs::metadata(out.join("big_sparse")).unwrap();
    assert!(big.blocks() * 512 < 1 << 20);
}

/// A tree with long names, long link targets, hard links, a sparse file and whole-second
/// times, for the formats that cannot carry more.
fn build_plain_tree(root: &Path, long: bool) {
    fs::create_dir_all(root.join("sub/deeper")).unwrap();
    write(&root.join("a.txt"), b"alpha\n");
    write(&root.join("sub/b.bin"), &pattern(70_000, 3));
    write(&root.join("sub/deeper/c"), b"c");
    write(&root.join("empty"), b"");
    fs::hard_link(root.join("a.txt"), root.join("sub/hard")).unwrap();
    std::os::unix::fs::symlink("a.txt", root.join("sym")).unwrap();
    mkfifo(&root.join("fifo"), 0o640);
    chmod(&root.join("sub/deeper"), 0o750);
    chmod(&root.join("a.txt"), 0o600);
    let f = fs::File::create(root.join("sparse")).unwrap();
    f.write_all_at(&pattern(4096, 1), 0).unwrap();
    f.write_all_at(&pattern(5000, 2), 2 << 20).unwrap();
    f.set_len((3 << 20) + 100).unwrap();
    drop(f);
    // ustar: names up to 255 bytes split at a '/'; GNU: anything.
    let dir = root.join("p".repeat(60)).join("o".repeat(60));
    fs::create_dir_all(&dir).unwrap();
    write(&dir.join("q".repeat(90)), b"split");
    if long {
        let deep = root
            .join("d".repeat(90))
            .join("e".repeat(90))
            .join("f".repeat(90));
        fs::create_dir_all(&deep).unwrap();
        write(&deep.join("g".repeat(150)), b"deep");
        fs::hard_link(root.join("a.txt"), deep.join("h".repeat(140))).unwrap();
        std::os::unix::fs::symlink("t".repeat(300), root.join("sym_long")).unwrap();
        if is_root() {
            // GNU tar writes ids this large in base-256.
            write(&root.join("bigid"), b"big ids");
            lchown(&root.join("bigid"), 3_000_000, 4_000_000);
        }
    }
    let all: Vec<PathBuf> = walk(root).into_keys().map(|r| join(root, &r)).collect();
    let mut all = all;
    all.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for (i, p) in all.iter().enumerate() {
        set_mtime(p, 1_500_000_000 + i as i64 * 977, 0);
    }
}

/// GNU tar's gnu (long names as 'L'/'K' members, old 'S' sparse members) and ustar
/// (prefix field) formats restore identically.
#[test]
fn reads_gnu_tar_gnu_and_ustar() {
    if !gnu_tar() {
        return;
    }
    for (format, long) in [("gnu", true), ("ustar", false)] {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        build_plain_tree(&src, long);
        let fmt = format!("--format={format}");
        let mut args: Vec<&OsStr> = vec![fmt.as_ref()];
        if format == "gnu" {
            // ustar has no sparse form; GNU tar refuses --sparse with it.
            args.push("--sparse".as_ref());
        }
        args.extend(["-c", "-f", "-", "-C"].map(OsStr::new));
        args.push(src.as_os_str());
        args.push(".".as_ref());
        let (img, _) = run_tar(&args);
        if format == "gnu" {
            // The sparse file really is an old GNU sparse member.
            assert!(img
                .chunks(512)
                .any(|b| b[156] == b'S' && &b[257..263] == b"ustar "));
        }
        let out = tmp.path().join("out");
        let (r, log) = recover(&img, &opts(&out));
        r.unwrap();
        assert!(log.warnings.is_empty(), "{format}: {:?}", log.warnings);
        assert!(log.failed().is_empty(), "{format}: {:?}", log.failed());
        // ustar has no sparse form: GNU tar stores the holes as zeros.
        let diffs: Vec<String> = compare(&src, &out, true)
            .into_iter()
            .filter(|d| !(format == "ustar" && d.starts_with("./sparse: holes")))
            .collect();
        assert!(diffs.is_empty(), "{format}:\n{}", diffs.join("\n"));
    }
}

/// GNU tar's v7 format (no magic, directories as names ending in '/', no devices) reads
/// back too.
#[test]
fn reads_gnu_tar_v7() {
    if !gnu_tar() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("sub/deep")).unwrap();
    write(&src.join("a.txt"), b"alpha\n");
    write(&src.join("sub/b.bin"), &pattern(70_000, 3));
    write(&src.join("sub/deep/c"), b"c");
    fs::hard_link(src.join("a.txt"), src.join("sub/hard")).unwrap();
    std::os::unix::fs::symlink("../a.txt", src.join("sub/sym")).unwrap();
    chmod(&src.join("sub/deep"), 0o750);
    for (i, rel) in [
        "sub/deep/c",
        "sub/deep",
        "sub/b.bin",
        "sub/hard",
        "sub/sym",
        "sub",
        "a.txt",
        "",
    ]
    .iter()
    .enumerate()
    {
        set_mtime(&src.join(rel), 1_400_000_000 + i as i64 * 61, 0);
    }
    let (img, _) = run_tar(&[
        "--format=v7".as_ref(),
        "-c".as_ref(),
        "-f".as_ref(),
        "-".as_ref(),
        "-C".as_ref(),
        src.as_os_str(),
        ".".as_ref(),
    ]);
    assert!(img.chunks(512).take(1).all(|b| &b[257..262] != b"ustar"));
    let out = tmp.path().join("out");
    let (r, log) = recover(&img, &opts(&out));
    r.unwrap();
    assert!(log.warnings.is_empty(), "{:?}", log.warnings);
    assert!(log.failed().is_empty(), "{:?}", log.failed());
    assert_same(&src, &out);
}

// ------------------------------------------------------------------ 4. selections and DAR

/// As with the dump reader: a subtree; one file with the directories on its way (their
/// own attributes); moved selections; a name not in the archive reported; escaping
/// selections refused before anything is read.
#[test]
fn selective_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    small_tree(&src);
    let (img, _) = tar(&src);

    let out = tmp.path().join("sub-only");
    let mut o = opts(&out);
    o.select = vec![sel("sub")];
    let (r, log) = recover(&img, &o);
    r.unwrap();
    let want: BTreeSet<Vec<u8>> = names(&src)
        .into_iter()
        .filter(|n| (n == b"." || n.starts_with(b"./sub")) && !n.ends_with(b"a-link"))
        .collect();
    assert_eq!(names(&out), want);
    // The hard link's first name is outside the selection, so that name cannot be made.
    assert_eq!(log.failed().len(), 1, "{:?}", log.failed());
    assert!(log.failed_path("sub/deep/a-link"));
    let diffs: Vec<String> = compare(&src.join("sub"), &out.join("sub"), true)
        .into_iter()
        .filter(|d| !d.contains("a-link"))
        .collect();
    assert!(diffs.is_empty(), "{diffs:?}");

    let out = tmp.path().join("one-file");
    let mut o = opts(&out);
    o.select = vec![sel("./sub/deep/c.txt")];
    let (r, log) = recover(&img, &o);
    let sum = r.unwrap();
    assert_eq!((sum.files, sum.skipped), (1, 0));
    assert!(log.failed().is_empty());
    assert_eq!(
        names(&out),
        [".", "./sub", "./sub/deep", "./sub/deep/c.txt"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect()
    );
    for rel in ["sub", "sub/deep", "sub/deep/c.txt"] {
        let (a, b) = (
            fs::metadata(src.join(rel)).unwrap(),
            fs::metadata(out.join(rel)).unwrap(),
        );
        assert_eq!((a.mode(), a.mtime()), (b.mode(), b.mtime()), "{rel}");
    }

    let out = tmp.path().join("moved");
    let mut o = opts(&out);
    o.select = vec![
        Selection {
            path: b"sub/deep".to_vec(),
            dest: Some(out.join("elsewhere/renamed")),
        },
        Selection {
            path: b"z.txt".to_vec(),
            dest: Some(PathBuf::from("zz/new-z")),
        },
        sel("no/such/file"),
    ];
    let (r, log) = recover(&img, &o);
    r.unwrap();
    assert_eq!(
        fs::read(out.join("elsewhere/renamed/c.txt")).unwrap(),
        b"gamma"
    );
    assert_eq!(fs::read(out.join("zz/new-z")).unwrap(), b"zeta");
    assert_eq!(
        fs::metadata(out.join("elsewhere/renamed")).unwrap().mode() & 0o7777,
        0o751
    );
    assert!(!out.join("sub").exists());
    // a-link's target (a.txt) is not selected either.
    let failed = log.failed();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(log.failed_path("no/such/file"));

    for bad in [
        sel("../x"),
        sel("/abs"),
        Selection {
            path: b"sub".to_vec(),
            dest: Some(tmp.path().join("not-under-root")),
        },
        Selection {
            path: b"sub".to_vec(),
            dest: Some(PathBuf::from("a/../../x")),
        },
    ] {
        let never = tmp.path().join("never");
        let mut o = opts(&never);
        o.select = vec![bad];
        let (r, _) = recover(&img, &o);
        assert!(matches!(r, Err(RecoverError::BadSelection(_))), "{r:?}");
        assert!(!never.exists());
    }

    // keep_existing leaves an existing file alone.
    let out = tmp.path().join("keep");
    fs::create_dir_all(&out).unwrap();
    write(&out.join("z.txt"), b"mine");
    let mut o = opts(&out);
    o.keep_existing = true;
    let (r, log) = recover(&img, &o);
    r.unwrap();
    assert_eq!(fs::read(out.join("z.txt")).unwrap(), b"mine");
    assert!(log.failed_path("z.txt"), "{:?}", log.failed());
    assert_eq!(fs::read(out.join("a.txt")).unwrap(), b"alpha\n");
}

/// Counts what is read, to check that DAR reads exactly one member.
struct Counting<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// DAR: the archive sliced at a member's fh_info gives back that member through
/// `read_one_tar` (contents, holes, mode, mtime, xattrs), reading exactly to the end of
/// the member; hard links and offsets that are not a member are refused.
#[test]
fn dar_read_one() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    write(&src.join("big.bin"), &pattern(3 * 1024 * 1024 + 77, 9));
    write(&src.join("empty"), b"");
    write(&src.join("xattr_file"), b"x");
    set_xattr(&src.join("xattr_file"), "user.comment", b"hello world");
    chmod(&src.join("xattr_file"), 0o640);
    let f = fs::File::create(src.join("sparse")).unwrap();
    f.write_all_at(&pattern(4096, 1), 0).unwrap();
    f.write_all_at(&pattern(5000, 2), 2 << 20).unwrap();
    f.set_len((3 << 20) + 100).unwrap();
    drop(f);
    std::os::unix::fs::symlink("big.bin", src.join("link")).unwrap();
    fs::create_dir(src.join("dir")).unwrap();
    chmod(&src.join("dir"), 0o705);
    write(&src.join("n".repeat(180)), b"long name");
    mkfifo(&src.join("fifo"), 0o604);
    fs::hard_link(src.join("empty"), src.join("zz-hard")).unwrap();
    write(&src.join("zzz-last"), b"last");
    stamp_times(&src);
    let (img, hist) = tar(&src);
    let dest_root = tmp.path().join("dar");
    let long = "n".repeat(180);

    for name in [
        "big.bin",
        "empty",
        "xattr_file",
        "sparse",
        "link",
        "dir",
        long.as_str(),
        "fifo",
    ] {
        let path = format!("/{name}");
        let fh = hist.fh(&path) as usize;
        let end = hist.next_fh(&path) as usize;
        let mut input = Counting {
            data: &img[fh..],
            pos: 0,
        };
        let dest = dest_root.join(format!("{name}.restored"));
        let mut log = Log::default();
        let sum = read_one_tar(
            &mut input,
            &dest,
            &opts(&dest_root),
            &mut |ev| log.push(ev),
            &AtomicBool::new(false),
        )
        .unwrap();
        assert_eq!(input.pos, end - fh, "{name}: read past its member");
        assert_eq!(sum.bytes, (end - fh) as u64);
        assert!(log.warnings.is_empty(), "{name}: {:?}", log.warnings);
        assert!(log.failed().is_empty(), "{name}: {:?}", log.failed());
        assert_eq!(log.restored.len(), 1);
        assert_eq!(log.restored[0].0, dest.as_os_str().as_bytes());
        assert_eq!(sum.files + sum.dirs, 1, "{name}");
        let (a, b) = (
            fs::symlink_metadata(src.join(name)).unwrap(),
            fs::symlink_metadata(&dest).unwrap(),
        );
        assert_eq!(kind(&a), kind(&b), "{name}");
        assert_eq!(a.mtime(), b.mtime(), "{name}");
        if a.file_type().is_symlink() {
            assert_eq!(fs::read_link(&dest).unwrap(), PathBuf::from("big.bin"));
        } else {
            assert_eq!(a.mode(), b.mode(), "{name}");
            assert_eq!(a.mtime_nsec(), b.mtime_nsec(), "{name}");
            assert_eq!(xattrs(&src.join(name)), xattrs(&dest), "{name}");
        }
        if a.is_file() {
            assert!(same_contents(&src.join(name), &dest), "{name}");
            assert_eq!(data_extents(&src.join(name)), data_extents(&dest), "{name}");
        }
    }

    // The hard link: refused with a reason, its member still read exactly.
    let fh = hist.fh("/zz-hard") as usize;
    let end = hist.next_fh("/zz-hard") as usize;
    let mut input = Counting {
        data: &img[fh..],
        pos: 0,
    };
    let mut log = Log::default();
    let sum = read_one_tar(
        &mut input,
        &dest_root.join("h"),
        &opts(&dest_root),
        &mut |ev| log.push(ev),
        &AtomicBool::new(false),
    )
    .unwrap();
    assert_eq!(input.pos, end - fh);
    assert_eq!(sum.skipped, 1);
    assert!(log.restored[0].2.as_deref().unwrap().contains("hard link"));
    assert!(!dest_root.join("h").exists());

    // Into data, past the end, outside the root.
    let fh = hist.fh("/big.bin") as usize;
    let o = opts(&dest_root);
    for (at, what) in [(fh + 4096, "data"), (img.len() - 1024, "end")] {
        let r = read_one_tar(
            &mut &img[at..],
            &dest_root.join("w"),
            &o,
            &mut |_| {},
            &AtomicBool::new(false),
        );
        assert!(
            matches!(r, Err(RecoverError::NotTar { .. })),
            "{what}: {r:?}"
        );
    }
    let r = read_one_tar(
        &mut &img[fh..],
        &tmp.path().join("outside-root"),
        &o,
        &mut |_| {},
        &AtomicBool::new(false),
    );
    assert!(matches!(r, Err(RecoverError::BadSelection(_))), "{r:?}");
}

// ------------------------------------------------------------------ 5. listing

/// `list_tar` gives the writer's (path, stat, fh_info) sequence, for every kind of member.
#[test]
fn list_matches_history() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    build_tree(&src);
    let (img, hist) = tar(&src);
    let mut listed = Vec::new();
    let mut warnings = Vec::new();
    let n = list_tar(
        &mut Cursor::new(&img),
        &mut |e| listed.push((e.path.to_vec(), e.stat.clone(), e.fh_info)),
        &mut |w| warnings.push(w),
        &AtomicBool::new(false),
        &AtomicBool::new(false),
    )
    .unwrap();
    assert_eq!(n, img.len() as u64);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(listed.len(), hist.files.len());
    for (l, h) in listed.iter().zip(&hist.files) {
        assert_eq!(l, h, "{}", String::from_utf8_lossy(&h.0));
    }
    // Spot checks of the history itself.
    assert_eq!(hist.files[0].0, b"/");
    assert_eq!(hist.files[0].2, 0);
    let sparse = &hist.entry("/big_sparse").1;
    assert_eq!((sparse.kind, sparse.size), (FileKind::File, 64 << 20));
    let hl = &hist.entry("/sub/sym_hl2").1;
    assert_eq!((hl.kind, hl.size), (FileKind::Symlink, 5));
    let small = fs::metadata(src.join("small.txt")).unwrap();
    let s = &hist.entry("/small.txt").1;
    assert_eq!(
        (s.mode, s.mtime, s.atime, s.ctime),
        (
            small.mode() & 0o7777,
            small.mtime(),
            small.atime(),
            small.ctime()
        )
    );
}

// ------------------------------------------------------------------ 6. incremental, exclude

/// With a base date only what changed since goes in (every directory still does), and it
/// applies over a full restore; excluded names go nowhere and count as skipped.
#[test]
fn incremental_and_exclude() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    small_tree(&src);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (full, _) = tar(&src);
    let base = now();
    write(&src.join("a.txt"), b"alpha, changed\n");
    write(&src.join("sub/new.txt"), b"new");
    let (inc, hist, _) = tar_with(
        &src,
        &TarOptions {
            base_date: Some(base),
            ..TarOptions::default()
        },
    );
    let paths: BTreeSet<&[u8]> = hist.files.iter().map(|f| f.0.as_slice()).collect();
    let want: BTreeSet<&[u8]> = [
        "/",
        "/a.txt",
        "/sub",
        "/sub/deep",
        "/sub/deep/a-link",
        "/sub/new.txt",
    ]
    .iter()
    .map(|s| s.as_bytes())
    .collect();
    assert_eq!(paths, want);
    let out = tmp.path().join("out");
    recover(&full, &opts(&out)).0.unwrap();
    let (r, log) = recover(&inc, &opts(&out));
    r.unwrap();
    assert!(log.failed().is_empty(), "{:?}", log.failed());
    assert_same(&src, &out);

    let (img, hist, sum) = tar_with(
        &src,
        &TarOptions {
            exclude: vec!["*.txt".into(), "deep".into()],
            ..TarOptions::default()
        },
    );
    let paths: Vec<&[u8]> = hist.files.iter().map(|f| f.0.as_slice()).collect();
    assert_eq!(paths, [&b"/"[..], b"/sub", b"/sub/sl"]);
    assert_eq!(sum.skipped, 5);
    assert!(!img.windows(5).any(|w| w == b"z.txt"));

    // An abort flag already set stops both sides at once.
    let abort = AtomicBool::new(true);
    let r = write_tar(
        &src,
        &TarOptions::default(),
        &mut Vec::new(),
        &mut |_| {},
        &abort,
    );
    assert!(
        matches!(r, Err(ndmpd::format::tar::DumpError::Aborted)),
        "{r:?}"
    );
    let r = read_tar(
        &mut Cursor::new(&full),
        &opts(&tmp.path().join("aborted")),
        &mut |_| {},
        &abort,
    );
    assert!(matches!(r, Err(RecoverError::Aborted)), "{r:?}");
}

// ------------------------------------------------------------------ 7. damage only tar has

/// After the last member, one zero block and the end of input is a proper end, as are
/// the two zero blocks of the end marker. (Cuts before the end: reader_scenarios.rs.)
#[test]
fn end_marker_of_one_or_two_zero_blocks() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    small_tree(&src);
    let (img, _) = tar(&src);
    let end_at = (0..img.len() / 512)
        .rev()
        .find(|&i| img[i * 512..i * 512 + 512].iter().any(|&b| b != 0))
        .unwrap()
        * 512
        + 512;
    let (r, _) = recover(&img[..end_at + 512], &opts(&tmp.path().join("one-zero")));
    r.unwrap();
    let (r, _) = recover(&img[..end_at + 1024], &opts(&tmp.path().join("two-zero")));
    r.unwrap();
}

/// A damaged pax header: the member it describes is not restored with half its
/// attributes, and the rest is. (Damaged ustar headers: reader_scenarios.rs.)
#[test]
fn damaged_pax_header() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    small_tree(&src);
    let (img, hist) = tar(&src);
    let fh = hist.fh("/sub/b.txt") as usize;
    let mut bad = img.clone();
    bad[fh + 5] ^= 0x20;
    let dest = tmp.path().join("badx");
    let (r, log) = recover(&bad, &opts(&dest));
    r.unwrap();
    assert!(log.failed_path("sub/b.txt"), "{:?}", log.failed());
    assert_eq!(fs::read(dest.join("z.txt")).unwrap(), b"zeta");
}

/// Oversized pax headers, lying sparse maps and unreadable sizes: warnings or failed
/// members naming them, the rest of the archive restored, no large allocation.
#[test]
fn absurd_sizes_and_lying_maps() {
    let tmp = tempfile::tempdir().unwrap();
    let mut v = Vec::new();
    // A 2 MiB pax header (over the 1 MiB bound) before "victim".
    let big = pax_records(&[("comment", &vec![b'c'; 2 << 20])]);
    add(&mut v, b"./PaxHeaders/victim", b'x', &big, b"");
    add(&mut v, b"victim", b'0', b"v", b"");
    // Sparse 1.0 members whose maps lie.
    let sparse = |v: &mut Vec<u8>, name: &str, realsize: &str, map: &[u8], data: usize| {
        let recs = pax_records(&[
            ("GNU.sparse.major", b"1"),
            ("GNU.sparse.minor", b"0"),
            ("GNU.sparse.name", name.as_bytes()),
            ("GNU.sparse.realsize", realsize.as_bytes()),
        ]);
        add(v, b"./PaxHeaders/s", b'x', &recs, b"");
        let mut body = map.to_vec();
        pad(&mut body);
        body.extend(std::iter::repeat_n(b'd', data));
        add(v, b"GNUSparseFile.0/s", b'0', &body, b"");
    };
    sparse(&mut v, "beyond", "100", b"1\n50\n100\n", 100);
    sparse(&mut v, "too-many", "100", b"2000000\n0\n1\n", 10);
    sparse(&mut v, "more-than-held", "5000", b"1\n0\n4000\n", 100);
    sparse(&mut v, "garbage", "100", b"1\nx\n", 10);
    sparse(&mut v, "overlap", "100", b"2\n0\n50\n10\n10\n", 60);
    sparse(&mut v, "good-sparse", "9000", b"1\n8000\n5\n", 5);
    // A size in base-256 that is negative: the header is unusable.
    let mut neg = hdr(b"negative", b'0', 0, b"");
    neg[124..136].copy_from_slice(&[0xff; 12]);
    seal(&mut neg);
    v.extend_from_slice(&neg);
    add(&mut v, b"ok", b'0', b"fine", b"");
    end(&mut v);

    let dest = tmp.path().join("dest");
    let (r, log) = recover(&v, &opts(&dest));
    r.unwrap();
    let failed: BTreeSet<String> = log
        .restored
        .iter()
        .filter(|r| !r.1)
        .map(|r| String::from_utf8_lossy(&r.0).into_owned())
        .collect();
    let want: BTreeSet<String> = [
        "victim",
        "beyond",
        "too-many",
        "more-than-held",
        "garbage",
        "overlap",
        "negative",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(failed, want, "{:?} {:?}", log.restored, log.warnings);
    assert!(log.warnings.iter().any(|w| w.contains("larger than")));
    assert_eq!(fs::read(dest.join("ok")).unwrap(), b"fine");
    let good = fs::metadata(dest.join("good-sparse")).unwrap();
    assert_eq!(good.len(), 9000);
    let mut expect = vec![0u8; 9000];
    expect[8000..8005].copy_from_slice(b"ddddd");
    assert_eq!(fs::read(dest.join("good-sparse")).unwrap(), expect);

    // A pax header claiming 8 GiB, then the end of input: skipped in step, no
    // allocation, `Truncated`.
    let mut v = Vec::new();
    v.extend_from_slice(&hdr(b"./PaxHeaders/x", b'x', (1 << 33) - 1, b""));
    v.extend_from_slice(&[b'7'; 4096]);
    let (r, _) = recover(&v, &opts(&tmp.path().join("tera")));
    assert!(matches!(r, Err(RecoverError::Truncated { .. })), "{r:?}");
}

/// More small files than the writer reads ahead (256), in directories whose sorted entries
/// alternate runs of files with subdirectories, a file too large to be read ahead, an empty
/// one and a hard link between two small files: GNU tar extracts the archive to the same
/// tree, and the history lists every member once in the walk's order (sorted names, depth
/// first) at increasing offsets.
#[test]
fn read_ahead_keeps_the_walk_order() {
    if !gnu_tar() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    let mut expect = vec![b"/".to_vec()];
    for d in 0..3 {
        let dir = src.join(format!("d{d}"));
        fs::create_dir(&dir).unwrap();
        expect.push(format!("/d{d}").into_bytes());
        // names a*, then subdirectory m, then z*: two runs of files around a directory
        for (prefix, n) in [("a", 150), ("m", 0), ("z", 120)] {
            if n == 0 {
                fs::create_dir(dir.join("m")).unwrap();
                expect.push(format!("/d{d}/m").into_bytes());
                fs::write(dir.join("m/inner"), b"inner").unwrap();
                expect.push(format!("/d{d}/m/inner").into_bytes());
                continue;
            }
            for i in 0..n {
                let name = format!("{prefix}{i:03}");
                let len = (i * 331 + d * 17) % 8192;
                let data: Vec<u8> = (0..len).map(|k| (k * 7 + i) as u8).collect();
                fs::write(dir.join(&name), data).unwrap();
                expect.push(format!("/d{d}/{name}").into_bytes());
            }
        }
    }
    let big: Vec<u8> = (0..200_000u32).map(|k| (k % 251) as u8).collect();
    fs::write(src.join("d1/a050"), &big).unwrap();
    fs::remove_file(src.join("d2/z007")).unwrap();
    fs::hard_link(src.join("d2/a003"), src.join("d2/z007")).unwrap();
    let (img, hist) = tar(&src);
    let paths: Vec<Vec<u8>> = hist.files.iter().map(|f| f.0.clone()).collect();
    assert_eq!(paths.len(), expect.len());
    assert!(paths == expect, "members out of the walk's order");
    assert!(hist.files.windows(2).all(|w| w[0].2 < w[1].2));
    let arch = tmp.path().join("ours.tar");
    fs::write(&arch, &img).unwrap();
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    run_tar(&[
        "-x".as_ref(),
        "-p".as_ref(),
        "-f".as_ref(),
        arch.as_os_str(),
        "-C".as_ref(),
        out.as_os_str(),
    ]);
    assert_same(&src, &out);
    let (a, z) = (
        fs::metadata(out.join("d2/a003")).unwrap(),
        fs::metadata(out.join("d2/z007")).unwrap(),
    );
    assert_eq!((a.ino(), a.nlink()), (z.ino(), 2));
}
