//! What the image-reader tests share: our writers' images of a tree with their history, the
//! readers run into a log, the small tree they read, and the box that proves nothing escaped.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use super::fulltree::{chmod, now, pattern, stamp_times, walk, write};
use ndmpd::format::dump::reader::read_dump;
use ndmpd::format::dump::{write_dump, DumpOptions, HistEvent, NodeStat};
use ndmpd::format::recover::{Event, RecoverError, RecoverOptions, Selection, Summary};
use ndmpd::format::tar::{read_tar, write_tar, TarOptions};

// ------------------------------------------------------------------ reading into a log

/// What a reader reported: (path, restored, why not) per name, and its warnings.
#[derive(Default, Debug)]
pub struct Log {
    pub restored: Vec<(Vec<u8>, bool, Option<String>)>,
    pub warnings: Vec<String>,
}

impl Log {
    /// "path: why" of every name not restored.
    pub fn failed(&self) -> Vec<String> {
        self.restored
            .iter()
            .filter(|r| !r.1)
            .map(|r| format!("{}: {:?}", String::from_utf8_lossy(&r.0), r.2))
            .collect()
    }

    /// Whether `p` was reported not restored.
    pub fn failed_path(&self, p: &str) -> bool {
        self.restored.iter().any(|r| r.0 == p.as_bytes() && !r.1)
    }

    pub fn push(&mut self, ev: Event) {
        match ev {
            Event::Restored { path, ok, why } => self.restored.push((path, ok, why)),
            Event::Warning(w) => self.warnings.push(w),
        }
    }
}

/// Restore everything below `dest`, owners included.
pub fn opts(dest: &Path) -> RecoverOptions {
    RecoverOptions {
        select: Vec::new(),
        dest_root: dest.to_path_buf(),
        restore_owner: true,
        keep_existing: false,
        ended: None,
    }
}

/// A selection restored in place.
pub fn sel(path: &str) -> Selection {
    Selection {
        path: path.as_bytes().to_vec(),
        dest: None,
    }
}

/// Every object name under `root`, as "./a/b" paths.
pub fn names(root: &Path) -> BTreeSet<Vec<u8>> {
    walk(root).into_keys().collect()
}

/// `read_dump` of `image` with `o`.
pub fn recover_dump(image: &[u8], o: &RecoverOptions) -> (Result<Summary, RecoverError>, Log) {
    let mut log = Log::default();
    let r = read_dump(
        &mut Cursor::new(image),
        o,
        &mut |ev| log.push(ev),
        &AtomicBool::new(false),
    );
    (r, log)
}

/// `read_tar` of `image` with `o`.
pub fn recover_tar(image: &[u8], o: &RecoverOptions) -> (Result<Summary, RecoverError>, Log) {
    let mut log = Log::default();
    let r = read_tar(
        &mut Cursor::new(image),
        o,
        &mut |ev| log.push(ev),
        &AtomicBool::new(false),
    );
    (r, log)
}

// ------------------------------------------------------------------ trees and boxes

/// Three files, a hard link, a symlink and a 0751 directory, with distinct times.
pub fn small_tree(src: &Path) {
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

/// A box for one hostile read: `name/outside/` (created, must stay empty) next to
/// `name/dest/` (the destination root, not created). Returns (box, dest).
pub fn boxed(tmp: &Path, name: &str) -> (PathBuf, PathBuf) {
    let boxdir = tmp.join(name);
    fs::create_dir_all(boxdir.join("outside")).unwrap();
    let dest = boxdir.join("dest");
    (boxdir, dest)
}

/// The box holds only dest/ and an empty outside/: nothing was written elsewhere.
pub fn assert_confined(boxdir: &Path) {
    let entries: BTreeSet<_> = fs::read_dir(boxdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_encoded_bytes())
        .collect();
    let allowed: BTreeSet<Vec<u8>> = [b"dest".to_vec(), b"outside".to_vec()].into();
    assert!(entries.is_subset(&allowed), "written outside: {entries:?}");
    assert_eq!(
        fs::read_dir(boxdir.join("outside")).unwrap().count(),
        0,
        "something landed in outside/"
    );
}

/// A small deterministic generator (xorshift64*) for reproducible damage.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

// ------------------------------------------------------------------ our dump writer

/// The dump writer's history: (directory inode, name, inode) entries and (inode, stat,
/// fh_info) nodes.
#[derive(Default)]
pub struct DumpHist {
    pub dirs: Vec<(u64, Vec<u8>, u64)>,
    pub nodes: Vec<(u64, NodeStat, u64)>,
}

impl DumpHist {
    /// Relative path ("a/b") -> inode, rebuilt from the Dir events.
    pub fn paths(&self) -> BTreeMap<Vec<u8>, u64> {
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

    pub fn node(&self, ino: u64) -> &(u64, NodeStat, u64) {
        self.nodes.iter().find(|n| n.0 == ino).unwrap()
    }
}

/// Level 0, dated now, labelled "reader".
pub fn dump_opts() -> DumpOptions {
    DumpOptions {
        dump_date: now(),
        label: "reader".into(),
        ..DumpOptions::default()
    }
}

/// Dumps `src` with our writer into memory; the writer must not warn.
pub fn dump_image(src: &Path) -> (Vec<u8>, DumpHist) {
    use ndmpd::format::dump::Event;
    let mut hist = DumpHist::default();
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

// ------------------------------------------------------------------ our tar writer

/// The tar writer's history: (path, stat, fh_info) per member, its warnings and estimate.
#[derive(Default, Debug)]
pub struct TarHist {
    pub files: Vec<(Vec<u8>, NodeStat, u64)>,
    pub warnings: Vec<String>,
    pub estimate: Option<u64>,
}

impl TarHist {
    pub fn fh(&self, path: &str) -> u64 {
        self.entry(path).2
    }

    pub fn entry(&self, path: &str) -> &(Vec<u8>, NodeStat, u64) {
        self.files
            .iter()
            .find(|f| f.0 == path.as_bytes())
            .unwrap_or_else(|| panic!("{path} not in the history"))
    }

    /// Where the member after `path` starts (its data ends there).
    pub fn next_fh(&self, path: &str) -> u64 {
        let i = self
            .files
            .iter()
            .position(|f| f.0 == path.as_bytes())
            .unwrap();
        self.files[i + 1].2
    }
}

/// Archives `src` with `opts` into memory.
pub fn tar_with(src: &Path, opts: &TarOptions) -> (Vec<u8>, TarHist, Summary) {
    use ndmpd::format::tar::Event;
    let mut hist = TarHist::default();
    let mut out = Vec::new();
    let sum = write_tar(
        src,
        opts,
        &mut out,
        &mut |ev| match ev {
            Event::File {
                path,
                stat,
                fh_info,
            } => hist.files.push((path.to_vec(), stat.clone(), fh_info)),
            Event::Estimate(n) => hist.estimate = Some(n),
            Event::Warning(w) => hist.warnings.push(w),
        },
        &AtomicBool::new(false),
    )
    .unwrap();
    (out, hist, sum)
}

/// Archives `src` with default options; the writer must not warn.
pub fn tar_image(src: &Path) -> (Vec<u8>, TarHist) {
    let (img, hist, sum) = tar_with(src, &TarOptions::default());
    assert!(
        hist.warnings.is_empty(),
        "writer warnings: {:?}",
        hist.warnings
    );
    assert_eq!(sum.bytes, img.len() as u64);
    assert_eq!(img.len() % 10240, 0);
    (img, hist)
}
