//! The full tree of the dump writer and reader tests (every file kind, holes, hard links,
//! xattrs, ACLs, odd names) and a comparison of two trees down to extents and xattrs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{CString, OsStr};
use std::fs::{self, File, Metadata};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

// ------------------------------------------------------------------ building trees

pub fn write(p: &Path, data: &[u8]) {
    fs::write(p, data).unwrap();
}

pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .rotate_left(seed as u32 % 31) as u8
                ^ seed
        })
        .collect()
}

pub fn set_xattr(p: &Path, name: &str, value: &[u8]) {
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

pub fn set_mtime(p: &Path, sec: i64, nsec: i64) {
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

pub fn mknod(p: &Path, mode: u32, major: u32, minor: u32) {
    // SAFETY: valid path; makedev is a pure computation.
    let r = unsafe { libc::mknod(cstr(p).as_ptr(), mode, libc::makedev(major, minor)) };
    assert_eq!(r, 0, "mknod {}", p.display());
}

pub fn mkfifo(p: &Path, mode: u32) {
    nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(mode)).unwrap();
}

pub fn lchown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
}

pub fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// A kernel-format POSIX ACL value (version 2, 8-byte entries).
pub fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
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
pub fn stamp_times(root: &Path) {
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
pub fn build_full_tree(root: &Path) {
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
    // empty files are stat'ed by name, not opened, unless they have attributes
    write(&root.join("empty_xattr"), b"");
    set_xattr(&root.join("empty_xattr"), "user.comment", b"nothing inside");
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
    write(&root.join("empty_acl"), b"");
    set_xattr(&root.join("empty_acl"), "system.posix_acl_access", &access);
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

// ------------------------------------------------------------------ comparing trees

pub fn join(root: &Path, rel: &[u8]) -> PathBuf {
    if rel == b"." {
        root.to_path_buf()
    } else {
        root.join(OsStr::from_bytes(&rel[2..]))
    }
}

/// Relative path ("." or "./a/b") -> lstat of every object under `root`.
pub fn walk(root: &Path) -> BTreeMap<Vec<u8>, Metadata> {
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

pub fn kind(md: &Metadata) -> u32 {
    md.mode() & libc::S_IFMT
}

pub fn xattrs(p: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
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
pub fn data_extents(p: &Path) -> Vec<(u64, u64)> {
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

pub fn same_contents(a: &Path, b: &Path) -> bool {
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

pub fn read_full(f: &mut File, buf: &mut [u8]) -> usize {
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
pub fn compare(src: &Path, dst: &Path, root_times: bool) -> Vec<String> {
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

/// A file of `mib` MiB of xorshift noise (incompressible, and fast to make), seeded.
pub fn noise_file(p: &Path, mib: usize, seed: u64) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(File::create(p).unwrap());
    let mut x = 0x9e37_79b9_7f4a_7c15u64.wrapping_add(seed);
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for w in block.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&block).unwrap();
    }
}
