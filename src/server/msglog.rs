//! One log line per NDMP message a session receives or sends (debug level), with a short
//! summary of the main bodies; trace adds the whole body. What `NDMPD_LOG=debug` shows.

use crate::wire::header::{Body, Message};
use crate::wire::types::{Addr, AuthData, Pval};
use crate::wire::{Reply, Request};
use tracing::{debug, enabled, trace, Level};

/// Which way a message went.
#[derive(Debug, Clone, Copy)]
pub enum Dir {
    /// From the DMA.
    Recv,
    /// To the DMA.
    Send,
}

/// The longest body a trace line shows; a TAPE_WRITE's data would drown everything else.
const TRACE_BODY_MAX: usize = 4096;

/// Logs `msg` at debug (one line) and, when enabled, its body at trace. The session id
/// comes from the session's span.
pub fn message(dir: Dir, msg: &Message) {
    if !enabled!(target: "ndmpd::ndmp", Level::DEBUG) {
        return;
    }
    let h = &msg.header;
    let arrow = match dir {
        Dir::Recv => "recv",
        Dir::Send => "send",
    };
    let kind = if h.is_reply() {
        format!("reply to #{}", h.reply_sequence)
    } else if h.message_code.is_post() {
        "post".to_string()
    } else {
        "request".to_string()
    };
    let error = match &msg.body {
        _ if !h.error_code.is_ok() => Some(format!("{:?} (in the header)", h.error_code)),
        Body::Reply(r) => r.error().map(|e| format!("{e:?}")),
        _ => None,
    };
    let summary = summary(&msg.body);
    let mut line = format!("{arrow} #{} {:?} {kind}", h.sequence, h.message_code);
    if let Some(e) = error {
        line.push(' ');
        line.push_str(&e);
    }
    if !summary.is_empty() {
        line.push_str(": ");
        line.push_str(&summary);
    }
    debug!(target: "ndmpd::ndmp", "{line}");
    if enabled!(target: "ndmpd::ndmp", Level::TRACE) {
        let mut body = msg.body.to_json().to_string();
        if body.len() > TRACE_BODY_MAX {
            let cut = (0..=TRACE_BODY_MAX)
                .rev()
                .find(|i| body.is_char_boundary(*i))
                .unwrap_or(0);
            body.truncate(cut);
            body.push_str("...");
        }
        trace!(target: "ndmpd::ndmp", "{arrow} #{} body {body}", h.sequence);
    }
}

fn env_value(env: &[Pval], name: &str) -> Option<String> {
    crate::data::env::lookup_bytes(env, name).map(|v| String::from_utf8_lossy(v).into_owned())
}

fn addr(a: &Addr) -> String {
    match a {
        Addr::Tcp { tcp_addr } => {
            let all: Vec<String> = tcp_addr
                .iter()
                .map(|t| format!("{}:{}", t.ip(), t.port))
                .collect();
            format!("TCP {}", all.join(","))
        }
        Addr::TcpIpv6 { tcp_ipv6_addr } => {
            let all: Vec<String> = tcp_ipv6_addr
                .iter()
                .map(|t| format!("[{}]:{}", t.ip(), t.port))
                .collect();
            format!("TCP_IPV6 {}", all.join(","))
        }
        other => format!("{:?}", other.addr_type()),
    }
}

/// A few words about the main bodies: what was asked for, with which names and sizes.
fn summary(body: &Body) -> String {
    match body {
        Body::Request(r) => request(r),
        Body::Reply(r) => reply(r),
        Body::Empty => String::new(),
    }
}

fn request(r: &Request) -> String {
    match r {
        Request::ConnectOpen(o) => format!("version {}", o.protocol_version),
        Request::ConnectClientAuth(a) => match &a.auth_data {
            AuthData::None => "NONE".into(),
            AuthData::Text(t) => format!("TEXT user {}", t.auth_id),
            AuthData::Md5(m) => format!("MD5 user {}", m.auth_id),
        },
        Request::ConfigGetAuthAttr(a) => format!("{:?}", a.auth_type),
        Request::TapeOpen(o) => format!("device {} mode {:?}", o.device, o.mode),
        Request::TapeMtio(m) => format!("{:?} count {}", m.tape_op, m.count),
        Request::TapeRead(t) => format!("count {}", t.count),
        Request::TapeWrite(w) => format!("{} bytes", w.data_out.0.len()),
        Request::ScsiOpen(o) => format!("device {}", o.device),
        Request::ScsiExecuteCdb(c) | Request::TapeExecuteCdb(c) => match c.cdb.0.first() {
            Some(op) => format!("CDB {op:02X}h"),
            None => "empty CDB".into(),
        },
        Request::DataListen(l) => format!("{:?}", l.addr_type),
        Request::DataConnect(c) => addr(&c.addr),
        Request::DataStartBackup(b) => format!(
            "butype {} FILESYSTEM {} LEVEL {}",
            b.butype_name,
            env_value(&b.env, "FILESYSTEM").unwrap_or_else(|| "(none)".into()),
            env_value(&b.env, "LEVEL").unwrap_or_else(|| "0".into())
        ),
        Request::DataStartRecover(s) | Request::DataStartRecoverFilehist(s) => {
            let into = env_value(&s.env, "PREFIX").or_else(|| env_value(&s.env, "FILESYSTEM"));
            let mut t = format!("butype {} {} names", s.butype_name, s.nlist.len());
            if let Some(n) = s.nlist.first() {
                t.push_str(&format!(
                    " (first {} -> {})",
                    n.original_path, n.destination_path
                ));
            } else if let Some(p) = into {
                t.push_str(&format!(" into {p}"));
            }
            t
        }
        Request::MoverListen(l) => format!("{:?} {:?}", l.mode, l.addr_type),
        Request::MoverConnect(c) => format!("{:?} {}", c.mode, addr(&c.addr)),
        Request::MoverSetRecordSize(s) => format!("{} bytes", s.len),
        Request::MoverSetWindow(w) | Request::MoverRead(w) => {
            format!("offset {} length {}", w.offset, w.length)
        }
        Request::NotifyConnectionStatus(s) => format!("{:?} {}", s.reason, s.text_reason),
        Request::NotifyDataHalted(h) => format!("{:?}", h.reason),
        Request::NotifyMoverHalted(h) => format!("{:?}", h.reason),
        Request::NotifyMoverPaused(p) => {
            format!("{:?} at {}", p.reason, p.seek_position)
        }
        Request::NotifyDataRead(d) => format!("offset {} length {}", d.offset, d.length),
        Request::LogMessage(l) => {
            let about = if l.associated_message_valid
                == crate::wire::types::HasAssociatedMessage::HAS_ASSOCIATED_MESSAGE
            {
                format!(" about #{}", l.associated_message_sequence)
            } else {
                String::new()
            };
            format!("{:?}{about} {:?}", l.log_type, l.entry.to_string())
        }
        Request::LogFile(f) => format!("{} {:?}", f.name, f.recovery_status),
        _ => String::new(),
    }
}

fn reply(r: &Reply) -> String {
    match r {
        Reply::ConfigGetHostInfo(h) => format!("host {} {} {}", h.hostname, h.os_type, h.os_vers),
        Reply::DataListen(l) | Reply::MoverListen(l) => addr(&l.connect_addr),
        Reply::TapeRead(t) => format!("{} bytes", t.data_in.0.len()),
        Reply::TapeWrite(t) => format!("{} bytes", t.count),
        Reply::TapeMtio(m) => format!("resid {}", m.resid_count),
        Reply::DataGetState(s) => format!("{:?} {:?}", s.state, s.operation),
        Reply::MoverGetState(s) => format!("{:?} {:?}", s.state, s.mode),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::messages::{DataStartBackupRequest, TapeOpenRequest};
    use crate::wire::types::TapeOpenMode;
    use crate::wire::NdmpError;

    #[test]
    fn the_main_requests_are_summed_up() {
        let b = Request::DataStartBackup(DataStartBackupRequest {
            butype_name: "dump".into(),
            env: vec![
                Pval::new("FILESYSTEM", "/srv/data"),
                Pval::new("level", "2"),
            ],
        });
        assert_eq!(
            summary(&Body::Request(b)),
            "butype dump FILESYSTEM /srv/data LEVEL 2"
        );
        let t = Request::TapeOpen(TapeOpenRequest {
            device: "vtape0".into(),
            mode: TapeOpenMode::RDWR,
        });
        assert_eq!(summary(&Body::Request(t)), "device vtape0 mode RDWR");
        let r = Reply::with_error(crate::wire::MessageCode::DATA_STOP, NdmpError::NO_ERR).unwrap();
        assert_eq!(summary(&Body::Reply(r)), "");
    }
}
