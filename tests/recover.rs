//! DATA recover driven by Amanda's ndmjob against ndmpd, for the dump and tar butypes: full
//! and Direct Access Recovery of files and directories (LOCAL and TCP), listing
//! (RECOVER_FILEHIST), images of the stock `dump` and GNU tar put on a cartridge with
//! `ndmpd vtape append`, GNU tar reading ours, and hostile images that must halt with a log.

mod common;

use common::fulltree::{compare, pattern};
use std::path::Path;
use std::process::Command;

const PW: &[u8] = b"backup-pw";

async fn server() -> common::TestServer {
    common::start("ndmp", PW, |c| c.library.cartridge_capacity = 4 << 30).await
}

fn agent(t: &common::TestServer) -> String {
    format!("127.0.0.1:{}/4t,ndmp,backup-pw", t.addr.port())
}

/// Runs one ndmjob job; `two` puts the tape on its own connection (TCP data path).
fn job(t: &common::TestServer, two: bool, args: &[&str]) -> String {
    let a = agent(t);
    let mut all = vec!["-v", "-D", &a];
    if two {
        all.extend(["-T", &a]);
    }
    all.extend(args);
    common::ndmjob(&all)
}

fn ok(text: &str) {
    assert!(text.contains("Operation ended OKAY"), "{text}");
}

/// The last "DATA: bytes NKB" ndmjob printed, in KB.
fn data_kb(text: &str) -> u64 {
    text.lines()
        .rev()
        .filter_map(|l| l.split("DATA: bytes ").nth(1))
        .find_map(|r| r.split("KB").next()?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no DATA bytes line in {text}"))
}

/// The image size in KB from the index's media line ("CM 01 +0/23990K").
fn image_kb(index: &str) -> u64 {
    let cm = index.lines().find(|l| l.starts_with("CM ")).unwrap();
    cm.rsplit('/')
        .next()
        .unwrap()
        .trim_end_matches('K')
        .parse()
        .unwrap()
}

const BUTYPES: [&str; 2] = ["dump", "tar"];

fn backup(t: &common::TestServer, bu: &str, tree: &Path, tape: &str, index: &Path) -> String {
    let text = job(
        t,
        false,
        &[
            "-c",
            "-B",
            bu,
            "-f",
            tape,
            "-C",
            tree.to_str().unwrap(),
            "-I",
            index.to_str().unwrap(),
        ],
    );
    ok(&text);
    std::fs::read_to_string(index).unwrap()
}

fn extract(
    t: &common::TestServer,
    two: bool,
    bu: &str,
    tape: &str,
    dest: &Path,
    more: &[&str],
) -> String {
    let mut args = vec!["-x", "-B", bu, "-f", tape, "-C", dest.to_str().unwrap()];
    args.extend(more);
    job(t, two, &args)
}

fn same_file(a: &Path, b: &Path) {
    assert_eq!(
        std::fs::read(a).unwrap(),
        std::fs::read(b).unwrap(),
        "{}",
        b.display()
    );
}

/// `-J index` fills each name's fh_info, so ndmpd reads just those files: over LOCAL and
/// TCP the named files come back identical, every entry gets a successful LOG_FILE, and
/// far fewer bytes than the image cross the data connection. A directory named by DAR gets
/// its whole subtree; DIRECT=N forces the sequential path with the same result.
#[tokio::test(flavor = "multi_thread")]
async fn dar_restores_single_files_and_directories() {
    let t = server().await;
    let tree = t.dir.path().join("tree");
    common::tree::build(&tree);
    std::fs::write(tree.join("filler.bin"), pattern(8 << 20, 7)).unwrap();
    tokio::task::block_in_place(|| {
        for (bu, tape) in BUTYPES.iter().zip(["vtape0", "vtape1"]) {
            let index_path = t.dir.path().join(format!("index-{bu}"));
            let index = backup(&t, bu, &tree, tape, &index_path);
            let image = image_kb(&index);
            let idx = index_path.to_str().unwrap();
            for two in [false, true] {
                let dest = t.dir.path().join(format!("dar-{bu}-{two}"));
                let text = extract(
                    &t,
                    two,
                    bu,
                    tape,
                    &dest,
                    &["-J", idx, "/a.txt", "/sub/deeper/c.bin"],
                );
                ok(&text);
                assert!(
                    text.contains("LOG_FILE messages: 2 OK, 0 ERROR, total 2 of 2"),
                    "{text}"
                );
                same_file(&tree.join("a.txt"), &dest.join("a.txt"));
                same_file(
                    &tree.join("sub/deeper/c.bin"),
                    &dest.join("sub/deeper/c.bin"),
                );
                assert!(
                    data_kb(&text) * 10 < image,
                    "{bu}: DAR read {} KB of a {image} KB image:\n{text}",
                    data_kb(&text)
                );
            }
            // a directory: its subtree, by a second, sequential pass
            let dest = t.dir.path().join(format!("dar-dir-{bu}"));
            let text = extract(&t, false, bu, tape, &dest, &["-J", idx, "/sub"]);
            if *bu == "dump" {
                ok(&text);
                common::tree::assert_same(&tree.join("sub"), &dest.join("sub"));
            } else {
                // tar keeps a hard link's data with its first name, /a.txt, outside /sub:
                // like GNU tar, the link cannot be made, is reported, and the restore is not
                // a success (GNU tar exits 2 too)
                assert!(text.contains("sub/hard-a"), "{text}");
                assert!(
                    text.contains("recover incomplete: 1 entries were not restored")
                        && !text.contains("Operation ended OKAY"),
                    "{text}"
                );
                assert!(!dest.join("sub/hard-a").exists());
                for f in ["sub/b.txt", "sub/deeper/c.bin"] {
                    same_file(&tree.join(f), &dest.join(f));
                }
            }
            // DIRECT=N: the same files, the whole image read
            let dest = t.dir.path().join(format!("seq-{bu}"));
            let text = extract(
                &t,
                true,
                bu,
                tape,
                &dest,
                &["-E", "DIRECT=N", "-J", idx, "/a.txt"],
            );
            ok(&text);
            same_file(&tree.join("a.txt"), &dest.join("a.txt"));
            assert!(data_kb(&text) >= image, "{bu}: {text}");
        }
    });
}

/// A full extract (empty name list) of each butype, over LOCAL and over TCP, gives the
/// whole tree back identical.
#[tokio::test(flavor = "multi_thread")]
async fn full_extract_of_each_butype_over_local_and_tcp() {
    let t = server().await;
    let tree = t.dir.path().join("tree");
    common::tree::build(&tree);
    tokio::task::block_in_place(|| {
        for (bu, tape) in BUTYPES.iter().zip(["vtape0", "vtape1"]) {
            backup(&t, bu, &tree, tape, &t.dir.path().join(format!("i-{bu}")));
            for two in [false, true] {
                let dest = t.dir.path().join(format!("full-{bu}-{two}"));
                ok(&extract(&t, two, bu, tape, &dest, &[]));
                common::tree::assert_same(&tree, &dest);
            }
        }
    });
}

/// `ndmjob -t` (DATA_START_RECOVER_FILEHIST) lists exactly the history the backup posted,
/// and nothing is written anywhere.
#[tokio::test(flavor = "multi_thread")]
async fn list_gives_the_backup_index_back() {
    let t = server().await;
    let tree = t.dir.path().join("tree");
    common::tree::build(&tree);
    let toc_path = t.dir.path().join("toc");
    tokio::task::block_in_place(|| {
        for (bu, two) in [
            ("dump", false),
            ("dump", true),
            ("tar", false),
            ("tar", true),
        ] {
            let index_path = t.dir.path().join(format!("index-{bu}"));
            let tape = if bu == "dump" { "vtape0" } else { "vtape1" };
            let index = if two {
                std::fs::read_to_string(&index_path).unwrap()
            } else {
                backup(&t, bu, &tree, tape, &index_path)
            };
            let _ = std::fs::remove_file(&toc_path);
            let text = job(
                &t,
                two,
                &["-t", "-B", bu, "-f", tape, "-I", toc_path.to_str().unwrap()],
            );
            ok(&text);
            let toc = std::fs::read_to_string(&toc_path).unwrap();
            let hist = |s: &str| -> Vec<String> {
                s.lines()
                    .filter(|l| l.starts_with("DH"))
                    .map(String::from)
                    .collect()
            };
            assert!(hist(&index).len() > 10, "{index}");
            assert_eq!(hist(&toc), hist(&index));
        }
    });
}

/// Restoring one small file from an image of more than 1 GiB moves less than 1% of it.
#[tokio::test(flavor = "multi_thread")]
async fn dar_from_a_gigabyte_image_moves_under_one_percent() {
    let t = server().await;
    let tree = t.dir.path().join("tree");
    std::fs::create_dir_all(tree.join("docs")).unwrap();
    std::fs::write(tree.join("docs/note.txt"), b"the one file we need\n").unwrap();
    common::fulltree::noise_file(&tree.join("big.bin"), 1100, 0);
    std::fs::write(tree.join("z-last.txt"), b"after the big one\n").unwrap();
    let index_path = t.dir.path().join("index");
    tokio::task::block_in_place(|| {
        let index = backup(&t, "dump", &tree, "vtape0", &index_path);
        let image = image_kb(&index);
        assert!(image > 1 << 20, "image of {image} KB");
        let idx = index_path.to_str().unwrap();
        for (two, name) in [(false, "/docs/note.txt"), (true, "/z-last.txt")] {
            let dest = t.dir.path().join(format!("one-{two}"));
            let text = extract(&t, two, "dump", "vtape0", &dest, &["-J", idx, name]);
            ok(&text);
            same_file(&tree.join(&name[1..]), &dest.join(&name[1..]));
            let moved = data_kb(&text);
            eprintln!("DAR of {name}: {moved} KB moved of a {image} KB image");
            assert!(moved * 100 < image, "{moved} KB of {image} KB:\n{text}");
        }
    });
    std::fs::remove_file(tree.join("big.bin")).unwrap();
}

/// An image written by the stock `dump`, appended to a cartridge with `ndmpd vtape append`,
/// recovers through ndmpd to a tree identical to its source (mtimes to the second).
#[tokio::test(flavor = "multi_thread")]
async fn stock_dump_image_recovers_through_the_server() {
    use common::stockdump::stock_image;
    let (Some(dump), Some(mke2fs), Some(debugfs)) = (
        common::find_tool("dump", "dump"),
        common::find_tool("mke2fs", "e2fsprogs"),
        common::find_tool("debugfs", "e2fsprogs"),
    ) else {
        return;
    };
    let t = server().await;
    let src = t.dir.path().join("src");
    common::tree::build(&src);
    // the stock dump stores whole seconds
    let status = Command::new("find")
        .arg(&src)
        .args(["-exec", "touch", "-h", "-d", "@1600000000", "{}", "+"])
        .status()
        .unwrap();
    assert!(status.success());
    let work = t.dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let Some(image) = stock_image(&src, &work, "4096", &dump, &mke2fs, &debugfs) else {
        common::skip(common::stockdump::CANNOT_DUMP_AN_IMAGE);
        return;
    };
    let img = work.join("stock.dump");
    std::fs::write(&img, &image).unwrap();
    append(&t, img.to_str().unwrap());
    let dest = t.dir.path().join("dest");
    let text = tokio::task::block_in_place(|| extract(&t, true, "dump", "vtape1", &dest, &[]));
    ok(&text);
    let diffs = compare(&src, &dest, false);
    assert!(
        diffs.is_empty(),
        "restored tree differs:\n{}",
        diffs.join("\n")
    );
}

/// Images that are not dumps or end early: the recover halts INTERNAL_ERROR with a log line
/// that names the problem and the byte offset, and nothing appears outside the destination.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_images_halt_with_a_log() {
    let t = server().await;
    let tree = t.dir.path().join("tree");
    common::tree::build(&tree);
    let index_path = t.dir.path().join("index");
    tokio::task::block_in_place(|| backup(&t, "dump", &tree, "vtape0", &index_path));
    let good = common_image(&t, "vtape0");
    let garbage: Vec<u8> = pattern(200 * 1024, 9);
    let truncated = good[..good.len() / 2].to_vec();
    for (bu, name, bytes, why) in [
        (
            "dump",
            "garbage",
            garbage.clone(),
            "not a dump image: no valid header at byte 0",
        ),
        (
            "dump",
            "truncated",
            truncated,
            "the image ends early, at byte",
        ),
        (
            "tar",
            "tar-garbage",
            garbage,
            "not a tar archive: no valid header at byte 0",
        ),
    ] {
        let f = t.dir.path().join(name);
        std::fs::write(&f, &bytes).unwrap();
        vtape(&t, &["erase", "--yes", "vtape1"]);
        append(&t, f.to_str().unwrap());
        let boxdir = t.dir.path().join(format!("box-{name}"));
        let dest = boxdir.join("dest");
        let text = tokio::task::block_in_place(|| extract(&t, false, bu, "vtape1", &dest, &[]));
        assert!(!text.contains("Operation ended OKAY"), "{name}: {text}");
        assert!(text.contains(why), "{name}: {text}");
        // the tar reader checks the first header before it creates the destination
        let made = std::fs::read_dir(&boxdir).map_or(0, |d| d.count());
        assert_eq!(
            made,
            usize::from(dest.exists()),
            "{name}: something appeared next to the destination"
        );
    }
}

/// Puts `file` on vtape1's cartridge as a tape file of 10 KiB records, as an operator would.
fn append(t: &common::TestServer, file: &str) {
    vtape(t, &["append", "vtape1", "--record-size", "10240", file]);
}

/// `ndmpd vtape ARGS` on the test server's data directory.
fn vtape(t: &common::TestServer, args: &[&str]) {
    let o = Command::new(env!("CARGO_BIN_EXE_ndmpd"))
        .args(["vtape", "--data-dir"])
        .arg(&t.cfg.data_dir)
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{args:?}: {o:?}");
}

fn common_image(t: &common::TestServer, drive: &str) -> Vec<u8> {
    use ndmpd::tape::library::Library;
    use ndmpd::tape::vtape::Vtape;
    use ndmpd::tape::TapeDevice;
    let cart = Library::new(&t.cfg).resolve(drive).unwrap();
    let mut v = Vtape::open(&cart, false).unwrap();
    let mut img = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    while let Ok((n, _)) = v.read_record(&mut buf) {
        img.extend_from_slice(&buf[..n]);
    }
    img
}

/// GNU tar extracts what an ndmjob tar backup through ndmpd wrote, and an archive GNU tar
/// wrote (pax, sparse, xattrs), appended with `ndmpd vtape append`, recovers through ndmpd;
/// both give the tree back identical.
#[tokio::test(flavor = "multi_thread")]
async fn gnu_tar_reads_ours_and_we_recover_gnu_tars() {
    let t = server().await;
    let tree = t.dir.path().join("tree");
    common::tree::build(&tree);
    tokio::task::block_in_place(|| {
        backup(&t, "tar", &tree, "vtape0", &t.dir.path().join("index"));
    });
    let ours = t.dir.path().join("ours.tar");
    std::fs::write(&ours, common_image(&t, "vtape0")).unwrap();
    let dest = t.dir.path().join("by-gnu-tar");
    std::fs::create_dir(&dest).unwrap();
    let o = Command::new("tar")
        .args(["-x", "-p", "--xattrs", "--xattrs-include=*", "-f"])
        .arg(&ours)
        .arg("-C")
        .arg(&dest)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    common::tree::assert_same(&tree, &dest);

    let gnu = t.dir.path().join("gnu.tar");
    let o = Command::new("tar")
        .args([
            "--format=pax",
            "--sparse",
            "--xattrs",
            "--xattrs-include=*",
            "-b",
            "20",
        ])
        .arg("-c")
        .arg("-f")
        .arg(&gnu)
        .arg("-C")
        .arg(&tree)
        .arg(".")
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    append(&t, gnu.to_str().unwrap());
    let dest = t.dir.path().join("from-gnu-tar");
    let text = tokio::task::block_in_place(|| extract(&t, true, "tar", "vtape1", &dest, &[]));
    ok(&text);
    common::tree::assert_same(&tree, &dest);
}
