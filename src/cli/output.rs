//! How the operator commands show things: every line through [`Stdout`], pretty JSON for
//! `--json`, and sizes in binary units for the tables of `ndmpd vtape`.

use std::io::{self, Write};

/// The exit status once standard output's reader has gone: 128 + SIGPIPE, what a shell
/// reports for `cat` or `ls` ended by a closed pipe. Rust ignores SIGPIPE, so the write
/// fails with EPIPE instead and the process says so with this status.
pub const CLOSED_PIPE_STATUS: i32 = 128 + libc::SIGPIPE;

/// Standard output for everything the commands print. A write never returns an error: when
/// the reader has gone (`ndmpd vtape list | head -1`) the process ends at once, silently,
/// with [`CLOSED_PIPE_STATUS`]; any other failure is said on stderr and ends it with exit
/// status 1. `println!` would panic instead, and ignoring the error would decode or list on
/// for nobody.
pub struct Stdout(io::StdoutLock<'static>);

impl Stdout {
    /// Standard output, locked for as long as this value lives.
    pub fn lock() -> Stdout {
        Stdout(io::stdout().lock())
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).or_else(fail)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().or_else(fail)
    }
}

/// Ends the process for a failed write to stdout; an interrupted one goes back to the caller,
/// whose `write_all` retries it.
fn fail<T>(e: io::Error) -> io::Result<T> {
    match e.kind() {
        io::ErrorKind::Interrupted => Err(e),
        io::ErrorKind::BrokenPipe => std::process::exit(CLOSED_PIPE_STATUS),
        _ => {
            eprintln!("ndmpd: cannot write to standard output: {e}");
            std::process::exit(1)
        }
    }
}

/// Writes out what is still buffered for stdout (a last line without a newline), so a
/// reader that has gone is noticed before the process reports success.
pub fn flush() {
    // cannot fail: Stdout ends the process instead
    let _ = Stdout::lock().flush();
}

/// `print!` onto [`Stdout`]: a closed pipe ends the process instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        // cannot fail: Stdout ends the process instead
        let _ = write!($crate::cli::output::Stdout::lock(), $($arg)*);
    }};
}

/// `println!` onto [`Stdout`]: a closed pipe ends the process instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        // cannot fail: Stdout ends the process instead
        let _ = writeln!($crate::cli::output::Stdout::lock(), $($arg)*);
    }};
}

pub(crate) use {out, outln};

/// Prints `v` as pretty JSON (the `--json` of the operator commands).
pub fn print_json<T: serde::Serialize>(v: &T) -> Result<(), String> {
    let text = serde_json::to_string_pretty(v).map_err(|e| format!("cannot format JSON: {e}"))?;
    outln!("{text}");
    Ok(())
}

/// Bytes in binary units with one decimal ("1.5 KiB"), whole bytes below 1 KiB. Unlike
/// `client::query::human_bytes` it stops at TiB, as `vtape list` always has.
pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(10 << 30), "10.0 GiB");
        assert_eq!(human(2048 << 40), "2048.0 TiB");
    }
}
