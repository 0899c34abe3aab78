//! The virtual changer on a large library: READ ELEMENT STATUS of every element with volume
//! tags, MOVE MEDIUM and MODE SENSE, on 10,000 slots holding 2,000 cartridges. Medians in ms.

use ndmpd::config::Config;
use ndmpd::scsi::changer::VirtualChanger;
use ndmpd::scsi::{CdbRequest, DataDir};
use ndmpd::tape::library::Library;
use std::sync::Arc;
use std::time::Instant;

fn req(cdb: &[u8], alloc: u32) -> CdbRequest {
    CdbRequest {
        cdb: cdb.to_vec(),
        dir: if alloc > 0 {
            DataDir::In(alloc)
        } else {
            DataDir::None
        },
        timeout_ms: 0,
    }
}

fn median_ms(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (slots, carts, rounds) = if bench {
        (10_000u16, 2_000usize, 20)
    } else {
        (200, 40, 2)
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config {
        data_dir: dir.path().to_owned(),
        ..Config::default()
    };
    cfg.library.cartridge_capacity = 1 << 20;
    cfg.library.slots = slots;
    cfg.apply_embedded_defaults();
    let lib = Library::new(&cfg);
    let t = Instant::now();
    lib.prepare(carts).unwrap();
    let prepare = t.elapsed().as_secs_f64() * 1e3;
    let mut c = VirtualChanger::open(Arc::new(lib), "changer0");

    let n = slots + 12;
    let res = [
        0xb8,
        0x10,
        0,
        0,
        (n >> 8) as u8,
        n as u8,
        0,
        0xff,
        0xff,
        0xff,
        0,
        0,
    ];
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..rounds {
        let t = Instant::now();
        let out = c.execute(&req(&res, 16 << 20));
        times.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(out.is_good());
        bytes = out.datain.len();
    }
    let res_ms = median_ms(times);

    // slot 3 (a spare) to the last slot and back
    let [hi, lo] = (1000 + slots).to_be_bytes();
    let there = [0xa5, 0, 0, 0, 0x03, 0xeb, hi, lo, 0, 0, 0, 0];
    let back = [0xa5, 0, 0, 0, hi, lo, 0x03, 0xeb, 0, 0, 0, 0];
    let mut times = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        assert!(c.execute(&req(&there, 0)).is_good());
        assert!(c.execute(&req(&back, 0)).is_good());
        times.push(t.elapsed().as_secs_f64() * 1e3 / 2.0);
    }
    let move_ms = median_ms(times);

    let mode = [0x1a, 0x08, 0x1d, 0, 255, 0];
    let t = Instant::now();
    for _ in 0..rounds * 10 {
        assert!(c.execute(&req(&mode, 255)).is_good());
    }
    let mode_ms = t.elapsed().as_secs_f64() * 1e3 / (rounds * 10) as f64;
    println!(
        "changer, {slots} slots, {carts} cartridges: first start {prepare:.0} ms; \
         READ ELEMENT STATUS (all, volume tags, {bytes} bytes) {res_ms:.2} ms; \
         MOVE MEDIUM {move_ms:.2} ms; MODE SENSE {mode_ms:.3} ms (medians)"
    );
}
