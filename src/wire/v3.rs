//! NDMP v3 on the wire: the translation between the v3 bodies (defined beside the v4 ones in
//! `messages.rs`, re-exported here; `xdr/ndmp3.x`) and the v4 values the servers use.
//!
//! One engine speaks both versions: the servers work with v4 values. A v3 session decodes its
//! records with [`decode_request`] / [`decode_reply`] (bodies identical in both versions stay
//! v4 types), turns the few differing requests into v4 with [`upgrade`], and every message it
//! sends passes through [`downgrade`], which rewrites the differing bodies and the v4-only
//! error codes into their v3 form.

use super::header::{Body, Message};
use super::messages::*;
use super::types::*;
use super::xdr::NdmpString;

/// The protocol version this module speaks.
pub const VERSION: u16 = 3;

/// The v3 name of a message code, where it differs from v4's (for listings of v3 sessions).
pub fn code_name(code: MessageCode) -> Option<&'static str> {
    match code {
        SCSI_SET_TARGET => Some("SCSI_SET_TARGET"),
        SCSI_RESET_BUS => Some("SCSI_RESET_BUS"),
        MessageCode::NOTIFY_CONNECTION_STATUS => Some("NOTIFY_CONNECTED"),
        c if v4_only(c) => None,
        c => c.name(),
    }
}

/// `ndmp3_butype_info` attrs bit (v3 only): the backup type sends file history.
pub const BUTYPE_BACKUP_FILE_HISTORY: u32 = 0x1;

/// `ndmp3_tape_get_state_reply` `invalid` bit: the drive has no partitions to report.
pub const TAPE_PARTITION_INVALID: u32 = 0x40;

pub use super::messages::{
    decode_reply_v3 as decode_reply, decode_request_v3 as decode_request,
    sample_reply_v3 as sample_reply, sample_request_v3 as sample_request, v4_only, Addr3,
    DataConnectRequest3, DataGetStateReply3, FcAddr3, ListenReply3, LogFilePost3, LogMessagePost3,
    MoverConnectRequest3, MoverGetStateReply3, NotifyDataHaltedPost3, NotifyMoverHaltedPost3,
    ScsiSetTargetRequest3, TapeGetStateReply3, TcpAddr3, V3Reply, V3Request, SCSI_RESET_BUS,
    SCSI_SET_TARGET,
};

/// A v3 request the servers cannot take as v4, with the refusal's code and words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// The error to answer.
    pub error: NdmpError,
    /// Why, in words.
    pub why: String,
}

/// Turns a request received in a v3 session into the v4 value the servers handle (only for
/// v3 sessions: the name list's destinations are read the v3 way). Requests v4 cannot express (Fibre Channel addresses, SCSI_SET_TARGET, SCSI_RESET_BUS) are refused.
pub fn upgrade(req: Request) -> Result<Request, Unsupported> {
    let fc = || Unsupported {
        error: NdmpError::ILLEGAL_ARGS_ERR,
        why: "Fibre Channel data connections are not supported; use TCP or LOCAL".into(),
    };
    Ok(match req {
        Request::V3(V3Request::DataConnect(r)) => Request::DataConnect(DataConnectRequest {
            addr: r.addr.to_v4().ok_or_else(fc)?,
        }),
        Request::V3(V3Request::MoverConnect(r)) => Request::MoverConnect(MoverConnectRequest {
            mode: r.mode,
            addr: r.addr.to_v4().ok_or_else(fc)?,
        }),
        Request::V3(V3Request::ScsiSetTarget(_)) => {
            return Err(Unsupported {
                error: NdmpError::NOT_SUPPORTED_ERR,
                why: "SCSI_SET_TARGET is not supported: each SCSI device has a fixed target".into(),
            })
        }
        Request::V3(V3Request::ScsiResetBus(_)) => {
            return Err(Unsupported {
                error: NdmpError::NOT_SUPPORTED_ERR,
                why: "SCSI_RESET_BUS is not supported; use SCSI_RESET_DEVICE".into(),
            })
        }
        // v3's RAW1 mode is v4's RAW
        Request::TapeOpen(mut r) if r.mode.0 == 0x7fff_ffff => {
            r.mode = TapeOpenMode::RAW;
            Request::TapeOpen(r)
        }
        Request::DataStartRecover(mut r) => {
            for n in &mut r.nlist {
                n.destination_path = NdmpString::from(&v3_destination(n)[..]);
                n.name = NdmpString::default();
            }
            Request::DataStartRecover(r)
        }
        // MOVER_LISTEN with a mode v3 lacks (NOACTION) is left for the mover to refuse
        r => r,
    })
}

/// The whole destination of a v3 name-list entry: v3 names a directory (`destination_dir`,
/// v4's `destination_path` slot) and either a `new_name` or, when that is empty, the
/// original path to recreate under the directory.
fn v3_destination(n: &Name) -> Vec<u8> {
    let mut dest = n.destination_path.as_bytes().to_vec();
    let tail = if n.name.is_empty() {
        n.original_path.as_bytes()
    } else {
        n.name.as_bytes()
    };
    if dest.is_empty() {
        return tail.to_vec();
    }
    let tail = tail.strip_prefix(b"/").unwrap_or(tail);
    if !dest.is_empty() && !dest.ends_with(b"/") && !tail.is_empty() {
        dest.push(b'/');
    }
    dest.extend_from_slice(tail);
    dest
}

/// The v3 code for a v4-only error.
pub fn error(e: NdmpError) -> NdmpError {
    match e {
        NdmpError::SEQUENCE_NUM_ERR => NdmpError::ILLEGAL_ARGS_ERR,
        NdmpError::READ_IN_PROGRESS_ERR | NdmpError::PRECONDITION_ERR => {
            NdmpError::ILLEGAL_STATE_ERR
        }
        NdmpError::CLASS_NOT_SUPPORTED_ERR | NdmpError::VERSION_NOT_SUPPORTED_ERR => {
            NdmpError::NOT_SUPPORTED_ERR
        }
        NdmpError::EXT_DUPL_CLASSES_ERR | NdmpError::EXT_DANDN_ILLEGAL_ERR => {
            NdmpError::ILLEGAL_ARGS_ERR
        }
        e => e,
    }
}

fn mover_halt(r: MoverHaltReason) -> MoverHaltReason {
    if r == MoverHaltReason::MEDIA_ERROR {
        MoverHaltReason::INTERNAL_ERROR
    } else {
        r
    }
}

/// The words v3 carries with NOTIFY_DATA_HALTED.
pub fn data_halt_text(r: DataHaltReason) -> &'static str {
    match r {
        DataHaltReason::SUCCESSFUL => "the operation completed",
        DataHaltReason::ABORTED => "the operation was aborted",
        DataHaltReason::INTERNAL_ERROR => "the data server failed",
        DataHaltReason::CONNECT_ERROR => "the data connection failed",
        _ => "halted",
    }
}

/// The words v3 carries with NOTIFY_MOVER_HALTED (v4's MEDIA_ERROR included).
pub fn mover_halt_text(r: MoverHaltReason) -> &'static str {
    match r {
        MoverHaltReason::CONNECT_CLOSED => "the data connection was closed",
        MoverHaltReason::ABORTED => "the transfer was aborted",
        MoverHaltReason::INTERNAL_ERROR => "the mover failed",
        MoverHaltReason::CONNECT_ERROR => "the data connection failed",
        MoverHaltReason::MEDIA_ERROR => "tape media error",
        _ => "halted",
    }
}

fn log_file_error(s: RecoveryStatus) -> NdmpError {
    match s {
        RecoveryStatus::SUCCESSFUL => NdmpError::NO_ERR,
        RecoveryStatus::FAILED_PERMISSION => NdmpError::PERMISSION_ERR,
        RecoveryStatus::FAILED_NOT_FOUND | RecoveryStatus::FAILED_NO_DIRECTORY => {
            NdmpError::FILE_NOT_FOUND_ERR
        }
        RecoveryStatus::FAILED_OUT_OF_MEMORY => NdmpError::NO_MEM_ERR,
        RecoveryStatus::FAILED_IO_ERROR => NdmpError::IO_ERR,
        _ => NdmpError::UNDEFINED_ERR,
    }
}

fn downgrade_request(r: Request) -> Request {
    let v3 = match r {
        Request::NotifyDataHalted(p) => V3Request::NotifyDataHalted(NotifyDataHaltedPost3 {
            reason: p.reason,
            text_reason: data_halt_text(p.reason).into(),
        }),
        Request::NotifyMoverHalted(p) => V3Request::NotifyMoverHalted(NotifyMoverHaltedPost3 {
            reason: mover_halt(p.reason),
            text_reason: mover_halt_text(p.reason).into(),
        }),
        Request::LogMessage(p) => V3Request::LogMessage(LogMessagePost3 {
            log_type: p.log_type,
            message_id: p.message_id,
            entry: p.entry,
        }),
        Request::LogFile(p) => V3Request::LogFile(LogFilePost3 {
            name: p.name,
            error: log_file_error(p.recovery_status),
        }),
        Request::DataConnect(p) => V3Request::DataConnect(DataConnectRequest3 {
            addr: Addr3::from_v4(&p.addr),
        }),
        Request::MoverConnect(p) => V3Request::MoverConnect(MoverConnectRequest3 {
            mode: p.mode,
            addr: Addr3::from_v4(&p.addr),
        }),
        Request::NotifyConnectionStatus(mut p) => {
            p.protocol_version = VERSION;
            return Request::NotifyConnectionStatus(p);
        }
        // a DMA's name list: v4's whole destination as v3's directory plus name
        Request::DataStartRecover(mut r) => {
            for n in &mut r.nlist {
                let dest = n.destination_path.as_bytes().to_vec();
                let orig = n.original_path.as_bytes();
                let orig = orig.strip_prefix(b"/").unwrap_or(orig);
                match dest.strip_suffix(orig) {
                    Some(dir) if !orig.is_empty() => {
                        let dir = dir.strip_suffix(b"/").unwrap_or(dir);
                        n.destination_path = NdmpString::from(dir);
                        n.name = NdmpString::default();
                    }
                    _ => {
                        n.name = NdmpString::from(&dest[..]);
                        n.destination_path = NdmpString::default();
                    }
                }
            }
            return Request::DataStartRecover(r);
        }
        r => return r,
    };
    Request::V3(v3)
}

fn downgrade_reply(r: Reply) -> Reply {
    let code = r.code();
    if let Some(e) = r.error() {
        let mapped = error(e);
        if mapped != e {
            // a refusal: its body carries nothing but the code
            return downgrade_reply(Reply::with_error(code, mapped).unwrap_or(r));
        }
    }
    let v3 = match r {
        Reply::TapeGetState(s) => V3Reply::TapeGetState(TapeGetStateReply3 {
            invalid: s.unsupported | TAPE_PARTITION_INVALID,
            error: s.error,
            flags: s.flags,
            file_num: s.file_num,
            soft_errors: s.soft_errors,
            block_size: s.block_size,
            blockno: s.blockno,
            total_space: s.total_space,
            space_remain: s.space_remain,
            partition: 0,
        }),
        Reply::DataGetState(s) => V3Reply::DataGetState(DataGetStateReply3 {
            invalid: s.unsupported,
            error: s.error,
            operation: s.operation,
            state: s.state,
            halt_reason: s.halt_reason,
            bytes_processed: s.bytes_processed,
            est_bytes_remain: s.est_bytes_remain,
            est_time_remain: s.est_time_remain,
            data_connection_addr: Addr3::from_v4(&s.data_connection_addr),
            read_offset: s.read_offset,
            read_length: s.read_length,
        }),
        Reply::DataListen(l) => V3Reply::DataListen(ListenReply3 {
            error: l.error,
            data_connection_addr: Addr3::from_v4(&l.connect_addr),
        }),
        Reply::MoverListen(l) => V3Reply::MoverListen(ListenReply3 {
            error: l.error,
            data_connection_addr: Addr3::from_v4(&l.connect_addr),
        }),
        Reply::MoverGetState(s) => V3Reply::MoverGetState(MoverGetStateReply3 {
            error: s.error,
            state: s.state,
            pause_reason: s.pause_reason,
            halt_reason: mover_halt(s.halt_reason),
            record_size: s.record_size,
            record_num: s.record_num,
            data_written: s.bytes_moved,
            seek_position: s.seek_position,
            bytes_left_to_read: s.bytes_left_to_read,
            window_offset: s.window_offset,
            window_length: s.window_length,
            data_connection_addr: Addr3::from_v4(&s.data_connection_addr),
        }),
        r => return r,
    };
    Reply::V3(v3)
}

fn upgrade_reply(r: V3Reply) -> Reply {
    match r {
        V3Reply::TapeGetState(s) => Reply::TapeGetState(TapeGetStateReply {
            unsupported: s.invalid & !TAPE_PARTITION_INVALID,
            error: s.error,
            flags: s.flags,
            file_num: s.file_num,
            soft_errors: s.soft_errors,
            block_size: s.block_size,
            blockno: s.blockno,
            total_space: s.total_space,
            space_remain: s.space_remain,
        }),
        V3Reply::DataGetState(s) => Reply::DataGetState(DataGetStateReply {
            unsupported: s.invalid,
            error: s.error,
            operation: s.operation,
            state: s.state,
            halt_reason: s.halt_reason,
            bytes_processed: s.bytes_processed,
            est_bytes_remain: s.est_bytes_remain,
            est_time_remain: s.est_time_remain,
            data_connection_addr: s.data_connection_addr.to_v4().unwrap_or_default(),
            read_offset: s.read_offset,
            read_length: s.read_length,
        }),
        V3Reply::DataListen(l) => Reply::DataListen(ListenReply {
            error: l.error,
            connect_addr: l.data_connection_addr.to_v4().unwrap_or_default(),
        }),
        V3Reply::MoverListen(l) => Reply::MoverListen(ListenReply {
            error: l.error,
            connect_addr: l.data_connection_addr.to_v4().unwrap_or_default(),
        }),
        V3Reply::MoverGetState(s) => Reply::MoverGetState(MoverGetStateReply {
            error: s.error,
            // v3 does not say; NOACTION is v4's "not known"
            mode: MoverMode::NOACTION,
            state: s.state,
            pause_reason: s.pause_reason,
            halt_reason: s.halt_reason,
            record_size: s.record_size,
            record_num: s.record_num,
            bytes_moved: s.data_written,
            seek_position: s.seek_position,
            bytes_left_to_read: s.bytes_left_to_read,
            window_offset: s.window_offset,
            window_length: s.window_length,
            data_connection_addr: s.data_connection_addr.to_v4().unwrap_or_default(),
        }),
        other => Reply::V3(other),
    }
}

fn recovery_status(e: NdmpError) -> RecoveryStatus {
    match e {
        NdmpError::NO_ERR => RecoveryStatus::SUCCESSFUL,
        NdmpError::PERMISSION_ERR => RecoveryStatus::FAILED_PERMISSION,
        NdmpError::FILE_NOT_FOUND_ERR => RecoveryStatus::FAILED_NOT_FOUND,
        NdmpError::NO_MEM_ERR => RecoveryStatus::FAILED_OUT_OF_MEMORY,
        NdmpError::IO_ERR => RecoveryStatus::FAILED_IO_ERROR,
        _ => RecoveryStatus::FAILED_UNDEFINED_ERROR,
    }
}

fn upgrade_post(r: V3Request) -> Request {
    match r {
        V3Request::NotifyDataHalted(p) => {
            Request::NotifyDataHalted(NotifyDataHaltedPost { reason: p.reason })
        }
        V3Request::NotifyMoverHalted(p) => {
            Request::NotifyMoverHalted(NotifyMoverHaltedPost { reason: p.reason })
        }
        V3Request::LogMessage(p) => Request::LogMessage(LogMessagePost {
            log_type: p.log_type,
            message_id: p.message_id,
            entry: p.entry,
            associated_message_valid: HasAssociatedMessage::NO_ASSOCIATED_MESSAGE,
            associated_message_sequence: 0,
        }),
        V3Request::LogFile(p) => Request::LogFile(LogFilePost {
            name: p.name,
            recovery_status: recovery_status(p.error),
        }),
        other => Request::V3(other),
    }
}

/// The DMA's side of [`downgrade`]: turns what a v3 server sent into the v4 values the
/// client library works with (a v3 halt's words and a LOG_FILE's exact error are folded
/// into v4's fields).
pub fn upgrade_from_server(msg: Message) -> Message {
    let body = match msg.body {
        Body::Request(Request::V3(r)) => Body::Request(upgrade_post(r)),
        Body::Reply(Reply::V3(r)) => Body::Reply(upgrade_reply(r)),
        b => b,
    };
    Message {
        header: msg.header,
        body,
    }
}

/// Rewrites a message built with v4 values into its v3 form: the differing bodies, v4-only
/// error codes, and the protocol version in NOTIFY_CONNECTED. v3 bodies pass unchanged.
pub fn downgrade(msg: Message) -> Message {
    let mut header = msg.header;
    header.error_code = error(header.error_code);
    let body = match msg.body {
        Body::Request(r) => Body::Request(downgrade_request(r)),
        Body::Reply(r) => Body::Reply(downgrade_reply(r)),
        Body::Empty => Body::Empty,
    };
    Message { header, body }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::header::Header;
    use crate::wire::xdr::{Xdr, XdrReader};
    use bytes::{Bytes, BytesMut};

    fn bytes<T: Xdr>(v: &T) -> Vec<u8> {
        let mut out = BytesMut::new();
        v.encode(&mut out);
        out.to_vec()
    }

    #[test]
    fn a_name_list_destination_survives_the_v3_round_trip() {
        for (orig, dest) in [("/a/b.txt", "/restore/a/b.txt"), ("/x", "/elsewhere/y")] {
            let req = Request::DataStartRecover(DataStartRecoverRequest {
                nlist: vec![Name {
                    original_path: orig.into(),
                    destination_path: dest.into(),
                    ..Default::default()
                }],
                ..Default::default()
            });
            let Request::DataStartRecover(r) = upgrade(downgrade_request(req)).unwrap() else {
                panic!("not a recover");
            };
            assert_eq!(r.nlist[0].destination_path.as_str(), Some(dest), "{orig}");
        }
    }

    #[test]
    fn a_v3_tcp_address_is_one_ip_and_port() {
        let a = Addr3::Tcp(TcpAddr3 {
            ip_addr: 0x7f00_0001,
            port: 10001,
        });
        assert_eq!(
            bytes(&a),
            [0, 0, 0, 1, 0x7f, 0, 0, 1, 0, 0, 0x27, 0x11].to_vec()
        );
        let v4 = a.to_v4().unwrap();
        assert_eq!(Addr3::from_v4(&v4), a);
        assert!(Addr3::Fc(FcAddr3 { loop_id: 3 }).to_v4().is_none());
    }

    #[test]
    fn mover_get_state_loses_its_mode_and_media_error_becomes_internal() {
        let v4 = Reply::MoverGetState(MoverGetStateReply {
            mode: MoverMode::WRITE,
            state: MoverState::HALTED,
            halt_reason: MoverHaltReason::MEDIA_ERROR,
            bytes_moved: 0x1_0000_0002,
            ..Default::default()
        });
        let Reply::V3(V3Reply::MoverGetState(s)) = downgrade_reply(v4) else {
            panic!("not downgraded");
        };
        assert_eq!(s.halt_reason, MoverHaltReason::INTERNAL_ERROR);
        assert_eq!(s.data_written, 0x1_0000_0002);
        // error, state, pause, halt, record_size, record_num, 6 quads, LOCAL
        assert_eq!(bytes(&s).len(), 4 * 6 + 8 * 5 + 4);
    }

    #[test]
    fn v4_only_errors_take_their_v3_equivalents_in_header_and_body() {
        let req = Header {
            sequence: 7,
            message_code: MessageCode::MOVER_SET_WINDOW,
            ..Default::default()
        };
        let m = downgrade(Message::header_error(
            1,
            0,
            &req,
            NdmpError::PRECONDITION_ERR,
        ));
        assert_eq!(m.header.error_code, NdmpError::ILLEGAL_STATE_ERR);
        let body = Reply::with_error(MessageCode::TAPE_GET_STATE, NdmpError::SEQUENCE_NUM_ERR);
        let m = downgrade(Message::reply(2, 0, 7, body.unwrap()));
        assert_eq!(
            m.body,
            Body::Reply(Reply::V3(V3Reply::TapeGetState(TapeGetStateReply3 {
                invalid: TAPE_PARTITION_INVALID,
                error: NdmpError::ILLEGAL_ARGS_ERR,
                ..Default::default()
            })))
        );
    }

    #[test]
    fn v3_decoding_keeps_the_shared_layouts_and_drops_v4_only_codes() {
        let mut r = XdrReader::new(Bytes::from_static(&[0, 0, 0, 9]));
        let v = decode_request(MessageCode::MOVER_SET_RECORD_SIZE, &mut r).unwrap();
        assert_eq!(
            v,
            Request::MoverSetRecordSize(MoverSetRecordSizeRequest { len: 9 })
        );
        let mut r = XdrReader::new(Bytes::new());
        let v = decode_request(MessageCode::CONFIG_GET_EXT_LIST, &mut r).unwrap();
        assert!(matches!(v, Request::Unknown { .. }));
        // LOG_MESSAGE v3: type, id, entry and nothing more
        let mut r = XdrReader::new(Bytes::from_static(&[
            0, 0, 0, 2, 0, 0, 0, 5, 0, 0, 0, 1, b'x', 0, 0, 0,
        ]));
        let v = decode_request(MessageCode::LOG_MESSAGE, &mut r).unwrap();
        assert_eq!(
            v,
            Request::V3(V3Request::LogMessage(LogMessagePost3 {
                log_type: LogType::ERROR,
                message_id: 5,
                entry: "x".into(),
            }))
        );
        let mut out = BytesMut::new();
        v.encode(&mut out);
        assert_eq!(out.len(), 16);
    }
}
