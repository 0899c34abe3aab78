//! The `ndmpd` command line: the NDMP server and its operator tools (`pcap` decodes captured
//! NDMP conversations).

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "ndmpd",
    version,
    about = "NDMP v4 server and tape mover engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decode the NDMP messages in pcap/pcapng captures, one line each.
    Pcap {
        /// Capture files (pcap or pcapng, e.g. from `tcpdump -w` or Wireshark).
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
        /// TCP port of the NDMP server in the capture.
        #[arg(long, default_value_t = 10000)]
        port: u16,
        /// One JSON object per message, with the decoded body.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Pcap { files, port, json } => pcap(&files, port, json),
    }
}

fn pcap(files: &[std::path::PathBuf], port: u16, json: bool) -> ExitCode {
    use std::io::Write;
    let mut failed = false;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
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
