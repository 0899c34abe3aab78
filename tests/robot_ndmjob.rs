//! The virtual changer driven by a real DMA: Amanda's ndmjob robot operations (inventory,
//! load, unload, import, export, labels) and a backup and restore that load the tape by robot.

mod common;

use ndmpd::tape::library::{Library, Place};
use std::path::Path;

const PW: &[u8] = b"robot-pw";

async fn server() -> common::TestServer {
    common::start("ndmp", PW, |_| {}).await
}

fn agent(t: &common::TestServer) -> String {
    format!("127.0.0.1:{}/4t,ndmp,robot-pw", t.addr.port())
}

/// Runs ndmjob with `cmd`'s words (temp paths have no spaces) on a blocking thread: the
/// server runs on this test's runtime.
fn run(cmd: &str) -> String {
    let args: Vec<&str> = cmd.split_whitespace().collect();
    tokio::task::block_in_place(|| common::ndmjob(&args))
}

/// ndmjob's inventory line for one element, e.g. `@1003 SLOT Full  PVolTag(VT0003,#0)`.
fn element_line(inventory: &str, addr: u16) -> String {
    let key = format!("  @{addr} ");
    inventory
        .lines()
        .find(|l| l.contains(&key))
        .unwrap_or_else(|| panic!("no element @{addr} in\n{inventory}"))
        .to_string()
}

fn inventory(a: &str) -> String {
    let out = run(&format!("-o init-elem-status -v -T {a} -r changer0"));
    assert!(out.contains("Operation complete"), "{out}");
    assert!(!out.contains("had problems"), "{out}");
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn ndmjob_robot_inventory_load_unload_import_export() {
    let t = server().await;
    let a = agent(&t);
    let inv = inventory(&a);
    assert!(inv.contains("'NDMPD   VIRTUAL CHANGER"), "{inv}");
    assert!(
        inv.contains("slots 8@1001  drive 2@1  arm 1@0  i/e 1@101"),
        "{inv}"
    );
    assert!(
        element_line(&inv, 1).contains("TAPE Full  PVolTag(VT0001,#0)"),
        "{inv}"
    );
    assert!(inv.contains("SValid(src=1001,!invert)"), "{inv}");
    assert!(
        element_line(&inv, 1003).contains("SLOT Full  PVolTag(VT0003"),
        "{inv}"
    );
    assert!(element_line(&inv, 1001).contains("SLOT Empty"), "{inv}");
    assert!(element_line(&inv, 101).contains("IEE  Empty"), "{inv}");

    // unload: rewinds through the tape agent, then the robot takes it to its source slot
    let out = run(&format!("-o unload -v -T {a} -r changer0 -f vtape0"));
    assert!(out.contains("unload drive @1 to slot @1001"), "{out}");
    assert!(!out.contains("had problems"), "{out}");
    let inv = inventory(&a);
    assert!(element_line(&inv, 1).contains("TAPE Empty"), "{inv}");
    assert!(element_line(&inv, 1001).contains("PVolTag(VT0001"), "{inv}");

    // load slot 1003 into the first drive; TAPE_OPEN now finds VT0003 there
    let out = run(&format!("-o load=1003 -v -T {a} -r changer0"));
    assert!(out.contains("load slot @1003 into drive @1"), "{out}");
    assert!(!out.contains("had problems"), "{out}");
    let lib = Library::new(&t.cfg);
    assert_eq!(
        lib.loaded().get("vtape0").map(String::as_str),
        Some("VT0003")
    );
    let out = run(&format!("-o unload -v -T {a} -r changer0 -f vtape0"));
    assert!(out.contains("unload drive @1 to slot @1003"), "{out}");

    // export slot 1004 to the mail slot; an operator takes it out and puts it back
    let out = run(&format!("-o export=1004 -v -T {a} -r changer0"));
    assert!(!out.contains("had problems"), "{out}");
    let inv = inventory(&a);
    assert!(
        element_line(&inv, 101).contains("IEE  Full  PVolTag(VT0004"),
        "{inv}"
    );
    assert_eq!(lib.export(None).unwrap(), ["VT0004"]);
    assert!(
        lib.contents().find("VT0004").is_none(),
        "outside the library"
    );
    assert_eq!(lib.import("VT0004").unwrap(), Place::Port(1));
    let out = run(&format!("-o import=1006 -v -T {a} -r changer0"));
    assert!(!out.contains("had problems"), "{out}");
    let inv = inventory(&a);
    assert!(element_line(&inv, 1006).contains("PVolTag(VT0004"), "{inv}");
    assert!(element_line(&inv, 101).contains("IEE  Empty"), "{inv}");

    // a load into a full drive fails with the changer's sense, and nothing moves
    let out = run(&format!(
        "-o load=1003 -v -T {a} -r changer0 -o tape-addr=2"
    ));
    assert!(
        out.contains("robot move BAD") || out.contains("had problems"),
        "{out}"
    );
    assert_eq!(
        lib.loaded().get("vtape1").map(String::as_str),
        Some("VT0002")
    );
    assert_eq!(lib.contents().find("VT0003").unwrap().at, Place::Slot(3));
}

/// Labels slots 1001-1004 the ndmjob way and lists them back.
fn label_slots(a: &str) {
    let out = run(&format!("-o init-labels -v -T {a} -r changer0 -f vtape0 -m DAILY1@1001 -m DAILY2@1002 -m DAILY3@1003 -m DAILY4@1004"));
    assert_eq!(out.matches("Writing tape label").count(), 4, "{out}");
    assert!(!out.contains("had problems"), "{out}");
    // ndmjob -l returns the last label's type letter as its status, so it always ends with
    // "had problems" after a good last read; the labels are what counts
    let out = run(&format!("-l -v -T {a} -r changer0 -f vtape0"));
    for l in ["DAILY1@1001", "DAILY2@1002", "DAILY3@1003", "DAILY4@1004"] {
        assert!(out.contains(&format!("ME \"{l}\"")), "{out}");
    }
    assert!(!out.contains("failed label read"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ndmjob_backup_and_restore_with_the_tape_loaded_by_robot() {
    let t = server().await;
    let a = agent(&t);
    // ndmjob's robot jobs want the drive empty; both cartridges go home to slots 1 and 2
    let out = run(&format!("-o unload -v -T {a} -r changer0 -f vtape0"));
    assert!(out.contains("to slot @1001"), "{out}");
    let out = run(&format!(
        "-o unload -v -T {a} -r changer0 -f vtape1 -o tape-addr=2"
    ));
    assert!(out.contains("unload drive @2 to slot @1002"), "{out}");
    label_slots(&a);

    let tree = t.dir.path().join("tree");
    common::tree::build(&tree);
    let index = t.dir.path().join("index");
    let (tree_s, index_s) = (s(&tree), s(&index));
    let out = run(&format!(
        "-c -v -D {a} -T {a} -r changer0 -f vtape0 -m DAILY3@1003 -B dump -C {tree_s} -I {index_s}"
    ));
    assert!(out.contains("load slot @1003 into drive @1"), "{out}");
    assert!(
        out.contains("Checking tape label, expect 'DAILY3'"),
        "{out}"
    );
    assert!(out.contains("Operation ended OKAY"), "{out}");
    assert!(out.contains("unload drive @1 to slot @1003"), "{out}");
    let lib = Library::new(&t.cfg);
    assert!(!lib.loaded().contains_key("vtape0"), "back in its slot");
    // the image is tape file 1 of the cartridge in slot 3, after the label file
    let cart = lib.contents().at(&Place::Slot(3)).unwrap().label.clone();
    let info = ndmpd::tape::vtape::Vtape::inspect(&lib.resolve(&cart).unwrap()).unwrap();
    assert!(info.files.len() >= 2, "{info}");

    let dest = t.dir.path().join("dest");
    std::fs::create_dir_all(&dest).unwrap();
    let (dest_s, index2) = (s(&dest), s(&t.dir.path().join("index2")));
    let out = run(&format!(
        "-x -v -D {a} -T {a} -r changer0 -f vtape0 -m DAILY3@1003 -B dump -C {dest_s} -I {index2}"
    ));
    assert!(out.contains("Operation ended OKAY"), "{out}");
    assert!(out.contains("unload drive @1 to slot @1003"), "{out}");
    common::tree::assert_same(&tree, &dest);

    // a wrong label is refused before anything is read
    let other = t.dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let other_s = s(&other);
    let out = run(&format!(
        "-x -v -D {a} -T {a} -r changer0 -f vtape0 -m DAILY9@1002 -B dump -C {other_s}"
    ));
    assert!(out.contains("Label mismatch"), "{out}");
    assert!(!out.contains("Operation ended OKAY"), "{out}");
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// `ndmpd dma changer` (the bundled DMA) against the in-process server.
fn dma_changer(t: &common::TestServer, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ndmpd"))
        .args(["dma", "changer", "--auth", "text", "--server"])
        .arg(t.addr.to_string())
        .args(args)
        .env("NDMPD_PASSWORD", "robot-pw")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bundled_dma_pairs_drives_by_serial_and_moves_cartridges() {
    let t = server().await;
    let run = |args: &[&str]| tokio::task::block_in_place(|| dma_changer(&t, args));
    let (ok, out) = run(&[]);
    assert!(ok, "{out}");
    let line = |out: &str, addr: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(addr))
            .unwrap_or_else(|| panic!("no {addr} in\n{out}"))
            .to_string()
    };
    assert!(
        line(&out, "1 ").ends_with("VT0001       1001     vtape0"),
        "{out}"
    );
    assert!(line(&out, "2 ").ends_with("vtape1"), "{out}");
    assert!(line(&out, "1003 ").contains("VT0003"), "{out}");

    let (ok, out) = run(&["unload", "--tape", "vtape1"]);
    assert!(ok && out.contains("unloaded 2 (vtape1) -> 1002"), "{out}");
    let (ok, out) = run(&["load", "1003", "--tape", "vtape1"]);
    assert!(ok && out.contains("loaded 1003 -> 2 (vtape1)"), "{out}");
    let lib = Library::new(&t.cfg);
    assert_eq!(
        lib.loaded().get("vtape1").map(String::as_str),
        Some("VT0003")
    );
    // errors carry the changer's sense in words, and nothing moves
    let (ok, out) = run(&["move", "1004", "1002"]);
    assert!(
        !ok && out.contains("3Bh/0Dh (medium destination element full)"),
        "{out}"
    );
    let (ok, out) = run(&["--changer", "nosuch"]);
    assert!(!ok && out.contains("NO_DEVICE_ERR"), "{out}");
    let (ok, out) = run(&["status", "--json"]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["elements"][2]["drive"], "vtape1");
    assert_eq!(v["elements"][2]["label"], "VT0003");
    assert_eq!(v["elements"][2]["source"], 1003);
}
