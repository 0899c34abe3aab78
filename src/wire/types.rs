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
        /// Success.
        NO_ERR = 0,
        /// The message, or an option it asks for, is not implemented.
        NOT_SUPPORTED_ERR = 1,
        /// The device is in use by another session.
        DEVICE_BUSY_ERR = 2,
        /// This session already has a device of that kind open.
        DEVICE_OPENED_ERR = 3,
        /// The session has not authenticated, or the credentials are wrong.
        NOT_AUTHORIZED_ERR = 4,
        /// Access denied: writing to a tape opened for reading, a file the server may not
        /// touch...
        PERMISSION_ERR = 5,
        /// The request needs an open device and none is open.
        DEV_NOT_OPEN_ERR = 6,
        /// The device or file system reported an I/O error.
        IO_ERR = 7,
        /// The operation did not finish in time.
        TIMEOUT_ERR = 8,
        /// An argument of the request is invalid.
        ILLEGAL_ARGS_ERR = 9,
        /// The drive has no cartridge.
        NO_TAPE_LOADED_ERR = 10,
        /// The cartridge is write-protected.
        WRITE_PROTECT_ERR = 11,
        /// A filemark was met.
        EOF_ERR = 12,
        /// The end of the medium (or blank tape) was met.
        EOM_ERR = 13,
        /// A named file does not exist.
        FILE_NOT_FOUND_ERR = 14,
        /// A file or device handle is not usable.
        BAD_FILE_ERR = 15,
        /// The named device does not exist.
        NO_DEVICE_ERR = 16,
        /// The SCSI bus is not available.
        NO_BUS_ERR = 17,
        /// The message could not be decoded.
        XDR_DECODE_ERR = 18,
        /// The request is not allowed in the current state.
        ILLEGAL_STATE_ERR = 19,
        /// An error no other code describes.
        UNDEFINED_ERR = 20,
        /// The reply could not be encoded.
        XDR_ENCODE_ERR = 21,
        /// The server ran out of memory.
        NO_MEM_ERR = 22,
        /// The data connection could not be made.
        CONNECT_ERR = 23,
        /// A message's sequence number is out of order.
        SEQUENCE_NUM_ERR = 24,
        /// MOVER_READ while the previous one is still being served.
        READ_IN_PROGRESS_ERR = 25,
        /// A request that has to come first has not (a window before the record size...).
        PRECONDITION_ERR = 26,
        /// CONFIG_SET_EXT_LIST selects an extension class the server does not offer.
        CLASS_NOT_SUPPORTED_ERR = 27,
        /// CONFIG_SET_EXT_LIST selects a version the server does not offer for a class.
        VERSION_NOT_SUPPORTED_ERR = 28,
        /// CONFIG_SET_EXT_LIST selects the same class twice.
        EXT_DUPL_CLASSES_ERR = 29,
        /// Extension discovery and negotiation is no longer allowed in this session.
        EXT_DANDN_ILLEGAL_ERR = 30,
    }
}

impl NdmpError {
    /// Whether this is NO_ERR.
    pub fn is_ok(self) -> bool {
        self == NdmpError::NO_ERR
    }
}

open_enum! {
    /// `ndmp4_auth_type`.
    pub struct AuthType {
        /// No credentials.
        NONE = 0,
        /// A user name and a clear-text password.
        TEXT = 1,
        /// A user name and an MD5 digest of the password and a challenge.
        MD5 = 2,
    }
}

open_enum! {
    /// `ndmp4_addr_type`. RESERVED was FC in v3 and has no address body.
    pub struct AddrType {
        /// Both ends are in the same server: no network connection.
        LOCAL = 0,
        /// A TCP connection.
        TCP = 1,
        /// Fibre Channel up to v3; unused in v4.
        RESERVED = 2,
        /// Interprocess communication on the server host.
        IPC = 3,
        /// NetApp CAE (class 0x2051): TCP over IPv6, see [`TcpIpv6Addr`].
        TCP_IPV6 = 0x2051_0004,
    }
}

open_enum! {
    /// `ndmp4_tape_open_mode`.
    pub struct TapeOpenMode {
        /// Read and position only.
        READ = 0,
        /// Read and write.
        RDWR = 1,
        /// Raw access to the drive, e.g. for TAPE_EXECUTE_CDB; writing is allowed.
        RAW = 2,
    }
}

open_enum! {
    /// `ndmp4_tape_mtio_op`.
    pub struct MtioOp {
        /// Space forward over `count` filemarks.
        FSF = 0,
        /// Space backward over `count` filemarks.
        BSF = 1,
        /// Space forward over `count` records, stopping at a filemark.
        FSR = 2,
        /// Space backward over `count` records, stopping at a filemark.
        BSR = 3,
        /// Rewind to the beginning of the tape.
        REW = 4,
        /// Write `count` filemarks.
        EOF = 5,
        /// Rewind and unload the cartridge.
        OFF = 6,
        /// Test unit ready: whether a cartridge is loaded and usable.
        TUR = 7,
    }
}

open_enum! {
    /// `ndmp4_data_operation`.
    pub struct DataOperation {
        /// No operation started.
        NOACTION = 0,
        /// DATA_START_BACKUP.
        BACKUP = 1,
        /// DATA_START_RECOVER.
        RECOVER = 2,
        /// DATA_START_RECOVER_FILEHIST.
        RECOVER_FILEHIST = 3,
    }
}

open_enum! {
    /// `ndmp4_data_state`.
    pub struct DataState {
        /// No data connection and no operation.
        IDLE = 0,
        /// A backup or recovery is running.
        ACTIVE = 1,
        /// The operation ended; DATA_STOP returns to IDLE.
        HALTED = 2,
        /// DATA_LISTEN opened an endpoint and waits for the mover to connect.
        LISTEN = 3,
        /// The data connection is up; waiting for a start request.
        CONNECTED = 4,
    }
}

open_enum! {
    /// `ndmp4_data_halt_reason`.
    pub struct DataHaltReason {
        /// Not halted.
        NA = 0,
        /// The operation completed.
        SUCCESSFUL = 1,
        /// DATA_ABORT stopped it.
        ABORTED = 2,
        /// The data server failed.
        INTERNAL_ERROR = 3,
        /// The data connection failed.
        CONNECT_ERROR = 4,
    }
}

open_enum! {
    /// `ndmp4_mover_state`.
    pub struct MoverState {
        /// No data connection and no transfer.
        IDLE = 0,
        /// MOVER_LISTEN opened an endpoint and waits for the data server to connect.
        LISTEN = 1,
        /// Moving data between the connection and the tape.
        ACTIVE = 2,
        /// Waiting for the DMA (new cartridge, new window, reposition); see the pause reason.
        PAUSED = 3,
        /// The transfer ended; MOVER_STOP returns to IDLE.
        HALTED = 4,
    }
}

open_enum! {
    /// `ndmp4_mover_pause_reason`. The spec skips 4; v3 and NDMJOB use it for MEDIA_ERROR.
    pub struct MoverPauseReason {
        /// Not paused.
        NA = 0,
        /// The end of the medium: the DMA must load another cartridge.
        EOM = 1,
        /// A filemark (or the end of the image) was read where a record was expected.
        EOF = 2,
        /// The data asked for lies outside the window or cannot be reached by spacing
        /// records: the DMA must reposition the tape and set a new window.
        SEEK = 3,
        /// A tape error (v3 and NDMJOB only).
        MEDIA_ERROR = 4,
        /// The transfer reached the end of the window.
        EOW = 5,
    }
}

open_enum! {
    /// `ndmp4_mover_halt_reason`.
    pub struct MoverHaltReason {
        /// Not halted.
        NA = 0,
        /// The data connection closed: the end of a backup stream, or MOVER_CLOSE.
        CONNECT_CLOSED = 1,
        /// MOVER_ABORT stopped it.
        ABORTED = 2,
        /// The mover failed; this server reports tape errors this way too.
        INTERNAL_ERROR = 3,
        /// The data connection failed.
        CONNECT_ERROR = 4,
        /// The tape failed.
        MEDIA_ERROR = 5,
    }
}

open_enum! {
    /// `ndmp4_mover_mode`, named from the data connection's side: READ = backup (network to
    /// tape), WRITE = recover (tape to network).
    pub struct MoverMode {
        /// Read the data connection and write tape: a backup.
        READ = 0,
        /// Read tape and write the data connection: a recovery.
        WRITE = 1,
        /// No transfer set up.
        NOACTION = 2,
    }
}

open_enum! {
    /// `ndmp4_connection_status_reason`.
    pub struct ConnectionStatusReason {
        /// The server accepts the connection.
        CONNECTED = 0,
        /// The server ends the session (shutting down, or stopped by an operator).
        SHUTDOWN = 1,
        /// The server refuses the connection (too many sessions...).
        REFUSED = 2,
    }
}

open_enum! {
    /// `ndmp4_has_associated_message`.
    pub struct HasAssociatedMessage {
        /// The log message is not about one request.
        NO_ASSOCIATED_MESSAGE = 0,
        /// The log message is about the request in `associated_message_sequence`.
        HAS_ASSOCIATED_MESSAGE = 1,
    }
}

open_enum! {
    /// `ndmp4_log_type`.
    pub struct LogType {
        /// Progress and other information.
        NORMAL = 0,
        /// Detail for troubleshooting.
        DEBUG = 1,
        /// A failure.
        ERROR = 2,
        /// A problem the operation survives.
        WARNING = 3,
    }
}

open_enum! {
    /// `ndmp4_recovery_status`.
    pub struct RecoveryStatus {
        /// The entry was recovered.
        SUCCESSFUL = 0,
        /// Access was denied.
        FAILED_PERMISSION = 1,
        /// The entry is not in the image.
        FAILED_NOT_FOUND = 2,
        /// The destination directory does not exist.
        FAILED_NO_DIRECTORY = 3,
        /// The server ran out of memory.
        FAILED_OUT_OF_MEMORY = 4,
        /// Reading the image or writing the file failed.
        FAILED_IO_ERROR = 5,
        /// Any other failure.
        FAILED_UNDEFINED_ERROR = 6,
        /// The destination exists and may not be overwritten.
        FAILED_FILE_PATH_EXISTS = 7,
    }
}

open_enum! {
    /// `ndmp4_fs_type`.
    pub struct FsType {
        /// A Unix path.
        UNIX = 0,
        /// A Windows NT path with its DOS (8.3) name.
        NT = 1,
        /// Any other kind of path.
        OTHER = 2,
    }
}

open_enum! {
    /// `ndmp4_file_type`.
    pub struct FileType {
        /// A directory.
        DIR = 0,
        /// A named pipe.
        FIFO = 1,
        /// A character device.
        CSPEC = 2,
        /// A block device.
        BSPEC = 3,
        /// A regular file.
        REG = 4,
        /// A symbolic link.
        SLINK = 5,
        /// A Unix-domain socket.
        SOCK = 6,
        /// A Windows registry hive.
        REGISTRY = 7,
        /// Anything else.
        OTHER = 8,
    }
}

/// Butype attribute bits (`NDMP4_BUTYPE_*`).
pub mod butype_attr {
    /// Backup accepts a list of files to back up.
    pub const BACKUP_FILELIST: u32 = 0x0002;
    /// Recovery accepts a list of files to recover (selective recovery).
    pub const RECOVER_FILELIST: u32 = 0x0004;
    /// Backup reports the `fh_info` that direct access recovery needs.
    pub const BACKUP_DIRECT: u32 = 0x0008;
    /// Recovery can read files straight from their offset in the image (direct access).
    pub const RECOVER_DIRECT: u32 = 0x0010;
    /// Backup can be incremental (a LEVEL above 0).
    pub const BACKUP_INCREMENTAL: u32 = 0x0020;
    /// Recovery can apply incremental images.
    pub const RECOVER_INCREMENTAL: u32 = 0x0040;
    /// Backup sends UTF-8 file names in file history.
    pub const BACKUP_UTF8: u32 = 0x0080;
    /// Recovery accepts UTF-8 file names in the name list.
    pub const RECOVER_UTF8: u32 = 0x0100;
    /// Backup can send path-based file history (FH_ADD_FILE).
    pub const BACKUP_FH_FILE: u32 = 0x0200;
    /// Backup can send inode-based file history (FH_ADD_DIR and FH_ADD_NODE).
    pub const BACKUP_FH_DIR: u32 = 0x0400;
    /// DATA_START_RECOVER_FILEHIST is supported.
    pub const RECOVER_FILEHIST: u32 = 0x0800;
    /// Recover-filehist can send path-based file history.
    pub const RECOVER_FH_FILE: u32 = 0x1000;
    /// Recover-filehist can send inode-based file history.
    pub const RECOVER_FH_DIR: u32 = 0x2000;
}

/// `unsupported` bits of `ndmp4_fs_info`.
pub mod fs_info_uns {
    /// `total_size` is not known.
    pub const TOTAL_SIZE: u32 = 0x01;
    /// `used_size` is not known.
    pub const USED_SIZE: u32 = 0x02;
    /// `avail_size` is not known.
    pub const AVAIL_SIZE: u32 = 0x04;
    /// `total_inodes` is not known.
    pub const TOTAL_INODES: u32 = 0x08;
    /// `used_inodes` is not known.
    pub const USED_INODES: u32 = 0x10;
}

/// `attr` bits of a tape `ndmp4_device_capability`.
pub mod tape_attr {
    /// The device name rewinds on close.
    pub const REWIND: u32 = 0x1;
    /// The device name unloads on close.
    pub const UNLOAD: u32 = 0x2;
    /// The drive can be opened in RAW mode.
    pub const RAW: u32 = 0x4;
}

/// `flags` and `unsupported` bits of TAPE_GET_STATE.
pub mod tape_state {
    /// `flags`: the device does not rewind on close.
    pub const NOREWIND: u32 = 0x0008;
    /// `flags`: the cartridge is write-protected.
    pub const WR_PROT: u32 = 0x0010;
    /// `flags`: the drive is in an error state.
    pub const ERROR: u32 = 0x0020;
    /// `flags`: the device unloads on close.
    pub const UNLOAD: u32 = 0x0040;
    /// `unsupported`: `file_num` is not reported.
    pub const FILE_NUM_UNS: u32 = 0x01;
    /// `unsupported`: `soft_errors` is not reported.
    pub const SOFT_ERRORS_UNS: u32 = 0x02;
    /// `unsupported`: `block_size` is not reported.
    pub const BLOCK_SIZE_UNS: u32 = 0x04;
    /// `unsupported`: `blockno` is not reported.
    pub const BLOCKNO_UNS: u32 = 0x08;
    /// `unsupported`: `total_space` is not reported.
    pub const TOTAL_SPACE_UNS: u32 = 0x10;
    /// `unsupported`: `space_remain` is not reported.
    pub const SPACE_REMAIN_UNS: u32 = 0x20;
}

/// `unsupported` bits of DATA_GET_STATE.
pub mod data_state_uns {
    /// `est_bytes_remain` is not reported.
    pub const EST_BYTES_REMAIN: u32 = 0x1;
    /// `est_time_remain` is not reported.
    pub const EST_TIME_REMAIN: u32 = 0x2;
}

/// `unsupported` bits of `ndmp4_file_stat`.
pub mod file_stat_uns {
    /// `atime` is not reported.
    pub const ATIME: u32 = 0x1;
    /// `ctime` is not reported.
    pub const CTIME: u32 = 0x2;
    /// `group` is not reported.
    pub const GROUP: u32 = 0x4;
}

/// `flags` bits of an execute-CDB request.
pub mod scsi_flags {
    /// The command reads data from the device (up to `datain_len` bytes).
    pub const DATA_IN: u32 = 0x1;
    /// The command sends `dataout` to the device.
    pub const DATA_OUT: u32 = 0x2;
}

/// The all-ones value that marks an unknown `node`, `fh_info`, window length or tape position.
pub const UNKNOWN_U64: u64 = u64::MAX;

xdr_struct! {
    /// `ndmp4_pval`: one environment variable or capability.
    pub struct Pval {
        /// The variable's name, e.g. `FILESYSTEM`.
        pub name: NdmpString,
        /// Its value.
        pub value: NdmpString,
    }
}

impl Pval {
    /// A name-value pair from two strings.
    pub fn new(name: &str, value: &str) -> Self {
        Pval {
            name: name.into(),
            value: value.into(),
        }
    }
}

xdr_struct! {
    /// `ndmp4_auth_text`.
    pub struct AuthText {
        /// The user name.
        pub auth_id: NdmpString,
        /// The password, in clear.
        pub auth_password: NdmpString,
    }
}

xdr_struct! {
    /// `ndmp4_auth_md5`.
    pub struct AuthMd5 {
        /// The user name.
        pub auth_id: NdmpString,
        /// MD5 over the password and the 64-byte challenge ([`crate::auth::md5_digest`]).
        pub auth_digest: Fixed<16>,
    }
}

/// `ndmp4_auth_data`: the credentials of CONNECT_CLIENT_AUTH.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(tag = "auth_type")]
pub enum AuthData {
    /// No credentials.
    #[default]
    #[serde(rename = "NONE")]
    None,
    /// User name and clear-text password.
    #[serde(rename = "TEXT")]
    Text(AuthText),
    /// User name and digest over the peer's challenge.
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
    /// No authentication: nothing needed.
    #[default]
    #[serde(rename = "NONE")]
    None,
    /// Clear-text authentication: nothing needed.
    #[serde(rename = "TEXT")]
    Text,
    /// MD5 authentication.
    #[serde(rename = "MD5")]
    Md5 {
        /// Random bytes the digest must cover, fresh for each request.
        challenge: Fixed<64>,
    },
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
    pub struct TcpAddr {
        /// The IPv4 address.
        pub ip_addr: u32,
        /// The TCP port.
        pub port: u16,
        /// Per-address options; empty in practice.
        pub addr_env: Vec<Pval>,
    }
}

impl TcpAddr {
    /// `ip_addr` as an address.
    pub fn ip(&self) -> std::net::Ipv4Addr {
        std::net::Ipv4Addr::from(self.ip_addr)
    }
}

xdr_struct! {
    /// `ndmp_tcp_ipv6_addr_v4` (NetApp CAE, class 0x2051): one IPv6 endpoint. The address is fixed opaque[16] in
    /// network order, so it has no length word; the port travels as a 4-byte word.
    pub struct TcpIpv6Addr {
        /// The address bytes as `struct in6_addr` holds them.
        pub ipv6_addr: Fixed<16>,
        /// The TCP port.
        pub port: u16,
        /// Per-address options: the CAB affinity answer, when one was asked for.
        pub addr_env: Vec<Pval>,
    }
}

impl TcpIpv6Addr {
    /// An endpoint with no options.
    pub fn new(ip: std::net::Ipv6Addr, port: u16) -> TcpIpv6Addr {
        TcpIpv6Addr {
            ipv6_addr: Fixed(ip.octets()),
            port,
            addr_env: Vec::new(),
        }
    }

    /// `ipv6_addr` as an address.
    pub fn ip(&self) -> std::net::Ipv6Addr {
        std::net::Ipv6Addr::from(self.ipv6_addr.0)
    }

    /// Where to connect: an IPv4-mapped address is dialled as IPv4.
    pub fn socket_addr(&self) -> std::net::SocketAddr {
        let ip = self.ip();
        match ip.to_ipv4_mapped() {
            Some(v4) => std::net::SocketAddr::from((v4, self.port)),
            None => std::net::SocketAddr::from((ip, self.port)),
        }
    }
}

xdr_struct! {
    /// `ndmp4_ipc_addr`.
    pub struct IpcAddr {
        /// Whatever identifies the IPC channel to the server that made it.
        pub comm_data: Opaque,
    }
}

/// `ndmp4_addr`: a data-connection endpoint. TCP carries every usable address in order of
/// preference.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(tag = "addr_type")]
pub enum Addr {
    /// The peer is in the same server: no network connection.
    #[default]
    #[serde(rename = "LOCAL")]
    Local,
    /// A TCP endpoint.
    #[serde(rename = "TCP")]
    Tcp {
        /// The endpoint's addresses, the preferred one first.
        tcp_addr: Vec<TcpAddr>,
    },
    /// An IPC channel on the server host.
    #[serde(rename = "IPC")]
    Ipc(IpcAddr),
    /// NetApp CAE (class 0x2051): IPv6 TCP endpoints.
    #[serde(rename = "TCP_IPV6")]
    TcpIpv6 {
        /// The endpoint's addresses, the preferred one first.
        tcp_ipv6_addr: Vec<TcpIpv6Addr>,
    },
}

impl Addr {
    /// The address type this address is an arm of.
    pub fn addr_type(&self) -> AddrType {
        match self {
            Addr::Local => AddrType::LOCAL,
            Addr::Tcp { .. } => AddrType::TCP,
            Addr::Ipc(_) => AddrType::IPC,
            Addr::TcpIpv6 { .. } => AddrType::TCP_IPV6,
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
            Addr::TcpIpv6 { tcp_ipv6_addr } => {
                out.put_u32(AddrType::TCP_IPV6.0);
                tcp_ipv6_addr.encode(out)
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
            0x2051_0004 => Ok(Addr::TcpIpv6 {
                tcp_ipv6_addr: Vec::decode(r)?,
            }),
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
    pub struct ButypeInfo {
        /// The name DATA_START_BACKUP and DATA_START_RECOVER take (`dump`, `tar`).
        pub butype_name: NdmpString,
        /// The environment variables the backup type understands, with their defaults.
        pub default_env: Vec<Pval>,
        /// `butype_attr` bits: what the backup type can do.
        pub attrs: u32,
    }
}

xdr_struct! {
    /// `ndmp4_fs_info`.
    pub struct FsInfo {
        /// `fs_info_uns` bits: the sizes and counts not known.
        pub unsupported: u32,
        /// The file system's type, e.g. `ext4`.
        pub fs_type: NdmpString,
        /// The path it is known by: what FILESYSTEM takes.
        pub fs_logical_device: NdmpString,
        /// The device it lives on.
        pub fs_physical_device: NdmpString,
        /// Its size in bytes.
        pub total_size: u64,
        /// Bytes in use.
        pub used_size: u64,
        /// Bytes free for unprivileged users.
        pub avail_size: u64,
        /// Its number of inodes.
        pub total_inodes: u64,
        /// Inodes in use.
        pub used_inodes: u64,
        /// Other properties as name-value pairs.
        pub fs_env: Vec<Pval>,
        /// Its state in words (`online`...).
        pub fs_status: NdmpString,
    }
}

xdr_struct! {
    /// `ndmp4_device_capability`: one device name with its attributes.
    pub struct DeviceCapability {
        /// The name TAPE_OPEN or SCSI_OPEN takes.
        pub device: NdmpString,
        /// `tape_attr` bits for a tape drive; 0 for a changer.
        pub attr: u32,
        /// Other properties as name-value pairs (`EXECUTE_CDB`...).
        pub capability: Vec<Pval>,
    }
}

xdr_struct! {
    /// `ndmp4_device_info`: a device model and the device names that reach it.
    pub struct DeviceInfo {
        /// The device's model.
        pub model: NdmpString,
        /// Each name the device can be opened under, with its attributes.
        pub caplist: Vec<DeviceCapability>,
    }
}

xdr_struct! {
    /// `ndmp4_class_list`: an extension class and the versions offered (first = default).
    pub struct ClassList {
        /// The extension class (the upper 16 bits of its message codes).
        pub ext_class_id: u16,
        /// The versions offered, the default first.
        pub ext_version: Vec<u16>,
    }
}

xdr_struct! {
    /// `ndmp4_class_version`: one selected extension class version.
    pub struct ClassVersion {
        /// The extension class.
        pub ext_class_id: u16,
        /// The version of it selected.
        pub ext_version: u16,
    }
}

xdr_struct! {
    /// `ndmp4_execute_cdb_request` (SCSI_EXECUTE_CDB and TAPE_EXECUTE_CDB).
    pub struct ExecuteCdbRequest {
        /// `scsi_flags` bits: the direction of the data phase, if any.
        pub flags: u32,
        /// How long the command may take, in milliseconds; 0 for no limit.
        pub timeout: u32,
        /// The most bytes to read from the device (DATA_IN).
        pub datain_len: u32,
        /// The command descriptor block.
        pub cdb: Opaque,
        /// The bytes to send to the device (DATA_OUT).
        pub dataout: Opaque,
    }
}

xdr_struct! {
    /// `ndmp4_execute_cdb_reply`.
    pub struct ExecuteCdbReply {
        /// NO_ERR when the command reached the device, whatever its SCSI status.
        pub error: NdmpError,
        /// The SCSI status byte (`scsi::status`).
        pub status: u8,
        /// How many bytes of `dataout` the device took.
        pub dataout_len: u32,
        /// The bytes read from the device.
        pub datain: Opaque,
        /// The sense data, when the status is CHECK CONDITION.
        pub ext_sense: Opaque,
    }
}

xdr_struct! {
    /// `ndmp4_name`: one entry of a recover name list.
    pub struct Name {
        /// The entry's path in the image, as file history gave it.
        pub original_path: NdmpString,
        /// The path to recover it at (`destination_dir` in `xdr/ndmp4.x`).
        pub destination_path: NdmpString,
        /// v3's `new_name`; usually empty in v4, where `destination_path` is the whole path.
        pub name: NdmpString,
        /// Another name for the entry (the DOS name on NT); usually empty.
        pub other_name: NdmpString,
        /// The entry's inode from file history, or all ones.
        pub node: u64,
        /// The entry's `fh_info` from file history, for direct access; all ones if unknown.
        pub fh_info: u64,
    }
}

xdr_struct! {
    /// `ndmp4_nt_path`.
    pub struct NtPath {
        /// The long (NTFS) name.
        pub nt_path: NdmpString,
        /// The short (8.3) name.
        pub dos_path: NdmpString,
    }
}

/// `ndmp4_file_name`. The `default:` arm keeps its discriminant so it re-encodes unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileName {
    /// A Unix name (discriminant UNIX).
    Unix {
        /// The path, or in FH_ADD_DIR one path component.
        unix_name: NdmpString,
    },
    /// An NT name (discriminant NT).
    Nt {
        /// The long and short names.
        nt_name: NtPath,
    },
    /// Any other discriminant.
    Other {
        /// The discriminant as received.
        fs_type: FsType,
        /// The name.
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
    /// A Unix name.
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
        /// `file_stat_uns` bits: the fields not reported.
        pub unsupported: u32,
        /// The kind of file system the file is on.
        pub fs_type: FsType,
        /// Directory, regular file, link...
        pub ftype: FileType,
        /// Last modification, in seconds since the Unix epoch.
        pub mtime: u32,
        /// Last access, in seconds since the Unix epoch.
        pub atime: u32,
        /// Last status change, in seconds since the Unix epoch.
        pub ctime: u32,
        /// The owner's user ID.
        pub owner: u32,
        /// The group ID.
        pub group: u32,
        /// The permission bits (Unix: mode & 0o7777).
        pub fattr: u32,
        /// The size in bytes.
        pub size: u64,
        /// The number of hard links.
        pub links: u32,
    }
}

xdr_struct! {
    /// `ndmp4_file`: one path-based file history entry.
    pub struct File {
        /// The full path, once per name style.
        pub name: Vec<FileName>,
        /// The attributes, once per file system type.
        pub stat: Vec<FileStat>,
        /// The inode number.
        pub node: u64,
        /// Where the file is in the image, for direct access; all ones if unknown.
        pub fh_info: u64,
    }
}

xdr_struct! {
    /// `ndmp4_dir`: one directory entry of inode-based file history.
    pub struct Dir {
        /// The entry's name within its directory, once per name style.
        pub name: Vec<FileName>,
        /// The inode the entry names.
        pub node: u64,
        /// The inode of the directory holding the entry.
        pub parent: u64,
    }
}

xdr_struct! {
    /// `ndmp4_node`: the attributes of one inode of inode-based file history.
    pub struct Node {
        /// The attributes, once per file system type.
        pub stats: Vec<FileStat>,
        /// The inode number.
        pub node: u64,
        /// Where the inode's data is in the image, for direct access; all ones if unknown.
        pub fh_info: u64,
    }
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
