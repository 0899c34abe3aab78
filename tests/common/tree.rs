//! Source trees for backup tests (every kind of file the dump format carries) and a
//! comparison of a restored tree against its source: types, contents, modes, owners, times,
//! symlink targets and hard-link groups.

use super::fulltree::{set_xattr, xattrs};
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

fn touch(p: &Path, secs: i64) {
    let st = Command::new("touch")
        .args(["-h", "-d", &format!("@{secs}")])
        .arg(p)
        .status()
        .unwrap();
    assert!(st.success());
}

/// Builds a small tree with nested directories, odd names, a symlink, a hard link, an empty
/// file and directory, a file with holes, unusual modes and (as root) another owner.
pub fn build(root: &Path) {
    let w = |rel: &str, data: &[u8]| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
    };
    w("a.txt", b"hello\n");
    w("sub/b.txt", &vec![b'b'; 70_000]);
    w(
        "sub/deeper/c.bin",
        &(0..200_000u32).map(|i| (i * 31) as u8).collect::<Vec<_>>(),
    );
    w("name with space ü.txt", b"utf-8 and a space\n");
    w("empty", b"");
    std::fs::create_dir_all(root.join("empty-dir")).unwrap();
    std::os::unix::fs::symlink("sub/b.txt", root.join("link")).unwrap();
    std::fs::hard_link(root.join("a.txt"), root.join("sub/hard-a")).unwrap();
    // a file with a hole in the middle and at the end
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(root.join("sparse"))
        .unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"start", 0).unwrap();
    f.write_all_at(b"middle", 1 << 20).unwrap();
    f.set_len(3 << 20).unwrap();
    drop(f);
    std::fs::set_permissions(root.join("a.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(
        root.join("sub/deeper"),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    set_xattr(&root.join("a.txt"), "user.origin", b"ndmpd test");
    set_xattr(&root.join("sub"), "user.dir-note", b"\x00binary\xff");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::chown(root.join("sub/b.txt"), Some(1234), Some(5678)).unwrap();
    }
    for (i, rel) in [
        "a.txt",
        "sub/b.txt",
        "sub/deeper/c.bin",
        "sparse",
        "link",
        "sub/deeper",
        "empty-dir",
    ]
    .iter()
    .enumerate()
    {
        touch(&root.join(rel), 1_600_000_000 + i as i64 * 1000);
    }
}

#[derive(Debug, PartialEq)]
struct Seen {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Option<i64>,
    content: Vec<u8>,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Fewer blocks allocated than the length needs: the file has holes.
    sparse: bool,
}

fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, (Seen, (u64, u64))>) {
    for e in std::fs::read_dir(root.join(rel)).unwrap() {
        let e = e.unwrap();
        let r = rel.join(e.file_name());
        let p = root.join(&r);
        let m = std::fs::symlink_metadata(&p).unwrap();
        let ft = m.file_type();
        let (kind, content) = if ft.is_dir() {
            ("dir", Vec::new())
        } else if ft.is_symlink() {
            let t = std::fs::read_link(&p).unwrap();
            ("symlink", t.into_os_string().into_encoded_bytes())
        } else if ft.is_file() {
            ("file", std::fs::read(&p).unwrap())
        } else {
            ("other", Vec::new())
        };
        let seen = Seen {
            kind,
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            // restore sets a directory's time once it is filled; symlinks' times are not kept
            mtime: (kind != "symlink").then(|| m.mtime()),
            content,
            xattrs: xattrs(&p),
            sparse: kind == "file" && m.blocks() * 512 + 4096 < m.len(),
        };
        out.insert(r.clone(), (seen, (m.dev(), m.ino())));
        if ft.is_dir() {
            walk(root, &r, out);
        }
    }
}

/// Panics with the first difference between two trees.
pub fn assert_same(source: &Path, restored: &Path) {
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    walk(source, Path::new(""), &mut a);
    walk(restored, Path::new(""), &mut b);
    let names = |m: &BTreeMap<PathBuf, _>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&a), names(&b), "the restored tree has other names");
    for (path, (sa, _)) in &a {
        let (sb, _) = &b[path];
        assert!(
            sa == sb,
            "{} differs: source {:?}, restored {:?}",
            path.display(),
            (
                sa.kind,
                sa.mode,
                sa.uid,
                sa.gid,
                sa.mtime,
                sa.content.len(),
                sa.sparse
            ),
            (
                sb.kind,
                sb.mode,
                sb.uid,
                sb.gid,
                sb.mtime,
                sb.content.len(),
                sb.sparse
            )
        );
    }
    // hard links: the same groups of names share an inode on both sides
    let groups = |m: &BTreeMap<PathBuf, (Seen, (u64, u64))>| {
        let mut g: BTreeMap<(u64, u64), Vec<PathBuf>> = BTreeMap::new();
        for (p, (s, id)) in m {
            if s.kind == "file" {
                g.entry(*id).or_default().push(p.clone());
            }
        }
        let mut v: Vec<Vec<PathBuf>> = g.into_values().filter(|v| v.len() > 1).collect();
        v.sort();
        v
    };
    assert_eq!(groups(&a), groups(&b), "hard links differ");
}

/// Extracts a dump image with the stock `restore -x` into `dest` (which must exist).
pub fn restore_x(image: &Path, dest: &Path) {
    let out = Command::new("restore")
        .args(["-x", "-a", "-o", "-y", "-u", "-f"])
        .arg(image)
        .current_dir(dest)
        .output()
        .expect("restore is missing: apt-get install dump (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "restore -x failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The files under `root`, relative, sorted.
pub fn files_under(root: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, at: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(root.join(at)).unwrap() {
            let e = e.unwrap();
            let rel = at.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                walk(root, &rel, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, Path::new(""), &mut out);
    out.sort();
    out
}

/// `part` holds exactly one file, at a path ending in `rel`, with the bytes of `tree/rel`.
pub fn assert_only_file(part: &Path, tree: &Path, rel: &str) {
    let got = files_under(part);
    assert_eq!(got.len(), 1, "one file restored, got {got:?}");
    assert!(got[0].ends_with(rel), "{got:?}");
    assert_eq!(
        std::fs::read(part.join(&got[0])).unwrap(),
        std::fs::read(tree.join(rel)).unwrap()
    );
}
