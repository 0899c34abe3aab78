//! Every `ndmpd` subcommand that prints, run with stdout a pipe nobody reads (`| head -0`):
//! it stops at the first write and exits 141 (128 + SIGPIPE), silently and without a panic.

mod common;

use bytes::BytesMut;
use common::pcapw::PcapWriter;
use ndmpd::config::Config;
use ndmpd::tape::library::Library;
use ndmpd::tape::vtape::Vtape;
use ndmpd::tape::TapeDevice;
use ndmpd::wire::header::Message;
use ndmpd::wire::messages::ConnectOpenRequest;
use ndmpd::wire::record::RecordCodec;
use ndmpd::wire::Request;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use tokio_util::codec::Encoder;

/// What a command whose reader has gone exits with: 128 + SIGPIPE, as a shell reports for
/// `cat` ended by a closed pipe.
const CLOSED_PIPE: i32 = 141;

/// Output this long takes many writes: hundreds of lines, each written on its own, and more
/// than two of the 8 KiB buffers `pcap` fills before writing.
const MANY_WRITES: usize = 16 << 10;

/// Storage slots of the libraries here: enough elements for `library` and `changer status`
/// to print more than [`MANY_WRITES`].
const SLOTS: u16 = 600;

/// `ndmpd` with `args`.
fn ndmpd(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ndmpd"));
    c.args(args).env_remove("NDMPD_PASSWORD");
    c
}

/// Runs `cmd` with stdout the write end of a pipe whose read end is closed before it starts,
/// so its first write to stdout fails with EPIPE. It must exit with [`CLOSED_PIPE`] and not
/// panic; returns its stderr.
fn into_closed_pipe(cmd: &mut Command) -> String {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = cmd.stdout(writer).stderr(Stdio::piped()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "{cmd:?} panicked:\n{err}");
    assert_eq!(
        out.status.code(),
        Some(CLOSED_PIPE),
        "{cmd:?}: {}\n{err}",
        out.status
    );
    err
}

/// [`into_closed_pipe`], and stderr must be empty: the command stops without a word.
fn silently_into_closed_pipe(cmd: &mut Command) {
    let err = into_closed_pipe(cmd);
    assert!(err.is_empty(), "{cmd:?} said:\n{err}");
}

/// Runs `cmd` with stdout read to the end; it must succeed and print at least `min` bytes.
fn prints(cmd: &mut Command, min: usize) -> Vec<u8> {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout.len() >= min,
        "{cmd:?} printed {} bytes, want {min} or more",
        out.stdout.len()
    );
    out.stdout
}

/// Runs `cmd` both ways: once read (succeeds, prints at least `min` bytes), once into a
/// closed pipe (exits 141 without a word).
fn both_ways(mut cmd: impl FnMut() -> Command, min: usize) {
    prints(&mut cmd(), min);
    silently_into_closed_pipe(&mut cmd());
}

/// A data directory of `SLOTS` slots, prepared as a first `serve` would, with a config file
/// that says so; returns the config file and the library.
fn big_library(dir: &Path) -> (PathBuf, Library) {
    let mut cfg = Config {
        data_dir: dir.join("data"),
        ..Config::default()
    };
    cfg.library.slots = SLOTS;
    cfg.apply_embedded_defaults();
    let file = dir.join("ndmpd.toml");
    std::fs::write(&file, toml::to_string(&cfg).unwrap()).unwrap();
    let lib = Library::new(&cfg);
    lib.prepare(2).unwrap();
    (file, lib)
}

#[test]
fn vtape_commands_stop_at_a_closed_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let (config, lib) = big_library(dir.path());
    let vtape = |args: &[&str]| {
        let mut c = ndmpd(&["vtape", "--config", config.to_str().unwrap()]);
        c.args(args);
        c
    };
    // one list line per cartridge, and every slot full (slots 1 and 2 are the drives')
    for _ in 0..SLOTS - 4 {
        lib.create_cartridge(None).unwrap();
    }
    // one inspect line per tape file, and a first file larger than a pipe holds
    let path = lib.resolve("VT0003").unwrap();
    let mut t = Vtape::open(&path, true).unwrap();
    t.write_record(&vec![0x5a; 1 << 20]).unwrap();
    for i in 0..400u32 {
        t.write_filemarks(1).unwrap();
        t.write_record(&i.to_be_bytes()).unwrap();
    }
    t.write_filemarks(1).unwrap();
    drop(t);

    both_ways(|| vtape(&["list"]), MANY_WRITES);
    both_ways(|| vtape(&["list", "--json"]), MANY_WRITES);
    both_ways(|| vtape(&["library"]), MANY_WRITES);
    both_ways(|| vtape(&["library", "--json"]), MANY_WRITES);
    both_ways(|| vtape(&["inspect", "VT0003"]), MANY_WRITES);
    both_ways(|| vtape(&["cat", "VT0003"]), 1 << 20);

    // one line each, printed once the change is made: the change stays
    silently_into_closed_pipe(&mut vtape(&["create", "--label", "PIPE01"]));
    let placed = |label: &str| lib.contents().find(label).is_some();
    assert!(!placed("PIPE01"), "outside: every slot is full");
    assert!(lib.resolve("PIPE01").is_some(), "create made no cartridge");
    silently_into_closed_pipe(&mut vtape(&["import", "PIPE01"]));
    assert!(placed("PIPE01"), "not imported");
    silently_into_closed_pipe(&mut vtape(&["export", "PIPE01"]));
    assert!(!placed("PIPE01"), "not exported");
    silently_into_closed_pipe(&mut vtape(&["unload", "vtape0"]));
    assert_eq!(lib.loaded().get("vtape0"), None, "not unloaded");
    silently_into_closed_pipe(&mut vtape(&["load", "vtape0", "VT0001"]));
    assert_eq!(lib.loaded()["vtape0"], "VT0001", "not loaded");
}

/// One CONNECT_OPEN request as a TCP payload.
fn connect_open(seq: u32) -> Vec<u8> {
    let m = Message::request(
        seq,
        1_790_000_000,
        Request::ConnectOpen(ConnectOpenRequest {
            protocol_version: 4,
        }),
    );
    let mut out = BytesMut::new();
    RecordCodec::default().encode(&m, &mut out).unwrap();
    out.to_vec()
}

#[test]
fn pcap_stops_at_a_closed_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = PcapWriter::new(true);
    for seq in 1..=2000 {
        w.chunk(0, true, &connect_open(seq));
    }
    let p = dir.path().join("many.pcap");
    std::fs::write(&p, &w.out).unwrap();
    let file = p.to_str().unwrap();
    both_ways(|| ndmpd(&["pcap", file]), MANY_WRITES);
    both_ways(|| ndmpd(&["pcap", "--json", file]), MANY_WRITES);
}

#[tokio::test(flavor = "multi_thread")]
async fn dma_commands_stop_at_a_closed_pipe() {
    const PW: &str = "pipe-pw";
    let t = common::start("ndmp", PW.as_bytes(), |c| c.library.slots = SLOTS).await;
    let server = t.addr.to_string();
    // the server goes right after the subcommand, before a changer action; the catalog is
    // the test's own, never the user's
    let catalog = t.dir.path().join("catalog.db");
    let dma = |args: &[&str]| {
        let mut c = ndmpd(&["dma", args[0], "--server", &server]);
        c.args(&args[1..])
            .env("NDMPD_PASSWORD", PW)
            .env("NDMPD_CATALOG", &catalog);
        c
    };
    let tree = t.dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    for i in 0..400 {
        std::fs::write(tree.join(format!("file-{i:03}")), i.to_string()).unwrap();
    }
    let (tree_s, dest) = (tree.to_str().unwrap(), t.dir.path().join("dest"));
    std::fs::create_dir(&dest).unwrap();
    let dest_s = dest.to_str().unwrap();

    tokio::task::block_in_place(|| {
        both_ways(|| dma(&["query"]), 1);
        both_ways(|| dma(&["query", "--json"]), 1);
        both_ways(|| dma(&["changer", "status"]), MANY_WRITES);
        both_ways(|| dma(&["changer", "status", "--json"]), MANY_WRITES);
        silently_into_closed_pipe(&mut dma(&["changer", "unload", "--tape", "vtape0"]));
        silently_into_closed_pipe(&mut dma(&["changer", "move", "1001", "1300"]));
        silently_into_closed_pipe(&mut dma(&["changer", "load", "1300", "--tape", "vtape0"]));
        let status = prints(&mut dma(&["changer", "status"]), 1);
        let status = String::from_utf8_lossy(&status);
        assert!(
            status
                .lines()
                .any(|l| l.contains("VT0001") && l.contains("vtape0")),
            "the moves did not happen:\n{status}"
        );

        // the job runs to its end; only the summary is lost
        silently_into_closed_pipe(&mut dma(&["backup", "--tape", "vtape0", tree_s]));
        let listed = prints(&mut dma(&["list", "--tape", "vtape0"]), MANY_WRITES);
        assert!(String::from_utf8_lossy(&listed).contains("/file-399 @"));
        silently_into_closed_pipe(&mut dma(&["list", "--tape", "vtape0"]));
        silently_into_closed_pipe(&mut dma(&["restore", "--tape", "vtape0", dest_s]));
        assert_eq!(std::fs::read(dest.join("file-399")).unwrap(), b"399");
    });
}

#[test]
fn serve_stops_at_a_closed_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // a hang here would be the bug: `timeout` ends it and passes 141 through
    let serve = |extra: &[&str]| {
        let mut c = Command::new("timeout");
        c.args(["-k", "5", "120", env!("CARGO_BIN_EXE_ndmpd"), "serve"])
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen", "127.0.0.1:0", "--rest-listen", "127.0.0.1:0"])
            .args(extra)
            .current_dir(dir.path())
            .env_remove("NDMPD_PASSWORD");
        c
    };
    // the first-start line with the new password, before anything listens
    into_closed_pipe(&mut serve(&[]));
    assert!(data.join("password").exists(), "no password was made");
    // the address lines, printed once the listeners are up
    into_closed_pipe(serve(&["--user", "op"]).env("NDMPD_PASSWORD", "op-pw"));
}
