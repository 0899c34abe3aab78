//! ONC RPC record marking (RFC 5531 §11) as a tokio-util codec: each NDMP message is one
//! record of one or more fragments, each behind a 4-byte marker (last-fragment bit + length).

use super::header::{Header, Message};
use super::xdr::Xdr;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

const LAST_FRAGMENT: u32 = 0x8000_0000;

/// Default cap on one record (one message) received: 16 MiB.
pub const DEFAULT_MAX_RECORD: usize = 16 << 20;

/// Default size of the fragments we write. Wireshark's NDMP heuristic refuses fragments over
/// 1,000,000 bytes and NDMJOB masks fragment lengths to 24 bits, so stay well below both.
pub const DEFAULT_MAX_FRAGMENT: usize = 512 << 10;

/// Why a record could not be received or sent.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// A fragment marker announces a record longer than the receive limit.
    #[error("record of at least {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The record's length so far, the announced fragment included.
        size: u64,
        /// The receive limit.
        limit: usize,
    },
    /// The peer closed the stream in the middle of a record.
    #[error("stream ended inside a record ({buffered} bytes buffered)")]
    Truncated {
        /// Bytes of the unfinished record received.
        buffered: usize,
    },
    /// An outgoing message is longer than the limit; nothing was written.
    #[error("record of {size} bytes exceeds the limit of {limit} bytes; not sent")]
    TooLargeToSend {
        /// The message's length.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Splits a byte stream into records and frames outgoing records.
#[derive(Debug)]
pub struct RecordCodec {
    max_record: usize,
    max_fragment: usize,
    /// Payload of the fragments already received for the record being assembled.
    partial: BytesMut,
    /// Fragments consumed for the record being assembled, and for the last one returned.
    fragments: usize,
    last_fragments: usize,
}

impl Default for RecordCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_RECORD)
    }
}

impl RecordCodec {
    /// A codec that accepts and sends records of up to `max_record` bytes.
    pub fn new(max_record: usize) -> Self {
        RecordCodec {
            max_record,
            max_fragment: DEFAULT_MAX_FRAGMENT,
            partial: BytesMut::new(),
            fragments: 0,
            last_fragments: 0,
        }
    }

    /// Sets the largest fragment written (at least 4 bytes, at most 2^31 - 1).
    pub fn with_max_fragment(mut self, n: usize) -> Self {
        self.max_fragment = n.clamp(4, 0x7fff_ffff);
        self
    }

    /// The largest record accepted or sent, in bytes.
    pub fn max_record(&self) -> usize {
        self.max_record
    }

    /// How many fragments carried the record most recently decoded.
    pub fn last_fragments(&self) -> usize {
        self.last_fragments
    }

    /// Frames `payload` as one record into `dst`.
    pub fn frame(&self, payload: &[u8], dst: &mut BytesMut) -> Result<(), RecordError> {
        if payload.len() > self.max_record {
            return Err(RecordError::TooLargeToSend {
                size: payload.len(),
                limit: self.max_record,
            });
        }
        let fragments = payload.len().div_ceil(self.max_fragment).max(1);
        dst.reserve(payload.len() + 4 * fragments);
        if payload.is_empty() {
            dst.put_u32(LAST_FRAGMENT);
            return Ok(());
        }
        let mut chunks = payload.chunks(self.max_fragment).peekable();
        while let Some(chunk) = chunks.next() {
            let last = if chunks.peek().is_none() {
                LAST_FRAGMENT
            } else {
                0
            };
            dst.put_u32(last | chunk.len() as u32);
            dst.put_slice(chunk);
        }
        Ok(())
    }
}

impl Decoder for RecordCodec {
    type Item = Bytes;
    type Error = RecordError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, RecordError> {
        loop {
            if src.len() < 4 {
                return Ok(None);
            }
            let marker = u32::from_be_bytes([src[0], src[1], src[2], src[3]]);
            let len = (marker & !LAST_FRAGMENT) as usize;
            // Checked before waiting for (or reserving room for) the fragment, so a marker
            // announcing 2 GiB costs nothing.
            let size = self.partial.len() as u64 + len as u64;
            if size > self.max_record as u64 {
                return Err(RecordError::TooLarge {
                    size,
                    limit: self.max_record,
                });
            }
            if src.len() < 4 + len {
                src.reserve(4 + len - src.len());
                return Ok(None);
            }
            src.advance(4);
            let fragment = src.split_to(len);
            self.fragments += 1;
            if marker & LAST_FRAGMENT == 0 {
                self.partial.extend_from_slice(&fragment);
                continue;
            }
            self.last_fragments = std::mem::take(&mut self.fragments);
            if self.partial.is_empty() {
                // the common single-fragment record: no copy at all
                return Ok(Some(fragment.freeze()));
            }
            self.partial.extend_from_slice(&fragment);
            return Ok(Some(self.partial.split().freeze()));
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, RecordError> {
        match self.decode(src)? {
            Some(record) => Ok(Some(record)),
            None if src.is_empty() && self.partial.is_empty() => Ok(None),
            None => Err(RecordError::Truncated {
                buffered: src.len() + self.partial.len(),
            }),
        }
    }
}

impl Encoder<Bytes> for RecordCodec {
    type Error = RecordError;
    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), RecordError> {
        self.frame(&item, dst)
    }
}

impl Encoder<&[u8]> for RecordCodec {
    type Error = RecordError;
    fn encode(&mut self, item: &[u8], dst: &mut BytesMut) -> Result<(), RecordError> {
        self.frame(item, dst)
    }
}

impl Encoder<&Message> for RecordCodec {
    type Error = RecordError;
    /// Encodes the message straight behind a reserved marker, so a message that fits in one
    /// fragment (nearly all of them) is written without an intermediate buffer.
    fn encode(&mut self, msg: &Message, dst: &mut BytesMut) -> Result<(), RecordError> {
        let start = dst.len();
        dst.put_u32(0);
        msg.encode(dst);
        self.mark(start, dst)
    }
}

/// A message whose body is XDR already (a file-history post the batcher encoded): the
/// header, then the body's bytes as they are.
#[derive(Debug, Clone, Copy)]
pub struct Encoded<'a> {
    /// The message's header.
    pub header: &'a Header,
    /// Its body's XDR bytes.
    pub body: &'a [u8],
}

impl Encoder<Encoded<'_>> for RecordCodec {
    type Error = RecordError;
    fn encode(&mut self, msg: Encoded<'_>, dst: &mut BytesMut) -> Result<(), RecordError> {
        let start = dst.len();
        dst.reserve(4 + super::header::HEADER_LEN + msg.body.len());
        dst.put_u32(0);
        msg.header.encode(dst);
        dst.put_slice(msg.body);
        self.mark(start, dst)
    }
}

impl RecordCodec {
    /// Writes the marker reserved at `start` for the message encoded after it, or reframes
    /// the message as fragments when it is longer than one.
    fn mark(&self, start: usize, dst: &mut BytesMut) -> Result<(), RecordError> {
        let len = dst.len() - start - 4;
        if len <= self.max_fragment && len <= self.max_record {
            dst[start..start + 4].copy_from_slice(&(LAST_FRAGMENT | len as u32).to_be_bytes());
            return Ok(());
        }
        let body = dst.split_off(start + 4);
        dst.truncate(start);
        self.frame(&body, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(codec: &mut RecordCodec, wire: &[u8], step: usize) -> Vec<Bytes> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in wire.chunks(step.max(1)) {
            buf.extend_from_slice(chunk);
            while let Some(r) = codec.decode(&mut buf).unwrap() {
                out.push(r);
            }
        }
        assert!(codec.decode_eof(&mut buf).unwrap().is_none());
        out
    }

    #[test]
    fn multi_fragment_record_like_libtirpc() {
        // libtirpc's xdrrec writes 3996-byte fragments: 10 KB arrive as 3996+3996+2008
        let payload: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let codec = RecordCodec::default().with_max_fragment(3996);
        let mut wire = BytesMut::new();
        codec.frame(&payload, &mut wire).unwrap();
        assert_eq!(&wire[..4], &[0x00, 0x00, 0x0f, 0x9c]);
        assert_eq!(&wire[4000..4004], &[0x00, 0x00, 0x0f, 0x9c]);
        assert_eq!(&wire[8000..8004], &[0x80, 0x00, 0x07, 0xd8]);
        for step in [1, 3, 4000, 1 << 20] {
            let got = decode_all(&mut RecordCodec::default(), &wire, step);
            assert_eq!(got.len(), 1);
            assert_eq!(&got[0][..], &payload[..]);
        }
        let mut c = RecordCodec::default();
        let mut buf = wire.clone();
        assert!(c.decode(&mut buf).unwrap().is_some());
        assert_eq!(c.last_fragments(), 3);
    }

    #[test]
    fn huge_marker_is_rejected_before_buffering() {
        // last-fragment bit plus a length of 2 GiB - 1
        let mut codec = RecordCodec::default();
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 1, 2][..]);
        let err = codec.decode(&mut buf).unwrap_err();
        assert!(matches!(err, RecordError::TooLarge { .. }));
        assert!(
            buf.capacity() < 1024,
            "no room reserved for the announced fragment"
        );
    }

    #[test]
    fn limit_counts_all_fragments() {
        let mut codec = RecordCodec::new(100);
        let mut buf = BytesMut::new();
        buf.put_u32(60);
        buf.put_slice(&[0; 60]);
        buf.put_u32(LAST_FRAGMENT | 60);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(RecordError::TooLarge { size: 120, .. })
        ));
    }

    #[test]
    fn truncated_stream_is_an_error() {
        let mut codec = RecordCodec::default();
        let mut buf = BytesMut::from(&[0x80, 0, 0, 8, 1, 2, 3][..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert!(matches!(
            codec.decode_eof(&mut buf),
            Err(RecordError::Truncated { buffered: 7 })
        ));
    }

    #[test]
    fn empty_record_round_trips() {
        let codec = RecordCodec::default();
        let mut wire = BytesMut::new();
        codec.frame(&[], &mut wire).unwrap();
        assert_eq!(&wire[..], &[0x80, 0, 0, 0]);
        let got = decode_all(&mut RecordCodec::default(), &wire, 1);
        assert_eq!(got, vec![Bytes::new()]);
    }
}
