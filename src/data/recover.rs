//! The recover driver: reads a dump image from the data connection on a thread of its own and
//! recreates the selected files under their destinations, reporting LOG_FILE per nlist entry.

use super::backup::Out;
use super::DataConn;
use crate::format::dump::reader::{self, Event, RecoverOptions};
use crate::wire::messages::{LogFilePost, LogMessagePost};
use crate::wire::types::*;
use crate::wire::Request;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// One recover run.
pub struct Job {
    pub opts: RecoverOptions,
    /// The nlist's original paths as the reader names them ("sub/b.txt"), with the name the
    /// DMA used, for one LOG_FILE each.
    pub nlist: Vec<(Vec<u8>, String)>,
    pub conn: DataConn,
    pub bytes: Arc<AtomicU64>,
    pub abort: Arc<AtomicBool>,
    pub out: mpsc::Sender<Out>,
}

/// Counts the image bytes taken off the data connection.
struct Counted<R> {
    inner: R,
    bytes: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn post(out: &mpsc::Sender<Out>, r: Request) {
    let _ = out.blocking_send(Out::Post(r));
}

/// Runs the recover to its end. Blocks: call it on its own thread.
pub fn run(job: Job) {
    let Job {
        opts,
        nlist,
        conn,
        bytes,
        abort,
        out,
    } = job;
    let mut events = |e: Event| match e {
        Event::Restored { path, ok, why } => {
            // one LOG_FILE per nlist entry (DMAs count them), none per file inside
            if let Some((_, name)) = nlist.iter().find(|(p, _)| *p == path) {
                let status = if ok {
                    RecoveryStatus::SUCCESSFUL
                } else {
                    RecoveryStatus::FAILED_UNDEFINED_ERROR
                };
                post(
                    &out,
                    Request::LogFile(LogFilePost {
                        name: name.as_str().into(),
                        recovery_status: status,
                    }),
                );
            }
            if let Some(w) = why.filter(|_| !ok) {
                post(
                    &out,
                    warning(format!("{}: {w}", String::from_utf8_lossy(&path))),
                );
            }
        }
        Event::Warning(w) => post(&out, warning(w)),
    };
    let result = match conn {
        DataConn::Tcp(s) => {
            let mut r = Counted { inner: &s, bytes };
            reader::read_dump(&mut r, &opts, &mut events, &abort)
        }
        DataConn::Local(mut end) => {
            let mut r = Counted {
                inner: &mut end,
                bytes,
            };
            reader::read_dump(&mut r, &opts, &mut events, &abort)
        }
    };
    let result = result
        .map(|s| crate::format::dump::Summary {
            bytes: s.bytes,
            files: s.files,
            dirs: s.dirs,
            skipped: s.skipped,
        })
        .map_err(|e| e.to_string());
    let _ = out.blocking_send(Out::Done(result));
}

fn warning(text: String) -> Request {
    Request::LogMessage(LogMessagePost {
        log_type: LogType::WARNING,
        message_id: 0,
        entry: text.into(),
        associated_message_valid: HasAssociatedMessage::NO_ASSOCIATED_MESSAGE,
        associated_message_sequence: 0,
    })
}
