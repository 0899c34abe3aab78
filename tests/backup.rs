//! DATA backups driven by Amanda's ndmjob, with the mover on the same session (LOCAL) or on a
//! second one (TCP): the image on the cartridge is extracted by the stock `restore` and
//! compared with the tree; a level 1 after changes restores with `restore -r`.

mod common;

use ndmpd::tape::library::Library;
use ndmpd::tape::vtape::Vtape;
use ndmpd::tape::TapeDevice;
use std::path::{Path, PathBuf};
use std::process::Command;

const PW: &[u8] = b"backup-pw";

/// Runs an ndmjob backup of `tree` onto `tape`; `two` puts the tape on its own connection.
fn ndmjob_backup(
    t: &common::TestServer,
    tree: &Path,
    tape: &str,
    two: bool,
    extra: &[&str],
) -> String {
    let agent = format!("127.0.0.1:{}/4t,ndmp,backup-pw", t.addr.port());
    let index = t.dir.path().join(format!("index-{tape}"));
    let (tree, index_s) = (tree.to_str().unwrap(), index.to_str().unwrap());
    let mut args = vec!["-c", "-v", "-D", &agent];
    if two {
        args.extend(["-T", &agent]);
    }
    args.extend(["-B", "dump", "-f", tape, "-C", tree, "-I", index_s]);
    args.extend(extra);
    let text = common::ndmjob(&args);
    assert!(text.contains("Operation ended OKAY"), "{text}");
    std::fs::read_to_string(index).unwrap()
}

/// Tape file 0 of the cartridge in `drive`, as one image file.
fn image(t: &common::TestServer, drive: &str) -> PathBuf {
    let cart = Library::new(&t.cfg).resolve(drive).unwrap();
    let mut v = Vtape::open(&cart, false).unwrap();
    let mut img = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    while let Ok((n, _)) = v.read_record(&mut buf) {
        img.extend_from_slice(&buf[..n]);
    }
    let p = t.dir.path().join(format!("{drive}.dump"));
    std::fs::write(&p, img).unwrap();
    p
}

async fn server() -> common::TestServer {
    common::start("ndmp", PW, |_| {}).await
}

async fn backup_and_restore(two: bool) {
    let t = server().await;
    let tree = t.dir.path().join("tree");
    common::tree::build(&tree);
    let index = {
        let (t2, tree2) = (&t, tree.clone());
        tokio::task::block_in_place(|| ndmjob_backup(t2, &tree2, "vtape0", two, &[]))
    };
    // the DMA's catalogue got inode history with offsets for every entry
    assert!(index.contains("DHd 2 a.txt UNIX"), "{index}");
    assert!(
        index.lines().any(|l| l.starts_with("DHn 2 UNIX fd")),
        "{index}"
    );
    let img = image(&t, "vtape0");
    let dest = t.dir.path().join("restored");
    std::fs::create_dir(&dest).unwrap();
    common::tree::restore_x(&img, &dest);
    common::tree::assert_same(&tree, &dest);
}

#[tokio::test(flavor = "multi_thread")]
async fn ndmjob_dump_backup_over_local_restores_identical() {
    backup_and_restore(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ndmjob_dump_backup_over_tcp_restores_identical() {
    backup_and_restore(true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn level_1_after_changes_restores_with_restore_r() {
    let t = server().await;
    let tree = t.dir.path().join("tree");
    common::tree::build(&tree);
    tokio::task::block_in_place(|| ndmjob_backup(&t, &tree, "vtape0", false, &[]));
    // change the tree: modify, add, delete, rename
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(tree.join("sub/b.txt"), b"changed\n").unwrap();
    std::fs::write(tree.join("new.txt"), b"new file\n").unwrap();
    std::fs::remove_file(tree.join("empty")).unwrap();
    std::fs::rename(tree.join("sub/deeper/c.bin"), tree.join("c-moved.bin")).unwrap();
    let index = tokio::task::block_in_place(|| {
        ndmjob_backup(&t, &tree, "vtape1", false, &["-E", "LEVEL=1"])
    });
    assert!(index.contains("DE LEVEL=1"), "{index}");
    let (l0, l1) = (image(&t, "vtape0"), image(&t, "vtape1"));
    let dest = t.dir.path().join("restored");
    std::fs::create_dir(&dest).unwrap();
    for img in [&l0, &l1] {
        let out = Command::new("restore")
            .args(["-r", "-y", "-f"])
            .arg(img)
            .current_dir(&dest)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "restore -r: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::remove_file(dest.join("restoresymtable")).unwrap();
    common::tree::assert_same(&tree, &dest);
}

/// Runs an ndmjob extract of `paths` (all when empty) from `tape` into `dest`.
fn ndmjob_extract(
    t: &common::TestServer,
    tape: &str,
    dest: &Path,
    two: bool,
    paths: &[&str],
) -> String {
    let agent = format!("127.0.0.1:{}/4t,ndmp,backup-pw", t.addr.port());
    let mut args = vec!["-x", "-v", "-D", &agent];
    if two {
        args.extend(["-T", &agent]);
    }
    let dest = dest.to_str().unwrap();
    args.extend(["-B", "dump", "-f", tape, "-C", dest]);
    args.extend(paths);
    let text = common::ndmjob(&args);
    assert!(text.contains("Operation ended OKAY"), "{text}");
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn ndmjob_full_extract_over_local_gives_the_tree_back() {
    let t = server().await;
    let tree = t.dir.path().join("tree");
    common::tree::build(&tree);
    let dest = t.dir.path().join("dest");
    tokio::task::block_in_place(|| {
        ndmjob_backup(&t, &tree, "vtape0", false, &[]);
        ndmjob_extract(&t, "vtape0", &dest, false, &[]);
    });
    common::tree::assert_same(&tree, &dest);
}

#[tokio::test(flavor = "multi_thread")]
async fn ndmjob_selective_extract_over_tcp_restores_only_what_was_named() {
    let t = server().await;
    let tree = t.dir.path().join("tree");
    common::tree::build(&tree);
    let dest = t.dir.path().join("dest");
    let text = tokio::task::block_in_place(|| {
        ndmjob_backup(&t, &tree, "vtape0", true, &[]);
        ndmjob_extract(&t, "vtape0", &dest, true, &["/sub/deeper", "/a.txt"])
    });
    assert!(
        text.contains("LOG_FILE messages: 2 OK, 0 ERROR, total 2 of 2"),
        "{text}"
    );
    let got: Vec<String> = walkdir(&dest);
    assert_eq!(got, ["a.txt", "sub", "sub/deeper", "sub/deeper/c.bin"]);
    assert_eq!(
        std::fs::read(dest.join("sub/deeper/c.bin")).unwrap(),
        std::fs::read(tree.join("sub/deeper/c.bin")).unwrap()
    );
    // a destination outside the export roots is refused before anything is read
    let outside = tempfile::tempdir().unwrap();
    let agent = format!("127.0.0.1:{}/4t,ndmp,backup-pw", t.addr.port());
    let text = tokio::task::block_in_place(|| {
        common::ndmjob(&[
            "-x",
            "-v",
            "-D",
            &agent,
            "-B",
            "dump",
            "-f",
            "vtape0",
            "-C",
            outside.path().to_str().unwrap(),
            "/a.txt",
        ])
    });
    assert!(!text.contains("Operation ended OKAY"), "{text}");
    assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
}

fn walkdir(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in std::fs::read_dir(root.join(&rel)).unwrap() {
            let e = e.unwrap();
            let r = rel.join(e.file_name());
            out.push(r.to_string_lossy().into_owned());
            if e.file_type().unwrap().is_dir() {
                stack.push(r);
            }
        }
    }
    out.sort();
    out
}
