//! The 24-byte NDMP message header (spec §2.7) and whole messages: header plus body, with the
//! rules for which body follows which header.

use super::messages::{MessageCode, Reply, Request};
use super::types::NdmpError;
use super::xdr::{Limits, Xdr, XdrError, XdrReader};
use crate::{open_enum, xdr_struct};
use bytes::{Bytes, BytesMut};
use serde::Serialize;

open_enum! {
    /// `ndmp4_header_message_type`. Posts use REQUEST.
    pub struct MessageType {
        /// A request, or a post (a message that gets no reply).
        REQUEST = 0,
        /// The answer to the request whose sequence is in `reply_sequence`.
        REPLY = 1,
    }
}

xdr_struct! {
    /// `ndmp4_header`.
    pub struct Header {
        /// The sender's number for this message, one more than its previous message's.
        pub sequence: u32,
        /// When the message was sent, in seconds since the Unix epoch.
        pub time_stamp: u32,
        /// Request (or post) or reply.
        pub message_type: MessageType,
        /// Which message this is; names the body that follows.
        pub message_code: MessageCode,
        /// In a reply, the `sequence` of the request answered; 0 otherwise.
        pub reply_sequence: u32,
        /// In a reply, NO_ERR, or an error that replaces the body (NOT_SUPPORTED_ERR,
        /// XDR_DECODE_ERR...); NO_ERR in requests.
        pub error_code: NdmpError,
    }
}

/// Size of the header on the wire.
pub const HEADER_LEN: usize = 24;

impl Header {
    /// Whether this is the header of a reply.
    pub fn is_reply(&self) -> bool {
        self.message_type == MessageType::REPLY
    }
}

/// What follows the header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Body {
    /// A request or post.
    Request(Request),
    /// A reply whose header carries NO_ERR.
    Reply(Reply),
    /// A reply whose header carries an error: the spec says no body follows.
    Empty,
}

impl Body {
    /// Appends the body's XDR encoding; nothing for `Empty`.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Body::Request(r) => r.encode(out),
            Body::Reply(r) => r.encode(out),
            Body::Empty => {}
        }
    }

    /// The body as JSON, for `ndmpd pcap --json`; null for `Empty`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Body::Request(r) => r.to_json(),
            Body::Reply(r) => r.to_json(),
            Body::Empty => serde_json::Value::Null,
        }
    }
}

/// One NDMP message: the content of one RPC record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The 24-byte header.
    pub header: Header,
    /// What follows the header.
    pub body: Body,
}

/// Why a record is not a valid message. A bad header means the record must be dropped; a bad
/// body still has a header, so the sender can be answered XDR_DECODE_ERR on its sequence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// The record is shorter than a header.
    #[error("bad header: {0}")]
    Header(XdrError),
    /// The header's message type is neither REQUEST nor REPLY.
    #[error("bad message type {0:#x} in header")]
    MessageType(u32),
    /// The header is sound but the body does not decode as its message code's body.
    #[error("bad {} body: {err}", code_name(&.header.message_code))]
    Body {
        /// The header, for the XDR_DECODE_ERR reply.
        header: Header,
        /// What is wrong with the body.
        err: XdrError,
    },
}

fn code_name(c: &MessageCode) -> String {
    match c.name() {
        Some(n) => n.to_string(),
        None => format!("{:#x}", c.0),
    }
}

impl Message {
    /// Decodes one record with the default limits.
    pub fn decode(record: Bytes) -> Result<Message, MessageError> {
        Self::decode_with(record, Limits::default())
    }

    /// Decodes one record under `limits`. Fails if the header or the body does not decode or
    /// the body leaves bytes over.
    pub fn decode_with(record: Bytes, limits: Limits) -> Result<Message, MessageError> {
        Self::decode_version(record, limits, 4)
    }

    /// Decodes one record of a session speaking protocol `version` (3 or 4): v3 bodies that
    /// differ from v4's decode as `Request::V3` / `Reply::V3`.
    pub fn decode_version(
        record: Bytes,
        limits: Limits,
        version: u16,
    ) -> Result<Message, MessageError> {
        let v3 = version == 3;
        let mut r = XdrReader::with_limits(record, limits);
        let header = Header::decode(&mut r).map_err(MessageError::Header)?;
        let body = match header.message_type {
            MessageType::REQUEST if v3 => {
                super::messages::decode_request_v3(header.message_code, &mut r).map(Body::Request)
            }
            MessageType::REQUEST => Request::decode(header.message_code, &mut r).map(Body::Request),
            MessageType::REPLY if !header.error_code.is_ok() && r.remaining() == 0 => {
                Ok(Body::Empty)
            }
            MessageType::REPLY if v3 => {
                super::messages::decode_reply_v3(header.message_code, &mut r).map(Body::Reply)
            }
            MessageType::REPLY => Reply::decode(header.message_code, &mut r).map(Body::Reply),
            MessageType(other) => return Err(MessageError::MessageType(other)),
        };
        match body {
            Ok(body) => Ok(Message { header, body }),
            Err(err) => Err(MessageError::Body { header, err }),
        }
    }

    /// Appends the header and body, without the record mark.
    pub fn encode(&self, out: &mut BytesMut) {
        self.header.encode(out);
        self.body.encode(out);
    }

    /// The header and body in a fresh buffer, without the record mark.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(HEADER_LEN + 64);
        self.encode(&mut out);
        out.freeze()
    }

    /// A request or post with the given sequence number and time stamp.
    pub fn request(sequence: u32, time_stamp: u32, body: Request) -> Message {
        Message {
            header: Header {
                sequence,
                time_stamp,
                message_type: MessageType::REQUEST,
                message_code: body.code(),
                reply_sequence: 0,
                error_code: NdmpError::NO_ERR,
            },
            body: Body::Request(body),
        }
    }

    /// A reply to the request with sequence `reply_sequence`.
    pub fn reply(sequence: u32, time_stamp: u32, reply_sequence: u32, body: Reply) -> Message {
        Message {
            header: Header {
                sequence,
                time_stamp,
                message_type: MessageType::REPLY,
                message_code: body.code(),
                reply_sequence,
                error_code: NdmpError::NO_ERR,
            },
            body: Body::Reply(body),
        }
    }

    /// A reply that reports `error` in the header and carries no body (NOT_SUPPORTED for
    /// unknown codes, XDR_DECODE_ERR for undecodable bodies).
    pub fn header_error(
        sequence: u32,
        time_stamp: u32,
        request: &Header,
        error: NdmpError,
    ) -> Message {
        Message {
            header: Header {
                sequence,
                time_stamp,
                message_type: MessageType::REPLY,
                message_code: request.message_code,
                reply_sequence: request.sequence,
                error_code: error,
            },
            body: Body::Empty,
        }
    }
}
