//! The dump image reader: images from our writer and from the stock Linux `dump` are read
//! back with `read_dump` / `read_one` and compared with their source trees; selections,
//! DAR slices, byte orders and volumes are exercised too. Damaged and hostile images, as
//! for the tar reader, are in reader_scenarios.rs.
//!
//! Owners and device nodes are only compared as root; the stock-dump test prints a note
//! and passes when dump, mke2fs or a way around dump's mount-table lookup is missing
//! (under CI it fails).

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::Cursor;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

mod common;
use common::fulltree::*;
use common::readers::{
    dump_image as dump, names, opts, recover_dump as recover, sel, small_tree, DumpHist as Hist,
    Log,
};
use common::stockdump::stock_image;
use common::surgery::{is_header, reseal, word};

use ndmpd::format::dump::reader::{dar_length, read_one, RecoverError, Selection};
use ndmpd::format::dump::{FileKind, HistEvent, NodeStat};

// ------------------------------------------------------------------ 1. round trip

/// Every kind of object (see `build_full_tree`) written by our writer and read back with
/// `read_dump` gives the same tree: names, types, modes, owners (as root), mtimes to the
/// microsecond incl. directories and the root, contents, holes (same data extents),
/// symlink targets, devices, hard-link groups, user. xattrs and ACLs.
#[test]
fn round_trip_every_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    build_full_tree(&src);
    let (image, hist) = dump(&src);
    let out = tmp.path().join("out");
    let (r, log) = recover(&image, &opts(&out));
    let sum = r.unwrap();
    assert!(log.warnings.is_empty(), "warnings: {:?}", log.warnings);
    assert!(log.failed().is_empty(), "failed: {:?}", log.failed());
    let diffs = compare(&src, &out, true);
    assert!(
        diffs.is_empty(),
        "restored tree differs:\n{}",
        diffs.join("\n")
    );

    let objects = walk(&src);
    let dirs = objects.values().filter(|m| m.is_dir()).count() as u64;
    assert_eq!(sum.dirs, dirs);
    assert_eq!(sum.files + sum.dirs, hist.nodes.len() as u64);
    assert_eq!(sum.bytes, image.len() as u64);
    assert_eq!(sum.skipped, 0);
    // One Restored event per name (the root included).
    assert_eq!(log.restored.len(), objects.len());
    // The 5 GiB file really is sparse after the restore.
    let huge = fs::metadata(out.join("huge_sparse")).unwrap();
    assert_eq!(huge.len(), 5 << 30);
    assert!(huge.blocks() * 512 < 1 << 20);
    // Restoring again over the first restore replaces everything and still compares equal.
    let (r, log) = recover(&image, &opts(&out));
    r.unwrap();
    assert!(log.failed().is_empty(), "second pass: {:?}", log.failed());
    let diffs = compare(&src, &out, true);
    assert!(
        diffs.is_empty(),
        "second restore differs:\n{}",
        diffs.join("\n")
    );
}

/// A byte-swapped (big-endian) copy of an image reads the same as the original.
#[test]
fn big_endian_image() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("sub/deeper")).unwrap();
    write(&src.join("a.txt"), b"hello\n");
    write(&src.join("sub/b.bin"), &pattern(3000, 7));
    write(&src.join("sub/deeper/c"), b"c");
    std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
    fs::hard_link(src.join("a.txt"), src.join("sub/hard")).unwrap();
    set_xattr(&src.join("a.txt"), "user.k", b"v");
    stamp_times(&src);
    let (mut image, hist) = dump(&src);
    swap_image(&mut image, &hist);
    let out = tmp.path().join("out");
    let (r, log) = recover(&image, &opts(&out));
    r.unwrap();
    assert!(log.warnings.is_empty(), "{:?}", log.warnings);
    assert!(log.failed().is_empty(), "{:?}", log.failed());
    let diffs = compare(&src, &out, true);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

// ------------------------------------------------------------------ image surgery

/// Converts a little-endian image of ours to big-endian: every header field, and the
/// `d_ino`/`d_reclen` of directory entries (directories are found through history).
fn swap_image(img: &mut [u8], hist: &Hist) {
    let dir_inodes: BTreeSet<u64> = hist
        .nodes
        .iter()
        .filter(|n| n.1.kind == FileKind::Dir)
        .map(|n| n.0)
        .collect();
    let mut off = 0;
    let mut in_dir = false;
    let mut data_left = 0usize;
    while off < img.len() {
        let rec = &mut img[off..off + 1024];
        if data_left > 0 {
            if in_dir {
                let mut e = 0;
                while e + 8 <= 1024 {
                    let reclen = u16::from_le_bytes([rec[e + 4], rec[e + 5]]) as usize;
                    rec[e..e + 4].reverse();
                    rec[e + 4..e + 6].reverse();
                    if reclen == 0 {
                        break;
                    }
                    e += reclen;
                }
            }
            data_left -= 1;
            off += 1024;
            continue;
        }
        assert!(is_header(rec), "expected a header at {off}");
        let ctype = word(rec, 0);
        let count = word(rec, 160) as usize;
        let flags = word(rec, 888);
        data_left = match ctype {
            3 | 6 => count,
            2 | 4 => rec[164..164 + count.min(512)]
                .iter()
                .filter(|&&b| b != 0)
                .count(),
            _ => 0,
        };
        if ctype == 2 {
            in_dir = dir_inodes.contains(&u64::from(word(rec, 20))) && flags & 0x8000 == 0;
        } else if ctype != 4 {
            in_dir = false;
        }
        // 32-bit fields, the 16-bit dinode fields and the 64-bit size.
        for f in (0..32).step_by(4).chain((48..160).step_by(4)).chain([160]) {
            rec[f..f + 4].reverse();
        }
        for f in (888..904).step_by(4) {
            rec[f..f + 4].reverse();
        }
        for f in [32, 34, 36, 38] {
            rec[f..f + 2].reverse();
        }
        rec[40..48].reverse();
        // The checksum is the sum of big-endian words now.
        rec[28..32].fill(0);
        let sum = rec.chunks(4).fold(0u32, |a, w| {
            a.wrapping_add(u32::from_be_bytes(w.try_into().unwrap()))
        });
        rec[28..32].copy_from_slice(&84446u32.wrapping_sub(sum).to_be_bytes());
        off += 1024;
    }
}

// ------------------------------------------------------------------ 3. selections

/// `select = ["sub"]` restores that subtree only (with its parent's attributes left
/// alone); `["sub/deep/c.txt"]` restores that file and the directories on its way;
/// an explicit destination moves a subtree; a name not in the image is reported.
#[test]
fn selective_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    small_tree(&src);
    let (image, _) = dump(&src);

    let out = tmp.path().join("sub-only");
    let mut o = opts(&out);
    o.select = vec![sel("sub")];
    let (r, log) = recover(&image, &o);
    r.unwrap();
    assert!(log.failed().is_empty(), "{:?}", log.failed());
    let got = names(&out);
    let want: BTreeSet<Vec<u8>> = names(&src)
        .into_iter()
        .filter(|n| n == b"." || n.starts_with(b"./sub"))
        .collect();
    assert_eq!(got, want);
    let diffs = compare(&src.join("sub"), &out.join("sub"), true);
    // The hard link's other name is outside the selection.
    assert!(
        diffs.iter().all(|d| d.contains("hard-link group")),
        "{diffs:?}"
    );
    assert_eq!(
        fs::read(out.join("sub/deep/a-link")).unwrap(),
        b"alpha\n".to_vec()
    );

    let out = tmp.path().join("one-file");
    let mut o = opts(&out);
    o.select = vec![sel("./sub/deep/c.txt")];
    let (r, log) = recover(&image, &o);
    let sum = r.unwrap();
    assert_eq!((sum.files, sum.skipped), (1, 0));
    assert_eq!(
        names(&out),
        [".", "./sub", "./sub/deep", "./sub/deep/c.txt"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect()
    );
    assert!(log.failed().is_empty());
    // Directories on the way get their own attributes.
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
    let (r, log) = recover(&image, &o);
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
    assert_eq!(log.failed().len(), 1, "{:?}", log.failed());
    assert!(log.failed()[0].starts_with("no/such/file"));

    // Escaping selections are refused before anything is read.
    for bad in [
        Selection {
            path: b"../x".to_vec(),
            dest: None,
        },
        Selection {
            path: b"/abs".to_vec(),
            dest: None,
        },
        Selection {
            path: b"sub".to_vec(),
            dest: Some(tmp.path().join("not-under-root")),
        },
        Selection {
            path: b"sub".to_vec(),
            dest: Some(PathBuf::from("a/../../x")),
        },
    ] {
        let mut o = opts(&tmp.path().join("never"));
        o.select = vec![bad];
        let (r, _) = recover(&image, &o);
        assert!(matches!(r, Err(RecoverError::BadSelection(_))), "{r:?}");
    }
}

// ------------------------------------------------------------------ 5. damaged images

/// An image that starts with another volume than the first is refused.
#[test]
fn another_volume_first() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    small_tree(&src);
    let (image, _) = dump(&src);
    let mut bad = image.clone();
    bad[12] = 2;
    reseal(&mut bad[..1024]);
    let (r, _) = recover(&bad, &opts(&tmp.path().join("vol")));
    assert!(matches!(r, Err(RecoverError::NotVolume1(2))), "{r:?}");
}

// ------------------------------------------------------------------ 4. DAR

/// DAR: the image sliced at a file's fh_info, `dar_length(size)` bytes long, gives back
/// that file through `read_one` (contents, holes, mode, mtime, xattrs), including files
/// with continuation headers; a wrong inode or offset is refused.
#[test]
fn dar_read_one() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    write(&src.join("big.bin"), &pattern(700 * 1024 + 77, 9));
    write(&src.join("empty"), b"");
    write(&src.join("xattr_file"), b"x");
    set_xattr(&src.join("xattr_file"), "user.comment", b"hello world");
    chmod(&src.join("xattr_file"), 0o640);
    let f = File::create(src.join("sparse")).unwrap();
    f.write_all_at(&pattern(4096, 1), 0).unwrap();
    f.write_all_at(&pattern(5000, 2), 2 << 20).unwrap();
    f.set_len((3 << 20) + 100).unwrap();
    drop(f);
    std::os::unix::fs::symlink("big.bin", src.join("link")).unwrap();
    fs::create_dir(src.join("dir")).unwrap();
    chmod(&src.join("dir"), 0o705);
    stamp_times(&src);
    let (image, hist) = dump(&src);
    let paths = hist.paths();
    let dest_root = tmp.path().join("dar");

    for name in ["big.bin", "empty", "xattr_file", "sparse", "link", "dir"] {
        let ino = paths[name.as_bytes()];
        let (_, stat, fh) = hist.node(ino);
        let fh = *fh as usize;
        let len = (dar_length(stat.size) as usize).min(image.len() - fh);
        let mut slice = &image[fh..fh + len];
        let dest = dest_root.join(format!("{name}.restored"));
        let mut log = Log::default();
        let sum = read_one(
            &mut slice,
            Some(ino as u32),
            &dest,
            &opts(&dest_root),
            &mut |ev| log.push(ev),
            &AtomicBool::new(false),
        )
        .unwrap();
        assert!(log.warnings.is_empty(), "{name}: {:?}", log.warnings);
        assert!(log.failed().is_empty(), "{name}: {:?}", log.failed());
        assert_eq!(sum.files + sum.dirs, 1, "{name}");
        let (a, b) = (
            fs::symlink_metadata(src.join(name)).unwrap(),
            fs::symlink_metadata(&dest).unwrap(),
        );
        assert_eq!(kind(&a), kind(&b), "{name}");
        assert_eq!(a.mtime(), b.mtime(), "{name}");
        if !a.file_type().is_symlink() {
            assert_eq!(a.mode(), b.mode(), "{name}");
            assert_eq!(a.mtime_nsec() / 1000, b.mtime_nsec() / 1000, "{name}");
            assert_eq!(xattrs(&src.join(name)), xattrs(&dest), "{name}");
        } else {
            assert_eq!(fs::read_link(&dest).unwrap(), PathBuf::from("big.bin"));
        }
        if a.is_file() {
            assert!(same_contents(&src.join(name), &dest), "{name}");
            assert_eq!(data_extents(&src.join(name)), data_extents(&dest), "{name}");
        }
    }

    // Wrong inode, and an offset that is not an inode header.
    let ino = paths[b"big.bin".as_slice()];
    let fh = hist.node(ino).2 as usize;
    let o = opts(&dest_root);
    let r = read_one(
        &mut &image[fh..],
        Some(ino as u32 + 1),
        &dest_root.join("w"),
        &o,
        &mut |_| {},
        &AtomicBool::new(false),
    );
    assert!(matches!(r, Err(RecoverError::WrongInode { .. })), "{r:?}");
    let r = read_one(
        &mut &image[fh + 1024..],
        None,
        &dest_root.join("w"),
        &o,
        &mut |_| {},
        &AtomicBool::new(false),
    );
    assert!(matches!(r, Err(RecoverError::NotDump { .. })), "{r:?}");
    let r = read_one(
        &mut &image[..],
        None,
        &dest_root.join("w"),
        &o,
        &mut |_| {},
        &AtomicBool::new(false),
    );
    assert!(matches!(r, Err(RecoverError::NotInode { .. })), "{r:?}");
    let r = read_one(
        &mut &image[fh..],
        None,
        &tmp.path().join("outside-root"),
        &o,
        &mut |_| {},
        &AtomicBool::new(false),
    );
    assert!(matches!(r, Err(RecoverError::BadSelection(_))), "{r:?}");
    // The bound is the doc's formula.
    assert_eq!(dar_length(0), 6 * 1024);
    assert_eq!(dar_length(1), 8 * 1024);
    assert_eq!(dar_length(513 * 1024), (1 + 2 + 513 + 5) * 1024);
}

// ------------------------------------------------------------------ 2. images of the stock dump

/// A tree put into an ext4 image with `mke2fs -d` and dumped by the stock `dump`: read by
/// `read_dump`, it compares equal to the source in names, types, contents, holes, modes,
/// owners (as root), symlink targets, hard links, devices and user. xattrs, and in mtimes
/// to the second (dump records no sub-second part) except for the root.
#[test]
fn stock_dump_image() {
    let (Some(dump), Some(mke2fs), Some(debugfs)) = (
        common::find_tool("dump", "dump"),
        common::find_tool("mke2fs", "e2fsprogs"),
        common::find_tool("debugfs", "e2fsprogs"),
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("sub/deep")).unwrap();
    write(&src.join("small.txt"), b"hello\n");
    write(&src.join("big.bin"), &pattern(600 * 1024 + 5, 4));
    write(&src.join("empty"), b"");
    write(&src.join("sub/deep/leaf"), b"leaf");
    write(&src.join(OsStr::from_bytes(b"non-utf8-\xff")), b"bytes");
    let f = File::create(src.join("sparse")).unwrap();
    f.write_all_at(&pattern(4096, 1), 0).unwrap();
    f.write_all_at(&pattern(5000, 2), 2 << 20).unwrap();
    f.set_len((3 << 20) + 100).unwrap();
    drop(f);
    fs::hard_link(src.join("small.txt"), src.join("sub/hard")).unwrap();
    std::os::unix::fs::symlink("small.txt", src.join("sym")).unwrap();
    std::os::unix::fs::symlink("l".repeat(300), src.join("sym_long")).unwrap();
    mkfifo(&src.join("fifo"), 0o640);
    chmod(&src.join("sub/deep"), 0o750);
    chmod(&src.join("small.txt"), 0o604);
    set_xattr(&src.join("small.txt"), "user.note", b"from the stock dump");
    if is_root() {
        mknod(&src.join("blk"), libc::S_IFBLK | 0o600, 8, 1);
        lchown(&src.join("big.bin"), 1234, 5678);
    }
    stamp_times(&src);

    for block in ["4096", "1024"] {
        let dir = tmp.path().join(format!("b{block}"));
        fs::create_dir(&dir).unwrap();
        let Some(image) = stock_image(&src, &dir, block, &dump, &mke2fs, &debugfs) else {
            common::skip(common::stockdump::CANNOT_DUMP_AN_IMAGE);
            return;
        };
        check_stock(&src, &image, &dir);
    }
}

fn check_stock(src: &Path, image: &[u8], work: &Path) {
    let out = work.join("out");
    let (r, log) = recover(image, &opts(&out));
    let sum = r.unwrap();
    assert!(log.warnings.is_empty(), "warnings: {:?}", log.warnings);
    assert!(log.failed().is_empty(), "failed: {:?}", log.failed());
    assert_eq!(sum.bytes, image.len() as u64);
    let diffs: Vec<String> = compare(src, &out, false)
        .into_iter()
        .filter(|d| !d.contains(": mtime "))
        .collect();
    assert!(
        diffs.is_empty(),
        "restored tree differs:\n{}",
        diffs.join("\n")
    );
    // dump writes whole seconds.
    for (rel, a) in walk(src) {
        if rel == b"." {
            continue;
        }
        let b = fs::symlink_metadata(join(&out, &rel)).unwrap();
        assert_eq!(
            a.mtime(),
            b.mtime(),
            "mtime of {}",
            String::from_utf8_lossy(&rel)
        );
    }
}

// ------------------------------------------------------------------ listing, overwrite policy

/// `list_dump` regenerates exactly the history the writer reported: the same directory
/// entries and the same nodes with the same attributes and `fh_info`, and it reads the
/// whole input.
#[test]
fn list_gives_the_writers_history() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    small_tree(&src);
    let (mut image, hist) = dump(&src);
    image.extend_from_slice(&[0u8; 4096]);
    let mut listed = Hist::default();
    let mut warnings = Vec::new();
    let n = ndmpd::format::dump::reader::list_dump(
        &mut Cursor::new(&image),
        &mut |ev| match ev {
            HistEvent::Dir {
                dir_inode,
                name,
                inode,
            } => listed.dirs.push((dir_inode, name.to_vec(), inode)),
            HistEvent::Node {
                inode,
                stat,
                fh_info,
            } => listed.nodes.push((inode, stat.clone(), fh_info)),
        },
        &mut |w| warnings.push(w),
        &AtomicBool::new(false),
        &AtomicBool::new(false),
    )
    .unwrap();
    assert_eq!(n, image.len() as u64);
    assert!(warnings.is_empty(), "{warnings:?}");
    let mut want_dirs = hist.dirs.clone();
    let mut got_dirs = listed.dirs.clone();
    want_dirs.sort();
    got_dirs.sort();
    assert_eq!(got_dirs, want_dirs);
    assert_eq!(listed.nodes.len(), hist.nodes.len());
    for (ino, stat, fh) in &hist.nodes {
        let (_, s, f) = listed.node(*ino);
        assert_eq!(f, fh, "fh_info of inode {ino}");
        // a directory's size in the image is that of its dumped entries, not st_size
        let size = |st: &NodeStat| (st.kind != FileKind::Dir).then_some(st.size);
        assert_eq!(
            (s.kind, s.mode, size(s), s.mtime, s.uid, s.gid),
            (
                stat.kind,
                stat.mode,
                size(stat),
                stat.mtime,
                stat.uid,
                stat.gid
            ),
            "inode {ino}"
        );
    }
}

/// By default an existing file is replaced; with `keep_existing` it is left alone and
/// reported. A restore that fails inside a file leaves the old file whole under its name
/// and no temporary file behind.
#[test]
fn existing_files_and_failed_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    small_tree(&src);
    let (image, hist) = dump(&src);

    let out = tmp.path().join("keep");
    fs::create_dir_all(out.join("sub")).unwrap();
    fs::write(out.join("z.txt"), b"mine").unwrap();
    let mut o = opts(&out);
    o.keep_existing = true;
    let (r, log) = recover(&image, &o);
    r.unwrap();
    assert_eq!(fs::read(out.join("z.txt")).unwrap(), b"mine");
    assert_eq!(log.failed().len(), 1, "{:?}", log.failed());
    assert!(
        log.failed()[0].contains("not replaced"),
        "{:?}",
        log.failed()
    );
    assert_eq!(fs::read(out.join("sub/deep/c.txt")).unwrap(), b"gamma");

    let (r, log) = recover(&image, &opts(&out));
    r.unwrap();
    assert!(log.failed().is_empty(), "{:?}", log.failed());
    assert_eq!(fs::read(out.join("z.txt")).unwrap(), b"zeta");

    // Cut the image inside sub/b.txt's data: the old b.txt stays as it was.
    let b_ino = hist.paths()[&b"sub/b.txt".to_vec()];
    let fh = hist.node(b_ino).2 as usize;
    let old = b"the old b.txt".to_vec();
    fs::write(out.join("sub/b.txt"), &old).unwrap();
    let (r, log) = recover(&image[..fh + 1024 + 2048], &opts(&out));
    assert!(matches!(r, Err(RecoverError::Truncated { .. })), "{r:?}");
    assert!(
        log.failed().iter().any(|f| f.starts_with("sub/b.txt")),
        "{:?}",
        log.failed()
    );
    assert_eq!(fs::read(out.join("sub/b.txt")).unwrap(), old);
    let leftovers: Vec<_> = fs::read_dir(out.join("sub"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.as_bytes().starts_with(b"."))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}
