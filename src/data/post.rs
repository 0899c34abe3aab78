//! What the DATA server's worker threads hand their session (posts for the DMA, the estimate,
//! reads a recover needs, the end), shared by backup, recover and the history batcher.

use crate::format::dump::Summary;
use crate::wire::messages::LogMessagePost;
use crate::wire::types::*;
use crate::wire::{MessageCode, Request};
use bytes::Bytes;

/// What the backup thread hands the session, in order.
#[derive(Debug)]
pub enum Out {
    /// A post for the DMA (file history, log lines).
    Post(Request),
    /// A file-history post whose body the batcher wrote as XDR already.
    Fh {
        /// FH_ADD_FILE, FH_ADD_DIR or FH_ADD_NODE.
        code: MessageCode,
        /// The body's XDR bytes.
        body: Bytes,
        /// How many entries it carries.
        entries: u64,
    },
    /// About how many bytes the image will have, known once the tree is scanned.
    Estimate(u64),
    /// A recover needs these image bytes next: the session posts NOTIFY_DATA_READ.
    Read {
        /// The image offset of the first byte wanted.
        offset: u64,
        /// How many bytes; `i64::MAX` for the rest of the image.
        length: u64,
    },
    /// The end: the summary, or why it failed.
    Done(Result<Summary, String>),
}

impl Out {
    /// The file-history entries it carries, for the queue's metrics.
    pub fn fh_entries(&self) -> u64 {
        match self {
            Out::Post(r) => fh_entries(r),
            Out::Fh { entries, .. } => *entries,
            _ => 0,
        }
    }
}

/// The file-history entries `r` carries: the files, directories or nodes of an FH_ADD_* post.
pub fn fh_entries(r: &Request) -> u64 {
    let n = match r {
        Request::FhAddFile(p) => p.files.len(),
        Request::FhAddDir(p) => p.dirs.len(),
        Request::FhAddNode(p) => p.nodes.len(),
        _ => 0,
    };
    n as u64
}

/// A LOG_MESSAGE of `log_type` with `text`, tied to no request.
pub(crate) fn log(log_type: LogType, text: String) -> Request {
    Request::LogMessage(LogMessagePost {
        log_type,
        message_id: 0,
        entry: text.into(),
        associated_message_valid: HasAssociatedMessage::NO_ASSOCIATED_MESSAGE,
        associated_message_sequence: 0,
    })
}
