//! The DMA's side of a million-file dump history: FH_ADD_DIR and FH_ADD_NODE posts, as our
//! server sends them, joined into paths and loaded into a fresh catalog, timed on its own.

use ndmpd::catalog::{Catalog, NewBackup};
use ndmpd::client::recorded::HistorySink;
use ndmpd::wire::messages::{FhAddDirPost, FhAddNodePost};
use ndmpd::wire::sample::Gen;
use ndmpd::wire::types::{Dir, FileName, FileStat, FileType, FsType, Node};
use ndmpd::wire::Request;
use std::time::{Duration, Instant};

/// Files per directory and per post.
const PER_DIR: u64 = 1000;

fn stat(ftype: FileType) -> FileStat {
    FileStat {
        unsupported: 0,
        fs_type: FsType::UNIX,
        ftype,
        mtime: 1_790_000_000,
        atime: 1_790_000_000,
        ctime: 1_790_000_000,
        owner: 0,
        group: 0,
        fattr: 0o644,
        size: 0,
        links: 1,
    }
}

/// The posts of a tree of `files` empty files, 1,000 to a directory: each directory's files
/// numbered in a run after it, listed in a shuffled (hashed directory) order; the directory
/// entries first, then the nodes in number order, as a dump's passes post them.
fn posts(files: u64) -> Vec<Request> {
    let mut g = Gen::new(21);
    let dirs = files.div_ceil(PER_DIR);
    let root = 2;
    let mut out = vec![];
    let mut top = vec![Dir {
        name: vec![FileName::unix(".")],
        node: root,
        parent: root,
    }];
    let mut nodes = vec![root];
    let mut base = 5_000_000;
    let mut lists = vec![];
    for d in 0..dirs {
        top.push(Dir {
            name: vec![FileName::unix(&format!("d{d:04}"))],
            node: base,
            parent: root,
        });
        let mut list: Vec<u64> = (1..=PER_DIR.min(files - d * PER_DIR)).collect();
        for i in (1..list.len()).rev() {
            list.swap(i, g.below(i as u64 + 1) as usize);
        }
        lists.push((base, list));
        base += PER_DIR + 1 + g.below(50);
    }
    out.push(Request::FhAddDir(FhAddDirPost { dirs: top }));
    for (dir, list) in &lists {
        nodes.push(*dir);
        let dirs = list
            .iter()
            .map(|i| Dir {
                name: vec![FileName::unix(&format!("f{i:07}"))],
                node: dir + i,
                parent: *dir,
            })
            .collect();
        out.push(Request::FhAddDir(FhAddDirPost { dirs }));
    }
    let node = |n: u64, t| Node {
        stats: vec![stat(t)],
        node: n,
        fh_info: n * 1024,
    };
    out.push(Request::FhAddNode(FhAddNodePost {
        nodes: nodes.iter().map(|&n| node(n, FileType::DIR)).collect(),
    }));
    for (dir, list) in &lists {
        out.push(Request::FhAddNode(FhAddNodePost {
            nodes: (1..=list.len() as u64)
                .map(|i| node(dir + i, FileType::REG))
                .collect(),
        }));
    }
    out
}

fn main() {
    let files: u64 = std::env::var("HISTORY_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let posts = posts(files);
    let mut times = vec![];
    for _ in 0..rounds {
        let dir = tempfile::tempdir().unwrap();
        let mut cat = Catalog::open(&dir.path().join("catalog.db")).unwrap();
        let id = cat.insert(&NewBackup::default()).unwrap();
        let t = Instant::now();
        let mut sink = HistorySink::new(&mut cat, id);
        for p in &posts {
            sink.add(p);
        }
        sink.end();
        let took = t.elapsed();
        assert_eq!(sink.stored, files + files.div_ceil(PER_DIR) + 1);
        assert!(sink.error.is_none());
        println!("{} entries: {took:?}", sink.stored);
        times.push(took);
    }
    times.sort();
    let med: Duration = times[times.len() / 2];
    println!(
        "history of {files} files into the catalog: median {med:?}, min {:?}, max {:?}",
        times[0],
        times[times.len() - 1]
    );
}
