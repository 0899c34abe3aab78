//! Throughput of the tar writer against GNU tar on the same trees, both writing into a pipe
//! to `cat >/dev/null`, page cache warm: four large files (1 GiB with `--bench`), then
//! small files of 1-8 KiB, 100 to a directory (20,000 with `--bench`).

use ndmpd::format::tar::{write_tar, TarOptions};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (mib_per_file, rounds) = if bench { (256, 3) } else { (4, 1) };
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let block: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for i in 0..4 {
        let mut f =
            std::io::BufWriter::new(std::fs::File::create(src.join(format!("big{i}"))).unwrap());
        for _ in 0..mib_per_file {
            f.write_all(&block).unwrap();
        }
    }
    let small = tmp.path().join("small");
    let nsmall = if bench { 20_000 } else { 500 };
    for i in 0..nsmall {
        let dir = small.join(format!("d{:03}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir_all(&dir).unwrap();
        }
        let len = 1024 + (i * 7919) % 7168;
        std::fs::write(dir.join(format!("f{i:05}")), &block[..len]).unwrap();
    }
    for (what, tree) in [("4 large files", &src), ("small files", &small)] {
        compare(what, tree, rounds);
    }
}

/// Runs both writers on `src` `rounds` times, after one warm-up of ours.
fn compare(what: &str, src: &std::path::Path, rounds: u32) {
    let ours = || -> (Duration, u64) {
        let mut cat = Command::new("sh")
            .args(["-c", "cat >/dev/null"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let t = Instant::now();
        let mut stdin = cat.stdin.take().unwrap();
        let sum = write_tar(
            src,
            &TarOptions::default(),
            &mut stdin,
            &mut |_| {},
            &AtomicBool::new(false),
        )
        .unwrap();
        drop(stdin);
        cat.wait().unwrap();
        (t.elapsed(), sum.bytes)
    };
    let gnu = || -> Duration {
        let t = Instant::now();
        let st = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "tar cf - -C '{}' . | cat >/dev/null",
                src.display()
            ))
            .status()
            .unwrap();
        assert!(st.success());
        t.elapsed()
    };
    let gib = f64::from(1u32 << 30);
    ours();
    for _ in 0..rounds {
        let (d, bytes) = ours();
        let g = gnu();
        println!(
            "tar of {what}, {} MiB: write_tar {:.2} GiB/s ({d:?}), GNU tar {:.2} GiB/s ({g:?})",
            bytes >> 20,
            bytes as f64 / gib / d.as_secs_f64(),
            bytes as f64 / gib / g.as_secs_f64()
        );
    }
}
