//! Everything a session sends: replies, refusals with their LOG_MESSAGE, posts. It owns the
//! write half of the control connection and the sequence numbers, so no handler writes itself.

use super::msglog::{self, Dir};
use crate::error::{meaning, Refusal};
use crate::wire::header::{Header, Message, MessageType};
use crate::wire::messages::LogMessagePost;
use crate::wire::record::{Encoded, RecordCodec};
use crate::wire::types::{HasAssociatedMessage, LogType};
use crate::wire::{MessageCode, NdmpError, Reply, Request, XdrReader};
use bytes::Bytes;
use futures::SinkExt;
use std::time::SystemTime;
use tokio::net::tcp::OwnedWriteHalf;
use tokio_util::codec::FramedWrite;
use tracing::{info, warn};

/// The sending side of one control connection.
pub struct Outbox {
    sink: FramedWrite<OwnedWriteHalf, RecordCodec>,
    /// Sequence number of the last message we sent.
    seq: u32,
    /// The request the last LOG_MESSAGE was about: its error reply has its words already.
    explained: Option<u32>,
    /// The protocol version agreed by CONNECT_OPEN: what goes out is rewritten for it.
    version: u16,
}

fn now() -> u32 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

impl Outbox {
    /// An outbox writing records with `codec`'s framing.
    pub fn new(write: OwnedWriteHalf, codec: RecordCodec) -> Outbox {
        Outbox {
            sink: FramedWrite::new(write, codec),
            seq: 0,
            explained: None,
            // v4 until CONNECT_OPEN agrees on another
            version: 4,
        }
    }

    /// The session's protocol version: how its records are decoded and its messages sent.
    pub fn version(&self) -> u16 {
        self.version
    }

    /// Switches the session to protocol `version` (CONNECT_OPEN accepted it).
    pub fn set_version(&mut self, version: u16) {
        self.version = version;
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    async fn send(&mut self, msg: Message) -> std::io::Result<()> {
        // the servers build v4 values; a v3 session gets their v3 form
        let msg = if self.version == crate::wire::v3::VERSION {
            crate::wire::v3::downgrade(msg)
        } else {
            msg
        };
        msglog::message(Dir::Send, &msg);
        self.sink
            .send(&msg)
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
    }

    /// Sends a request of ours: a NOTIFY_*, LOG_* or FH_* post.
    pub async fn post(&mut self, body: Request) -> std::io::Result<()> {
        let seq = self.next_seq();
        self.send(Message::request(seq, now(), body)).await
    }

    /// Sends a post whose body is XDR already (a file-history batch): the header is ours,
    /// the body goes out as it is, the same in v3 and v4.
    pub async fn post_encoded(&mut self, code: MessageCode, body: Bytes) -> std::io::Result<()> {
        let seq = self.next_seq();
        let header = Header {
            sequence: seq,
            time_stamp: now(),
            message_type: MessageType::REQUEST,
            message_code: code,
            reply_sequence: 0,
            error_code: NdmpError::NO_ERR,
        };
        if tracing::enabled!(target: "ndmpd::ndmp", tracing::Level::DEBUG) {
            // the log shows it as any other post: decoded again, only when someone looks
            if let Ok(r) = Request::decode(code, &mut XdrReader::new(body.clone())) {
                msglog::message(Dir::Send, &Message::request(seq, header.time_stamp, r));
            }
        }
        self.sink
            .send(Encoded {
                header: &header,
                body: &body,
            })
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
    }

    /// Answers `req` with `body`. An error in the body always goes with words: when no
    /// LOG_MESSAGE about `req` was posted, one saying what the code means is posted first,
    /// so no refusal reaches a DMA bare.
    pub async fn reply(&mut self, req: &Header, body: Reply) -> std::io::Result<()> {
        if let Some(error) = body.error().filter(|e| !e.is_ok()) {
            if self.explained != Some(req.sequence) {
                let r = Refusal::new(error, meaning(error));
                warn!(
                    "{:?} refused {error:?} without words of its own: {}",
                    req.message_code, r.why
                );
                self.log(log_type(error), &r.why, Some(req)).await?;
            }
        }
        self.explained = None;
        let seq = self.next_seq();
        self.send(Message::reply(seq, now(), req.sequence, body))
            .await
    }

    /// The reply body of `req` carrying only `error`, in the session's version.
    fn error_body(&self, req: &Header, error: NdmpError) -> Option<Reply> {
        let v3 = (self.version == crate::wire::v3::VERSION)
            .then(|| crate::wire::v3::V3Reply::with_error(req.message_code, error))
            .flatten();
        v3.map(Reply::V3)
            .or_else(|| Reply::with_error(req.message_code, error))
    }

    /// Answers `req` with NO_ERR (nothing, for a request without a reply).
    pub async fn ok(&mut self, req: &Header) -> std::io::Result<()> {
        match self.error_body(req, NdmpError::NO_ERR) {
            Some(body) => self.reply(req, body).await,
            None => Ok(()),
        }
    }

    /// Answers `req` with the refusal's error in the reply body (the spec's preferred form,
    /// and one every dissector decodes), after a LOG_MESSAGE saying why.
    pub async fn refuse(&mut self, req: &Header, r: Refusal) -> std::io::Result<()> {
        match self.error_body(req, r.error) {
            Some(body) => self.refuse_with(req, body, r).await,
            None => self.refuse_in_header(req, r).await,
        }
    }

    /// Answers `req` with `body`, which carries the refusal's code and whatever else the
    /// reply of that request must say (a residue, a count), after the LOG_MESSAGE.
    pub async fn refuse_with(
        &mut self,
        req: &Header,
        body: Reply,
        r: Refusal,
    ) -> std::io::Result<()> {
        self.explain(req, &r).await?;
        self.reply(req, body).await
    }

    /// Logs the refusal on the server and posts its words to the DMA, tied to `req`.
    async fn explain(&mut self, req: &Header, r: &Refusal) -> std::io::Result<()> {
        let what = req.message_code;
        if quiet(r.error) {
            info!("{what:?} refused {:?}: {}", r.error, r.why);
        } else {
            warn!("{what:?} refused {:?}: {}", r.error, r.why);
        }
        self.log(log_type(r.error), &r.why, Some(req)).await
    }

    /// Answers with the error in the header and no body: for codes without a reply layout
    /// and bodies that cannot be decoded.
    pub async fn refuse_in_header(&mut self, req: &Header, r: Refusal) -> std::io::Result<()> {
        self.explain(req, &r).await?;
        let seq = self.next_seq();
        self.send(Message::header_error(seq, now(), req, r.error))
            .await
    }

    /// Posts a LOG_MESSAGE, tied to the request `about` when there is one.
    pub async fn log(
        &mut self,
        log_type: LogType,
        text: &str,
        about: Option<&Header>,
    ) -> std::io::Result<()> {
        let (associated_message_valid, associated_message_sequence) = match about {
            Some(h) => {
                self.explained = Some(h.sequence);
                (HasAssociatedMessage::HAS_ASSOCIATED_MESSAGE, h.sequence)
            }
            None => (HasAssociatedMessage::NO_ASSOCIATED_MESSAGE, 0),
        };
        self.post(Request::LogMessage(LogMessagePost {
            log_type,
            message_id: 0,
            entry: text.into(),
            associated_message_valid,
            associated_message_sequence,
        }))
        .await
    }
}

/// Codes that report a condition of the tape (a filemark, the end of the medium) rather than
/// a failure: their words are a warning, not an error.
fn log_type(e: NdmpError) -> LogType {
    match e {
        NdmpError::EOF_ERR | NdmpError::EOM_ERR => LogType::WARNING,
        _ => LogType::ERROR,
    }
}

/// Refusals the DMA brought on itself (arguments, state, names) are logged at info; device,
/// memory and unexplained failures at warn, as they may need the operator.
fn quiet(e: NdmpError) -> bool {
    !matches!(
        e,
        NdmpError::IO_ERR
            | NdmpError::NO_MEM_ERR
            | NdmpError::UNDEFINED_ERR
            | NdmpError::XDR_DECODE_ERR
            | NdmpError::XDR_ENCODE_ERR
            | NdmpError::TIMEOUT_ERR
            | NdmpError::NOT_AUTHORIZED_ERR
    )
}
