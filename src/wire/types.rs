//! The NDMP v4 supporting types of spec §2.7–§2.12: enums, addresses, auth unions, device and
//! file-system info, file history records. Field order follows `xdr/ndmp4.x`.

use super::sample::{Gen, Sample};
use super::xdr::{Fixed, NdmpString, Opaque, Xdr, XdrError, XdrReader};
use crate::{open_enum, xdr_struct};
use bytes::{BufMut, BytesMut};
use serde::Serialize;

open_enum! {
    /// `ndmp4_error` (§2.8). Extension errors carry their class in the upper 16 bits.
    pub struct NdmpError {
        NO_ERR = 0,
        NOT_SUPPORTED_ERR = 1,
        DEVICE_BUSY_ERR = 2,
        DEVICE_OPENED_ERR = 3,
        NOT_AUTHORIZED_ERR = 4,
        PERMISSION_ERR = 5,
        DEV_NOT_OPEN_ERR = 6,
        IO_ERR = 7,
        TIMEOUT_ERR = 8,
        ILLEGAL_ARGS_ERR = 9,
        NO_TAPE_LOADED_ERR = 10,
        WRITE_PROTECT_ERR = 11,
        EOF_ERR = 12,
        EOM_ERR = 13,
        FILE_NOT_FOUND_ERR = 14,
        BAD_FILE_ERR = 15,
        NO_DEVICE_ERR = 16,
        NO_BUS_ERR = 17,
        XDR_DECODE_ERR = 18,
        ILLEGAL_STATE_ERR = 19,
        UNDEFINED_ERR = 20,
        XDR_ENCODE_ERR = 21,
        NO_MEM_ERR = 22,
        CONNECT_ERR = 23,
        SEQUENCE_NUM_ERR = 24,
        READ_IN_PROGRESS_ERR = 25,
        PRECONDITION_ERR = 26,
        CLASS_NOT_SUPPORTED_ERR = 27,
        VERSION_NOT_SUPPORTED_ERR = 28,
        EXT_DUPL_CLASSES_ERR = 29,
        EXT_DANDN_ILLEGAL_ERR = 30,
    }
}

impl NdmpError {
    pub fn is_ok(self) -> bool {
        self == NdmpError::NO_ERR
    }
}

open_enum! {
    /// `ndmp4_auth_type`.
    pub struct AuthType { NONE = 0, TEXT = 1, MD5 = 2 }
}

open_enum! {
    /// `ndmp4_addr_type`. RESERVED was FC in v3 and has no address body.
    pub struct AddrType { LOCAL = 0, TCP = 1, RESERVED = 2, IPC = 3 }
}

open_enum! {
    /// `ndmp4_tape_open_mode`.
    pub struct TapeOpenMode { READ = 0, RDWR = 1, RAW = 2 }
}

open_enum! {
    /// `ndmp4_tape_mtio_op`.
    pub struct MtioOp { FSF = 0, BSF = 1, FSR = 2, BSR = 3, REW = 4, EOF = 5, OFF = 6, TUR = 7 }
}

open_enum! {
    /// `ndmp4_data_operation`.
    pub struct DataOperation { NOACTION = 0, BACKUP = 1, RECOVER = 2, RECOVER_FILEHIST = 3 }
}

open_enum! {
    /// `ndmp4_data_state`.
    pub struct DataState { IDLE = 0, ACTIVE = 1, HALTED = 2, LISTEN = 3, CONNECTED = 4 }
}

open_enum! {
    /// `ndmp4_data_halt_reason`.
    pub struct DataHaltReason {
        NA = 0, SUCCESSFUL = 1, ABORTED = 2, INTERNAL_ERROR = 3, CONNECT_ERROR = 4,
    }
}

open_enum! {
    /// `ndmp4_mover_state`.
    pub struct MoverState { IDLE = 0, LISTEN = 1, ACTIVE = 2, PAUSED = 3, HALTED = 4 }
}

open_enum! {
    /// `ndmp4_mover_pause_reason`. The spec skips 4; v3 and NDMJOB use it for MEDIA_ERROR.
    pub struct MoverPauseReason { NA = 0, EOM = 1, EOF = 2, SEEK = 3, MEDIA_ERROR = 4, EOW = 5 }
}

open_enum! {
    /// `ndmp4_mover_halt_reason`.
    pub struct MoverHaltReason {
        NA = 0, CONNECT_CLOSED = 1, ABORTED = 2, INTERNAL_ERROR = 3, CONNECT_ERROR = 4,
        MEDIA_ERROR = 5,
    }
}

open_enum! {
    /// `ndmp4_mover_mode`, named from the data connection's side: READ = backup (network to
    /// tape), WRITE = recover (tape to network).
    pub struct MoverMode { READ = 0, WRITE = 1, NOACTION = 2 }
}

open_enum! {
    /// `ndmp4_connection_status_reason`.
    pub struct ConnectionStatusReason { CONNECTED = 0, SHUTDOWN = 1, REFUSED = 2 }
}

open_enum! {
    /// `ndmp4_has_associated_message`.
    pub struct HasAssociatedMessage { NO_ASSOCIATED_MESSAGE = 0, HAS_ASSOCIATED_MESSAGE = 1 }
}

open_enum! {
    /// `ndmp4_log_type`.
    pub struct LogType { NORMAL = 0, DEBUG = 1, ERROR = 2, WARNING = 3 }
}

open_enum! {
    /// `ndmp4_recovery_status`.
    pub struct RecoveryStatus {
        SUCCESSFUL = 0,
        FAILED_PERMISSION = 1,
        FAILED_NOT_FOUND = 2,
        FAILED_NO_DIRECTORY = 3,
        FAILED_OUT_OF_MEMORY = 4,
        FAILED_IO_ERROR = 5,
        FAILED_UNDEFINED_ERROR = 6,
        FAILED_FILE_PATH_EXISTS = 7,
    }
}

open_enum! {
    /// `ndmp4_fs_type`.
    pub struct FsType { UNIX = 0, NT = 1, OTHER = 2 }
}

open_enum! {
    /// `ndmp4_file_type`.
    pub struct FileType {
        DIR = 0, FIFO = 1, CSPEC = 2, BSPEC = 3, REG = 4, SLINK = 5, SOCK = 6, REGISTRY = 7,
        OTHER = 8,
    }
}

/// Butype attribute bits (`NDMP4_BUTYPE_*`).
pub mod butype_attr {
    pub const BACKUP_FILELIST: u32 = 0x0002;
    pub const RECOVER_FILELIST: u32 = 0x0004;
    pub const BACKUP_DIRECT: u32 = 0x0008;
    pub const RECOVER_DIRECT: u32 = 0x0010;
    pub const BACKUP_INCREMENTAL: u32 = 0x0020;
    pub const RECOVER_INCREMENTAL: u32 = 0x0040;
    pub const BACKUP_UTF8: u32 = 0x0080;
    pub const RECOVER_UTF8: u32 = 0x0100;
    pub const BACKUP_FH_FILE: u32 = 0x0200;
    pub const BACKUP_FH_DIR: u32 = 0x0400;
    pub const RECOVER_FILEHIST: u32 = 0x0800;
    pub const RECOVER_FH_FILE: u32 = 0x1000;
    pub const RECOVER_FH_DIR: u32 = 0x2000;
}

/// `unsupported` bits of `ndmp4_fs_info`.
pub mod fs_info_uns {
    pub const TOTAL_SIZE: u32 = 0x01;
    pub const USED_SIZE: u32 = 0x02;
    pub const AVAIL_SIZE: u32 = 0x04;
    pub const TOTAL_INODES: u32 = 0x08;
    pub const USED_INODES: u32 = 0x10;
}

/// `attr` bits of a tape `ndmp4_device_capability`.
pub mod tape_attr {
    pub const REWIND: u32 = 0x1;
    pub const UNLOAD: u32 = 0x2;
    pub const RAW: u32 = 0x4;
}

/// `flags` and `unsupported` bits of TAPE_GET_STATE.
pub mod tape_state {
    pub const NOREWIND: u32 = 0x0008;
    pub const WR_PROT: u32 = 0x0010;
    pub const ERROR: u32 = 0x0020;
    pub const UNLOAD: u32 = 0x0040;
    pub const FILE_NUM_UNS: u32 = 0x01;
    pub const SOFT_ERRORS_UNS: u32 = 0x02;
    pub const BLOCK_SIZE_UNS: u32 = 0x04;
    pub const BLOCKNO_UNS: u32 = 0x08;
    pub const TOTAL_SPACE_UNS: u32 = 0x10;
    pub const SPACE_REMAIN_UNS: u32 = 0x20;
}

/// `unsupported` bits of DATA_GET_STATE.
pub mod data_state_uns {
    pub const EST_BYTES_REMAIN: u32 = 0x1;
    pub const EST_TIME_REMAIN: u32 = 0x2;
}

/// `unsupported` bits of `ndmp4_file_stat`.
pub mod file_stat_uns {
    pub const ATIME: u32 = 0x1;
    pub const CTIME: u32 = 0x2;
    pub const GROUP: u32 = 0x4;
}

/// `flags` bits of an execute-CDB request.
pub mod scsi_flags {
    pub const DATA_IN: u32 = 0x1;
    pub const DATA_OUT: u32 = 0x2;
}

/// The all-ones value that marks an unknown `node`, `fh_info`, window length or tape position.
pub const UNKNOWN_U64: u64 = u64::MAX;

xdr_struct! {
    /// `ndmp4_pval`: one environment variable or capability.
    pub struct Pval { pub name: NdmpString, pub value: NdmpString }
}

impl Pval {
    pub fn new(name: &str, value: &str) -> Self {
        Pval {
            name: name.into(),
            value: value.into(),
        }
    }
}

xdr_struct! {
    /// `ndmp4_auth_text`.
    pub struct AuthText { pub auth_id: NdmpString, pub auth_password: NdmpString }
}

xdr_struct! {
    /// `ndmp4_auth_md5`.
    pub struct AuthMd5 { pub auth_id: NdmpString, pub auth_digest: Fixed<16> }
}

/// `ndmp4_auth_data`: the credentials of CONNECT_CLIENT_AUTH.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(tag = "auth_type")]
pub enum AuthData {
    #[default]
    #[serde(rename = "NONE")]
    None,
    #[serde(rename = "TEXT")]
    Text(AuthText),
    #[serde(rename = "MD5")]
    Md5(AuthMd5),
}

impl Xdr for AuthData {
    const MIN_SIZE: usize = 4;
    fn encode(&self, out: &mut BytesMut) {
        match self {
            AuthData::None => out.put_u32(0),
            AuthData::Text(t) => {
                out.put_u32(1);
                t.encode(out)
            }
            AuthData::Md5(m) => {
                out.put_u32(2);
                m.encode(out)
            }
        }
    }
    fn decode(r: &mut XdrReader) -> Result<Self, XdrError> {
        let offset = r.offset();
        match r.u32("auth_type")? {
            0 => Ok(AuthData::None),
            1 => Ok(AuthData::Text(AuthText::decode(r)?)),
            2 => Ok(AuthData::Md5(AuthMd5::decode(r)?)),
            value => Err(XdrError::BadDiscriminant {
                offset,
                what: "ndmp4_auth_type",
                value,
            }),
        }
    }
}

/// `ndmp4_auth_attr`: what CONFIG_GET_AUTH_ATTR returns (the MD5 challenge).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(tag = "auth_type")]
pub enum AuthAttr {
    #[default]
    #[serde(rename = "NONE")]
    None,
    #[serde(rename = "TEXT")]
    Text,
    #[serde(rename = "MD5")]
    Md5 { challenge: Fixed<64> },
}

impl Xdr for AuthAttr {
    const MIN_SIZE: usize = 4;
    fn encode(&self, out: &mut BytesMut) {
        match self {
            AuthAttr::None => out.put_u32(0),
            AuthAttr::Text => out.put_u32(1),
            AuthAttr::Md5 { challenge } => {
                out.put_u32(2);
                challenge.encode(out)
            }
        }
    }
    fn decode(r: &mut XdrReader) -> Result<Self, XdrError> {
        let offset = r.offset();
        match r.u32("auth_type")? {
            0 => Ok(AuthAttr::None),
            1 => Ok(AuthAttr::Text),
            2 => Ok(AuthAttr::Md5 {
                challenge: Fixed::decode(r)?,
            }),
            value => Err(XdrError::BadDiscriminant {
                offset,
                what: "ndmp4_auth_type",
                value,
            }),
        }
    }
}

xdr_struct! {
    /// `ndmp4_tcp_addr`: one IPv4 endpoint (ip_addr is the address as a big-endian u32).
    pub struct TcpAddr { pub ip_addr: u32, pub port: u16, pub addr_env: Vec<Pval> }
}

impl TcpAddr {
    pub fn ip(&self) -> std::net::Ipv4Addr {
        std::net::Ipv4Addr::from(self.ip_addr)
    }
}

xdr_struct! {
    /// `ndmp4_ipc_addr`.
    pub struct IpcAddr { pub comm_data: Opaque }
}

/// `ndmp4_addr`: a data-connection endpoint. TCP carries every usable address in order of
/// preference.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(tag = "addr_type")]
pub enum Addr {
    #[default]
    #[serde(rename = "LOCAL")]
    Local,
    #[serde(rename = "TCP")]
    Tcp { tcp_addr: Vec<TcpAddr> },
    #[serde(rename = "IPC")]
    Ipc(IpcAddr),
}

impl Addr {
    pub fn addr_type(&self) -> AddrType {
        match self {
            Addr::Local => AddrType::LOCAL,
            Addr::Tcp { .. } => AddrType::TCP,
            Addr::Ipc(_) => AddrType::IPC,
        }
    }
}

impl Xdr for Addr {
    const MIN_SIZE: usize = 4;
    fn encode(&self, out: &mut BytesMut) {
        match self {
            Addr::Local => out.put_u32(0),
            Addr::Tcp { tcp_addr } => {
                out.put_u32(1);
                tcp_addr.encode(out)
            }
            Addr::Ipc(a) => {
                out.put_u32(3);
                a.encode(out)
            }
        }
    }
    fn decode(r: &mut XdrReader) -> Result<Self, XdrError> {
        let offset = r.offset();
        match r.u32("addr_type")? {
            0 => Ok(Addr::Local),
            1 => Ok(Addr::Tcp {
                tcp_addr: Vec::decode(r)?,
            }),
            3 => Ok(Addr::Ipc(IpcAddr::decode(r)?)),
            value => Err(XdrError::BadDiscriminant {
                offset,
                what: "ndmp4_addr_type",
                value,
            }),
        }
    }
}

xdr_struct! {
    /// `ndmp4_butype_info`.
    pub struct ButypeInfo { pub butype_name: NdmpString, pub default_env: Vec<Pval>, pub attrs: u32 }
}

xdr_struct! {
    /// `ndmp4_fs_info`.
    pub struct FsInfo {
        pub unsupported: u32,
        pub fs_type: NdmpString,
        pub fs_logical_device: NdmpString,
        pub fs_physical_device: NdmpString,
        pub total_size: u64,
        pub used_size: u64,
        pub avail_size: u64,
        pub total_inodes: u64,
        pub used_inodes: u64,
        pub fs_env: Vec<Pval>,
        pub fs_status: NdmpString,
    }
}

xdr_struct! {
    /// `ndmp4_device_capability`: one device name with its attributes.
    pub struct DeviceCapability { pub device: NdmpString, pub attr: u32, pub capability: Vec<Pval> }
}

xdr_struct! {
    /// `ndmp4_device_info`: a device model and the device names that reach it.
    pub struct DeviceInfo { pub model: NdmpString, pub caplist: Vec<DeviceCapability> }
}

xdr_struct! {
    /// `ndmp4_class_list`: an extension class and the versions offered (first = default).
    pub struct ClassList { pub ext_class_id: u16, pub ext_version: Vec<u16> }
}

xdr_struct! {
    /// `ndmp4_class_version`: one selected extension class version.
    pub struct ClassVersion { pub ext_class_id: u16, pub ext_version: u16 }
}

xdr_struct! {
    /// `ndmp4_execute_cdb_request` (SCSI_EXECUTE_CDB and TAPE_EXECUTE_CDB).
    pub struct ExecuteCdbRequest {
        pub flags: u32,
        pub timeout: u32,
        pub datain_len: u32,
        pub cdb: Opaque,
        pub dataout: Opaque,
    }
}

xdr_struct! {
    /// `ndmp4_execute_cdb_reply`.
    pub struct ExecuteCdbReply {
        pub error: NdmpError,
        pub status: u8,
        pub dataout_len: u32,
        pub datain: Opaque,
        pub ext_sense: Opaque,
    }
}

xdr_struct! {
    /// `ndmp4_name`: one entry of a recover name list.
    pub struct Name {
        pub original_path: NdmpString,
        pub destination_path: NdmpString,
        pub name: NdmpString,
        pub other_name: NdmpString,
        pub node: u64,
        pub fh_info: u64,
    }
}

xdr_struct! {
    /// `ndmp4_nt_path`.
    pub struct NtPath { pub nt_path: NdmpString, pub dos_path: NdmpString }
}

/// `ndmp4_file_name`. The `default:` arm keeps its discriminant so it re-encodes unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileName {
    Unix {
        unix_name: NdmpString,
    },
    Nt {
        nt_name: NtPath,
    },
    Other {
        fs_type: FsType,
        other_name: NdmpString,
    },
}

impl Serialize for FileName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(2))?;
        match self {
            FileName::Unix { unix_name } => {
                m.serialize_entry("fs_type", &FsType::UNIX)?;
                m.serialize_entry("unix_name", unix_name)?;
            }
            FileName::Nt { nt_name } => {
                m.serialize_entry("fs_type", &FsType::NT)?;
                m.serialize_entry("nt_name", nt_name)?;
            }
            FileName::Other {
                fs_type,
                other_name,
            } => {
                m.serialize_entry("fs_type", fs_type)?;
                m.serialize_entry("other_name", other_name)?;
            }
        }
        m.end()
    }
}

impl Default for FileName {
    fn default() -> Self {
        FileName::Unix {
            unix_name: NdmpString::default(),
        }
    }
}

impl FileName {
    pub fn unix(path: &str) -> Self {
        FileName::Unix {
            unix_name: path.into(),
        }
    }
}

impl Xdr for FileName {
    const MIN_SIZE: usize = 8;
    fn encode(&self, out: &mut BytesMut) {
        match self {
            FileName::Unix { unix_name } => {
                out.put_u32(0);
                unix_name.encode(out)
            }
            FileName::Nt { nt_name } => {
                out.put_u32(1);
                nt_name.encode(out)
            }
            FileName::Other {
                fs_type,
                other_name,
            } => {
                fs_type.encode(out);
                other_name.encode(out)
            }
        }
    }
    fn decode(r: &mut XdrReader) -> Result<Self, XdrError> {
        match FsType::decode(r)? {
            FsType::UNIX => Ok(FileName::Unix {
                unix_name: NdmpString::decode(r)?,
            }),
            FsType::NT => Ok(FileName::Nt {
                nt_name: NtPath::decode(r)?,
            }),
            fs_type => Ok(FileName::Other {
                fs_type,
                other_name: NdmpString::decode(r)?,
            }),
        }
    }
}

xdr_struct! {
    /// `ndmp4_file_stat`.
    pub struct FileStat {
        pub unsupported: u32,
        pub fs_type: FsType,
        pub ftype: FileType,
        pub mtime: u32,
        pub atime: u32,
        pub ctime: u32,
        pub owner: u32,
        pub group: u32,
        pub fattr: u32,
        pub size: u64,
        pub links: u32,
    }
}

xdr_struct! {
    /// `ndmp4_file`: one path-based file history entry.
    pub struct File { pub name: Vec<FileName>, pub stat: Vec<FileStat>, pub node: u64, pub fh_info: u64 }
}

xdr_struct! {
    /// `ndmp4_dir`: one directory entry of inode-based file history.
    pub struct Dir { pub name: Vec<FileName>, pub node: u64, pub parent: u64 }
}

xdr_struct! {
    /// `ndmp4_node`: the attributes of one inode of inode-based file history.
    pub struct Node { pub stats: Vec<FileStat>, pub node: u64, pub fh_info: u64 }
}

impl Sample for AuthData {
    fn sample(g: &mut Gen) -> Self {
        match g.below(3) {
            0 => AuthData::None,
            1 => AuthData::Text(AuthText::sample(g)),
            _ => AuthData::Md5(AuthMd5::sample(g)),
        }
    }
}

impl Sample for AuthAttr {
    fn sample(g: &mut Gen) -> Self {
        match g.below(3) {
            0 => AuthAttr::None,
            1 => AuthAttr::Text,
            _ => AuthAttr::Md5 {
                challenge: Fixed::sample(g),
            },
        }
    }
}

impl Sample for Addr {
    fn sample(g: &mut Gen) -> Self {
        match g.below(3) {
            0 => Addr::Local,
            1 => Addr::Tcp {
                tcp_addr: Vec::sample(g),
            },
            _ => Addr::Ipc(IpcAddr::sample(g)),
        }
    }
}

impl Sample for FileName {
    fn sample(g: &mut Gen) -> Self {
        match g.below(3) {
            0 => FileName::Unix {
                unix_name: NdmpString::sample(g),
            },
            1 => FileName::Nt {
                nt_name: NtPath::sample(g),
            },
            _ => FileName::Other {
                // any discriminant but UNIX and NT takes the default arm
                fs_type: FsType(2 + g.below(1000) as u32),
                other_name: NdmpString::sample(g),
            },
        }
    }
}
