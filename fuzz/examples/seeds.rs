//! Writes the seed corpora under fuzz/seeds/: dump and tar images of small trees made by our
//! own writers, pcap fixtures, the example config and REST query strings from the tests.
//!
//! Run from fuzz/ as root (for the device node), with a fresh tmpfs on /tmp so that inode
//! numbers, and with them the dump's inode maps, stay small:
//! `unshare -m sh -c 'mount -t tmpfs none /tmp && cargo run --example seeds'`.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use ndmpd::format::dump::{write_dump, DumpOptions};
use ndmpd::format::tar::{write_tar, TarOptions};

/// A fixed time for every header date, so rerunning gives images that differ only in the
/// object times the file system chose.
const DATE: i64 = 1_764_000_000;

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("no NUL in a temp path")
}

/// One of each kind of object, a hard link and an xattr, in a few KiB.
fn kinds(root: &Path) {
    fs::create_dir_all(root.join("sub/empty")).unwrap();
    fs::write(root.join("a.txt"), b"hello, tape\n").unwrap();
    fs::write(root.join("sub/b.txt"), vec![b'b'; 300]).unwrap();
    fs::hard_link(root.join("a.txt"), root.join("sub/hard")).unwrap();
    symlink("../a.txt", root.join("sub/ln")).unwrap();
    // SAFETY: valid NUL-terminated paths; the calls only create nodes and set an xattr.
    unsafe {
        libc::mkfifo(cstr(&root.join("fifo")).as_ptr(), 0o640);
        // /dev/null's numbers; fails quietly when not root.
        libc::mknod(
            cstr(&root.join("null")).as_ptr(),
            libc::S_IFCHR | 0o600,
            libc::makedev(1, 3),
        );
        let value = b"seed";
        libc::lsetxattr(
            cstr(&root.join("a.txt")).as_ptr(),
            c"user.note".as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        );
    }
}

/// A file with a hole (one tmpfs page) between two data pages.
fn sparse(root: &Path) {
    use std::os::unix::fs::FileExt;
    fs::create_dir_all(root).unwrap();
    let f = fs::File::create(root.join("sparse")).unwrap();
    f.write_all_at(b"head", 0).unwrap();
    f.write_all_at(b"tail", 8 * 1024).unwrap();
}

/// Names long enough for pax path records and directories three deep.
fn long_names(root: &Path) {
    let deep = root.join("d1/d2/d3");
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("n".repeat(120)), b"long\n").unwrap();
    fs::write(root.join("d1/caf\u{e9} space"), b"utf-8\n").unwrap();
    symlink("t".repeat(110), root.join("d1/longlink")).unwrap();
}

fn one_file(root: &Path) {
    fs::create_dir_all(root).unwrap();
    fs::write(root.join("only"), b"x").unwrap();
}

fn dump_image(src: &Path) -> Vec<u8> {
    let opts = DumpOptions {
        dump_date: DATE,
        label: "seed".into(),
        ntrec: 1,
        ..DumpOptions::default()
    };
    let mut out = Vec::new();
    write_dump(src, &opts, &mut out, &mut |_| {}, &AtomicBool::new(false)).unwrap();
    out
}

fn tar_image(src: &Path) -> Vec<u8> {
    let opts = TarOptions {
        record_size: 512,
        ..TarOptions::default()
    };
    let mut out = Vec::new();
    write_tar(src, &opts, &mut out, &mut |_| {}, &AtomicBool::new(false)).unwrap();
    out
}

fn save(dir: &Path, name: &str, data: &[u8]) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(name), data).unwrap();
    println!("{} {}", dir.join(name).display(), data.len());
}

/// Query strings as tests/rest.rs sends them (without the `?`).
const QUERIES: &[&str] = &[
    "fields=*",
    "data.bytes_processed=%3C1&client_port=%3E0",
    "data.state=IDLE&mover.state=!active",
    "order_by=tape_device+desc,id+asc&fields=tape_device",
    "tape_device=vtape*&fields=tape_device",
    "tape_device=vtape0|vtape1&max_records=2&start.offset=1",
    "tape_device=!null&tape_mode=read&return_records=false",
    "state=success|failure&order_by=start_time",
    "progress.bytes=1..%3E5&fields=progress,session.id&return_timeout=15",
    "client_port=40001\n{\"client_port\":1.5,\"data\":{\"state\":[\"idle\",true]}}",
];

fn main() {
    let fuzz = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let seeds = fuzz.join("seeds");
    let tmp = tempfile::tempdir().unwrap();
    let trees: [(&str, fn(&Path)); 4] = [
        ("kinds", kinds),
        ("sparse", sparse),
        ("long-names", long_names),
        ("one-file", one_file),
    ];
    for (name, build) in trees {
        let src = tmp.path().join(name);
        fs::create_dir_all(&src).unwrap();
        build(&src);
        save(&seeds.join("dump_read"), name, &dump_image(&src));
        save(&seeds.join("tar_read"), name, &tar_image(&src));
    }

    let fixtures = fuzz.join("../pcap-fixtures");
    for f in [
        "auth-fail.pcap",
        "test-data.pcap",
        "query-text.pcap",
        "query-md5.pcapng",
    ] {
        save(
            &seeds.join("pcap_decode"),
            f,
            &fs::read(fixtures.join(f)).unwrap(),
        );
    }

    let config = fs::read(fuzz.join("../ndmpd.example.toml")).unwrap();
    save(&seeds.join("config_parse"), "example.toml", &config);
    save(
        &seeds.join("config_parse"),
        "minimal.toml",
        b"listen = [\"127.0.0.1:10000\"]\n[auth]\nmethods = [\"none\"]\n",
    );

    for (i, q) in QUERIES.iter().enumerate() {
        save(&seeds.join("rest_query"), &format!("q{i:02}"), q.as_bytes());
    }
}
