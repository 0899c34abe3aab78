//! `ndmpd vtape` as an operator runs it: create, append, cat, inspect, list, load/unload,
//! protect, erase, import/export through the mail slot, the changer view, and refusal to
//! change a cartridge a session has open; where `--config` and `--data-dir` may stand, sizes
//! with units, and the commands that refuse instead of doing harm.

mod common;

use ndmpd::config::Config;
use ndmpd::tape::library::Library;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn vtape(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ndmpd"))
        .arg("vtape")
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .unwrap()
}

/// `ndmpd ARGS`, with no standard input (so never a terminal).
fn ndmpd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ndmpd"))
        .args(args)
        .env_remove("NDMPD_PASSWORD")
        .output()
        .unwrap()
}

/// Asserts the exit status and returns stderr.
fn fails_with(o: &Output, code: i32) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(code), "{o:?}");
    err
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

    ok(&vtape(&data, &["erase", "--yes", "TST001"]));
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

/// A path as a TOML string.
fn toml_path(p: &Path) -> String {
    toml::Value::String(p.to_str().unwrap().into()).to_string()
}

#[test]
fn data_dir_and_config_before_or_after_the_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    ok(&ndmpd(&[
        "vtape",
        "create",
        "--label",
        "HERE01",
        "--data-dir",
        d,
    ]));
    let spellings: [&[&str]; 3] = [
        &["--data-dir", d, "vtape", "list"],
        &["vtape", "--data-dir", d, "list"],
        &["vtape", "list", "--data-dir", d],
    ];
    let first = ok(&ndmpd(spellings[0]));
    assert!(first.contains("HERE01"), "{first}");
    for args in &spellings[1..] {
        assert_eq!(ok(&ndmpd(args)), first, "{args:?}");
    }

    // the same with a config file that names the data directory
    let conf = dir.path().join("ndmpd.toml");
    std::fs::write(&conf, format!("data_dir = {}\n", toml_path(&data))).unwrap();
    let c = conf.to_str().unwrap();
    let spellings: [&[&str]; 3] = [
        &["--config", c, "vtape", "list", "--json"],
        &["vtape", "--config", c, "list", "--json"],
        &["vtape", "list", "--json", "--config", c],
    ];
    for args in spellings {
        let json: serde_json::Value = serde_json::from_str(&ok(&ndmpd(args))).unwrap();
        assert_eq!(json[0]["label"], "HERE01", "{args:?}");
    }

    // once is enough; a serve flag before `vtape`, or --data-dir before `dma`, means nothing
    let e = fails_with(
        &ndmpd(&["--data-dir", d, "vtape", "list", "--data-dir", d]),
        2,
    );
    assert!(e.contains("'--data-dir' is given twice"), "{e}");
    let e = fails_with(&ndmpd(&["--listen", "127.0.0.1:1", "vtape", "list"]), 2);
    assert!(e.contains("'--listen' cannot stand before `vtape`"), "{e}");
    let e = fails_with(&ndmpd(&["--data-dir", d, "dma", "query"]), 2);
    assert!(
        e.contains("'--data-dir' cannot stand before `dma`: it goes only with serve and vtape"),
        "{e}"
    );
}

/// Starts `ndmpd ARGS` (a serve spelling) on free loopback ports in `cwd`, waits for it to
/// say it listens, and stops it.
fn serve_once(cwd: &Path, args: &[&str]) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ndmpd"))
        .args(args)
        .args(["--listen", "127.0.0.1:0", "--rest-listen", "127.0.0.1:0"])
        .current_dir(cwd)
        .env_remove("NDMPD_PASSWORD")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut said = Vec::new();
    for line in lines {
        let line = line.unwrap();
        let up = line.contains("listening on");
        said.push(line);
        if up {
            break;
        }
    }
    let _ = child.kill();
    let status = child.wait().unwrap();
    assert!(
        said.iter().any(|l| l.contains("listening on")),
        "{args:?} never listened ({status}): {said:?}"
    );
}

#[test]
fn serve_takes_data_dir_before_or_after_serve() {
    let dir = tempfile::tempdir().unwrap();
    for (i, spelling) in ["no subcommand", "before serve", "after serve"]
        .iter()
        .enumerate()
    {
        let data = dir.path().join(format!("data{i}"));
        let d = data.to_str().unwrap();
        let args: Vec<&str> = match i {
            0 => vec!["--data-dir", d],
            1 => vec!["--data-dir", d, "serve"],
            _ => vec!["serve", "--data-dir", d],
        };
        serve_once(dir.path(), &args);
        // the first start made its state there: the password and the default library
        assert!(data.join("password").is_file(), "{spelling}");
        let list = ok(&vtape(&data, &["list"]));
        assert_eq!(list.lines().count(), 5, "{spelling}: {list}");
        assert!(list.contains("drive vtape0"), "{spelling}: {list}");
    }
    let conf = dir.path().join("ndmpd.toml");
    let data = dir.path().join("from-config");
    std::fs::write(&conf, format!("data_dir = {}\n", toml_path(&data))).unwrap();
    serve_once(dir.path(), &["--config", conf.to_str().unwrap(), "serve"]);
    assert!(data.join("password").is_file());
}

#[test]
fn a_missing_data_dir_is_an_error_not_an_empty_library() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("never-served");
    let f = dir.path().join("blob");
    std::fs::write(&f, b"x").unwrap();
    let file = f.to_str().unwrap();
    let commands: [&[&str]; 11] = [
        &["list"],
        &["list", "--json"],
        &["library"],
        &["inspect", "VT0001"],
        &["erase", "--yes", "VT0001"],
        &["cat", "VT0001"],
        &["append", "VT0001", file],
        &["load", "vtape0", "VT0001"],
        &["unload", "vtape0"],
        &["import", "VT0001"],
        &["protect", "VT0001"],
    ];
    for args in commands {
        let o = vtape(&data, args);
        let e = fails_with(&o, 1);
        assert!(o.stdout.is_empty(), "{args:?}: {o:?}");
        assert!(
            e.contains(&format!(
                "data directory {} does not exist (given by --data-dir)",
                data.display()
            )),
            "{args:?}: {e}"
        );
        assert!(
            e.contains("`ndmpd serve` creates it on first start"),
            "{args:?}: {e}"
        );
    }
    let e = fails_with(&vtape(&data, &["export"]), 1);
    assert!(e.contains("does not exist"), "{e}");
    assert!(!data.exists(), "nothing made it");

    // named by the config file: the words say so
    let conf = dir.path().join("ndmpd.toml");
    std::fs::write(&conf, format!("data_dir = {}\n", toml_path(&data))).unwrap();
    let e = fails_with(
        &ndmpd(&["vtape", "list", "--config", conf.to_str().unwrap()]),
        1,
    );
    assert!(
        e.contains(&format!("(data_dir in {})", conf.display())),
        "{e}"
    );

    // a path that is a file is not a data directory either
    let e = fails_with(&vtape(&f, &["list"]), 1);
    assert!(e.contains("is not a directory"), "{e}");

    // a config without data_dir leaves the default, which `vtape create` does not make
    let bare = dir.path().join("bare.toml");
    std::fs::write(&bare, "max_sessions = 4\n").unwrap();
    let default = ndmpd::config::default_data_dir();
    if default.exists() {
        eprintln!(
            "NOTE: {} exists here; the refusal to create it is not checked",
            default.display()
        );
        return;
    }
    let e = fails_with(
        &ndmpd(&["vtape", "create", "--config", bare.to_str().unwrap()]),
        1,
    );
    assert!(
        e.contains(&format!("{} sets no data_dir", bare.display())),
        "{e}"
    );
    assert!(
        e.contains("`vtape create` makes the data directory only when --data-dir or the config's data_dir names it"),
        "{e}"
    );
    assert!(!default.exists());
}

#[test]
fn sizes_take_units() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ok(&vtape(
        &data,
        &["create", "--label", "TEN", "--capacity", "10M"],
    ));
    let json: serde_json::Value =
        serde_json::from_str(&ok(&vtape(&data, &["list", "--json"]))).unwrap();
    assert_eq!(json[0]["label"], "TEN");
    assert_eq!(json[0]["info"]["capacity"], 10 << 20);

    let e = fails_with(&vtape(&data, &["create", "--capacity", "10Q"]), 2);
    assert!(e.contains("'10Q' is not a size"), "{e}");
    let e = fails_with(&vtape(&data, &["create", "--capacity", "1000"]), 1);
    assert!(e.contains("--capacity must be at least 1M"), "{e}");

    // 10k records: 25,000 bytes are two full records and a short one
    let blob: Vec<u8> = (0..25_000u32).map(|i| (i % 253) as u8).collect();
    let f = dir.path().join("blob");
    std::fs::write(&f, &blob).unwrap();
    let file = f.to_str().unwrap();
    ok(&vtape(
        &data,
        &["append", "TEN", file, "--record-size", "10k"],
    ));
    let inspect = ok(&vtape(&data, &["inspect", "TEN"]));
    assert!(
        inspect.contains("3 records") && inspect.contains("4520..10240"),
        "{inspect}"
    );
    assert_eq!(vtape(&data, &["cat", "TEN"]).stdout, blob);
    let e = fails_with(
        &vtape(&data, &["append", "TEN", file, "--record-size", "17M"]),
        1,
    );
    assert!(e.contains("--record-size must be 1 byte to 16 MiB"), "{e}");
    let e = fails_with(
        &vtape(&data, &["append", "TEN", file, "--record-size", "big"]),
        2,
    );
    assert!(e.contains("'big' is not a size"), "{e}");
}

#[test]
fn config_sizes_take_units() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let conf = dir.path().join("ndmpd.toml");
    std::fs::write(
        &conf,
        format!(
            "data_dir = {}\nmax_record = \"1M\"\n[library]\ncartridge_capacity = \"2M\"\n\
             [mover]\nmax_record_size = \"1M\"\n[admission]\nrecord_budget = \"64M\"\n",
            toml_path(&data)
        ),
    )
    .unwrap();
    let c = conf.to_str().unwrap();
    assert_eq!(
        ok(&ndmpd(&["vtape", "create", "--config", c])).trim(),
        "VT0001 slot 1"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&ndmpd(&["vtape", "list", "--json", "--config", c]))).unwrap();
    assert_eq!(json[0]["info"]["capacity"], 2 << 20);

    std::fs::write(
        &conf,
        format!(
            "data_dir = {}\n[library]\ncartridge_capacity = \"lots\"\n",
            toml_path(&data)
        ),
    )
    .unwrap();
    let e = fails_with(&ndmpd(&["vtape", "list", "--config", c]), 1);
    assert!(e.contains("'lots' is not a size"), "{e}");
}

/// A cartridge `LABEL` in a fresh library holding one tape file of `blob`.
fn cartridge_with(dir: &Path, label: &str, blob: &[u8]) -> std::path::PathBuf {
    let data = dir.join("data");
    ok(&vtape(&data, &["create", "--label", label]));
    let f = dir.join(format!("{label}.in"));
    std::fs::write(&f, blob).unwrap();
    ok(&vtape(&data, &["append", label, f.to_str().unwrap()]));
    data
}

#[test]
fn erase_of_a_cartridge_with_data_needs_yes() {
    let dir = tempfile::tempdir().unwrap();
    let blob: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let data = cartridge_with(dir.path(), "FULL01", &blob);

    let e = fails_with(&vtape(&data, &["erase", "FULL01"]), 1);
    assert!(
        e.contains("FULL01 (1 file, 97.7 KiB) holds data: not erased. Give --yes"),
        "{e}"
    );
    assert!(e.contains("standard input is not a terminal"), "{e}");
    assert_eq!(vtape(&data, &["cat", "FULL01"]).stdout, blob, "untouched");
    assert!(ok(&vtape(&data, &["inspect", "FULL01"])).contains("1 filemarks"));

    ok(&vtape(&data, &["erase", "--yes", "FULL01"]));
    let inspect = ok(&vtape(&data, &["inspect", "FULL01"]));
    assert!(
        inspect.contains("0 records, 0 bytes, 0 filemarks"),
        "{inspect}"
    );
    // a blank cartridge has nothing to lose: no question, no --yes
    ok(&vtape(&data, &["erase", "FULL01"]));
}

/// `ndmpd vtape --data-dir DATA erase CART` on a terminal (through script(1)), answering
/// `answer`; returns the exit code and what the terminal showed.
fn erase_on_a_terminal(data: &Path, cart: &str, answer: &str) -> (Option<i32>, String) {
    let cmd = format!(
        "{} vtape --data-dir '{}' erase {cart}",
        env!("CARGO_BIN_EXE_ndmpd"),
        data.display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // the terminal keeps the line until the program reads it
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{answer}\n").as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

#[test]
fn erase_asks_on_a_terminal() {
    if !common::require_tool("script", "bsdutils") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let blob = vec![0xa5u8; 3 << 20];
    let data = cartridge_with(dir.path(), "ASK01", &blob);

    let (code, screen) = erase_on_a_terminal(&data, "ASK01", "n");
    assert_eq!(code, Some(1), "{screen}");
    assert!(
        screen.contains("erase ASK01 (1 file, 3.0 MiB)? [y/N]"),
        "{screen}"
    );
    assert!(screen.contains("ASK01 not erased"), "{screen}");
    assert_eq!(vtape(&data, &["cat", "ASK01"]).stdout, blob, "untouched");

    let (code, screen) = erase_on_a_terminal(&data, "ASK01", "y");
    assert_eq!(code, Some(0), "{screen}");
    let inspect = ok(&vtape(&data, &["inspect", "ASK01"]));
    assert!(inspect.contains("0 filemarks"), "{inspect}");
}

#[test]
fn cat_past_the_last_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = cartridge_with(dir.path(), "TWO01", b"first");
    let f = dir.path().join("second");
    std::fs::write(&f, b"second").unwrap();
    ok(&vtape(&data, &["append", "TWO01", f.to_str().unwrap()]));
    assert_eq!(
        vtape(&data, &["cat", "TWO01", "--file", "1"]).stdout,
        b"second"
    );
    for n in ["2", "7"] {
        let o = vtape(&data, &["cat", "TWO01", "--file", n]);
        let e = fails_with(&o, 1);
        assert!(o.stdout.is_empty());
        assert!(
            e.contains(&format!(
                "TWO01: the cartridge has 2 tape files (0 to 1): there is no tape file {n}"
            )),
            "{e}"
        );
    }
    ok(&vtape(&data, &["erase", "--yes", "TWO01"]));
    let e = fails_with(&vtape(&data, &["cat", "TWO01"]), 1);
    assert!(e.contains("the cartridge is blank"), "{e}");
}

#[test]
fn json_flags_say_what_they_print() {
    for cmd in [
        &["vtape", "list"][..],
        &["vtape", "library"],
        &["dma", "query"],
        &["dma", "changer", "status"],
        &["pcap"],
    ] {
        let mut args = cmd.to_vec();
        args.push("--help");
        let help = ok(&ndmpd(&args));
        // clap puts the words after the flag, or on the next line when the help is long
        let mut lines = help
            .lines()
            .skip_while(|l| !l.trim_start().starts_with("--json"));
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("{cmd:?}: no --json in\n{help}"));
        let mut words = line.trim_start().trim_start_matches("--json").trim();
        if words.is_empty() {
            words = lines.next().unwrap_or_default().trim();
        }
        assert!(
            words.starts_with("Print") && words.contains("JSON"),
            "{cmd:?}: {line} {words}"
        );
    }
}
