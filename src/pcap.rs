//! NDMP conversations out of packet captures: the engine behind `ndmpd pcap`. Finds the TCP
//! connections to the NDMP port, splits each direction into records and decodes every message.

use crate::capture::{self, Flow, Timestamp};
use crate::wire::header::{Body, Message, MessageError};
use crate::wire::record::{RecordCodec, RecordError};
use crate::wire::xdr::{hex, Limits};
use crate::wire::NdmpError;
use bytes::BytesMut;
use std::fmt::Write as _;
use std::net::SocketAddr;
use tokio_util::codec::Decoder;

/// Which way a message travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the DMA (client) to the NDMP server.
    ToServer,
    /// From the NDMP server to the DMA.
    ToClient,
}

impl Direction {
    /// The direction as printed in the message column: `D>S` or `S>D`.
    pub fn arrow(self) -> &'static str {
        match self {
            Direction::ToServer => "D>S",
            Direction::ToClient => "S>D",
        }
    }
}

/// One decoded message, or the reason a record or stream could not be decoded.
#[derive(Debug, Clone)]
pub struct Event {
    /// Frame number (1-based) of the packet that completed the record.
    pub packet: u64,
    /// When that packet was captured.
    pub time: Timestamp,
    /// Connection number, 1-based, in order of first appearance.
    pub conn: usize,
    /// The DMA's end of the connection.
    pub client: SocketAddr,
    /// The NDMP server's end (the one on the NDMP port).
    pub server: SocketAddr,
    /// Which way the record travelled.
    pub direction: Direction,
    /// The record as received (the message without its fragment markers).
    pub record: bytes::Bytes,
    /// How many fragments carried it.
    pub fragments: usize,
    /// The decoded message, or why the record is not one (with its first bytes in hex).
    pub outcome: Result<Message, String>,
}

/// Everything found in one capture.
#[derive(Debug, Default)]
pub struct Conversation {
    /// Decoded messages and decode failures, in capture order.
    pub events: Vec<Event>,
    /// Stream-level problems (missing bytes, a record cut off by the end of the capture).
    pub stream_errors: Vec<String>,
    /// How many distinct (client, server) address pairs talk on the NDMP port; `conn`
    /// counts them.
    pub connections: usize,
    /// The capture file itself is damaged at this point; the packets before it were decoded.
    pub file_error: Option<capture::CaptureError>,
}

impl Conversation {
    /// The messages that decoded, in capture order.
    pub fn messages(&self) -> impl Iterator<Item = &Message> {
        self.events.iter().filter_map(|e| e.outcome.as_ref().ok())
    }

    /// How many things went wrong: undecodable records, stream errors and a damaged file.
    pub fn failures(&self) -> usize {
        self.events.iter().filter(|e| e.outcome.is_err()).count()
            + self.stream_errors.len()
            + usize::from(self.file_error.is_some())
    }
}

/// Reads a pcap or pcapng file's bytes and decodes the NDMP traffic on `port`. A damaged file
/// still yields every message in the packets before the damage.
pub fn decode_capture(file: &[u8], port: u16) -> Conversation {
    let (segments, file_error) = capture::read_tcp_segments_partial(file);
    let segments: Vec<_> = segments
        .into_iter()
        .filter(|s| s.src.port() == port || s.dst.port() == port)
        .collect();
    let flows = capture::reassemble(&segments);
    let mut conv = Conversation {
        file_error,
        ..Conversation::default()
    };
    let mut conns: Vec<(SocketAddr, SocketAddr)> = Vec::new();
    for flow in &flows {
        let (client, server, direction) = if flow.dst.port() == port {
            (flow.src, flow.dst, Direction::ToServer)
        } else {
            (flow.dst, flow.src, Direction::ToClient)
        };
        let conn = match conns.iter().position(|c| *c == (client, server)) {
            Some(i) => i + 1,
            None => {
                conns.push((client, server));
                conns.len()
            }
        };
        decode_flow(flow, conn, client, server, direction, &mut conv);
    }
    conv.connections = conns.len();
    conv.events.sort_by_key(|e| {
        (
            e.time.secs,
            e.time.nanos,
            e.packet,
            e.direction == Direction::ToClient,
        )
    });
    redecode_versions(&mut conv.events);
    conv
}

/// Decodes again, as NDMP v3, the messages of every connection whose CONNECT_OPEN(3) was
/// accepted: the version is a property of the session, learnt from its conversation.
fn redecode_versions(events: &mut [Event]) {
    use crate::wire::messages::{Reply, Request};
    // per connection: the version asked for, and the one agreed
    let mut asked: std::collections::HashMap<usize, u16> = Default::default();
    let mut agreed: std::collections::HashMap<usize, u16> = Default::default();
    for e in events.iter_mut() {
        let version = agreed.get(&e.conn).copied().unwrap_or(4);
        if version != 4 {
            e.outcome = Message::decode_version(e.record.clone(), Limits::default(), version)
                .map_err(|err| describe(&err, &e.record));
        }
        let Ok(m) = &e.outcome else { continue };
        match &m.body {
            Body::Request(Request::ConnectOpen(r)) => {
                asked.insert(e.conn, r.protocol_version);
            }
            Body::Reply(Reply::ConnectOpen(r)) if r.error.is_ok() => {
                if let Some(v) = asked.get(&e.conn) {
                    agreed.insert(e.conn, *v);
                }
            }
            _ => {}
        }
    }
}

fn decode_flow(
    flow: &Flow,
    conn: usize,
    client: SocketAddr,
    server: SocketAddr,
    direction: Direction,
    conv: &mut Conversation,
) {
    let where_ = format!("connection {conn} {client} {}", direction.arrow());
    let mut codec = RecordCodec::new(crate::wire::record::DEFAULT_MAX_RECORD);
    let mut buf = BytesMut::new();
    let mut gaps = flow.gaps.iter().peekable();
    for chunk in &flow.chunks {
        if let Some(gap) = gaps.next_if(|g| g.offset <= chunk.offset) {
            // After a hole the record boundaries are lost; stop rather than guess.
            conv.stream_errors.push(format!(
                "{where_}: {} bytes missing from the capture after packet {}; rest of this stream not decoded",
                gap.missing_bytes, gap.after_packet
            ));
            return;
        }
        buf.extend_from_slice(&chunk.data);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(record)) => {
                    let outcome = Message::decode_with(record.clone(), Limits::default())
                        .map_err(|e| describe(&e, &record));
                    conv.events.push(Event {
                        packet: chunk.packet,
                        time: chunk.time,
                        conn,
                        client,
                        server,
                        direction,
                        record,
                        fragments: codec.last_fragments(),
                        outcome,
                    });
                }
                Ok(None) => break,
                Err(e) => {
                    conv.stream_errors.push(format!(
                        "{where_}: packet {}: {e}; rest of this stream not decoded",
                        chunk.packet
                    ));
                    return;
                }
            }
        }
    }
    if let Some(gap) = gaps.next() {
        conv.stream_errors.push(format!(
            "{where_}: {} bytes missing from the capture after packet {}",
            gap.missing_bytes, gap.after_packet
        ));
    } else if let Err(RecordError::Truncated { buffered }) = codec.decode_eof(&mut buf) {
        let last = flow.chunks.last().map(|c| c.packet).unwrap_or(0);
        conv.stream_errors.push(format!(
            "{where_}: capture ends inside a record after packet {last} ({buffered} bytes of it present)"
        ));
    }
}

fn describe(e: &MessageError, record: &[u8]) -> String {
    let head = &record[..record.len().min(32)];
    format!("{e} (record of {} bytes: {}…)", record.len(), hex(head))
}

/// The column titles matching [`format_line`].
pub fn header_line() -> String {
    format!(
        "{:>6} {:>11} {:<3} {:<3} {:<8} {:<8} {:<28} {:<7} {:<18} detail",
        "packet", "time", "con", "dir", "sequence", "reply to", "message", "type", "error"
    )
}

/// One line per message, for people.
pub fn format_line(e: &Event, t0: Timestamp) -> String {
    let dt = (e.time.secs - t0.secs) as f64 + (e.time.nanos as f64 - t0.nanos as f64) / 1e9;
    let mut s = format!(
        "{:>6} {:>11.6} c{:<2} {:<3}",
        e.packet,
        dt,
        e.conn,
        e.direction.arrow()
    );
    match &e.outcome {
        Err(err) => {
            let _ = write!(s, "  DECODE FAILED: {err}");
        }
        Ok(m) => {
            let h = &m.header;
            let name = match h.message_code.name() {
                Some(n) => n.to_string(),
                None => format!("{:#x}", h.message_code.0),
            };
            let kind = if h.is_reply() {
                "reply"
            } else if h.message_code.is_post() {
                "post"
            } else {
                "request"
            };
            let reply_to = if h.is_reply() {
                h.reply_sequence.to_string()
            } else {
                String::new()
            };
            let error = reply_error(m).map(|e| e.to_string()).unwrap_or_default();
            let _ = write!(
                s,
                " {:<8} {reply_to:<8} {name:<28} {kind:<7} {error:<18}",
                h.sequence
            );
            if let Some(detail) = summary(&m.body) {
                let _ = write!(s, " {detail}");
            }
            if matches!(
                &m.body,
                Body::Request(crate::wire::Request::Unknown { .. })
                    | Body::Reply(crate::wire::Reply::Unknown { .. })
            ) {
                s.push_str(" (no body definition; raw bytes kept)");
            }
            if e.fragments > 1 {
                let _ = write!(
                    s,
                    " [{} bytes in {} fragments]",
                    e.record.len(),
                    e.fragments
                );
            }
        }
    }
    s.truncate(s.trim_end().len());
    s
}

/// The few body fields an operator looks for first, e.g. `TCP 127.0.0.1:40313` for a listen.
fn summary(body: &Body) -> Option<String> {
    use crate::wire::types::Addr;
    use crate::wire::{Reply as P, Request as Q};
    let addr = |a: &Addr| match a {
        Addr::Tcp { tcp_addr } => tcp_addr
            .first()
            .map(|t| format!("TCP {}:{}", t.ip(), t.port))
            .unwrap_or_else(|| "TCP (no address)".into()),
        other => format!("{:?}", other.addr_type()),
    };
    let env = |env: &[crate::wire::types::Pval]| {
        env.iter()
            .map(|p| format!("{}={}", p.name, p.value))
            .collect::<Vec<_>>()
            .join(" ")
    };
    Some(match body {
        Body::Request(r) => match r {
            Q::NotifyConnectionStatus(p) => {
                format!("{} v{} \"{}\"", p.reason, p.protocol_version, p.text_reason)
            }
            Q::ConnectOpen(p) => format!("version {}", p.protocol_version),
            Q::ConnectClientAuth(p) => match &p.auth_data {
                crate::wire::types::AuthData::None => "NONE".into(),
                crate::wire::types::AuthData::Text(t) => format!("TEXT user {}", t.auth_id),
                crate::wire::types::AuthData::Md5(m) => format!("MD5 user {}", m.auth_id),
            },
            Q::TapeOpen(p) => format!("{} {}", p.device, p.mode),
            Q::ScsiOpen(p) => p.device.to_string(),
            Q::TapeMtio(p) => format!("{} {}", p.tape_op, p.count),
            Q::TapeWrite(p) => format!("{} bytes", p.data_out.len()),
            Q::TapeRead(p) => format!("{} bytes", p.count),
            Q::MoverSetRecordSize(p) => format!("{} bytes", p.len),
            Q::MoverSetWindow(p) | Q::MoverRead(p) => range(p.offset, p.length),
            Q::NotifyDataRead(p) => range(p.offset, p.length),
            Q::MoverListen(p) => format!("{} {}", p.mode, p.addr_type),
            Q::MoverConnect(p) => format!("{} {}", p.mode, addr(&p.addr)),
            Q::DataListen(p) => p.addr_type.to_string(),
            Q::DataConnect(p) => addr(&p.addr),
            Q::DataStartBackup(p) => format!("{} {}", p.butype_name, env(&p.env)),
            Q::DataStartRecover(p) | Q::DataStartRecoverFilehist(p) => {
                format!("{} {} names, {}", p.butype_name, p.nlist.len(), env(&p.env))
            }
            Q::NotifyDataHalted(p) => p.reason.to_string(),
            Q::NotifyMoverHalted(p) => p.reason.to_string(),
            Q::NotifyMoverPaused(p) => format!("{} at {}", p.reason, p.seek_position),
            Q::LogMessage(p) => format!("{} \"{}\"", p.log_type, p.entry),
            Q::LogFile(p) => format!("{} {}", p.name, p.recovery_status),
            Q::FhAddFile(p) => format!("{} files", p.files.len()),
            Q::FhAddDir(p) => format!("{} dirs", p.dirs.len()),
            Q::FhAddNode(p) => format!("{} nodes", p.nodes.len()),
            _ => return None,
        },
        Body::Reply(r) => match r {
            P::ConfigGetHostInfo(p) => format!("{} {} {}", p.hostname, p.os_type, p.os_vers),
            P::ConfigGetServerInfo(p) => {
                format!("{} {} {}", p.vendor_name, p.product_name, p.revision_number)
            }
            P::MoverListen(p) | P::DataListen(p) => addr(&p.connect_addr),
            P::DataGetState(p) => {
                format!("{} {} {} bytes", p.operation, p.state, p.bytes_processed)
            }
            P::MoverGetState(p) => format!("{} {} {} bytes", p.mode, p.state, p.bytes_moved),
            P::TapeGetState(p) => format!("file {} block {}", p.file_num as i32, p.blockno as i32),
            P::TapeWrite(p) => format!("{} bytes", p.count),
            P::TapeRead(p) => format!("{} bytes", p.data_in.len()),
            P::DataGetEnv(p) => env(&p.env),
            _ => return None,
        },
        Body::Empty => return None,
    })
}

fn range(offset: u64, length: u64) -> String {
    if length == u64::MAX {
        format!("{offset}+all")
    } else {
        format!("{offset}+{length}")
    }
}

/// One JSON object per message, for scripts.
pub fn format_json(e: &Event, file: &str) -> serde_json::Value {
    use serde_json::json;
    let mut v = json!({
        "file": file,
        "packet": e.packet,
        "time": format!("{}.{:09}", e.time.secs, e.time.nanos),
        "connection": e.conn,
        "client": e.client.to_string(),
        "server": e.server.to_string(),
        "direction": match e.direction { Direction::ToServer => "dma_to_server", Direction::ToClient => "server_to_dma" },
        "record_len": e.record.len(),
        "fragments": e.fragments,
    });
    match &e.outcome {
        Err(err) => v["decode_error"] = json!(err),
        Ok(m) => {
            let h = &m.header;
            v["sequence"] = json!(h.sequence);
            v["time_stamp"] = json!(h.time_stamp);
            v["message_type"] = serde_json::to_value(h.message_type).unwrap_or_default();
            v["message"] = serde_json::to_value(h.message_code).unwrap_or_default();
            v["reply_sequence"] = json!(h.reply_sequence);
            v["error_code"] = serde_json::to_value(h.error_code).unwrap_or_default();
            v["body"] = m.body.to_json();
        }
    }
    v
}

/// The header error or body error of a reply, whichever is set.
pub fn reply_error(m: &Message) -> Option<NdmpError> {
    if !m.header.error_code.is_ok() {
        return Some(m.header.error_code);
    }
    match &m.body {
        Body::Reply(r) => r.error(),
        _ => None,
    }
}
