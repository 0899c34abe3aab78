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
