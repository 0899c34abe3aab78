//! The st backend against a real drive (the virtual-tape tests cover the same semantics in CI).
//! It OVERWRITES the cartridge in that drive from its beginning. No CI machine has a drive, so
//! the test is `#[ignore]`d: `NDMPD_TEST_TAPE=/dev/nst0 cargo test --test st_tape -- --ignored`.

use ndmpd::tape::st::StTape;
use ndmpd::tape::{Spaced, TapeDevice, TapeError};
use std::path::PathBuf;

/// The drive named by NDMPD_TEST_TAPE; the test is `#[ignore]`d, so asking for it without
/// the variable is a mistake, not a reason to pass.
fn drive_path() -> PathBuf {
    PathBuf::from(std::env::var_os("NDMPD_TEST_TAPE").expect(
        "set NDMPD_TEST_TAPE=/dev/nstN to test a real st drive (the cartridge in it is overwritten)",
    ))
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn pos(t: &mut StTape) -> (Option<u32>, Option<u32>) {
    let s = t.status().expect("status");
    (s.file_num, s.block_no)
}

fn spaced(resid: u32, stopped: Option<TapeError>) -> Spaced {
    Spaced { resid, stopped }
}

/// One test, because st lets only one process (and one descriptor) open a drive.
#[test]
#[ignore = "needs a real st drive: NDMPD_TEST_TAPE=/dev/nstN cargo test --test st_tape -- --ignored"]
fn st_drive_semantics() {
    let path = drive_path();
    let mut t = StTape::open(&path, true).expect("open read-write");
    t.ready().expect("drive ready");
    t.rewind().expect("rewind");
    let s = t.status().expect("status");
    assert_eq!(
        (s.file_num, s.block_no),
        (Some(0), Some(0)),
        "BOT after rewind"
    );
    assert_eq!(s.block_size, 0, "variable-block mode");
    assert!(!s.write_protected);

    // File 0: records of several sizes; file 1: three small ones.
    let sizes = [1, 512, 4096, 65536, 65537, 262_144, (1 << 20) + 3];
    for (i, &n) in sizes.iter().enumerate() {
        let w = t.write_record(&pattern(n, i as u8)).expect("write");
        assert_eq!(w.bytes, n);
        assert!(!w.early_warning, "early warning at the start of the tape");
    }
    assert_eq!(pos(&mut t), (Some(0), Some(7)));
    t.write_filemarks(1).expect("filemark");
    for i in 0..3 {
        t.write_record(&pattern(1000, 100 + i)).expect("write");
    }
    t.flush().expect("flush mid-file");
    assert_eq!(
        pos(&mut t),
        (Some(1), Some(3)),
        "flush keeps the block number"
    );
    t.write_filemarks(1).expect("filemark");
    assert_eq!(pos(&mut t), (Some(2), Some(0)));
    t.flush().expect("flush");

    // Read back.
    t.rewind().expect("rewind");
    let mut buf = vec![0u8; 2 << 20];
    for (i, &n) in sizes.iter().enumerate() {
        assert_eq!(t.read_record(&mut buf).expect("read"), (n, n), "record {i}");
        assert!(buf[..n] == pattern(n, i as u8)[..], "record {i} data");
    }
    // A filemark reads as Eof and leaves the head before it: Eof again.
    assert_eq!(t.read_record(&mut buf), Err(TapeError::Eof));
    assert_eq!(t.read_record(&mut buf), Err(TapeError::Eof));
    assert_eq!(pos(&mut t), (Some(0), Some(7)));
    assert_eq!(t.space_filemarks(1).expect("fsf"), spaced(0, None));
    assert_eq!(pos(&mut t), (Some(1), Some(0)));

    // A short buffer truncates, reports the full length, and loses nothing after it.
    let mut small = [0u8; 100];
    assert_eq!(t.read_record(&mut small).expect("short read"), (1000, 100));
    assert!(small[..] == pattern(1000, 100)[..100]);
    assert_eq!(t.read_record(&mut buf).expect("read"), (1000, 1000));
    assert!(buf[..1000] == pattern(1000, 101)[..]);
    assert_eq!(pos(&mut t), (Some(1), Some(2)));

    // Records backwards, and a BSR that meets the filemark: EOT side, resid.
    assert_eq!(t.space_records(-2).expect("bsr"), spaced(0, None));
    assert_eq!(pos(&mut t), (Some(1), Some(0)));
    assert_eq!(
        t.space_records(-1).expect("bsr"),
        spaced(1, Some(TapeError::Eof))
    );
    assert_eq!(pos(&mut t), (Some(1), Some(0)));
    assert_eq!(t.read_record(&mut buf).expect("read"), (1000, 1000));
    assert!(buf[..1000] == pattern(1000, 100)[..]);

    // Records forwards into the filemark: BOT side, resid, and the next read meets it.
    assert_eq!(
        t.space_records(5).expect("fsr"),
        spaced(3, Some(TapeError::Eof))
    );
    assert_eq!(pos(&mut t), (Some(1), Some(3)));
    assert_eq!(t.read_record(&mut buf), Err(TapeError::Eof));
    assert_eq!(
        t.space_records(2).expect("fsr"),
        spaced(2, Some(TapeError::Eof))
    );

    // End of data.
    assert_eq!(t.space_filemarks(1).expect("fsf"), spaced(0, None));
    assert_eq!(pos(&mut t), (Some(2), Some(0)));
    assert_eq!(t.read_record(&mut buf), Err(TapeError::Eom));
    assert_eq!(
        t.space_filemarks(1).expect("fsf at blank"),
        spaced(1, Some(TapeError::Eom))
    );

    // Filemarks backwards: BOT side of the last one passed, then BOT with resid.
    t.rewind().expect("rewind");
    assert_eq!(t.space_filemarks(2).expect("fsf"), spaced(0, None));
    assert_eq!(t.space_filemarks(-2).expect("bsf"), spaced(0, None));
    assert_eq!(pos(&mut t).0, Some(0));
    assert_eq!(t.read_record(&mut buf), Err(TapeError::Eof));
    assert_eq!(
        t.space_filemarks(-5).expect("bsf to BOT"),
        spaced(5, Some(TapeError::Bot))
    );
    assert_eq!(pos(&mut t), (Some(0), Some(0)));
    assert_eq!(t.read_record(&mut buf).expect("first record"), (1, 1));
    t.rewind().expect("rewind");
    drop(t);

    // Read-only: reads work, writes are refused before reaching the drive.
    let mut t = StTape::open(&path, false).expect("open read-only");
    assert_eq!(t.read_record(&mut buf).expect("read"), (1, 1));
    assert!(matches!(t.write_record(b"x"), Err(TapeError::Io(_))));
    t.rewind().expect("rewind");
}
