//! Everything a session sends: replies, refusals with their LOG_MESSAGE, posts. It owns the
//! write half of the control connection and the sequence numbers, so no handler writes itself.

use crate::error::Refusal;
use crate::wire::header::{Header, Message};
use crate::wire::messages::LogMessagePost;
use crate::wire::record::RecordCodec;
use crate::wire::types::{HasAssociatedMessage, LogType};
use crate::wire::{NdmpError, Reply, Request};
use futures::SinkExt;
use std::time::SystemTime;
use tokio::net::tcp::OwnedWriteHalf;
use tokio_util::codec::FramedWrite;

/// The sending side of one control connection.
pub struct Outbox {
    sink: FramedWrite<OwnedWriteHalf, RecordCodec>,
    /// Sequence number of the last message we sent.
    seq: u32,
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
        }
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    async fn send(&mut self, msg: Message) -> std::io::Result<()> {
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

    /// Answers `req` with `body`.
    pub async fn reply(&mut self, req: &Header, body: Reply) -> std::io::Result<()> {
        let seq = self.next_seq();
        self.send(Message::reply(seq, now(), req.sequence, body))
            .await
    }

    /// Answers `req` with NO_ERR (nothing, for a request without a reply).
    pub async fn ok(&mut self, req: &Header) -> std::io::Result<()> {
        match Reply::with_error(req.message_code, NdmpError::NO_ERR) {
            Some(body) => self.reply(req, body).await,
            None => Ok(()),
        }
    }

    /// Answers `req` with the refusal's error in the reply body (the spec's preferred form,
    /// and one every dissector decodes), after a LOG_MESSAGE saying why.
    pub async fn refuse(&mut self, req: &Header, r: Refusal) -> std::io::Result<()> {
        match Reply::with_error(req.message_code, r.error) {
            Some(body) => {
                self.log(LogType::ERROR, &r.why, Some(req)).await?;
                self.reply(req, body).await
            }
            None => self.refuse_in_header(req, r).await,
        }
    }

    /// Answers with the error in the header and no body: for codes without a reply layout
    /// and bodies that cannot be decoded.
    pub async fn refuse_in_header(&mut self, req: &Header, r: Refusal) -> std::io::Result<()> {
        self.log(LogType::ERROR, &r.why, Some(req)).await?;
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
            Some(h) => (HasAssociatedMessage::HAS_ASSOCIATED_MESSAGE, h.sequence),
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
