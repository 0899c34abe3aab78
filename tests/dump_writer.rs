//! The dump image writer against the stock Linux `restore` (Debian package `dump`): trees
//! with every file kind are dumped, extracted by restore, and compared with the source.
//!
//! Tests that need restore print a note and pass when it is not installed; owners and
//! device nodes are only exercised as root.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{CString, OsStr};
use std::fs::{self, File, Metadata};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;

use ndmpd::format::dump::{
    write_dump, DumpError, DumpOptions, Event, FileKind, HistEvent, NodeStat, Summary,
};

// ------------------------------------------------------------------ environment

fn restore_bin() -> Option<PathBuf> {
    ["/usr/sbin/restore", "/sbin/restore"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

// ------------------------------------------------------------------ building trees

fn write(p: &Path, data: &[u8]) {
    fs::write(p, data).unwrap();
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .rotate_left(seed as u32 % 31) as u8
                ^ seed
        })
        .collect()
}

fn set_xattr(p: &Path, name: &str, value: &[u8]) {
    let n = CString::new(name).unwrap();
    // SAFETY: valid NUL-terminated strings and a buffer of value.len() bytes.
    let r = unsafe {
        libc::lsetxattr(
            cstr(p).as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        r,
        0,
        "setxattr {name} on {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

fn set_mtime(p: &Path, sec: i64, nsec: i64) {
    let ts = [
        libc::timespec {
            tv_sec: sec - 1000,
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: sec,
            tv_nsec: nsec,
        },
    ];
    // SAFETY: valid path and two timespecs.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            cstr(p).as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(r, 0, "utimensat {}", p.display());
}

fn mknod(p: &Path, mode: u32, major: u32, minor: u32) {
    // SAFETY: valid path; makedev is a pure computation.
    let r = unsafe { libc::mknod(cstr(p).as_ptr(), mode, libc::makedev(major, minor)) };
    assert_eq!(r, 0, "mknod {}", p.display());
}

fn mkfifo(p: &Path, mode: u32) {
    nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(mode)).unwrap();
}

fn lchown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// A kernel-format POSIX ACL value (version 2, 8-byte entries).
fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for &(tag, perm, id) in entries {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

/// Sets every mtime in the tree to a distinct value with a sub-second part, children
/// before their directories so the directory times stick.
fn stamp_times(root: &Path) {
    let mut all: Vec<PathBuf> = walk(root).into_keys().map(|rel| join(root, &rel)).collect();
    all.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for (i, p) in all.iter().enumerate() {
        set_mtime(
            p,
            1_600_000_000 + i as i64 * 3671,
            123_456_789 + i as i64 * 1000,
        );
    }
}

/// Every kind of object restore can carry, with the awkward cases (holes, long and
/// non-UTF-8 names, multi-block directories, hard links of several kinds, xattrs, ACLs).
fn build_full_tree(root: &Path) {
    fs::create_dir_all(root).unwrap();
    write(&root.join("empty"), b"");
    write(&root.join("small.txt"), b"hello\n");
    for n in [1023usize, 1024, 1025, 4096] {
        write(&root.join(format!("k{n}")), &pattern(n, n as u8));
    }
    // More than 512 blocks: needs TS_ADDR continuation headers.
    write(&root.join("big.bin"), &pattern(700 * 1024 + 77, 9));
    write(&root.join("setuid"), b"#!/bin/sh\n");
    chmod(&root.join("setuid"), 0o4755);
    write(&root.join("nomode"), b"secret");
    chmod(&root.join("nomode"), 0o000);

    // Sparse files.
    let f = File::create(root.join("sparse_mid")).unwrap();
    f.write_all_at(&pattern(4096, 1), 0).unwrap();
    f.write_all_at(&pattern(5000, 2), 2 << 20).unwrap();
    f.set_len((3 << 20) + 100).unwrap();
    let f = File::create(root.join("sparse_lead")).unwrap();
    f.write_all_at(&pattern(1000, 3), (1 << 20) + 512).unwrap();
    let f = File::create(root.join("all_hole")).unwrap();
    f.set_len(5 << 20).unwrap();
    let f = File::create(root.join("huge_sparse")).unwrap();
    f.write_all_at(&pattern(3000, 4), (4u64 << 30) + 12345)
        .unwrap();
    f.set_len(5u64 << 30).unwrap();
    drop(f);

    // Names.
    write(
        &root.join(OsStr::from_bytes(b"non-utf8-\xff\xfe")),
        b"bytes",
    );
    write(&root.join("n".repeat(200)), b"long name");
    write(&root.join("with space"), b"s");
    write(&root.join("glob*?[x]"), b"g");
    let many = root.join("manydir");
    fs::create_dir(&many).unwrap();
    for i in 0..300 {
        write(
            &many.join(format!("f{i:03}{}", "x".repeat(i % 40))),
            format!("{i}").as_bytes(),
        );
    }
    let deep = root.join("sub/deep/deeper/deepest");
    fs::create_dir_all(&deep).unwrap();
    write(&deep.join("leaf"), b"leaf");
    let empty = root.join("emptydir");
    fs::create_dir(&empty).unwrap();
    chmod(&empty, 0o1777);

    // Links.
    write(&root.join("link_a"), b"three names");
    fs::hard_link(root.join("link_a"), root.join("sub/link_b")).unwrap();
    fs::hard_link(root.join("link_a"), root.join("sub/deep/link_c")).unwrap();
    std::os::unix::fs::symlink("small.txt", root.join("sym_short")).unwrap();
    std::os::unix::fs::symlink("t".repeat(2000), root.join("sym_long")).unwrap();
    std::os::unix::fs::symlink("nowhere/at/all", root.join("sym_dangling")).unwrap();
    std::os::unix::fs::symlink("k1024", root.join("sym_hl1")).unwrap();
    fs::hard_link(root.join("sym_hl1"), root.join("sub/sym_hl2")).unwrap();

    // Special files.
    mkfifo(&root.join("fifo"), 0o640);
    fs::hard_link(root.join("fifo"), root.join("sub/fifo_hl")).unwrap();
    drop(std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap());
    if is_root() {
        mknod(&root.join("chr"), libc::S_IFCHR | 0o620, 240, 300_000);
        mknod(&root.join("blk"), libc::S_IFBLK | 0o600, 8, 1);
        write(&root.join("owned"), b"owned");
        lchown(&root.join("owned"), 1234, 5678);
        lchown(&root.join("sym_short"), 4321, 8765);
        lchown(&root.join("sub"), 99, 98);
    }

    // Extended attributes and ACLs.
    write(&root.join("xattr_file"), b"x");
    set_xattr(&root.join("xattr_file"), "user.comment", b"hello world");
    set_xattr(&root.join("xattr_file"), "user.binary", &[0, 1, 2, 255]);
    set_xattr(&root.join("sub"), "user.dirattr", b"on a directory");
    write(&root.join("acl_file"), b"acl");
    let access = acl(&[
        (1, 6, u32::MAX),
        (2, 4, 1000),
        (4, 4, u32::MAX),
        (0x10, 6, u32::MAX),
        (0x20, 0, u32::MAX),
    ]);
    set_xattr(&root.join("acl_file"), "system.posix_acl_access", &access);
    fs::create_dir(root.join("acl_dir")).unwrap();
    let default = acl(&[
        (1, 7, u32::MAX),
        (4, 5, u32::MAX),
        (8, 5, 2000),
        (0x10, 5, u32::MAX),
        (0x20, 1, u32::MAX),
    ]);
    set_xattr(&root.join("acl_dir"), "system.posix_acl_default", &default);

    chmod(root, 0o750);
    stamp_times(root);
}

// ------------------------------------------------------------------ dumping

#[derive(Default)]
struct Hist {
    dirs: Vec<(u64, Vec<u8>, u64)>,
    nodes: Vec<(u64, NodeStat, u64)>,
    warnings: Vec<String>,
}

fn dump(src: &Path, image: &Path, opts: &DumpOptions) -> (Summary, Hist) {
    let mut hist = Hist::default();
    let mut out = std::io::BufWriter::new(File::create(image).unwrap());
    let abort = AtomicBool::new(false);
    let sum = write_dump(
        src,
        opts,
        &mut out,
        &mut |ev| match ev {
            Event::History(HistEvent::Dir {
                dir_inode,
                name,
                inode,
            }) => hist.dirs.push((dir_inode, name.to_vec(), inode)),
            Event::History(HistEvent::Node {
                inode,
                stat,
                fh_info,
            }) => hist.nodes.push((inode, stat.clone(), fh_info)),
            Event::Warning(w) => hist.warnings.push(w),
            Event::Estimate(_) => {}
        },
        &abort,
    )
    .unwrap();
    drop(out);
    assert_eq!(fs::metadata(image).unwrap().len(), sum.bytes);
    assert_eq!(sum.bytes % (1024 * u64::from(opts.ntrec)), 0);
    (sum, hist)
}

fn level0(dump_date: i64) -> DumpOptions {
    DumpOptions {
        dump_date,
        label: "test".into(),
        host: "testhost".into(),
        filesystem: "/export/test".into(),
        ..DumpOptions::default()
    }
}

// ------------------------------------------------------------------ running restore

/// Lines of restore's output that mean it did not understand the image.
const BAD: &[&str] = &[
    "Checksum error",
    "resync restore",
    "Mangled directory",
    "not found on tape",
    "Missing address",
    "Missing blocks",
    "Incorrect block",
    "unknown file mode",
    "unknown tape header",
    "unknown inode type",
    "is not a dump tape",
    "Cannot find file",
    "ran off end",
    "not at beginning of a file",
    "EA set",
    "error in EA block",
    "Unknown EA index",
    "cannot create",
    "Root directory is not on tape",
    "corrupted symbol table",
    "Wrong volume",
    "Wrong dump date",
    "Tape read error",
    "Header with wrong dumpdate",
    "unexpected inode extension",
];

/// Runs restore in `cwd` with stdin closed so no prompt can hang; returns stdout.
fn restore(bin: &Path, cwd: &Path, args: &[&OsStr]) -> Vec<u8> {
    let scratch = cwd.parent().unwrap().join("restore-scratch");
    fs::create_dir_all(&scratch).unwrap();
    let out = Command::new(bin)
        .args(args)
        .arg("-T")
        .arg(&scratch)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let log =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| BAD.iter().any(|b| l.contains(b)) && !l.contains("ftruncate: Invalid argument"))
        .collect();
    assert!(
        out.status.success() && bad.is_empty(),
        "restore {args:?} failed ({}):\n{log}",
        out.status
    );
    out.stdout
}

// ------------------------------------------------------------------ comparing trees

fn join(root: &Path, rel: &[u8]) -> PathBuf {
    if rel == b"." {
        root.to_path_buf()
    } else {
        root.join(OsStr::from_bytes(&rel[2..]))
    }
}

/// Relative path ("." or "./a/b") -> lstat of every object under `root`.
fn walk(root: &Path) -> BTreeMap<Vec<u8>, Metadata> {
    let mut res = BTreeMap::new();
    let mut stack = vec![b".".to_vec()];
    while let Some(rel) = stack.pop() {
        let full = join(root, &rel);
        let md = fs::symlink_metadata(&full).unwrap();
        if md.is_dir() {
            for e in fs::read_dir(&full).unwrap() {
                let mut r = rel.clone();
                r.push(b'/');
                r.extend_from_slice(e.unwrap().file_name().as_bytes());
                stack.push(r);
            }
        }
        res.insert(rel, md);
    }
    res
}

fn kind(md: &Metadata) -> u32 {
    md.mode() & libc::S_IFMT
}

fn xattrs(p: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut res = BTreeMap::new();
    let c = cstr(p);
    let mut names = vec![0u8; 65536];
    // SAFETY: buffer of the given length, valid path.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return res;
    }
    for name in names[..n as usize]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
    {
        if !(name.starts_with(b"user.") || name.starts_with(b"system.posix_acl_")) {
            continue;
        }
        let cn = CString::new(name).unwrap();
        let mut v = vec![0u8; 65536];
        // SAFETY: as above.
        let m = unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        assert!(m >= 0);
        v.truncate(m as usize);
        res.insert(name.to_vec(), v);
    }
    res
}

/// Data extents (SEEK_DATA/SEEK_HOLE) of a file, to check that holes survive.
fn data_extents(p: &Path) -> Vec<(u64, u64)> {
    use std::os::fd::AsRawFd;
    let f = File::open(p).unwrap();
    let size = f.metadata().unwrap().len() as i64;
    let mut res: Vec<(u64, u64)> = Vec::new();
    let mut pos = 0i64;
    while pos < size {
        // SAFETY: lseek on our own descriptor.
        let d = unsafe { libc::lseek(f.as_raw_fd(), pos, libc::SEEK_DATA) };
        if d < 0 {
            break;
        }
        // SAFETY: as above.
        let h = unsafe { libc::lseek(f.as_raw_fd(), d, libc::SEEK_HOLE) };
        res.push((d as u64, h as u64));
        pos = h;
    }
    res
}

fn same_contents(a: &Path, b: &Path) -> bool {
    let (mut fa, mut fb) = (File::open(a).unwrap(), File::open(b).unwrap());
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let na = read_full(&mut fa, &mut ba);
        let nb = read_full(&mut fb, &mut bb);
        if na != nb || ba[..na] != bb[..nb] {
            return false;
        }
        if na == 0 {
            return true;
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]).unwrap() {
            0 => break,
            k => n += k,
        }
    }
    n
}

/// Compares a restored tree with its source: names, types, permission bits, owners (as
/// root), mtimes (seconds everywhere, microseconds for non-symlinks), contents, holes
/// (identical data/hole extents), symlink targets, device numbers, hard-link groups and
/// user./ACL xattrs. Returns the differences.
/// With `root_times` false the mtime of the root itself is not compared.
fn compare(src: &Path, dst: &Path, root_times: bool) -> Vec<String> {
    let (s, d) = (walk(src), walk(dst));
    let mut diffs = Vec::new();
    let show = |p: &[u8]| String::from_utf8_lossy(p).into_owned();
    let sk: BTreeSet<_> = s.keys().cloned().collect();
    let dk: BTreeSet<_> = d.keys().cloned().collect();
    for p in sk.difference(&dk) {
        diffs.push(format!("missing in restore: {}", show(p)));
    }
    for p in dk.difference(&sk) {
        diffs.push(format!("extra in restore: {}", show(p)));
    }
    let groups = |m: &BTreeMap<Vec<u8>, Metadata>| {
        let mut g: HashMap<(u64, u64), BTreeSet<Vec<u8>>> = HashMap::new();
        for (p, md) in m {
            if !md.is_dir() {
                g.entry((md.dev(), md.ino())).or_default().insert(p.clone());
            }
        }
        g
    };
    let (sg, dg) = (groups(&s), groups(&d));
    for p in sk.intersection(&dk) {
        let (a, b) = (&s[p], &d[p]);
        let (sp, dp) = (join(src, p), join(dst, p));
        let name = show(p);
        if kind(a) != kind(b) {
            diffs.push(format!("{name}: type {:o} -> {:o}", kind(a), kind(b)));
            continue;
        }
        let symlink = a.file_type().is_symlink();
        if !symlink && a.mode() & 0o7777 != b.mode() & 0o7777 {
            diffs.push(format!(
                "{name}: mode {:o} -> {:o}",
                a.mode() & 0o7777,
                b.mode() & 0o7777
            ));
        }
        if is_root() && (a.uid(), a.gid()) != (b.uid(), b.gid()) {
            diffs.push(format!(
                "{name}: owner {}:{} -> {}:{}",
                a.uid(),
                a.gid(),
                b.uid(),
                b.gid()
            ));
        }
        let check_time = root_times || p != b".";
        let usec_differ = !symlink && a.mtime_nsec() / 1000 != b.mtime_nsec() / 1000;
        if check_time && (a.mtime() != b.mtime() || usec_differ) {
            diffs.push(format!(
                "{name}: mtime {}.{} -> {}.{}",
                a.mtime(),
                a.mtime_nsec(),
                b.mtime(),
                b.mtime_nsec()
            ));
        }
        if a.is_file() {
            if a.len() != b.len() {
                diffs.push(format!("{name}: size {} -> {}", a.len(), b.len()));
            } else if !same_contents(&sp, &dp) {
                diffs.push(format!("{name}: contents differ"));
            } else if a.blocks() * 512 < a.len() && data_extents(&sp) != data_extents(&dp) {
                diffs.push(format!(
                    "{name}: holes {:?} -> {:?}",
                    data_extents(&sp),
                    data_extents(&dp)
                ));
            }
        }
        if symlink && fs::read_link(&sp).unwrap() != fs::read_link(&dp).unwrap() {
            diffs.push(format!("{name}: symlink target differs"));
        }
        if matches!(kind(a), libc::S_IFCHR | libc::S_IFBLK) && a.rdev() != b.rdev() {
            diffs.push(format!("{name}: rdev {:x} -> {:x}", a.rdev(), b.rdev()));
        }
        if !a.is_dir() {
            let ga: BTreeSet<_> = sg[&(a.dev(), a.ino())].intersection(&dk).cloned().collect();
            let gb: BTreeSet<_> = dg[&(b.dev(), b.ino())].intersection(&sk).cloned().collect();
            if ga != gb {
                diffs.push(format!(
                    "{name}: hard-link group {} -> {}",
                    ga.len(),
                    gb.len()
                ));
            }
        }
        if !symlink && xattrs(&sp) != xattrs(&dp) {
            diffs.push(format!(
                "{name}: xattrs {:?} -> {:?}",
                xattrs(&sp),
                xattrs(&dp)
            ));
        }
    }
    diffs
}

/// Paths listed by `restore -t` ("ino<TAB>./path" lines).
fn listing(stdout: &[u8]) -> BTreeSet<Vec<u8>> {
    stdout
        .split(|&b| b == b'\n')
        .filter_map(|l| {
            let tab = l.iter().position(|&b| b == b'\t')?;
            std::str::from_utf8(&l[..tab])
                .ok()?
                .trim()
                .parse::<u64>()
                .ok()?;
            Some(l[tab + 1..].to_vec())
        })
        .collect()
}

// ------------------------------------------------------------------ tests

/// Level 0 of a tree with every kind of object: `restore -x` gives back the same tree
/// (see `compare` for what is checked) and `restore -t` lists every name.
#[test]
fn level0_restores_identically() {
    let Some(bin) = restore_bin() else {
        eprintln!("NOTE: stock restore not installed; skipping");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    build_full_tree(&src);
    let image = tmp.path().join("level0.dump");
    let (sum, hist) = dump(&src, &image, &level0(now()));
    assert!(hist.warnings.is_empty(), "warnings: {:?}", hist.warnings);
    let objects = walk(&src);
    assert_eq!(
        sum.dirs as usize,
        objects.values().filter(|m| m.is_dir()).count()
    );
    assert_eq!(sum.skipped, 0);

    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    restore(
        &bin,
        &out,
        &[
            OsStr::new("-x"),
            OsStr::new("-a"),
            OsStr::new("-o"),
            OsStr::new("-y"),
            OsStr::new("-u"),
            OsStr::new("-f"),
            image.as_os_str(),
        ],
    );
    let diffs = compare(&src, &out, true);
    assert!(
        diffs.is_empty(),
        "restored tree differs:\n{}",
        diffs.join("\n")
    );

    let listed = listing(&restore(
        &bin,
        &out,
        &[OsStr::new("-t"), OsStr::new("-f"), image.as_os_str()],
    ));
    let want: BTreeSet<Vec<u8>> = objects.keys().cloned().collect();
    assert_eq!(listed, want, "restore -t listing differs");
}

/// A single file extracted by path works, which needs files in ascending inode order.
#[test]
fn single_file_extraction() {
    let Some(bin) = restore_bin() else {
        eprintln!("NOTE: stock restore not installed; skipping");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    for i in 0..20 {
        write(&src.join(format!("f{i}")), &pattern(3000 + i, i as u8));
    }
    let image = tmp.path().join("img");
    dump(&src, &image, &level0(now()));
    // The lowest and highest numbered files: an out-of-order image prompts for a volume.
    let mut files: Vec<(u64, String)> = (0..20)
        .map(|i| {
            (
                fs::metadata(src.join(format!("f{i}"))).unwrap().ino(),
                format!("./f{i}"),
            )
        })
        .collect();
    files.sort();
    for (_, name) in [files[0].clone(), files[19].clone()] {
        let out = tmp.path().join(format!("out{}", &name[3..]));
        fs::create_dir(&out).unwrap();
        restore(
            &bin,
            &out,
            &[
                OsStr::new("-x"),
                OsStr::new("-a"),
                OsStr::new("-o"),
                OsStr::new("-y"),
                OsStr::new("-f"),
                image.as_os_str(),
                OsStr::new(&name),
            ],
        );
        assert!(
            same_contents(&src.join(&name[2..]), &out.join(&name[2..])),
            "{name}"
        );
    }
}

/// History: every dumped inode gets exactly one Node whose fh_info is the offset of a
/// valid TS_INODE header for that inode; Dir events start with "." and ".." of the root,
/// name every object of the tree (the tree can be rebuilt from them), and each node is
/// named before its Node event.
#[test]
fn history_matches_image() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    build_full_tree(&src);
    let image = tmp.path().join("img");
    let (sum, hist) = dump(&src, &image, &level0(now()));
    let img = File::open(&image).unwrap();

    assert_eq!(hist.dirs[0], (2, b".".to_vec(), 2));
    assert_eq!(hist.dirs[1], (2, b"..".to_vec(), 2));

    let mut seen_nodes = HashMap::new();
    let named: Vec<u64> = hist.dirs.iter().map(|d| d.2).collect();
    for (inode, stat, fh) in &hist.nodes {
        assert_eq!(fh % 1024, 0);
        let mut rec = [0u8; 1024];
        img.read_exact_at(&mut rec, *fh).unwrap();
        let word = |o: usize| u32::from_le_bytes(rec[o..o + 4].try_into().unwrap());
        assert_eq!(word(0), 2, "c_type at {fh} for inode {inode}");
        assert_eq!(word(24), 60012, "magic");
        assert_eq!(u64::from(word(20)), *inode, "c_inumber");
        assert_eq!(word(888) & 0x8000, 0, "not an attribute record");
        assert_eq!(
            rec.chunks(4).fold(0u32, |a, w| a
                .wrapping_add(u32::from_le_bytes(w.try_into().unwrap()))),
            84446
        );
        assert_eq!(
            u32::from(u16::from_le_bytes([rec[32], rec[33]])) & 0o7777,
            stat.mode
        );
        assert!(
            seen_nodes.insert(*inode, stat.clone()).is_none(),
            "inode {inode} has two Node events"
        );
        // Named by a Dir event emitted before this Node.
        assert!(named.contains(inode));
    }
    assert_eq!(seen_nodes.len() as u64, sum.files + sum.dirs);

    // Rebuild the tree from the Dir events and compare it with the source.
    let mut children: HashMap<u64, Vec<(Vec<u8>, u64)>> = HashMap::new();
    for (dir, name, ino) in &hist.dirs {
        if name != b"." && name != b".." {
            children.entry(*dir).or_default().push((name.clone(), *ino));
        }
    }
    let mut rebuilt: BTreeMap<Vec<u8>, u64> = BTreeMap::from([(b".".to_vec(), 2)]);
    let mut stack = vec![(b".".to_vec(), 2u64)];
    while let Some((path, ino)) = stack.pop() {
        for (name, child) in children.get(&ino).into_iter().flatten() {
            let mut p = path.clone();
            p.push(b'/');
            p.extend_from_slice(name);
            assert!(
                seen_nodes.contains_key(child),
                "entry {} has no Node",
                String::from_utf8_lossy(&p)
            );
            if seen_nodes[child].kind == FileKind::Dir {
                stack.push((p.clone(), *child));
            }
            rebuilt.insert(p, *child);
        }
    }
    let objects = walk(&src);
    assert_eq!(
        rebuilt.keys().cloned().collect::<Vec<_>>(),
        objects.keys().cloned().collect::<Vec<_>>()
    );
    // Hard links share a node; node stats carry the kind and name count.
    assert_eq!(
        rebuilt[&b"./link_a".to_vec()],
        rebuilt[&b"./sub/deep/link_c".to_vec()]
    );
    assert_eq!(seen_nodes[&rebuilt[&b"./link_a".to_vec()]].nlink, 3);
    assert_eq!(
        seen_nodes[&rebuilt[&b"./sym_hl1".to_vec()]].kind,
        FileKind::Symlink
    );
    assert_eq!(
        seen_nodes[&rebuilt[&b"./fifo".to_vec()]].kind,
        FileKind::Fifo
    );
    assert_eq!(
        seen_nodes[&rebuilt[&b"./huge_sparse".to_vec()]].size,
        5u64 << 30
    );
    // Real inode numbers are kept (restore -r needs stable numbers across levels).
    assert_eq!(
        rebuilt[&b"./small.txt".to_vec()],
        objects[&b"./small.txt".to_vec()].ino()
    );
}

/// Excluded names are absent from the image and counted as skipped; a set abort flag
/// stops the dump with `Aborted`.
#[test]
fn exclude_and_abort() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("keep/drop.o")).unwrap();
    write(&src.join("keep/a.c"), b"a");
    write(&src.join("keep/a.o"), b"o");
    write(&src.join("core"), b"c");
    let opts = DumpOptions {
        exclude: vec!["*.o".into(), "core".into()],
        ..level0(now())
    };
    let (sum, hist) = dump(&src, &tmp.path().join("img"), &opts);
    assert_eq!(sum.skipped, 3);
    let names: BTreeSet<Vec<u8>> = hist.dirs.iter().map(|d| d.1.clone()).collect();
    assert!(names.contains(b"a.c".as_slice()));
    assert!(
        !names.contains(b"a.o".as_slice())
            && !names.contains(b"core".as_slice())
            && !names.contains(b"drop.o".as_slice())
    );

    let abort = AtomicBool::new(true);
    let r = write_dump(&src, &opts, &mut std::io::sink(), &mut |_| {}, &abort);
    assert!(matches!(r, Err(DumpError::Aborted)), "{r:?}");
    let r = write_dump(
        &src.join("core"),
        &opts,
        &mut std::io::sink(),
        &mut |_| {},
        &AtomicBool::new(false),
    );
    assert!(matches!(r, Err(DumpError::Root { .. })), "{r:?}");
}

/// Level 0, then changes (modified, added, deleted and renamed files, a deleted subtree,
/// a new directory, a removed hard link, chmod), then level 1 from the level 0 date:
/// `restore -r` of both in an empty directory gives the changed tree, and level 1 holds
/// only what changed.
#[test]
fn incremental_level1_restore_r() {
    let Some(bin) = restore_bin() else {
        eprintln!("NOTE: stock restore not installed; skipping");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("a")).unwrap();
    fs::create_dir_all(src.join("b")).unwrap();
    fs::create_dir_all(src.join("c/sub")).unwrap();
    fs::create_dir_all(src.join("still")).unwrap();
    write(&src.join("a/f1"), b"one");
    write(&src.join("a/f2"), b"two");
    write(&src.join("b/f3"), b"three");
    write(&src.join("c/sub/f4"), b"four");
    write(&src.join("still/untouched"), &pattern(5000, 5));
    write(&src.join("h1"), b"linked");
    fs::hard_link(src.join("h1"), src.join("h2")).unwrap();
    mkfifo(&src.join("fifo"), 0o600);
    // Everything above must be older than the level 0 date to stay out of level 1.
    std::thread::sleep(std::time::Duration::from_millis(1100));

    let date0 = now();
    let img0 = tmp.path().join("l0");
    dump(&src, &img0, &level0(date0));

    write(&src.join("a/f1"), b"one, changed");
    write(&src.join("a/new"), b"new file");
    fs::remove_file(src.join("a/f2")).unwrap();
    fs::rename(src.join("b/f3"), src.join("c/f3moved")).unwrap();
    fs::remove_dir_all(src.join("c/sub")).unwrap();
    fs::create_dir(src.join("d")).unwrap();
    write(&src.join("d/inside"), b"in d");
    fs::remove_file(src.join("h2")).unwrap();
    chmod(&src.join("fifo"), 0o644);

    let img1 = tmp.path().join("l1");
    let opts1 = DumpOptions {
        level: 1,
        base_date: date0,
        ..level0(now())
    };
    let (_, hist1) = dump(&src, &img1, &opts1);
    let untouched = fs::metadata(src.join("still/untouched")).unwrap().ino();
    assert!(
        hist1.nodes.iter().all(|n| n.0 != untouched),
        "unchanged file dumped at level 1"
    );
    let f1 = fs::metadata(src.join("a/f1")).unwrap().ino();
    assert!(
        hist1.nodes.iter().any(|n| n.0 == f1),
        "changed file missing from level 1"
    );

    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    for img in [&img0, &img1] {
        restore(
            &bin,
            &out,
            &[
                OsStr::new("-r"),
                OsStr::new("-y"),
                OsStr::new("-f"),
                img.as_os_str(),
            ],
        );
    }
    // Removing restore's bookkeeping file changes the root's mtime, so that is not compared.
    fs::remove_file(out.join("restoresymtable")).unwrap();
    let diffs = compare(&src, &out, false);
    assert!(
        diffs.is_empty(),
        "tree after restore -r differs:\n{}",
        diffs.join("\n")
    );
}
