//! `ndmpd vtape` as an operator runs it: create, append, cat, inspect, list, load/unload,
//! protect, erase, import/export through the mail slot, the changer view, and refusal to
//! change a cartridge a session has open.

use ndmpd::config::Config;
use ndmpd::tape::library::Library;
use std::path::Path;
use std::process::{Command, Output};

fn vtape(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ndmpd"))
        .arg("vtape")
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The embedded default library, prepared as a first `serve` would, in `dir/data`.
fn default_library(dir: &Path) -> (std::path::PathBuf, Library) {
    let data = dir.join("data");
    let mut cfg = Config {
        data_dir: data.clone(),
        ..Config::default()
    };
    cfg.apply_embedded_defaults();
    let lib = Library::new(&cfg);
    lib.prepare(2).unwrap();
    (data, lib)
}

#[test]
fn cartridge_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let label = ok(&vtape(
        &data,
        &["create", "--label", "TST001", "--capacity", "8000000"],
    ));
    assert_eq!(
        label.trim(),
        "TST001 slot 1",
        "a new cartridge goes into a free slot"
    );
    assert!(!vtape(&data, &["create", "--label", "TST001"])
        .status
        .success());
    assert!(!vtape(&data, &["create", "--label", "../evil"])
        .status
        .success());

    let blob: Vec<u8> = (0..300_001u32).map(|i| (i * 31 % 251) as u8).collect();
    let f = dir.path().join("blob");
    std::fs::write(&f, &blob).unwrap();
    ok(&vtape(
        &data,
        &[
            "append",
            "TST001",
            f.to_str().unwrap(),
            "--record-size",
            "65536",
        ],
    ));
    ok(&vtape(
        &data,
        &[
            "append",
            "TST001",
            f.to_str().unwrap(),
            "--record-size",
            "1000",
        ],
    ));
    let cat = vtape(&data, &["cat", "TST001", "--file", "1"]).stdout;
    assert_eq!(cat, blob);
    assert!(!vtape(&data, &["cat", "TST001", "--file", "5"])
        .status
        .success());

    let inspect = ok(&vtape(&data, &["inspect", "TST001"]));
    assert!(inspect.contains("2 filemarks"), "{inspect}");
    assert!(inspect.contains("CRC check: ok"), "{inspect}");

    // a flipped payload byte is caught
    let path = data.join("vtl/cartridges/TST001.vtape");
    let mut raw = std::fs::read(&path).unwrap();
    let at = raw.len() / 3;
    raw[at] ^= 0x40;
    std::fs::write(&path, &raw).unwrap();
    let bad = vtape(&data, &["inspect", "TST001"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stdout).contains("CRC"));

    ok(&vtape(&data, &["erase", "TST001"]));
    let inspect = ok(&vtape(&data, &["inspect", "TST001"]));
    assert!(inspect.contains("0 filemarks"), "{inspect}");
}

#[test]
fn drives_and_locks() {
    let dir = tempfile::tempdir().unwrap();
    let (data, lib) = default_library(dir.path());
    let list = ok(&vtape(&data, &["list"]));
    assert!(list.contains("vtape0") && list.contains("vtape1"), "{list}");
    assert_eq!(
        list.lines().count(),
        5,
        "header + 2 loaded + 2 spares:\n{list}"
    );

    // a session's lock makes changes refuse; reads still work
    let path = lib.resolve("vtape0").unwrap();
    let held = lib.lock_cartridge(&path).unwrap();
    let e = vtape(&data, &["erase", "vtape0"]);
    assert!(!e.status.success());
    assert!(
        String::from_utf8_lossy(&e.stderr).contains("in use"),
        "{e:?}"
    );
    assert!(!vtape(&data, &["unload", "vtape0"]).status.success());
    ok(&vtape(&data, &["inspect", "vtape0"]));
    drop(held);

    let out = ok(&vtape(&data, &["unload", "vtape0"]));
    // the first drive's cartridge goes home to slot 1, kept free for it
    assert_eq!(out.trim(), "VT0001 slot 1");
    let label = "VT0001";
    assert!(
        !vtape(&data, &["load", "vtape1", label]).status.success(),
        "vtape1 is full"
    );
    ok(&vtape(&data, &["load", "vtape0", label]));
    ok(&vtape(&data, &["protect", "vtape0"]));
    assert!(ok(&vtape(&data, &["list"])).contains("write-protected"));
}

#[test]
fn mail_slot_and_library_view() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _lib) = default_library(dir.path());
    let fails = |args: &[&str]| {
        let o = vtape(&data, args);
        assert!(!o.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };

    // slots 1 and 2 wait for the drives' cartridges, 3 and 4 hold the spares, 5-8 fill up
    for (i, slot) in (5..=8).enumerate() {
        let out = ok(&vtape(&data, &["create", "--label", &format!("FILL{i}")]));
        assert_eq!(out.trim(), format!("FILL{i} slot {slot}"));
    }
    let out = ok(&vtape(&data, &["create", "--label", "EXTRA1"]));
    assert_eq!(
        out.trim(),
        "EXTRA1 outside the library (every slot is full)"
    );
    assert!(fails(&["export"]).contains("empty"));
    assert_eq!(
        ok(&vtape(&data, &["import", "EXTRA1"])).trim(),
        "EXTRA1 port 1"
    );
    assert!(fails(&["import", "EXTRA1"]).contains("already in the library"));
    assert!(fails(&["import", "NOSUCH"]).contains("no cartridge"));

    let view = ok(&vtape(&data, &["library"]));
    let row = |addr: &str| {
        view.lines()
            .find(|l| l.trim_start().starts_with(addr))
            .unwrap_or_else(|| panic!("no {addr} in\n{view}"))
            .to_string()
    };
    assert!(
        row("1 ").contains("vtape0") && row("1 ").contains("VT0001"),
        "{view}"
    );
    assert!(row("1 ").contains("1001 (slot 1)"), "{view}");
    assert!(
        row("101 ").contains("EXTRA1") && row("101 ").contains("imported"),
        "{view}"
    );
    assert!(row("1003 ").contains("VT0003"), "{view}");
    assert_eq!(view.lines().count(), 1 + 1 + 2 + 1 + 8, "{view}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&vtape(&data, &["library", "--json"]))).unwrap();
    assert_eq!(json[3]["address"], 101);
    assert_eq!(json[3]["cartridge"], "EXTRA1");

    assert_eq!(
        ok(&vtape(&data, &["export", "EXTRA1"])).trim(),
        "EXTRA1 outside the library"
    );
    assert!(ok(&vtape(&data, &["list"])).contains("outside"));
    // an unloaded drive's cartridge goes back to its home slot
    assert_eq!(
        ok(&vtape(&data, &["unload", "vtape1"])).trim(),
        "VT0002 slot 2"
    );
    assert!(fails(&["unload", "vtape1"]).contains("empty"));
    assert_eq!(
        ok(&vtape(&data, &["load", "vtape1", "EXTRA1"])).trim(),
        "EXTRA1 drive vtape1"
    );
}
