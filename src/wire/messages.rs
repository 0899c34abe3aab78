//! Every NDMP v4 message body (spec §3 and §4) and the tables that tie message codes to them:
//! `Request` covers requests and posts (both travel as message_type REQUEST), `Reply` replies.

use super::sample::{Gen, Sample};
use super::types::*;
use super::xdr::{NdmpString, Opaque, Xdr, XdrError, XdrReader};
use crate::{open_enum, xdr_struct};
use bytes::{Bytes, BytesMut};
use serde::Serialize;

open_enum! {
    /// `ndmp4_message`: the message code in the header. Extension codes carry their class in
    /// the upper 16 bits and decode as unnamed values.
    pub struct MessageCode {
        CONNECT_OPEN = 0x900,
        CONNECT_CLIENT_AUTH = 0x901,
        CONNECT_CLOSE = 0x902,
        CONNECT_SERVER_AUTH = 0x903,
        CONFIG_GET_HOST_INFO = 0x100,
        CONFIG_GET_CONNECTION_TYPE = 0x102,
        CONFIG_GET_AUTH_ATTR = 0x103,
        CONFIG_GET_BUTYPE_INFO = 0x104,
        CONFIG_GET_FS_INFO = 0x105,
        CONFIG_GET_TAPE_INFO = 0x106,
        CONFIG_GET_SCSI_INFO = 0x107,
        CONFIG_GET_SERVER_INFO = 0x108,
        CONFIG_SET_EXT_LIST = 0x109,
        CONFIG_GET_EXT_LIST = 0x10A,
        SCSI_OPEN = 0x200,
        SCSI_CLOSE = 0x201,
        SCSI_GET_STATE = 0x202,
        SCSI_OBSOLETE1 = 0x203,
        SCSI_RESET_DEVICE = 0x204,
        SCSI_OBSOLETE2 = 0x205,
        SCSI_EXECUTE_CDB = 0x206,
        TAPE_OPEN = 0x300,
        TAPE_CLOSE = 0x301,
        TAPE_GET_STATE = 0x302,
        TAPE_MTIO = 0x303,
        TAPE_WRITE = 0x304,
        TAPE_READ = 0x305,
        TAPE_EXECUTE_CDB = 0x307,
        DATA_GET_STATE = 0x400,
        DATA_START_BACKUP = 0x401,
        DATA_START_RECOVER = 0x402,
        DATA_ABORT = 0x403,
        DATA_GET_ENV = 0x404,
        DATA_STOP = 0x407,
        DATA_LISTEN = 0x409,
        DATA_CONNECT = 0x40A,
        DATA_START_RECOVER_FILEHIST = 0x40B,
        NOTIFY_DATA_HALTED = 0x501,
        NOTIFY_CONNECTION_STATUS = 0x502,
        NOTIFY_MOVER_HALTED = 0x503,
        NOTIFY_MOVER_PAUSED = 0x504,
        NOTIFY_DATA_READ = 0x505,
        LOG_FILE = 0x602,
        LOG_MESSAGE = 0x603,
        FH_ADD_FILE = 0x703,
        FH_ADD_DIR = 0x704,
        FH_ADD_NODE = 0x705,
        MOVER_GET_STATE = 0xA00,
        MOVER_LISTEN = 0xA01,
        MOVER_CONTINUE = 0xA02,
        MOVER_ABORT = 0xA03,
        MOVER_STOP = 0xA04,
        MOVER_SET_WINDOW = 0xA05,
        MOVER_READ = 0xA06,
        MOVER_CLOSE = 0xA07,
        MOVER_SET_RECORD_SIZE = 0xA08,
        MOVER_CONNECT = 0xA09,
        EXT_STANDARD_BASE = 0x10000,
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
    pub struct ErrorReply { pub error: NdmpError }
}

impl ErrorReply {
    pub fn new(error: NdmpError) -> Self {
        ErrorReply { error }
    }
}

// ---- CONNECT (§3.1)

xdr_struct! { pub struct ConnectOpenRequest { pub protocol_version: u16 } }
xdr_struct! { pub struct ConnectClientAuthRequest { pub auth_data: AuthData } }
xdr_struct! { pub struct ConnectServerAuthRequest { pub client_attr: AuthAttr } }
xdr_struct! { pub struct ConnectServerAuthReply { pub error: NdmpError, pub server_result: AuthData } }

// ---- CONFIG (§3.2)

xdr_struct! {
    pub struct ConfigGetHostInfoReply {
        pub error: NdmpError,
        pub hostname: NdmpString,
        pub os_type: NdmpString,
        pub os_vers: NdmpString,
        pub hostid: NdmpString,
    }
}
xdr_struct! {
    pub struct ConfigGetServerInfoReply {
        pub error: NdmpError,
        pub vendor_name: NdmpString,
        pub product_name: NdmpString,
        pub revision_number: NdmpString,
        pub auth_type: Vec<AuthType>,
    }
}
xdr_struct! { pub struct ConfigGetConnectionTypeReply { pub error: NdmpError, pub addr_types: Vec<AddrType> } }
xdr_struct! { pub struct ConfigGetAuthAttrRequest { pub auth_type: AuthType } }
xdr_struct! { pub struct ConfigGetAuthAttrReply { pub error: NdmpError, pub server_attr: AuthAttr } }
xdr_struct! { pub struct ConfigGetButypeInfoReply { pub error: NdmpError, pub butype_info: Vec<ButypeInfo> } }
xdr_struct! { pub struct ConfigGetFsInfoReply { pub error: NdmpError, pub fs_info: Vec<FsInfo> } }
xdr_struct! { pub struct ConfigGetTapeInfoReply { pub error: NdmpError, pub tape_info: Vec<DeviceInfo> } }
xdr_struct! { pub struct ConfigGetScsiInfoReply { pub error: NdmpError, pub scsi_info: Vec<DeviceInfo> } }
xdr_struct! { pub struct ConfigGetExtListReply { pub error: NdmpError, pub class_list: Vec<ClassList> } }

/// CONFIG_SET_EXT_LIST request. The spec sends the selected (class, version) pairs; NDMJOB's
/// transcription (Amanda, Bareos) sends an error word and class lists instead. Both layouts
/// decode, and each re-encodes in the layout it arrived in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ConfigSetExtListRequest {
    Spec {
        ndmp_selected_ext: Vec<ClassVersion>,
    },
    Ndmjob {
        error: NdmpError,
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

xdr_struct! { pub struct ScsiOpenRequest { pub device: NdmpString } }
xdr_struct! {
    pub struct ScsiGetStateReply {
        pub error: NdmpError,
        pub target_controller: i16,
        pub target_id: i16,
        pub target_lun: i16,
    }
}

// ---- TAPE (§3.4)

xdr_struct! { pub struct TapeOpenRequest { pub device: NdmpString, pub mode: TapeOpenMode } }
xdr_struct! {
    pub struct TapeGetStateReply {
        pub unsupported: u32,
        pub error: NdmpError,
        pub flags: u32,
        pub file_num: u32,
        pub soft_errors: u32,
        pub block_size: u32,
        pub blockno: u32,
        pub total_space: u64,
        pub space_remain: u64,
    }
}
xdr_struct! { pub struct TapeMtioRequest { pub tape_op: MtioOp, pub count: u32 } }
xdr_struct! { pub struct TapeMtioReply { pub error: NdmpError, pub resid_count: u32 } }
xdr_struct! { pub struct TapeWriteRequest { pub data_out: Opaque } }
xdr_struct! { pub struct TapeWriteReply { pub error: NdmpError, pub count: u32 } }
xdr_struct! { pub struct TapeReadRequest { pub count: u32 } }
xdr_struct! { pub struct TapeReadReply { pub error: NdmpError, pub data_in: Opaque } }

// ---- DATA (§3.5)

xdr_struct! {
    pub struct DataGetStateReply {
        pub unsupported: u32,
        pub error: NdmpError,
        pub operation: DataOperation,
        pub state: DataState,
        pub halt_reason: DataHaltReason,
        pub bytes_processed: u64,
        pub est_bytes_remain: u64,
        pub est_time_remain: u32,
        pub data_connection_addr: Addr,
        pub read_offset: u64,
        pub read_length: u64,
    }
}
xdr_struct! { pub struct DataStartBackupRequest { pub butype_name: NdmpString, pub env: Vec<Pval> } }
xdr_struct! {
    /// DATA_START_RECOVER and DATA_START_RECOVER_FILEHIST.
    pub struct DataStartRecoverRequest {
        pub env: Vec<Pval>,
        pub nlist: Vec<Name>,
        pub butype_name: NdmpString,
    }
}
xdr_struct! { pub struct DataGetEnvReply { pub error: NdmpError, pub env: Vec<Pval> } }
xdr_struct! { pub struct DataListenRequest { pub addr_type: AddrType } }
xdr_struct! {
    /// DATA_LISTEN and MOVER_LISTEN: where the peer should connect.
    pub struct ListenReply { pub error: NdmpError, pub connect_addr: Addr }
}
xdr_struct! { pub struct DataConnectRequest { pub addr: Addr } }

// ---- MOVER (§3.6)

xdr_struct! { pub struct MoverSetRecordSizeRequest { pub len: u32 } }
xdr_struct! {
    /// MOVER_SET_WINDOW and MOVER_READ: a byte range of the image stream.
    pub struct MoverRangeRequest { pub offset: u64, pub length: u64 }
}
xdr_struct! { pub struct MoverConnectRequest { pub mode: MoverMode, pub addr: Addr } }
xdr_struct! { pub struct MoverListenRequest { pub mode: MoverMode, pub addr_type: AddrType } }
xdr_struct! {
    pub struct MoverGetStateReply {
        pub error: NdmpError,
        pub mode: MoverMode,
        pub state: MoverState,
        pub pause_reason: MoverPauseReason,
        pub halt_reason: MoverHaltReason,
        pub record_size: u32,
        pub record_num: u32,
        pub bytes_moved: u64,
        pub seek_position: u64,
        pub bytes_left_to_read: u64,
        pub window_offset: u64,
        pub window_length: u64,
        pub data_connection_addr: Addr,
    }
}

// ---- NOTIFY, LOG, FH (§4)

xdr_struct! { pub struct NotifyDataHaltedPost { pub reason: DataHaltReason } }
xdr_struct! {
    /// The first message on every connection.
    pub struct NotifyConnectionStatusPost {
        pub reason: ConnectionStatusReason,
        pub protocol_version: u16,
        pub text_reason: NdmpString,
    }
}
xdr_struct! { pub struct NotifyMoverHaltedPost { pub reason: MoverHaltReason } }
xdr_struct! { pub struct NotifyMoverPausedPost { pub reason: MoverPauseReason, pub seek_position: u64 } }
xdr_struct! { pub struct NotifyDataReadPost { pub offset: u64, pub length: u64 } }
xdr_struct! {
    pub struct LogMessagePost {
        pub log_type: LogType,
        pub message_id: u32,
        pub entry: NdmpString,
        pub associated_message_valid: HasAssociatedMessage,
        pub associated_message_sequence: u32,
    }
}
xdr_struct! { pub struct LogFilePost { pub name: NdmpString, pub recovery_status: RecoveryStatus } }
xdr_struct! { pub struct FhAddFilePost { pub files: Vec<File> } }
xdr_struct! { pub struct FhAddDirPost { pub dirs: Vec<Dir> } }
xdr_struct! { pub struct FhAddNodePost { pub nodes: Vec<Node> } }

/// Builds an enum with one variant per message code plus `Unknown`, and its codec.
macro_rules! message_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $code:ident => $body:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
        #[serde(untagged)]
        pub enum $name {
            $($variant($body),)*
            /// A code with no body definition in this direction (vendor extensions,
            /// obsolete codes): the raw body is kept so it can be relayed or shown.
            Unknown { code: MessageCode, body: Opaque },
        }

        impl $name {
            pub fn code(&self) -> MessageCode {
                match self {
                    $($name::$variant(_) => MessageCode::$code,)*
                    $name::Unknown { code, .. } => *code,
                }
            }

            pub fn encode(&self, out: &mut BytesMut) {
                match self {
                    $($name::$variant(b) => b.encode(out),)*
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
    Request {
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
    }
}

message_enum! {
    /// The body of a reply (message_type REPLY) whose header carries no error.
    Reply {
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
    }
}

/// The error field of a body: replies have one, requests and posts do not.
pub trait BodyError: Default {
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
        FhAddDirPost, FhAddNodePost,
}
