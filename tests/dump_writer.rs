//! The dump image writer against the stock Linux `restore` (Debian package `dump`): trees
//! with every file kind are dumped, extracted by restore, and compared with the source.
//!
//! Tests that need restore print a note and pass when it is not installed (under CI they
//! fail); owners and device nodes are only exercised as root.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;

mod common;
use common::fulltree::*;

use ndmpd::format::dump::{
    write_dump, DumpError, DumpOptions, Event, FileKind, HistEvent, NodeStat, Summary,
};

// ------------------------------------------------------------------ environment

/// The stock restore; None (after a note, or a failure under CI) when it is not installed.
fn restore_bin() -> Option<PathBuf> {
    common::find_tool("restore", "dump")
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

/// More small files than the writer reads ahead (256), with a file too large to be read
/// ahead, an empty one and a hard link among them: `restore -x` gives back the same tree,
/// and the nodes' history comes in ascending inode order at rising offsets.
#[test]
fn read_ahead_keeps_inode_order() {
    let Some(bin) = restore_bin() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    for d in 0..4 {
        let dir = src.join(format!("d{d}"));
        fs::create_dir_all(&dir).unwrap();
        for i in 0..150usize {
            let len = (i * 331 + d * 17) % 8192;
            let data: Vec<u8> = (0..len).map(|k| (k * 7 + i) as u8).collect();
            fs::write(dir.join(format!("f{i:03}")), data).unwrap();
        }
    }
    let big: Vec<u8> = (0..300_000u32).map(|k| (k % 251) as u8).collect();
    fs::write(src.join("d1/f050"), &big).unwrap();
    fs::hard_link(src.join("d2/f003"), src.join("d3/link")).unwrap();
    let image = tmp.path().join("level0.dump");
    let (sum, hist) = dump(&src, &image, &level0(now()));
    assert!(hist.warnings.is_empty(), "warnings: {:?}", hist.warnings);
    assert_eq!((sum.files, sum.dirs), (600, 5));
    let files: Vec<&(u64, NodeStat, u64)> = hist
        .nodes
        .iter()
        .filter(|n| n.1.kind == FileKind::File)
        .collect();
    assert_eq!(files.len(), 600);
    assert!(files.windows(2).all(|w| w[0].0 < w[1].0 && w[0].2 < w[1].2));
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
}
