//! `ndmpd pcap`: the NDMP messages of pcap/pcapng captures, one line or JSON object each,
//! with whatever could not be decoded reported on stderr.

use super::output::Stdout;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Decodes each capture's NDMP conversations on TCP `port` and prints one line (or, with
/// `json`, one JSON object) per message; damage goes to stderr. Exit status 1 when a file
/// cannot be read or holds undecodable NDMP.
pub fn run(files: &[PathBuf], port: u16, json: bool) -> ExitCode {
    let mut failed = false;
    // writes to it never fail: Stdout ends the process when the reader has gone
    let mut out = std::io::BufWriter::new(Stdout::lock());
    for path in files {
        let name = path.display().to_string();
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("{name}: {e}");
                failed = true;
                continue;
            }
        };
        let conv = ndmpd::pcap::decode_capture(&data, port);
        if let Some(e) = &conv.file_error {
            eprintln!(
                "{name}: {e} ({} message(s) decoded before it)",
                conv.events.len()
            );
        }
        if json {
            for e in &conv.events {
                let _ = writeln!(out, "{}", ndmpd::pcap::format_json(e, &name));
            }
        } else {
            let _ = writeln!(
                out,
                "{name}: {} NDMP connection(s) on port {port}, {} message(s)",
                conv.connections,
                conv.events.len()
            );
            if let Some(first) = conv.events.first() {
                let t0 = first.time;
                let _ = writeln!(out, "{}", ndmpd::pcap::header_line());
                for e in &conv.events {
                    let _ = writeln!(out, "{}", ndmpd::pcap::format_line(e, t0));
                }
            }
        }
        for e in conv.events.iter().filter(|e| e.outcome.is_err()) {
            if let Err(err) = &e.outcome {
                eprintln!(
                    "{name}: packet {}: connection {} {}: {err}",
                    e.packet,
                    e.conn,
                    e.direction.arrow()
                );
            }
        }
        for err in &conv.stream_errors {
            eprintln!("{name}: {err}");
        }
        if conv.failures() > 0 {
            failed = true;
        }
        if !json && conv.connections == 0 {
            eprintln!("{name}: no TCP traffic on port {port} (try --port)");
        }
    }
    let _ = out.flush();
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
