//! Every NDMP v4 message body (spec §3 and §4) and the tables that tie message codes to them:
//! `Request` covers requests and posts (both travel as message_type REQUEST), `Reply` replies.

use super::sample::{Gen, Sample};
use super::types::*;
use super::xdr::{NdmpString, Opaque, Xdr, XdrError, XdrReader};
use crate::{open_enum, xdr_struct};
use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;

open_enum! {
    /// `ndmp4_message`: the message code in the header. Extension codes carry their class in
    /// the upper 16 bits and decode as unnamed values.
    pub struct MessageCode {
        /// §3.1.1: agree on the protocol version of the session.
        CONNECT_OPEN = 0x900,
        /// §3.1.2: the DMA authenticates itself.
        CONNECT_CLIENT_AUTH = 0x901,
        /// §3.1.3: end the session; has no reply.
        CONNECT_CLOSE = 0x902,
        /// §3.1.4: the server authenticates itself to the DMA.
        CONNECT_SERVER_AUTH = 0x903,
        /// §3.2.1: host name, OS and host ID.
        CONFIG_GET_HOST_INFO = 0x100,
        /// §3.2.3: the data-connection address types supported.
        CONFIG_GET_CONNECTION_TYPE = 0x102,
        /// §3.2.4: what an authentication type needs (the MD5 challenge).
        CONFIG_GET_AUTH_ATTR = 0x103,
        /// §3.2.5: the backup types and their default environments.
        CONFIG_GET_BUTYPE_INFO = 0x104,
        /// §3.2.6: the file systems that can be backed up.
        CONFIG_GET_FS_INFO = 0x105,
        /// §3.2.7: the tape drives.
        CONFIG_GET_TAPE_INFO = 0x106,
        /// §3.2.8: the SCSI devices (media changers).
        CONFIG_GET_SCSI_INFO = 0x107,
        /// §3.2.2: vendor, product, revision and authentication types.
        CONFIG_GET_SERVER_INFO = 0x108,
        /// §3.2.10: select the extension class versions to use.
        CONFIG_SET_EXT_LIST = 0x109,
        /// §3.2.9: the extension classes offered.
        CONFIG_GET_EXT_LIST = 0x10A,
        /// §3.3.1: open a SCSI device.
        SCSI_OPEN = 0x200,
        /// §3.3.2: close the SCSI device.
        SCSI_CLOSE = 0x201,
        /// §3.3.3: the open SCSI device's address.
        SCSI_GET_STATE = 0x202,
        /// A code point the spec keeps without a message (was SCSI_SET_TARGET).
        SCSI_OBSOLETE1 = 0x203,
        /// §3.3.4: reset the SCSI device.
        SCSI_RESET_DEVICE = 0x204,
        /// A code point the spec keeps without a message (was SCSI_RESET_BUS).
        SCSI_OBSOLETE2 = 0x205,
        /// §3.3.5: send a CDB to the SCSI device.
        SCSI_EXECUTE_CDB = 0x206,
        /// §3.4.2: open a tape drive.
        TAPE_OPEN = 0x300,
        /// §3.4.3: close the tape drive.
        TAPE_CLOSE = 0x301,
        /// §3.4.4: the tape's position and capacity.
        TAPE_GET_STATE = 0x302,
        /// §3.4.5: space, rewind, write filemarks, unload.
        TAPE_MTIO = 0x303,
        /// §3.4.6: write one record.
        TAPE_WRITE = 0x304,
        /// §3.4.7: read one record.
        TAPE_READ = 0x305,
        /// §3.4.8: send a CDB to the tape drive.
        TAPE_EXECUTE_CDB = 0x307,
        /// §3.5.2.6: the data server's state.
        DATA_GET_STATE = 0x400,
        /// §3.5.2.3: start a backup.
        DATA_START_BACKUP = 0x401,
        /// §3.5.2.4: start a recovery.
        DATA_START_RECOVER = 0x402,
        /// §3.5.2.9: stop the operation and halt.
        DATA_ABORT = 0x403,
        /// §3.5.2.7: the environment of the backup just made.
        DATA_GET_ENV = 0x404,
        /// §3.5.2.8: from HALTED back to IDLE.
        DATA_STOP = 0x407,
        /// §3.5.2.2: open an endpoint for the mover to connect to.
        DATA_LISTEN = 0x409,
        /// §3.5.2.1: connect to a listening mover.
        DATA_CONNECT = 0x40A,
        /// §3.5.2.5: read an image for its file history only, recovering nothing.
        DATA_START_RECOVER_FILEHIST = 0x40B,
        /// §4.1.1: the data server halted.
        NOTIFY_DATA_HALTED = 0x501,
        /// §4.1.2: the server accepts or refuses a new connection.
        NOTIFY_CONNECTION_STATUS = 0x502,
        /// §4.1.3: the mover halted.
        NOTIFY_MOVER_HALTED = 0x503,
        /// §4.1.4: the mover paused and waits for the DMA.
        NOTIFY_MOVER_PAUSED = 0x504,
        /// §4.1.5: the data server wants a range of the image.
        NOTIFY_DATA_READ = 0x505,
        /// §4.2.2: the outcome of recovering one name-list entry.
        LOG_FILE = 0x602,
        /// §4.2.1: a line for the job log.
        LOG_MESSAGE = 0x603,
        /// §4.3.1: path-based file history.
        FH_ADD_FILE = 0x703,
        /// §4.3.2: directory entries of inode-based file history.
        FH_ADD_DIR = 0x704,
        /// §4.3.3: inodes of inode-based file history.
        FH_ADD_NODE = 0x705,
        /// §3.6.2.6: the mover's state.
        MOVER_GET_STATE = 0xA00,
        /// §3.6.2.4: open an endpoint for the data server to connect to.
        MOVER_LISTEN = 0xA01,
        /// §3.6.2.7: resume a paused mover.
        MOVER_CONTINUE = 0xA02,
        /// §3.6.2.9: stop the transfer and halt.
        MOVER_ABORT = 0xA03,
        /// §3.6.2.10: from HALTED back to IDLE.
        MOVER_STOP = 0xA04,
        /// §3.6.2.2: the range of the image the mover may cover before pausing.
        MOVER_SET_WINDOW = 0xA05,
        /// §3.6.2.5: send a range of the image to the data server (recovery).
        MOVER_READ = 0xA06,
        /// §3.6.2.8: end a paused transfer by closing the data connection.
        MOVER_CLOSE = 0xA07,
        /// §3.6.2.1: the tape record size.
        MOVER_SET_RECORD_SIZE = 0xA08,
        /// §3.6.2.3: connect to a listening data server.
        MOVER_CONNECT = 0xA09,
        /// NetApp CAB (class 0x2052): names the volume of the coming DATA_LISTEN/CONNECT.
        CAB_DATA_CONN_PREPARE = 0x2052_0001,
        /// Not a message: the first code of class 0x0001, where standard extension classes start.
        EXT_STANDARD_BASE = 0x10000,
        /// Not a message: the first code of class 0x2000, where proprietary extension classes
        /// start.
        EXT_PROPRIETARY_BASE = 0x2000_0000,
    }
}

impl MessageCode {
    /// Notifications, log and file-history messages: sent by a server, never answered.
    pub fn is_post(self) -> bool {
        matches!(self.0 >> 8, 0x5..=0x7)
    }

    /// The extension class (upper 16 bits); 0 for core messages.
    pub fn class(self) -> u16 {
        (self.0 >> 16) as u16
    }
}

/// A body with no fields: the request of a message the spec defines without arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Void;

impl Xdr for Void {
    const MIN_SIZE: usize = 0;
    fn encode(&self, _out: &mut BytesMut) {}
    fn decode(_r: &mut XdrReader) -> Result<Self, XdrError> {
        Ok(Void)
    }
}

impl Sample for Void {
    fn sample(_g: &mut Gen) -> Self {
        Void
    }
}

xdr_struct! {
    /// The reply of every message whose only result is an error code.
    pub struct ErrorReply {
        /// NO_ERR, or why the request was refused or failed.
        pub error: NdmpError,
    }
}

impl ErrorReply {
    /// A reply carrying `error`.
    pub fn new(error: NdmpError) -> Self {
        ErrorReply { error }
    }
}

// ---- CONNECT (§3.1)

xdr_struct! {
    /// CONNECT_OPEN request: the DMA proposes the protocol version of the session.
    pub struct ConnectOpenRequest {
        /// The NDMP version the DMA wants to speak (4 for this server).
        pub protocol_version: u16,
    }
}
xdr_struct! {
    /// CONNECT_CLIENT_AUTH request: the DMA authenticates itself to the server.
    pub struct ConnectClientAuthRequest {
        /// The DMA's credentials: none, a clear-text password, or an MD5 digest over the
        /// server's challenge.
        pub auth_data: AuthData,
    }
}
xdr_struct! {
    /// CONNECT_SERVER_AUTH request: the DMA asks the server to authenticate itself.
    pub struct ConnectServerAuthRequest {
        /// The authentication type wanted and, for MD5, the DMA's challenge.
        pub client_attr: AuthAttr,
    }
}
xdr_struct! {
    /// CONNECT_SERVER_AUTH reply.
    pub struct ConnectServerAuthReply {
        /// NO_ERR, or why the server did not authenticate itself.
        pub error: NdmpError,
        /// The server's credentials, computed over the DMA's challenge for MD5.
        pub server_result: AuthData,
    }
}

// ---- CONFIG (§3.2)

xdr_struct! {
    /// CONFIG_GET_HOST_INFO reply: what machine the server runs on.
    pub struct ConfigGetHostInfoReply {
        /// NO_ERR, or why the information is not available.
        pub error: NdmpError,
        /// The host's name.
        pub hostname: NdmpString,
        /// The operating system's name.
        pub os_type: NdmpString,
        /// The operating system's version.
        pub os_vers: NdmpString,
        /// An identifier unique to this host.
        pub hostid: NdmpString,
    }
}
xdr_struct! {
    /// CONFIG_GET_SERVER_INFO reply: what NDMP implementation answers.
    pub struct ConfigGetServerInfoReply {
        /// NO_ERR, or why the information is not available.
        pub error: NdmpError,
        /// The implementation's vendor.
        pub vendor_name: NdmpString,
        /// The implementation's product name.
        pub product_name: NdmpString,
        /// The implementation's version.
        pub revision_number: NdmpString,
        /// Every authentication type CONNECT_CLIENT_AUTH accepts.
        pub auth_type: Vec<AuthType>,
    }
}
xdr_struct! {
    /// CONFIG_GET_CONNECTION_TYPE reply.
    pub struct ConfigGetConnectionTypeReply {
        /// NO_ERR, or why the information is not available.
        pub error: NdmpError,
        /// The data-connection address types DATA/MOVER LISTEN and CONNECT accept.
        pub addr_types: Vec<AddrType>,
    }
}
xdr_struct! {
    /// CONFIG_GET_AUTH_ATTR request: asks for what an authentication type needs (the MD5
    /// challenge).
    pub struct ConfigGetAuthAttrRequest {
        /// The authentication type the DMA means to use.
        pub auth_type: AuthType,
    }
}
xdr_struct! {
    /// CONFIG_GET_AUTH_ATTR reply.
    pub struct ConfigGetAuthAttrReply {
        /// NO_ERR, or ILLEGAL_ARGS_ERR for a type the server does not offer.
        pub error: NdmpError,
        /// The attributes of the requested type; for MD5, the challenge the DMA's digest
        /// must cover.
        pub server_attr: AuthAttr,
    }
}
xdr_struct! {
    /// CONFIG_GET_BUTYPE_INFO reply.
    pub struct ConfigGetButypeInfoReply {
        /// NO_ERR, or why the information is not available.
        pub error: NdmpError,
        /// One entry per backup type (`dump`, `tar`...) the data server can run.
        pub butype_info: Vec<ButypeInfo>,
    }
}
xdr_struct! {
    /// CONFIG_GET_FS_INFO reply.
    pub struct ConfigGetFsInfoReply {
        /// NO_ERR, or why the information is not available.
        pub error: NdmpError,
        /// One entry per file system the data server can back up.
        pub fs_info: Vec<FsInfo>,
    }
}
xdr_struct! {
    /// CONFIG_GET_TAPE_INFO reply.
    pub struct ConfigGetTapeInfoReply {
        /// NO_ERR, or why the information is not available.
        pub error: NdmpError,
        /// The tape drives TAPE_OPEN accepts, grouped by model.
        pub tape_info: Vec<DeviceInfo>,
    }
}
xdr_struct! {
    /// CONFIG_GET_SCSI_INFO reply.
    pub struct ConfigGetScsiInfoReply {
        /// NO_ERR, or why the information is not available.
        pub error: NdmpError,
        /// The SCSI devices (media changers) SCSI_OPEN accepts, grouped by model.
        pub scsi_info: Vec<DeviceInfo>,
    }
}
xdr_struct! {
    /// CONFIG_GET_EXT_LIST reply.
    pub struct ConfigGetExtListReply {
        /// NO_ERR, or why the list is not available.
        pub error: NdmpError,
        /// The extension classes the server offers, each with its versions.
        pub class_list: Vec<ClassList>,
    }
}

/// CONFIG_SET_EXT_LIST request. The spec sends the selected (class, version) pairs; NDMJOB's
/// transcription (Amanda, Bareos) sends an error word and class lists instead. Both layouts
/// decode, and each re-encodes in the layout it arrived in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ConfigSetExtListRequest {
    /// The spec's layout.
    Spec {
        /// One (class, version) pair per extension class the DMA will use.
        ndmp_selected_ext: Vec<ClassVersion>,
    },
    /// NDMJOB's layout.
    Ndmjob {
        /// An error word with no meaning in a request; kept so the body re-encodes unchanged.
        error: NdmpError,
        /// The classes the DMA will use, the selected version first in each.
        accepted_ext: Vec<ClassList>,
    },
}

impl Default for ConfigSetExtListRequest {
    fn default() -> Self {
        ConfigSetExtListRequest::Spec {
            ndmp_selected_ext: Vec::new(),
        }
    }
}

impl ConfigSetExtListRequest {
    /// The selected classes and versions, whichever layout carried them. An NDMJOB-layout
    /// class list names its selected version first.
    pub fn selected(&self) -> Vec<ClassVersion> {
        match self {
            ConfigSetExtListRequest::Spec { ndmp_selected_ext } => ndmp_selected_ext.clone(),
            ConfigSetExtListRequest::Ndmjob { accepted_ext, .. } => accepted_ext
                .iter()
                .map(|c| ClassVersion {
                    ext_class_id: c.ext_class_id,
                    ext_version: c.ext_version.first().copied().unwrap_or(0),
                })
                .collect(),
        }
    }
}

impl Xdr for ConfigSetExtListRequest {
    const MIN_SIZE: usize = 4;
    fn encode(&self, out: &mut BytesMut) {
        match self {
            ConfigSetExtListRequest::Spec { ndmp_selected_ext } => ndmp_selected_ext.encode(out),
            ConfigSetExtListRequest::Ndmjob {
                error,
                accepted_ext,
            } => {
                error.encode(out);
                accepted_ext.encode(out)
            }
        }
    }
    fn decode(r: &mut XdrReader) -> Result<Self, XdrError> {
        // The spec layout wins when it accounts for every byte of the body; otherwise the
        // body must be NDMJOB's layout, and its error (if any) is the one reported.
        let mut spec = r.clone();
        if let Ok(sel) = Vec::<ClassVersion>::decode(&mut spec) {
            if spec.remaining() == 0 {
                *r = spec;
                return Ok(ConfigSetExtListRequest::Spec {
                    ndmp_selected_ext: sel,
                });
            }
        }
        Ok(ConfigSetExtListRequest::Ndmjob {
            error: NdmpError::decode(r)?,
            accepted_ext: Vec::decode(r)?,
        })
    }
}

impl Sample for ConfigSetExtListRequest {
    fn sample(g: &mut Gen) -> Self {
        // only the spec layout: it is the one xdr/ndmp4.x (and so the C oracle) describes
        ConfigSetExtListRequest::Spec {
            ndmp_selected_ext: Vec::sample(g),
        }
    }
}

// ---- SCSI (§3.3)

xdr_struct! {
    /// SCSI_OPEN request.
    pub struct ScsiOpenRequest {
        /// The device name, as CONFIG_GET_SCSI_INFO lists it.
        pub device: NdmpString,
    }
}
xdr_struct! {
    /// SCSI_GET_STATE reply: the SCSI address of the open device.
    pub struct ScsiGetStateReply {
        /// NO_ERR, or DEV_NOT_OPEN_ERR when no SCSI device is open.
        pub error: NdmpError,
        /// The host adapter (controller) number.
        pub target_controller: i16,
        /// The SCSI target ID.
        pub target_id: i16,
        /// The logical unit number.
        pub target_lun: i16,
    }
}

// ---- TAPE (§3.4)

xdr_struct! {
    /// TAPE_OPEN request.
    pub struct TapeOpenRequest {
        /// The drive name, as CONFIG_GET_TAPE_INFO lists it.
        pub device: NdmpString,
        /// Read-only, read-write, or raw access.
        pub mode: TapeOpenMode,
    }
}
xdr_struct! {
    /// TAPE_GET_STATE reply: the open drive's position and cartridge.
    pub struct TapeGetStateReply {
        /// `tape_state::*_UNS` bits: fields the server cannot report.
        pub unsupported: u32,
        /// NO_ERR, or why the state is not available (DEV_NOT_OPEN_ERR...).
        pub error: NdmpError,
        /// `tape_state` bits: NOREWIND, WR_PROT, ERROR, UNLOAD.
        pub flags: u32,
        /// The file the head is in, counted from 0 at the beginning of the tape; all ones
        /// when unknown.
        pub file_num: u32,
        /// Recovered (soft) errors counted since the tape was opened.
        pub soft_errors: u32,
        /// The drive's block size in bytes; 0 for variable-length records.
        pub block_size: u32,
        /// The record the head is at, counted from 0 within the current file; all ones when
        /// unknown.
        pub blockno: u32,
        /// The cartridge's capacity in bytes.
        pub total_space: u64,
        /// The cartridge's remaining capacity in bytes.
        pub space_remain: u64,
    }
}
xdr_struct! {
    /// TAPE_MTIO request: one positioning or filemark operation, repeated `count` times.
    pub struct TapeMtioRequest {
        /// What to do.
        pub tape_op: MtioOp,
        /// How many files, records or filemarks; ignored by REW, OFF and TUR.
        pub count: u32,
    }
}
xdr_struct! {
    /// TAPE_MTIO reply.
    pub struct TapeMtioReply {
        /// NO_ERR, or why the operation failed.
        pub error: NdmpError,
        /// How much of `count` was not done, e.g. when spacing stopped at a filemark.
        pub resid_count: u32,
    }
}
xdr_struct! {
    /// TAPE_WRITE request.
    pub struct TapeWriteRequest {
        /// The bytes to write, as one tape record.
        pub data_out: Opaque,
    }
}
xdr_struct! {
    /// TAPE_WRITE reply.
    pub struct TapeWriteReply {
        /// NO_ERR, or why the write failed (EOM_ERR at the end of the cartridge...).
        pub error: NdmpError,
        /// How many bytes were written.
        pub count: u32,
    }
}
xdr_struct! {
    /// TAPE_READ request.
    pub struct TapeReadRequest {
        /// The most bytes to return: the size of the DMA's buffer for one record.
        pub count: u32,
    }
}
xdr_struct! {
    /// TAPE_READ reply.
    pub struct TapeReadReply {
        /// NO_ERR, or why the read failed (EOF_ERR at a filemark...).
        pub error: NdmpError,
        /// The record read; shorter than `count` when the record is.
        pub data_in: Opaque,
    }
}

// ---- DATA (§3.5)

xdr_struct! {
    /// DATA_GET_STATE reply: the DATA variables of spec §3.5.1.
    pub struct DataGetStateReply {
        /// `data_state_uns` bits: the estimates the server cannot give.
        pub unsupported: u32,
        /// NO_ERR, or why the state is not available.
        pub error: NdmpError,
        /// The operation started (backup, recover...), NOACTION before one.
        pub operation: DataOperation,
        /// Where the data server is in its state machine.
        pub state: DataState,
        /// Why the operation ended; NA unless the state is HALTED.
        pub halt_reason: DataHaltReason,
        /// Bytes of the backup image sent or received so far.
        pub bytes_processed: u64,
        /// Estimated bytes of image still to go.
        pub est_bytes_remain: u64,
        /// Estimated seconds still to go.
        pub est_time_remain: u32,
        /// The peer of the data connection.
        pub data_connection_addr: Addr,
        /// The image offset of the last NOTIFY_DATA_READ.
        pub read_offset: u64,
        /// The length of the last NOTIFY_DATA_READ.
        pub read_length: u64,
    }
}
xdr_struct! {
    /// DATA_START_BACKUP request.
    pub struct DataStartBackupRequest {
        /// The backup type to write (`dump`, `tar`), as CONFIG_GET_BUTYPE_INFO lists it.
        pub butype_name: NdmpString,
        /// The backup's environment variables (FILESYSTEM, LEVEL, HIST...).
        pub env: Vec<Pval>,
    }
}
xdr_struct! {
    /// DATA_START_RECOVER and DATA_START_RECOVER_FILEHIST.
    pub struct DataStartRecoverRequest {
        /// The recovery's environment variables, usually those DATA_GET_ENV returned after
        /// the backup.
        pub env: Vec<Pval>,
        /// The files to recover and where to put them.
        pub nlist: Vec<Name>,
        /// The backup type the image was written with.
        pub butype_name: NdmpString,
    }
}
xdr_struct! {
    /// DATA_GET_ENV reply.
    pub struct DataGetEnvReply {
        /// NO_ERR, or why the environment is not available.
        pub error: NdmpError,
        /// The environment of the backup, with the variables the server added, for the DMA to
        /// keep and hand back to DATA_START_RECOVER.
        pub env: Vec<Pval>,
    }
}
xdr_struct! {
    /// DATA_LISTEN request.
    pub struct DataListenRequest {
        /// The kind of endpoint to open for the mover to connect to.
        pub addr_type: AddrType,
    }
}
xdr_struct! {
    /// DATA_LISTEN and MOVER_LISTEN: where the peer should connect.
    pub struct ListenReply {
        /// NO_ERR, or why no endpoint was opened.
        pub error: NdmpError,
        /// The endpoint opened, for the DMA to pass to the peer's CONNECT.
        pub connect_addr: Addr,
    }
}
xdr_struct! {
    /// DATA_CONNECT request.
    pub struct DataConnectRequest {
        /// The listening mover to connect to.
        pub addr: Addr,
    }
}

// ---- MOVER (§3.6)

xdr_struct! {
    /// MOVER_SET_RECORD_SIZE request.
    pub struct MoverSetRecordSizeRequest {
        /// The tape record size in bytes.
        pub len: u32,
    }
}
xdr_struct! {
    /// MOVER_SET_WINDOW and MOVER_READ: a byte range of the image stream.
    pub struct MoverRangeRequest {
        /// The first byte of the range, as an offset in the image stream.
        pub offset: u64,
        /// The range's length in bytes; all ones for "to the end".
        pub length: u64,
    }
}
xdr_struct! {
    /// MOVER_CONNECT request.
    pub struct MoverConnectRequest {
        /// READ to write a backup to tape, WRITE to read one back.
        pub mode: MoverMode,
        /// The listening data server to connect to.
        pub addr: Addr,
    }
}
xdr_struct! {
    /// MOVER_LISTEN request.
    pub struct MoverListenRequest {
        /// READ to write a backup to tape, WRITE to read one back.
        pub mode: MoverMode,
        /// The kind of endpoint to open for the data server to connect to.
        pub addr_type: AddrType,
    }
}
xdr_struct! {
    /// MOVER_GET_STATE reply: the MOVER variables of spec §3.6.1.
    pub struct MoverGetStateReply {
        /// NO_ERR, or why the state is not available.
        pub error: NdmpError,
        /// The direction of the transfer.
        pub mode: MoverMode,
        /// Where the mover is in its state machine.
        pub state: MoverState,
        /// Why the mover is waiting; NA unless the state is PAUSED.
        pub pause_reason: MoverPauseReason,
        /// Why the transfer ended; NA unless the state is HALTED.
        pub halt_reason: MoverHaltReason,
        /// The tape record size in bytes.
        pub record_size: u32,
        /// The number of records from the start of the image stream up to and including the
        /// last one read or written.
        pub record_num: u32,
        /// Bytes moved between the data connection and the tape so far.
        pub bytes_moved: u64,
        /// The image offset the mover needs next when it paused, or that the last MOVER_READ
        /// asked for.
        pub seek_position: u64,
        /// Bytes of the current MOVER_READ not sent yet.
        pub bytes_left_to_read: u64,
        /// The image offset of the window's first byte.
        pub window_offset: u64,
        /// The window's length in bytes; all ones for an open-ended window.
        pub window_length: u64,
        /// The peer of the data connection.
        pub data_connection_addr: Addr,
    }
}

// ---- NOTIFY, LOG, FH (§4)

xdr_struct! {
    /// NOTIFY_DATA_HALTED post: the data server entered HALTED.
    pub struct NotifyDataHaltedPost {
        /// Why it halted.
        pub reason: DataHaltReason,
    }
}
xdr_struct! {
    /// The first message on every connection.
    pub struct NotifyConnectionStatusPost {
        /// Whether the server accepts the connection, or why it ends it.
        pub reason: ConnectionStatusReason,
        /// The highest protocol version the server speaks.
        pub protocol_version: u16,
        /// A message for people; may be empty.
        pub text_reason: NdmpString,
    }
}
xdr_struct! {
    /// NOTIFY_MOVER_HALTED post: the mover entered HALTED.
    pub struct NotifyMoverHaltedPost {
        /// Why it halted.
        pub reason: MoverHaltReason,
    }
}
xdr_struct! {
    /// NOTIFY_MOVER_PAUSED post: the mover entered PAUSED and waits for the DMA.
    pub struct NotifyMoverPausedPost {
        /// Why it paused.
        pub reason: MoverPauseReason,
        /// The image offset the mover needs next.
        pub seek_position: u64,
    }
}
xdr_struct! {
    /// NOTIFY_DATA_READ post: the data server asks for a part of the image (direct access
    /// recovery).
    pub struct NotifyDataReadPost {
        /// The image offset of the first byte wanted.
        pub offset: u64,
        /// How many bytes are wanted; all ones for "to the end".
        pub length: u64,
    }
}
xdr_struct! {
    /// LOG_MESSAGE post: a line for the DMA's job log.
    pub struct LogMessagePost {
        /// The message's severity.
        pub log_type: LogType,
        /// A number identifying the message.
        pub message_id: u32,
        /// The text.
        pub entry: NdmpString,
        /// Whether the message is about one request.
        pub associated_message_valid: HasAssociatedMessage,
        /// That request's sequence number, when `associated_message_valid` says so.
        pub associated_message_sequence: u32,
    }
}
xdr_struct! {
    /// LOG_FILE post: the outcome of recovering one entry of the name list.
    pub struct LogFilePost {
        /// The entry's path, as the name list gave it.
        pub name: NdmpString,
        /// Whether it was recovered, and if not why.
        pub recovery_status: RecoveryStatus,
    }
}
xdr_struct! {
    /// FH_ADD_FILE post: path-based file history.
    pub struct FhAddFilePost {
        /// The files backed up (or found in the image) since the last post.
        pub files: Vec<File>,
    }
}
xdr_struct! {
    /// FH_ADD_DIR post: the directory entries of inode-based file history.
    pub struct FhAddDirPost {
        /// The directory entries since the last post.
        pub dirs: Vec<Dir>,
    }
}
xdr_struct! {
    /// FH_ADD_NODE post: the inodes of inode-based file history.
    pub struct FhAddNodePost {
        /// The inodes since the last post.
        pub nodes: Vec<Node>,
    }
}

/// Builds an enum with one variant per message code plus `Unknown`, and its codec.
macro_rules! message_enum {
    ($(#[$m:meta])* $name:ident (v3: $v3:ty) { $($variant:ident = $code:ident => $body:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
        #[serde(untagged)]
        pub enum $name {
            $(
                #[doc = concat!("The body of ", stringify!($code), ".")]
                $variant($body),
            )*
            /// A body whose NDMP v3 layout differs from v4's (see `wire::v3`).
            V3($v3),
            /// A code with no body definition in this direction (vendor extensions,
            /// obsolete codes): the raw body is kept so it can be relayed or shown.
            Unknown {
                /// The message code from the header.
                code: MessageCode,
                /// The body's bytes as received, without a length word.
                body: Opaque,
            },
        }

        impl $name {
            /// The message code that goes in the header with this body.
            pub fn code(&self) -> MessageCode {
                match self {
                    $($name::$variant(_) => MessageCode::$code,)*
                    $name::V3(b) => b.code(),
                    $name::Unknown { code, .. } => *code,
                }
            }

            /// Appends the body's XDR encoding; an `Unknown` body goes out byte for byte.
            pub fn encode(&self, out: &mut BytesMut) {
                match self {
                    $($name::$variant(b) => b.encode(out),)*
                    $name::V3(b) => b.encode(out),
                    // Unknown bodies are stored as-is, without an XDR length word.
                    $name::Unknown { body, .. } => out.extend_from_slice(&body.0),
                }
            }

            /// Decodes the body of a message with this code. The body must use every byte.
            pub fn decode(code: MessageCode, r: &mut XdrReader) -> Result<Self, XdrError> {
                let v = match code {
                    $(MessageCode::$code => $name::$variant(<$body>::decode(r)?),)*
                    _ => {
                        let body = r.rest().clone();
                        *r = XdrReader::with_limits(Bytes::new(), r.limits());
                        $name::Unknown { code, body: Opaque(body) }
                    }
                };
                r.finish()?;
                Ok(v)
            }

            /// Every code that has a body definition in this direction.
            pub const CODES: &'static [MessageCode] = &[$(MessageCode::$code),*];

            /// A random valid body for `code`, or `None` if this direction has none.
            pub fn sample(code: MessageCode, g: &mut Gen) -> Option<Self> {
                match code {
                    $(MessageCode::$code => Some($name::$variant(<$body>::sample(g))),)*
                    _ => None,
                }
            }

            /// The error code the body reports (replies only).
            pub fn error(&self) -> Option<NdmpError> {
                match self {
                    $($name::$variant(b) => b.body_error(),)*
                    $name::V3(b) => b.error(),
                    $name::Unknown { .. } => None,
                }
            }

            /// A body for `code` that carries only `error`: how a server answers a request
            /// it refuses (NOT_AUTHORIZED, NOT_SUPPORTED...) while keeping the reply decodable.
            /// `None` for codes without a body in this direction.
            pub fn with_error(code: MessageCode, error: NdmpError) -> Option<Self> {
                match code {
                    $(MessageCode::$code => Some($name::$variant(<$body as BodyError>::with_error(error))),)*
                    _ => None,
                }
            }

            /// The body as JSON, for `ndmpd pcap --json`.
            pub fn to_json(&self) -> serde_json::Value {
                serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
            }
        }
    };
}

message_enum! {
    /// The body of a request or post (message_type REQUEST).
    Request (v3: V3Request) {
        ConnectOpen = CONNECT_OPEN => ConnectOpenRequest,
        ConnectClientAuth = CONNECT_CLIENT_AUTH => ConnectClientAuthRequest,
        ConnectClose = CONNECT_CLOSE => Void,
        ConnectServerAuth = CONNECT_SERVER_AUTH => ConnectServerAuthRequest,
        ConfigGetHostInfo = CONFIG_GET_HOST_INFO => Void,
        ConfigGetConnectionType = CONFIG_GET_CONNECTION_TYPE => Void,
        ConfigGetAuthAttr = CONFIG_GET_AUTH_ATTR => ConfigGetAuthAttrRequest,
        ConfigGetButypeInfo = CONFIG_GET_BUTYPE_INFO => Void,
        ConfigGetFsInfo = CONFIG_GET_FS_INFO => Void,
        ConfigGetTapeInfo = CONFIG_GET_TAPE_INFO => Void,
        ConfigGetScsiInfo = CONFIG_GET_SCSI_INFO => Void,
        ConfigGetServerInfo = CONFIG_GET_SERVER_INFO => Void,
        ConfigSetExtList = CONFIG_SET_EXT_LIST => ConfigSetExtListRequest,
        ConfigGetExtList = CONFIG_GET_EXT_LIST => Void,
        ScsiOpen = SCSI_OPEN => ScsiOpenRequest,
        ScsiClose = SCSI_CLOSE => Void,
        ScsiGetState = SCSI_GET_STATE => Void,
        ScsiResetDevice = SCSI_RESET_DEVICE => Void,
        ScsiExecuteCdb = SCSI_EXECUTE_CDB => ExecuteCdbRequest,
        TapeOpen = TAPE_OPEN => TapeOpenRequest,
        TapeClose = TAPE_CLOSE => Void,
        TapeGetState = TAPE_GET_STATE => Void,
        TapeMtio = TAPE_MTIO => TapeMtioRequest,
        TapeWrite = TAPE_WRITE => TapeWriteRequest,
        TapeRead = TAPE_READ => TapeReadRequest,
        TapeExecuteCdb = TAPE_EXECUTE_CDB => ExecuteCdbRequest,
        DataGetState = DATA_GET_STATE => Void,
        DataStartBackup = DATA_START_BACKUP => DataStartBackupRequest,
        DataStartRecover = DATA_START_RECOVER => DataStartRecoverRequest,
        DataAbort = DATA_ABORT => Void,
        DataGetEnv = DATA_GET_ENV => Void,
        DataStop = DATA_STOP => Void,
        DataListen = DATA_LISTEN => DataListenRequest,
        DataConnect = DATA_CONNECT => DataConnectRequest,
        DataStartRecoverFilehist = DATA_START_RECOVER_FILEHIST => DataStartRecoverRequest,
        NotifyDataHalted = NOTIFY_DATA_HALTED => NotifyDataHaltedPost,
        NotifyConnectionStatus = NOTIFY_CONNECTION_STATUS => NotifyConnectionStatusPost,
        NotifyMoverHalted = NOTIFY_MOVER_HALTED => NotifyMoverHaltedPost,
        NotifyMoverPaused = NOTIFY_MOVER_PAUSED => NotifyMoverPausedPost,
        NotifyDataRead = NOTIFY_DATA_READ => NotifyDataReadPost,
        LogFile = LOG_FILE => LogFilePost,
        LogMessage = LOG_MESSAGE => LogMessagePost,
        FhAddFile = FH_ADD_FILE => FhAddFilePost,
        FhAddDir = FH_ADD_DIR => FhAddDirPost,
        FhAddNode = FH_ADD_NODE => FhAddNodePost,
        MoverGetState = MOVER_GET_STATE => Void,
        MoverListen = MOVER_LISTEN => MoverListenRequest,
        MoverContinue = MOVER_CONTINUE => Void,
        MoverAbort = MOVER_ABORT => Void,
        MoverStop = MOVER_STOP => Void,
        MoverSetWindow = MOVER_SET_WINDOW => MoverRangeRequest,
        MoverRead = MOVER_READ => MoverRangeRequest,
        MoverClose = MOVER_CLOSE => Void,
        MoverSetRecordSize = MOVER_SET_RECORD_SIZE => MoverSetRecordSizeRequest,
        MoverConnect = MOVER_CONNECT => MoverConnectRequest,
        CabDataConnPrepare = CAB_DATA_CONN_PREPARE => super::netapp::CabDataConnPrepareRequest,
    }
}

message_enum! {
    /// The body of a reply (message_type REPLY) whose header carries no error.
    Reply (v3: V3Reply) {
        ConnectOpen = CONNECT_OPEN => ErrorReply,
        ConnectClientAuth = CONNECT_CLIENT_AUTH => ErrorReply,
        ConnectServerAuth = CONNECT_SERVER_AUTH => ConnectServerAuthReply,
        ConfigGetHostInfo = CONFIG_GET_HOST_INFO => ConfigGetHostInfoReply,
        ConfigGetConnectionType = CONFIG_GET_CONNECTION_TYPE => ConfigGetConnectionTypeReply,
        ConfigGetAuthAttr = CONFIG_GET_AUTH_ATTR => ConfigGetAuthAttrReply,
        ConfigGetButypeInfo = CONFIG_GET_BUTYPE_INFO => ConfigGetButypeInfoReply,
        ConfigGetFsInfo = CONFIG_GET_FS_INFO => ConfigGetFsInfoReply,
        ConfigGetTapeInfo = CONFIG_GET_TAPE_INFO => ConfigGetTapeInfoReply,
        ConfigGetScsiInfo = CONFIG_GET_SCSI_INFO => ConfigGetScsiInfoReply,
        ConfigGetServerInfo = CONFIG_GET_SERVER_INFO => ConfigGetServerInfoReply,
        ConfigSetExtList = CONFIG_SET_EXT_LIST => ErrorReply,
        ConfigGetExtList = CONFIG_GET_EXT_LIST => ConfigGetExtListReply,
        ScsiOpen = SCSI_OPEN => ErrorReply,
        ScsiClose = SCSI_CLOSE => ErrorReply,
        ScsiGetState = SCSI_GET_STATE => ScsiGetStateReply,
        ScsiResetDevice = SCSI_RESET_DEVICE => ErrorReply,
        ScsiExecuteCdb = SCSI_EXECUTE_CDB => ExecuteCdbReply,
        TapeOpen = TAPE_OPEN => ErrorReply,
        TapeClose = TAPE_CLOSE => ErrorReply,
        TapeGetState = TAPE_GET_STATE => TapeGetStateReply,
        TapeMtio = TAPE_MTIO => TapeMtioReply,
        TapeWrite = TAPE_WRITE => TapeWriteReply,
        TapeRead = TAPE_READ => TapeReadReply,
        TapeExecuteCdb = TAPE_EXECUTE_CDB => ExecuteCdbReply,
        DataGetState = DATA_GET_STATE => DataGetStateReply,
        DataStartBackup = DATA_START_BACKUP => ErrorReply,
        DataStartRecover = DATA_START_RECOVER => ErrorReply,
        DataAbort = DATA_ABORT => ErrorReply,
        DataGetEnv = DATA_GET_ENV => DataGetEnvReply,
        DataStop = DATA_STOP => ErrorReply,
        DataListen = DATA_LISTEN => ListenReply,
        DataConnect = DATA_CONNECT => ErrorReply,
        DataStartRecoverFilehist = DATA_START_RECOVER_FILEHIST => ErrorReply,
        MoverGetState = MOVER_GET_STATE => MoverGetStateReply,
        MoverListen = MOVER_LISTEN => ListenReply,
        MoverContinue = MOVER_CONTINUE => ErrorReply,
        MoverAbort = MOVER_ABORT => ErrorReply,
        MoverStop = MOVER_STOP => ErrorReply,
        MoverSetWindow = MOVER_SET_WINDOW => ErrorReply,
        MoverRead = MOVER_READ => ErrorReply,
        MoverClose = MOVER_CLOSE => ErrorReply,
        MoverSetRecordSize = MOVER_SET_RECORD_SIZE => ErrorReply,
        MoverConnect = MOVER_CONNECT => ErrorReply,
        CabDataConnPrepare = CAB_DATA_CONN_PREPARE => ErrorReply,
    }
}

/// The error field of a body: replies have one, requests and posts do not.
pub trait BodyError: Default {
    /// The body's error field; `None` for bodies without one.
    fn body_error(&self) -> Option<NdmpError> {
        None
    }
    /// A body whose only content is `error` (the default body for types without one).
    fn with_error(_error: NdmpError) -> Self {
        Self::default()
    }
}

macro_rules! body_error {
    (with: $($with:ty),*; without: $($without:ty),* $(,)?) => {
        $(impl BodyError for $with {
            fn body_error(&self) -> Option<NdmpError> {
                Some(self.error)
            }
            #[allow(clippy::needless_update)] // ErrorReply has no other field
            fn with_error(error: NdmpError) -> Self {
                Self { error, ..Self::default() }
            }
        })*
        $(impl BodyError for $without {})*
    };
}

body_error! {
    with: ErrorReply, ConnectServerAuthReply, ConfigGetHostInfoReply, ConfigGetServerInfoReply,
        ConfigGetConnectionTypeReply, ConfigGetAuthAttrReply, ConfigGetButypeInfoReply,
        ConfigGetFsInfoReply, ConfigGetTapeInfoReply, ConfigGetScsiInfoReply,
        ConfigGetExtListReply, ScsiGetStateReply, ExecuteCdbReply, TapeGetStateReply,
        TapeMtioReply, TapeWriteReply, TapeReadReply, DataGetStateReply, DataGetEnvReply,
        ListenReply, MoverGetStateReply;
    without: Void, ConnectOpenRequest, ConnectClientAuthRequest, ConnectServerAuthRequest,
        ConfigGetAuthAttrRequest, ConfigSetExtListRequest, ScsiOpenRequest, ExecuteCdbRequest,
        TapeOpenRequest, TapeMtioRequest, TapeWriteRequest, TapeReadRequest,
        DataStartBackupRequest, DataStartRecoverRequest, DataListenRequest, DataConnectRequest,
        MoverSetRecordSizeRequest, MoverRangeRequest, MoverConnectRequest, MoverListenRequest,
        NotifyDataHaltedPost, NotifyConnectionStatusPost, NotifyMoverHaltedPost,
        NotifyMoverPausedPost, NotifyDataReadPost, LogMessagePost, LogFilePost, FhAddFilePost,
        FhAddDirPost, FhAddNodePost, super::netapp::CabDataConnPrepareRequest,
}

// ---- NDMP v3 (`xdr/ndmp3.x`): the bodies whose layout differs from v4's. They live here,
// beside the enums that carry them; `wire::v3` translates between them and v4.

/// SCSI_SET_TARGET: v3 only (v4 keeps its code point as SCSI_OBSOLETE1).
pub const SCSI_SET_TARGET: MessageCode = MessageCode::SCSI_OBSOLETE1;
/// SCSI_RESET_BUS: v3 only (v4 keeps its code point as SCSI_OBSOLETE2).
pub const SCSI_RESET_BUS: MessageCode = MessageCode::SCSI_OBSOLETE2;

/// Codes that exist in v4 only: a v3 session treats them as unknown.
pub fn v4_only(code: MessageCode) -> bool {
    matches!(
        code,
        MessageCode::CONFIG_SET_EXT_LIST
            | MessageCode::CONFIG_GET_EXT_LIST
            | MessageCode::DATA_START_RECOVER_FILEHIST
    )
}

xdr_struct! {
    /// `ndmp3_tcp_addr`: one IPv4 endpoint, without v4's per-address environment.
    pub struct TcpAddr3 {
        /// The IPv4 address as a big-endian u32.
        pub ip_addr: u32,
        /// The TCP port.
        pub port: u16,
    }
}

xdr_struct! {
    /// `ndmp3_fc_addr`: a Fibre Channel loop id (v3 only; this server has no FC).
    pub struct FcAddr3 {
        /// The loop id.
        pub loop_id: u32,
    }
}

/// `ndmp3_addr`: a data-connection endpoint; TCP is a single address.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(tag = "addr_type")]
pub enum Addr3 {
    /// Both ends in the same server.
    #[default]
    #[serde(rename = "LOCAL")]
    Local,
    /// One TCP endpoint.
    #[serde(rename = "TCP")]
    Tcp(TcpAddr3),
    /// A Fibre Channel endpoint.
    #[serde(rename = "FC")]
    Fc(FcAddr3),
    /// An IPC channel on the server host.
    #[serde(rename = "IPC")]
    Ipc(IpcAddr),
}

impl Xdr for Addr3 {
    const MIN_SIZE: usize = 4;
    fn encode(&self, out: &mut BytesMut) {
        match self {
            Addr3::Local => out.put_u32(0),
            Addr3::Tcp(a) => {
                out.put_u32(1);
                a.encode(out)
            }
            Addr3::Fc(a) => {
                out.put_u32(2);
                a.encode(out)
            }
            Addr3::Ipc(a) => {
                out.put_u32(3);
                a.encode(out)
            }
        }
    }
    fn decode(r: &mut XdrReader) -> Result<Self, XdrError> {
        let offset = r.offset();
        match r.u32("addr_type")? {
            0 => Ok(Addr3::Local),
            1 => Ok(Addr3::Tcp(TcpAddr3::decode(r)?)),
            2 => Ok(Addr3::Fc(FcAddr3::decode(r)?)),
            3 => Ok(Addr3::Ipc(IpcAddr::decode(r)?)),
            value => Err(XdrError::BadDiscriminant {
                offset,
                what: "ndmp3_addr_type",
                value,
            }),
        }
    }
}

impl Sample for Addr3 {
    fn sample(g: &mut Gen) -> Self {
        match g.below(4) {
            0 => Addr3::Local,
            1 => Addr3::Tcp(TcpAddr3::sample(g)),
            2 => Addr3::Fc(FcAddr3::sample(g)),
            _ => Addr3::Ipc(IpcAddr::sample(g)),
        }
    }
}

impl Addr3 {
    /// The v4 form; `None` for Fibre Channel, which v4 does not have.
    pub fn to_v4(&self) -> Option<Addr> {
        match self {
            Addr3::Local => Some(Addr::Local),
            Addr3::Tcp(t) => Some(Addr::Tcp {
                tcp_addr: vec![TcpAddr {
                    ip_addr: t.ip_addr,
                    port: t.port,
                    addr_env: Vec::new(),
                }],
            }),
            Addr3::Fc(_) => None,
            Addr3::Ipc(i) => Some(Addr::Ipc(i.clone())),
        }
    }

    /// The v3 form of a v4 address: its preferred TCP address (v3 has room for one).
    pub fn from_v4(a: &Addr) -> Addr3 {
        match a {
            Addr::Local => Addr3::Local,
            Addr::Tcp { tcp_addr } => Addr3::Tcp(
                tcp_addr
                    .first()
                    .map(|t| TcpAddr3 {
                        ip_addr: t.ip_addr,
                        port: t.port,
                    })
                    .unwrap_or_default(),
            ),
            Addr::Ipc(i) => Addr3::Ipc(i.clone()),
            // v3 has no IPv6 address (NetApp's CAE extends v4 only): an IPv4-mapped one goes
            // as IPv4, any other as the unspecified address
            Addr::TcpIpv6 { tcp_ipv6_addr } => Addr3::Tcp(
                tcp_ipv6_addr
                    .iter()
                    .find_map(|t| {
                        std::net::Ipv6Addr::from(t.ipv6_addr.0)
                            .to_ipv4_mapped()
                            .map(|v4| TcpAddr3 {
                                ip_addr: u32::from(v4),
                                port: t.port,
                            })
                    })
                    .unwrap_or_default(),
            ),
        }
    }
}

xdr_struct! {
    /// DATA_CONNECT request (v3): connect to a listening mover at one address.
    pub struct DataConnectRequest3 {
        /// The mover's endpoint.
        pub addr: Addr3,
    }
}
xdr_struct! {
    /// MOVER_CONNECT request (v3): connect to a listening data server at one address.
    pub struct MoverConnectRequest3 {
        /// Which way the image flows.
        pub mode: MoverMode,
        /// The data server's endpoint.
        pub addr: Addr3,
    }
}
xdr_struct! {
    /// SCSI_SET_TARGET request (v3 only): point the open SCSI device at another target.
    pub struct ScsiSetTargetRequest3 {
        /// The device name.
        pub device: NdmpString,
        /// The controller.
        pub target_controller: u16,
        /// The target id.
        pub target_id: u16,
        /// The logical unit.
        pub target_lun: u16,
    }
}
xdr_struct! {
    /// NOTIFY_DATA_HALTED post (v3): the reason, and the same in words.
    pub struct NotifyDataHaltedPost3 {
        /// Why the data server halted.
        pub reason: DataHaltReason,
        /// The reason in words.
        pub text_reason: NdmpString,
    }
}
xdr_struct! {
    /// NOTIFY_MOVER_HALTED post (v3): the reason (no MEDIA_ERROR in v3), and in words.
    pub struct NotifyMoverHaltedPost3 {
        /// Why the mover halted.
        pub reason: MoverHaltReason,
        /// The reason in words.
        pub text_reason: NdmpString,
    }
}
xdr_struct! {
    /// LOG_MESSAGE post (v3): no associated-message fields.
    pub struct LogMessagePost3 {
        /// The message's severity.
        pub log_type: LogType,
        /// A number identifying the message.
        pub message_id: u32,
        /// The text.
        pub entry: NdmpString,
    }
}
xdr_struct! {
    /// LOG_FILE post (v3): the outcome of one name-list entry as an NDMP error code.
    pub struct LogFilePost3 {
        /// The entry's path.
        pub name: NdmpString,
        /// NO_ERR when recovered, otherwise why not.
        pub error: NdmpError,
    }
}
xdr_struct! {
    /// TAPE_GET_STATE reply (v3): an `invalid` mask and a trailing partition number.
    pub struct TapeGetStateReply3 {
        /// Bits of the fields that carry no value (v4's `unsupported` plus PARTITION 0x40).
        pub invalid: u32,
        /// NO_ERR or why the state is unavailable.
        pub error: NdmpError,
        /// Drive flags.
        pub flags: u32,
        /// The current file number.
        pub file_num: u32,
        /// Soft errors.
        pub soft_errors: u32,
        /// The block size.
        pub block_size: u32,
        /// The block number within the file.
        pub blockno: u32,
        /// Capacity in bytes.
        pub total_space: u64,
        /// Bytes left.
        pub space_remain: u64,
        /// The partition.
        pub partition: u32,
    }
}
xdr_struct! {
    /// DATA_GET_STATE reply (v3): v4's fields with a v3 address.
    pub struct DataGetStateReply3 {
        /// Bits of the estimates that carry no value.
        pub invalid: u32,
        /// NO_ERR or why the state is unavailable.
        pub error: NdmpError,
        /// The operation.
        pub operation: DataOperation,
        /// The state.
        pub state: DataState,
        /// Why it halted.
        pub halt_reason: DataHaltReason,
        /// Bytes of the image so far.
        pub bytes_processed: u64,
        /// Estimated bytes left.
        pub est_bytes_remain: u64,
        /// Estimated seconds left.
        pub est_time_remain: u32,
        /// The data connection's endpoint.
        pub data_connection_addr: Addr3,
        /// The offset of the current NOTIFY_DATA_READ.
        pub read_offset: u64,
        /// The length of the current NOTIFY_DATA_READ.
        pub read_length: u64,
    }
}
xdr_struct! {
    /// DATA_LISTEN and MOVER_LISTEN reply (v3): one address.
    pub struct ListenReply3 {
        /// NO_ERR or why no endpoint was opened.
        pub error: NdmpError,
        /// The endpoint to connect to.
        pub data_connection_addr: Addr3,
    }
}
xdr_struct! {
    /// MOVER_GET_STATE reply (v3): no mode, `data_written` for v4's `bytes_moved`.
    pub struct MoverGetStateReply3 {
        /// NO_ERR or why the state is unavailable.
        pub error: NdmpError,
        /// The state.
        pub state: MoverState,
        /// Why it paused.
        pub pause_reason: MoverPauseReason,
        /// Why it halted.
        pub halt_reason: MoverHaltReason,
        /// The record size.
        pub record_size: u32,
        /// Records moved.
        pub record_num: u32,
        /// Bytes moved.
        pub data_written: u64,
        /// The image offset needed next.
        pub seek_position: u64,
        /// Bytes left of the current MOVER_READ.
        pub bytes_left_to_read: u64,
        /// The window's offset.
        pub window_offset: u64,
        /// The window's length.
        pub window_length: u64,
        /// The data connection's endpoint.
        pub data_connection_addr: Addr3,
    }
}

impl BodyError for DataConnectRequest3 {}
impl BodyError for MoverConnectRequest3 {}
impl BodyError for ScsiSetTargetRequest3 {}
impl BodyError for NotifyDataHaltedPost3 {}
impl BodyError for NotifyMoverHaltedPost3 {}
impl BodyError for LogMessagePost3 {}
impl BodyError for LogFilePost3 {}
macro_rules! with_error {
    ($($t:ty),*) => {$(
        impl BodyError for $t {
            fn body_error(&self) -> Option<NdmpError> {
                Some(self.error)
            }
            fn with_error(error: NdmpError) -> Self {
                Self { error, ..Self::default() }
            }
        }
    )*};
}
with_error!(
    TapeGetStateReply3,
    DataGetStateReply3,
    ListenReply3,
    MoverGetStateReply3
);

/// Builds the enum of the v3-only bodies in one direction, with its codec.
macro_rules! v3_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $code:expr => $body:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
        #[serde(untagged)]
        pub enum $name {
            $(
                #[doc = concat!("The v3 body of ", stringify!($variant), ".")]
                $variant($body),
            )*
        }

        impl $name {
            /// The message code of this body.
            pub fn code(&self) -> MessageCode {
                match self {
                    $($name::$variant(_) => $code,)*
                }
            }

            /// Appends the body's XDR encoding.
            pub fn encode(&self, out: &mut BytesMut) {
                match self {
                    $($name::$variant(b) => b.encode(out),)*
                }
            }

            /// Decodes the v3 body of `code`; `None` when v3 and v4 share its layout.
            pub fn decode(code: MessageCode, r: &mut XdrReader) -> Option<Result<Self, XdrError>> {
                $(if code == $code {
                    return Some(<$body>::decode(r).map($name::$variant));
                })*
                None
            }

            /// A random valid body for `code`, or `None` if v3 has no body of its own there.
            pub fn sample(code: MessageCode, g: &mut Gen) -> Option<Self> {
                $(if code == $code {
                    return Some($name::$variant(<$body>::sample(g)));
                })*
                None
            }

            /// A body for `code` that carries only `error`.
            pub fn with_error(code: MessageCode, error: NdmpError) -> Option<Self> {
                $(if code == $code {
                    return Some($name::$variant(<$body as BodyError>::with_error(error)));
                })*
                None
            }

            /// The error code the body reports (replies only).
            pub fn error(&self) -> Option<NdmpError> {
                match self {
                    $($name::$variant(b) => b.body_error(),)*
                }
            }

            /// The codes with a v3 body of their own in this direction.
            pub const CODES: &'static [MessageCode] = &[$($code),*];
        }
    };
}

v3_enum! {
    /// A v3 request or post whose body differs from v4's.
    V3Request {
        DataConnect = MessageCode::DATA_CONNECT => DataConnectRequest3,
        MoverConnect = MessageCode::MOVER_CONNECT => MoverConnectRequest3,
        ScsiSetTarget = SCSI_SET_TARGET => ScsiSetTargetRequest3,
        ScsiResetBus = SCSI_RESET_BUS => Void,
        NotifyDataHalted = MessageCode::NOTIFY_DATA_HALTED => NotifyDataHaltedPost3,
        NotifyMoverHalted = MessageCode::NOTIFY_MOVER_HALTED => NotifyMoverHaltedPost3,
        LogFile = MessageCode::LOG_FILE => LogFilePost3,
        LogMessage = MessageCode::LOG_MESSAGE => LogMessagePost3,
    }
}

v3_enum! {
    /// A v3 reply whose body differs from v4's.
    V3Reply {
        ScsiSetTarget = SCSI_SET_TARGET => ErrorReply,
        ScsiResetBus = SCSI_RESET_BUS => ErrorReply,
        TapeGetState = MessageCode::TAPE_GET_STATE => TapeGetStateReply3,
        DataGetState = MessageCode::DATA_GET_STATE => DataGetStateReply3,
        DataListen = MessageCode::DATA_LISTEN => ListenReply3,
        MoverGetState = MessageCode::MOVER_GET_STATE => MoverGetStateReply3,
        MoverListen = MessageCode::MOVER_LISTEN => ListenReply3,
    }
}

fn unknown(code: MessageCode, r: &mut XdrReader) -> (MessageCode, Opaque) {
    let body = r.rest().clone();
    *r = XdrReader::with_limits(Bytes::new(), r.limits());
    (code, Opaque(body))
}

/// Decodes a v3 request or post body: v3's own layout where it differs, v4's elsewhere;
/// v4-only codes come back as `Unknown`. The body must use every byte.
pub fn decode_request_v3(code: MessageCode, r: &mut XdrReader) -> Result<Request, XdrError> {
    let v = if let Some(b) = V3Request::decode(code, r) {
        Request::V3(b?)
    } else if v4_only(code) {
        let (code, body) = unknown(code, r);
        Request::Unknown { code, body }
    } else {
        return Request::decode(code, r);
    };
    r.finish()?;
    Ok(v)
}

/// Decodes a v3 reply body, as [`decode_request`] does requests.
pub fn decode_reply_v3(code: MessageCode, r: &mut XdrReader) -> Result<Reply, XdrError> {
    let v = if let Some(b) = V3Reply::decode(code, r) {
        Reply::V3(b?)
    } else if v4_only(code) {
        let (code, body) = unknown(code, r);
        Reply::Unknown { code, body }
    } else {
        return Reply::decode(code, r);
    };
    r.finish()?;
    Ok(v)
}

/// A random valid v3 request body for `code` (for golden-byte tests).
pub fn sample_request_v3(code: MessageCode, g: &mut Gen) -> Option<Request> {
    if let Some(b) = V3Request::sample(code, g) {
        return Some(Request::V3(b));
    }
    (!v4_only(code)).then(|| Request::sample(code, g)).flatten()
}

/// A random valid v3 reply body for `code` (for golden-byte tests).
pub fn sample_reply_v3(code: MessageCode, g: &mut Gen) -> Option<Reply> {
    if let Some(b) = V3Reply::sample(code, g) {
        return Some(Reply::V3(b));
    }
    (!v4_only(code)).then(|| Reply::sample(code, g)).flatten()
}
