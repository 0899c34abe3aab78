//! The dump image reader: images from our writer and from the stock Linux `dump` are read
//! back with `read_dump` / `read_one` and compared with their source trees; selections,
//! DAR slices and damaged or hostile images are exercised too.
//!
//! Owners and device nodes are only compared as root; the stock-dump test prints a note
//! and passes when dump, mke2fs or a way around dump's mount-table lookup is missing
//! (under CI it fails).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::Cursor;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

mod common;
use common::fulltree::*;
use common::stockdump::stock_image;

use ndmpd::format::dump::reader::{
    dar_length, read_dump, read_one, Event as REvent, RecoverError, RecoverOptions, Selection,
    Summary as RSummary,
};
use ndmpd::format::dump::{write_dump, DumpOptions, Event, FileKind, HistEvent, NodeStat};

// ------------------------------------------------------------------ helpers (as in dump_writer.rs)

// ------------------------------------------------------------------ writing and reading

#[derive(Default)]
struct Hist {
    dirs: Vec<(u64, Vec<u8>, u64)>,
    nodes: Vec<(u64, NodeStat, u64)>,
}

impl Hist {
    /// Relative path ("a/b") -> inode, rebuilt from the Dir events.
    fn paths(&self) -> BTreeMap<Vec<u8>, u64> {
        let mut children: HashMap<u64, Vec<(Vec<u8>, u64)>> = HashMap::new();
        for (d, n, i) in &self.dirs {
            if n != b"." && n != b".." {
                children.entry(*d).or_default().push((n.clone(), *i));
            }
        }
        let mut out = BTreeMap::new();
        let mut stack = vec![(Vec::new(), 2u64)];
        while let Some((p, ino)) = stack.pop() {
            for (n, c) in children.get(&ino).into_iter().flatten() {
                let mut q = p.clone();
                if !q.is_empty() {
                    q.push(b'/');
                }
                q.extend_from_slice(n);
                stack.push((q.clone(), *c));
                out.insert(q, *c);
            }
        }
        out
    }

    fn node(&self, ino: u64) -> &(u64, NodeStat, u64) {
        self.nodes.iter().find(|n| n.0 == ino).unwrap()
    }
}

fn dump_opts() -> DumpOptions {
    DumpOptions {
        dump_date: now(),
        label: "reader".into(),
        ..DumpOptions::default()
    }
}

/// Dumps `src` with our writer into memory.
fn dump(src: &Path) -> (Vec<u8>, Hist) {
    let mut hist = Hist::default();
    let mut out = Vec::new();
    write_dump(
        src,
        &dump_opts(),
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
            Event::Warning(w) => panic!("writer warning: {w}"),
            Event::Estimate(_) => {}
        },
        &AtomicBool::new(false),
    )
    .unwrap();
    (out, hist)
}

#[derive(Default, Debug)]
struct Log {
    restored: Vec<(Vec<u8>, bool, Option<String>)>,
    warnings: Vec<String>,
}

impl Log {
    fn failed(&self) -> Vec<String> {
        self.restored
            .iter()
            .filter(|r| !r.1)
            .map(|r| format!("{}: {:?}", String::from_utf8_lossy(&r.0), r.2))
            .collect()
    }
}

fn opts(dest: &Path) -> RecoverOptions {
    RecoverOptions {
        select: Vec::new(),
        dest_root: dest.to_path_buf(),
        restore_owner: true,
        keep_existing: false,
        ended: None,
    }
}

fn recover(image: &[u8], o: &RecoverOptions) -> (Result<RSummary, RecoverError>, Log) {
    let mut log = Log::default();
    let mut input = Cursor::new(image);
    let r = read_dump(
        &mut input,
        o,
        &mut |ev| match ev {
            REvent::Restored { path, ok, why } => log.restored.push((path, ok, why)),
            REvent::Warning(w) => log.warnings.push(w),
        },
        &AtomicBool::new(false),
    );
    (r, log)
}

fn sel(path: &str) -> Selection {
    Selection {
        path: path.as_bytes().to_vec(),
        dest: None,
    }
}

/// Every object name under `root`, as "./a/b" paths.
fn names(root: &Path) -> BTreeSet<Vec<u8>> {
    walk(root).into_keys().collect()
}

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

fn word(rec: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(rec[off..off + 4].try_into().unwrap())
}

fn is_header(rec: &[u8]) -> bool {
    word(rec, 24) == 60012 && rec.chunks(4).fold(0u32, |a, w| a.wrapping_add(word(w, 0))) == 84446
}

fn reseal(rec: &mut [u8]) {
    rec[28..32].fill(0);
    let sum = rec.chunks(4).fold(0u32, |a, w| a.wrapping_add(word(w, 0)));
    rec[28..32].copy_from_slice(&84446u32.wrapping_sub(sum).to_le_bytes());
}

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

/// Replaces the one directory entry (type, name) in the image's directory data.
fn rename_entry(img: &mut [u8], dtype: u8, from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    let mut pat = vec![dtype, from.len() as u8];
    pat.extend_from_slice(from);
    pat.push(0);
    let hits: Vec<usize> = img
        .windows(pat.len())
        .enumerate()
        .filter(|(_, w)| *w == pat.as_slice())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(hits.len(), 1, "entry {:?}", String::from_utf8_lossy(from));
    img[hits[0] + 2..hits[0] + 2 + to.len()].copy_from_slice(to);
}

/// `dir` holds exactly `dest` (and `outside`, empty): nothing was written elsewhere.
fn assert_confined(boxdir: &Path) {
    let entries: BTreeSet<_> = fs::read_dir(boxdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_encoded_bytes())
        .collect();
    let allowed: BTreeSet<Vec<u8>> = [b"dest".to_vec(), b"outside".to_vec(), b"src".to_vec()]
        .into_iter()
        .collect();
    assert!(entries.is_subset(&allowed), "written outside: {entries:?}");
    if boxdir.join("outside").exists() {
        assert_eq!(
            fs::read_dir(boxdir.join("outside")).unwrap().count(),
            0,
            "something landed in outside/"
        );
    }
}

fn small_tree(src: &Path) {
    fs::create_dir_all(src.join("sub/deep")).unwrap();
    write(&src.join("a.txt"), b"alpha\n");
    write(&src.join("sub/b.txt"), &pattern(5000, 3));
    write(&src.join("sub/deep/c.txt"), b"gamma");
    write(&src.join("z.txt"), b"zeta");
    fs::hard_link(src.join("a.txt"), src.join("sub/deep/a-link")).unwrap();
    std::os::unix::fs::symlink("../a.txt", src.join("sub/sl")).unwrap();
    chmod(&src.join("sub/deep"), 0o751);
    stamp_times(src);
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

// ------------------------------------------------------------------ 5. hostile images

/// Directory entries named "../escape", "sym/x" (a '/'), a directory renamed onto the name
/// of a symlink to a directory outside: warnings and refusals, nothing written outside.
#[test]
fn hostile_names_stay_inside() {
    let tmp = tempfile::tempdir().unwrap();
    let boxdir = tmp.path();
    let src = boxdir.join("src");
    let outside = boxdir.join("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::create_dir_all(src.join("syn")).unwrap();
    write(&src.join("syn/x"), b"x");
    write(&src.join("zzzescape"), b"bad");
    write(&src.join("symQx"), b"bad");
    write(&src.join("ok.txt"), b"ok");
    std::os::unix::fs::symlink(&outside, src.join("sym")).unwrap();
    let (mut image, _) = dump(&src);
    rename_entry(&mut image, 4, b"syn", b"sym");
    rename_entry(&mut image, 8, b"zzzescape", b"../escape");
    rename_entry(&mut image, 8, b"symQx", b"sym/x");

    let dest = boxdir.join("dest");
    let (r, log) = recover(&image, &opts(&dest));
    r.unwrap();
    assert_confined(boxdir);
    let refused = log
        .warnings
        .iter()
        .filter(|w| w.contains("refused"))
        .count();
    assert_eq!(refused, 2, "{:?}", log.warnings);
    assert!(fs::symlink_metadata(dest.join("sym")).unwrap().is_dir());
    assert_eq!(fs::read(dest.join("sym/x")).unwrap(), b"x");
    assert_eq!(fs::read(dest.join("ok.txt")).unwrap(), b"ok");
    // The symlink could not take the directory's place.
    assert!(
        log.restored.iter().any(|(p, ok, _)| p == b"sym" && !ok),
        "{:?}",
        log.restored
    );

    // A symlink already in the destination is not followed: the directory replaces it.
    let dest2 = boxdir.join("dest/second");
    fs::create_dir_all(&dest2).unwrap();
    std::os::unix::fs::symlink(&outside, dest2.join("syn")).unwrap();
    let (image, _) = dump(&src);
    let (r, _) = recover(&image, &opts(&dest2));
    r.unwrap();
    assert_confined(boxdir);
    assert!(fs::symlink_metadata(dest2.join("syn")).unwrap().is_dir());
    assert_eq!(fs::read(dest2.join("syn/x")).unwrap(), b"x");
}

/// A corrupted header (bad checksum) costs that file only, with a warning; a corrupted
/// first record is `NotDump`; a truncated image is `Truncated` (also mid-record).
#[test]
fn damaged_images() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    small_tree(&src);
    let (image, hist) = dump(&src);
    let paths = hist.paths();
    let b_ino = paths[&b"sub/b.txt".to_vec()];
    let fh = hist.node(b_ino).2 as usize;

    let mut bad = image.clone();
    bad[fh + 1000] ^= 0x55;
    let out = tmp.path().join("badsum");
    let (r, log) = recover(&bad, &opts(&out));
    r.unwrap();
    assert!(
        log.warnings.iter().any(|w| w.contains("bad header")),
        "{:?}",
        log.warnings
    );
    assert!(!out.join("sub/b.txt").exists());
    assert_eq!(log.failed().len(), 1, "{:?}", log.failed());
    assert!(log.failed()[0].starts_with("sub/b.txt"));
    assert_eq!(fs::read(out.join("sub/deep/c.txt")).unwrap(), b"gamma");
    assert_eq!(fs::read(out.join("z.txt")).unwrap(), b"zeta");

    let mut bad = image.clone();
    bad[100] ^= 1;
    let (r, _) = recover(&bad, &opts(&tmp.path().join("first")));
    assert!(
        matches!(r, Err(RecoverError::NotDump { offset: 0 })),
        "{r:?}"
    );

    for cut in [fh + 1024 + 10, fh + 512, fh, image.len() / 2, 1024, 100] {
        let (r, _) = recover(&image[..cut], &opts(&tmp.path().join(format!("cut{cut}"))));
        assert!(
            matches!(r, Err(RecoverError::Truncated { .. })),
            "cut {cut}: {r:?}"
        );
    }
    // Another volume first.
    let mut bad = image.clone();
    bad[12] = 2;
    reseal(&mut bad[..1024]);
    let (r, _) = recover(&bad, &opts(&tmp.path().join("vol")));
    assert!(matches!(r, Err(RecoverError::NotVolume1(2))), "{r:?}");
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Random bytes, random bytes after a valid volume header, and valid images with random
/// header fields (checksums fixed up so the reader believes them) or random directory
/// data: errors or warnings, never a panic, nothing written outside the destination.
#[test]
fn random_and_mutated_images_never_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    small_tree(&src);
    let (image, hist) = dump(&src);
    let headers: Vec<usize> = (0..image.len() / 1024)
        .map(|i| i * 1024)
        .filter(|&o| is_header(&image[o..o + 1024]))
        .collect();
    let root_fh = hist.node(2).2 as usize;

    for seed in 1..=40u64 {
        let boxdir = tmp.path().join(format!("box{seed}"));
        fs::create_dir_all(boxdir.join("outside")).unwrap();
        let dest = boxdir.join("dest");
        let mut rng = Rng(seed * 0x9e37_79b9_7f4a_7c15);
        let input: Vec<u8> = match seed % 4 {
            0 => (0..64 * 1024).map(|_| rng.next() as u8).collect(),
            1 => {
                let mut v = image[..1024].to_vec();
                v.extend((0..32 * 1024).map(|_| rng.next() as u8));
                v
            }
            2 => {
                let mut v = image.clone();
                for _ in 0..1 + rng.below(6) {
                    let h = headers[rng.below(headers.len())];
                    for _ in 0..1 + rng.below(8) {
                        // Mostly the fields that matter: type, inode, mode, size, count, map.
                        let f = [0, 20, 32, 40, 44, 160, 164, 165, 888, 900][rng.below(10)];
                        let at = if rng.below(4) == 0 {
                            rng.below(1024)
                        } else {
                            f
                        };
                        v[h + at] = rng.next() as u8;
                    }
                    reseal(&mut v[h..h + 1024]);
                }
                v
            }
            _ => {
                let mut v = image.clone();
                // The root directory's data record.
                for _ in 0..1 + rng.below(20) {
                    let at = root_fh + 1024 + rng.below(1024);
                    v[at] = rng.next() as u8;
                }
                v
            }
        };
        let (r, _log) = recover(&input, &opts(&dest));
        if seed % 4 == 0 {
            assert!(matches!(r, Err(RecoverError::NotDump { .. })), "{r:?}");
        }
        assert_confined(&boxdir);
    }
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
            &mut |ev| match ev {
                REvent::Restored { path, ok, why } => log.restored.push((path, ok, why)),
                REvent::Warning(w) => log.warnings.push(w),
            },
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
