//! `ndmpd dma query`: asks a server every CONFIG_GET_* question after authenticating and
//! keeps the answers, laid out as text for an operator (a nicer `ndmjob -q`) or as JSON.

use super::connection::{Client, ClientError};
use super::session::{login_version, AuthMethod};
use crate::wire::messages::{
    ConfigGetAuthAttrReply, ConfigGetAuthAttrRequest, ConfigGetButypeInfoReply,
    ConfigGetConnectionTypeReply, ConfigGetExtListReply, ConfigGetFsInfoReply,
    ConfigGetHostInfoReply, ConfigGetScsiInfoReply, ConfigGetServerInfoReply,
    ConfigGetTapeInfoReply, NotifyConnectionStatusPost, Void,
};
use crate::wire::types::{
    butype_attr, fs_info_uns, tape_attr, AuthAttr, AuthType, DeviceInfo, Pval,
};
use crate::wire::xdr::NdmpString;
use crate::wire::{NdmpError, Reply, Request};
use serde::Serialize;
use std::fmt::{self, Display, Formatter, Write as _};
use std::time::Duration;

/// What the server said to one question: a reply body (whose own `error` field may still
/// report a failure), or an error in the reply header with no body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Answer<T> {
    /// The reply body.
    Reply(T),
    /// The reply header carried an error, and no body came.
    Error {
        /// The header's error.
        error: NdmpError,
    },
    /// No reply within the time allowed (see [`EXT_LIST_TIMEOUT`]).
    NoReply {
        /// Seconds waited.
        no_reply_within_secs: u64,
    },
}

/// Reply bodies that carry an error field.
pub trait HasError {
    /// The body's own `error` field.
    fn error(&self) -> NdmpError;
}

macro_rules! has_error {
    ($($t:ty),*) => { $(impl HasError for $t { fn error(&self) -> NdmpError { self.error } })* };
}

has_error!(
    ConfigGetHostInfoReply,
    ConfigGetServerInfoReply,
    ConfigGetConnectionTypeReply,
    ConfigGetAuthAttrReply,
    ConfigGetButypeInfoReply,
    ConfigGetFsInfoReply,
    ConfigGetTapeInfoReply,
    ConfigGetScsiInfoReply,
    ConfigGetExtListReply
);

impl<T: HasError> Answer<T> {
    /// The error reported, from the header or the body; `None` when nothing came back.
    pub fn error(&self) -> Option<NdmpError> {
        match self {
            Answer::Reply(r) => Some(r.error()),
            Answer::Error { error } => Some(*error),
            Answer::NoReply { .. } => None,
        }
    }

    /// The body, if the server answered without error.
    pub fn ok(&self) -> Option<&T> {
        match self {
            Answer::Reply(r) if r.error().is_ok() => Some(r),
            _ => None,
        }
    }
}

/// CONFIG_GET_AUTH_ATTR for one auth type the server offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthAttrAnswer {
    /// An auth type the server listed in CONFIG_GET_SERVER_INFO.
    pub auth_type: AuthType,
    /// What it said about it.
    pub answer: Answer<ConfigGetAuthAttrReply>,
}

/// How long `query` waits for the CONFIG_GET_EXT_LIST reply. The message is new in v4 and
/// NDMJOB drops it without an answer, so silence here is an answer, not a failure.
pub const EXT_LIST_TIMEOUT: Duration = Duration::from_secs(3);

/// Everything `query` learned about one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueryReport {
    /// The address as given by the operator.
    pub server: String,
    /// The address actually reached.
    pub peer: String,
    /// The user logged in as.
    pub user: String,
    /// The authentication method used.
    pub auth: AuthMethod,
    /// The NOTIFY_CONNECTION_STATUS the server sent on connecting.
    pub connection_status: NotifyConnectionStatusPost,
    /// The protocol version CONNECT_OPEN agreed on.
    pub version: u16,
    /// CONFIG_GET_HOST_INFO.
    pub host_info: Answer<ConfigGetHostInfoReply>,
    /// CONFIG_GET_SERVER_INFO.
    pub server_info: Answer<ConfigGetServerInfoReply>,
    /// CONFIG_GET_CONNECTION_TYPE.
    pub connection_type: Answer<ConfigGetConnectionTypeReply>,
    /// CONFIG_GET_AUTH_ATTR for each auth type the server info reply listed.
    pub auth_attr: Vec<AuthAttrAnswer>,
    /// CONFIG_GET_BUTYPE_INFO.
    pub butype_info: Answer<ConfigGetButypeInfoReply>,
    /// CONFIG_GET_FS_INFO.
    pub fs_info: Answer<ConfigGetFsInfoReply>,
    /// CONFIG_GET_TAPE_INFO.
    pub tape_info: Answer<ConfigGetTapeInfoReply>,
    /// CONFIG_GET_SCSI_INFO.
    pub scsi_info: Answer<ConfigGetScsiInfoReply>,
    /// CONFIG_GET_EXT_LIST; `NoReply` after [`EXT_LIST_TIMEOUT`] from a server that drops it.
    pub ext_list: Answer<ConfigGetExtListReply>,
}

impl QueryReport {
    /// The host name the server reported, if it answered CONFIG_GET_HOST_INFO.
    pub fn hostname(&self) -> Option<&NdmpString> {
        self.host_info.ok().map(|h| &h.hostname)
    }
}

/// Connects, CONNECT_OPEN(4), authenticates, asks every CONFIG_GET_* question, then
/// CONNECT_CLOSE. An NDMP error to a CONFIG question is kept in the report; any other failure
/// (refused, authentication, I/O, timeout, undecodable reply) ends the query.
pub async fn query(
    addr: &str,
    user: &str,
    password: &[u8],
    auth: AuthMethod,
) -> Result<QueryReport, ClientError> {
    query_version(addr, user, password, auth, 4).await
}

/// [`query`] after a CONNECT_OPEN asking for protocol `version` (3 or 4).
pub async fn query_version(
    addr: &str,
    user: &str,
    password: &[u8],
    auth: AuthMethod,
    version: u16,
) -> Result<QueryReport, ClientError> {
    let mut c = login_version(addr, user, password, auth, version).await?;

    macro_rules! ask {
        ($req:expr, $variant:ident) => {
            ask!($req, $variant, None)
        };
        ($req:expr, $variant:ident, $limit:expr) => {
            ask(&mut c, $req, $limit, |r| match r {
                Reply::$variant(b) => Some(b),
                _ => None,
            })
            .await?
        };
    }

    let host_info = ask!(Request::ConfigGetHostInfo(Void), ConfigGetHostInfo);
    let server_info = ask!(Request::ConfigGetServerInfo(Void), ConfigGetServerInfo);
    let connection_type = ask!(
        Request::ConfigGetConnectionType(Void),
        ConfigGetConnectionType
    );
    let auth_types = match &server_info {
        Answer::Reply(s) => s.auth_type.clone(),
        _ => Vec::new(),
    };
    let mut auth_attr = Vec::new();
    for auth_type in auth_types {
        let answer = ask!(
            Request::ConfigGetAuthAttr(ConfigGetAuthAttrRequest { auth_type }),
            ConfigGetAuthAttr
        );
        auth_attr.push(AuthAttrAnswer { auth_type, answer });
    }
    let butype_info = ask!(Request::ConfigGetButypeInfo(Void), ConfigGetButypeInfo);
    let fs_info = ask!(Request::ConfigGetFsInfo(Void), ConfigGetFsInfo);
    let tape_info = ask!(Request::ConfigGetTapeInfo(Void), ConfigGetTapeInfo);
    let scsi_info = ask!(Request::ConfigGetScsiInfo(Void), ConfigGetScsiInfo);
    // v3 has no CONFIG_GET_EXT_LIST: a v3 server may leave it unanswered
    let ext_list = if c.version() < 4 {
        Answer::Error {
            error: NdmpError::NOT_SUPPORTED_ERR,
        }
    } else {
        ask!(
            Request::ConfigGetExtList(Void),
            ConfigGetExtList,
            Some(EXT_LIST_TIMEOUT)
        )
    };

    let report = QueryReport {
        server: addr.to_string(),
        peer: c.peer_addr().to_string(),
        user: user.to_string(),
        auth,
        connection_status: c.connection_status().clone(),
        version: c.version(),
        host_info,
        server_info,
        connection_type,
        auth_attr,
        butype_info,
        fs_info,
        tape_info,
        scsi_info,
        ext_list,
    };
    c.close().await?;
    Ok(report)
}

/// One CONFIG question: a header error becomes `Answer::Error`, and with a `limit`, silence
/// becomes `Answer::NoReply`; other failures end the query.
async fn ask<T>(
    c: &mut Client,
    req: Request,
    limit: Option<Duration>,
    pick: fn(Reply) -> Option<T>,
) -> Result<Answer<T>, ClientError> {
    let code = req.code();
    let result = match limit {
        Some(l) => c.call_timeout(req, l).await,
        None => c.call(req).await,
    };
    match result {
        Err(ClientError::Timeout(_)) if limit.is_some() => Ok(Answer::NoReply {
            no_reply_within_secs: limit.map_or(0, |l| l.as_secs()),
        }),
        // call() already checked the reply's message code, so pick() only fails if the wire
        // layer's code-to-body table disagrees with itself.
        Ok(reply) => pick(reply)
            .map(Answer::Reply)
            .ok_or_else(|| ClientError::Unexpected(format!("{code} reply has another body"))),
        Err(ClientError::Ndmp { error, .. }) => Ok(Answer::Error { error }),
        Err(e) => Err(e),
    }
}

// ---- text layout

/// The column where values start, whatever the label's indentation.
const VALUE_COL: usize = 20;
/// Lines of flag names and lists wrap before this column.
const WIDTH: usize = 96;

/// Names of the butype attribute bits, in bit order.
const BUTYPE_ATTRS: &[(u32, &str)] = &[
    (butype_attr::BACKUP_FILELIST, "BACKUP_FILELIST"),
    (butype_attr::RECOVER_FILELIST, "RECOVER_FILELIST"),
    (butype_attr::BACKUP_DIRECT, "BACKUP_DIRECT"),
    (butype_attr::RECOVER_DIRECT, "RECOVER_DIRECT"),
    (butype_attr::BACKUP_INCREMENTAL, "BACKUP_INCREMENTAL"),
    (butype_attr::RECOVER_INCREMENTAL, "RECOVER_INCREMENTAL"),
    (butype_attr::BACKUP_UTF8, "BACKUP_UTF8"),
    (butype_attr::RECOVER_UTF8, "RECOVER_UTF8"),
    (butype_attr::BACKUP_FH_FILE, "BACKUP_FH_FILE"),
    (butype_attr::BACKUP_FH_DIR, "BACKUP_FH_DIR"),
    (butype_attr::RECOVER_FILEHIST, "RECOVER_FILEHIST"),
    (butype_attr::RECOVER_FH_FILE, "RECOVER_FH_FILE"),
    (butype_attr::RECOVER_FH_DIR, "RECOVER_FH_DIR"),
];

const TAPE_ATTRS: &[(u32, &str)] = &[
    (tape_attr::REWIND, "REWIND"),
    (tape_attr::UNLOAD, "UNLOAD"),
    (tape_attr::RAW, "RAW"),
];

/// "0x7fe BACKUP_FILELIST …"; bits without a name show as hex. SCSI devices pass no table.
fn flag_names(bits: u32, table: &[(u32, &str)]) -> Vec<String> {
    if bits == 0 {
        return vec!["none".to_string()];
    }
    let mut out = vec![format!("{bits:#x}")];
    let mut rest = bits;
    for &(bit, name) in table {
        if bits & bit != 0 {
            out.push(name.to_string());
            rest &= !bit;
        }
    }
    for i in 0..32 {
        if rest & (1 << i) != 0 {
            out.push(format!("{:#x}", 1u32 << i));
        }
    }
    out
}

/// The vendor whose sandbox holds an extension class (spec appendix A), if any.
fn ext_class_owner(class: u16) -> &'static str {
    const VENDORS: &[&str] = &[
        "Auspex",
        "Compaq",
        "Crosstor",
        "IBM/Tivoli",
        "Legato",
        "NetApp",
        "Procom",
        "Spectra Logic",
        "BlueArc",
        "Syncsort",
        "Traakan",
        "Veritas",
        "Reliaty",
        "EMC",
        "Atempo",
        "VA Linux",
        "Backbone",
        "Commvault",
        "Mirapoint",
        "Network Engines",
        "Quantum/ATL",
        "HP",
        "Broadband Storage",
        "Microtal",
        "Land-5",
    ];
    match class {
        0x2050 => "NetApp snapshot management",
        0x2051 => "NetApp connection address (IPv6)",
        0x2052 => "NetApp cluster aware backup",
        0x0001..=0x0007 => "standard",
        0x2000..=0x7fef => VENDORS
            .get(usize::from((class - 0x2000) >> 4))
            .copied()
            .unwrap_or("proprietary"),
        0x7ff0..=0x7ffe => "test",
        _ => "reserved",
    }
}

/// Bytes in binary units with one decimal: "931.5 GiB".
pub fn human_bytes(n: u64) -> String {
    const UNITS: &[&str] = &["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Writes `label` padded to the label column, then `value`.
fn line(f: &mut Formatter<'_>, indent: usize, label: &str, value: impl Display) -> fmt::Result {
    let gap = VALUE_COL.saturating_sub(indent + label.len()).max(1);
    writeln!(f, "{:indent$}{label}{:gap$}{value}", "", "")
}

/// Writes `words` after a label, wrapping at WIDTH with continuation lines under the values.
fn wrapped(f: &mut Formatter<'_>, indent: usize, label: &str, words: &[String]) -> fmt::Result {
    let col = VALUE_COL;
    let mut cur = String::new();
    let mut first = true;
    for w in words {
        if !cur.is_empty() && col + cur.len() + 1 + w.len() > WIDTH {
            if first {
                line(f, indent, label, &cur)?;
                first = false;
            } else {
                writeln!(f, "{:col$}{cur}", "")?;
            }
            cur.clear();
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(w);
    }
    if first {
        line(f, indent, label, &cur)
    } else {
        writeln!(f, "{:col$}{cur}", "")
    }
}

/// Items as words for `wrapped`, comma-separated; `none` when empty.
fn list<T: Display>(items: &[T]) -> Vec<String> {
    if items.is_empty() {
        return vec!["none".to_string()];
    }
    let last = items.len() - 1;
    items
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if i < last {
                format!("{t},")
            } else {
                t.to_string()
            }
        })
        .collect()
}

/// Environment variables as aligned "NAME = value" lines under a label; `none` when empty.
fn env(f: &mut Formatter<'_>, indent: usize, label: &str, vars: &[Pval]) -> fmt::Result {
    if vars.is_empty() {
        return line(f, indent, label, "none");
    }
    let width = vars
        .iter()
        .map(|p| p.name.to_string().len())
        .max()
        .unwrap_or(0);
    let col = VALUE_COL;
    for (i, p) in vars.iter().enumerate() {
        let text = format!("{:<width$} = {}", p.name.to_string(), show(&p.value));
        if i == 0 {
            line(f, indent, label, text)?;
        } else {
            writeln!(f, "{:col$}{text}", "")?;
        }
    }
    Ok(())
}

/// A string from the server, with empty ones made visible.
fn show(s: &NdmpString) -> String {
    if s.is_empty() {
        "\"\"".to_string()
    } else {
        s.to_string()
    }
}

/// A section heading, or the heading with the reason there is nothing under it.
fn heading<T: HasError>(
    f: &mut Formatter<'_>,
    title: &str,
    answer: &Answer<T>,
    count: impl Fn(&T) -> usize,
) -> Result<bool, fmt::Error> {
    match answer.ok() {
        Some(body) => {
            let n = count(body);
            if n == 0 {
                writeln!(f, "\n{title}: none")?;
                Ok(false)
            } else {
                writeln!(f, "\n{title}: {n}")?;
                Ok(true)
            }
        }
        None => {
            writeln!(f, "\n{title}: {}", describe_failure(answer))?;
            Ok(false)
        }
    }
}

/// Why an answer has no usable body, for the text report.
fn describe_failure<T: HasError>(a: &Answer<T>) -> String {
    match a {
        Answer::NoReply {
            no_reply_within_secs,
        } => format!("no answer within {no_reply_within_secs} s"),
        _ => match a.error() {
            Some(NdmpError::NOT_SUPPORTED_ERR) => "not supported by the server".to_string(),
            Some(NdmpError::NOT_AUTHORIZED_ERR) => "not authorized".to_string(),
            Some(other) => format!("error {other}"),
            None => "no answer".to_string(),
        },
    }
}

fn devices(f: &mut Formatter<'_>, devs: &[DeviceInfo], attrs: &[(u32, &str)]) -> fmt::Result {
    for d in devs {
        writeln!(f, "  {}", show(&d.model))?;
        if d.caplist.is_empty() {
            line(f, 4, "devices", "none")?;
        }
        for cap in &d.caplist {
            line(f, 4, "device", show(&cap.device))?;
            wrapped(f, 6, "attrs", &flag_names(cap.attr, attrs))?;
            env(f, 6, "capabilities", &cap.capability)?;
        }
    }
    Ok(())
}

impl Display for QueryReport {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(f, "NDMP server {}", self.server)?;
        if self.peer != self.server {
            line(f, 2, "address", &self.peer)?;
        }
        let cs = &self.connection_status;
        let mut status = format!("{}, protocol version {}", cs.reason, cs.protocol_version);
        if !cs.text_reason.is_empty() {
            let _ = write!(status, " ({})", cs.text_reason);
        }
        line(f, 2, "connection", status)?;
        if self.version != cs.protocol_version {
            line(f, 2, "speaking", format!("NDMP version {}", self.version))?;
        }
        let who = if self.auth == AuthMethod::None {
            "AUTH_NONE".to_string()
        } else {
            format!("{} as {}", self.auth, self.user)
        };
        line(f, 2, "authenticated", who)?;

        writeln!(f, "\nHost")?;
        match self.host_info.ok() {
            Some(h) => {
                line(f, 2, "hostname", show(&h.hostname))?;
                line(f, 2, "OS type", show(&h.os_type))?;
                line(f, 2, "OS version", show(&h.os_vers))?;
                line(f, 2, "host id", show(&h.hostid))?;
            }
            None => line(f, 2, "", describe_failure(&self.host_info))?,
        }

        writeln!(f, "\nServer")?;
        match self.server_info.ok() {
            Some(s) => {
                line(f, 2, "vendor", show(&s.vendor_name))?;
                line(f, 2, "product", show(&s.product_name))?;
                line(f, 2, "revision", show(&s.revision_number))?;
                wrapped(f, 2, "auth types", &list(&s.auth_type))?;
            }
            None => line(f, 2, "", describe_failure(&self.server_info))?,
        }
        for a in &self.auth_attr {
            let text = match a.answer.ok().map(|r| &r.server_attr) {
                Some(AuthAttr::Md5 { .. }) => "MD5 challenge (64 bytes)".to_string(),
                Some(AuthAttr::Text) => "no attributes".to_string(),
                Some(AuthAttr::None) => "no attributes (AUTH_NONE)".to_string(),
                None => describe_failure(&a.answer),
            };
            line(f, 2, &format!("{} attr", a.auth_type), text)?;
        }
        match self.connection_type.ok() {
            Some(c) => wrapped(f, 2, "data conn", &list(&c.addr_types))?,
            None => line(f, 2, "data conn", describe_failure(&self.connection_type))?,
        }

        if heading(f, "Backup types", &self.butype_info, |b| {
            b.butype_info.len()
        })? {
            if let Some(b) = self.butype_info.ok() {
                for bt in &b.butype_info {
                    writeln!(f, "  {}", show(&bt.butype_name))?;
                    wrapped(f, 4, "attrs", &flag_names(bt.attrs, BUTYPE_ATTRS))?;
                    env(f, 4, "default env", &bt.default_env)?;
                }
            }
        }

        if heading(f, "File systems", &self.fs_info, |b| b.fs_info.len())? {
            if let Some(b) = self.fs_info.ok() {
                for fs in &b.fs_info {
                    writeln!(
                        f,
                        "  {} ({})",
                        show(&fs.fs_logical_device),
                        show(&fs.fs_type)
                    )?;
                    line(f, 4, "device", show(&fs.fs_physical_device))?;
                    let size = |bit: u32, v: u64, what: &str| {
                        if fs.unsupported & bit != 0 {
                            format!("? {what}")
                        } else {
                            format!("{} {what}", human_bytes(v))
                        }
                    };
                    line(
                        f,
                        4,
                        "size",
                        format!(
                            "{}, {}, {}",
                            size(fs_info_uns::TOTAL_SIZE, fs.total_size, "total"),
                            size(fs_info_uns::USED_SIZE, fs.used_size, "used"),
                            size(fs_info_uns::AVAIL_SIZE, fs.avail_size, "available"),
                        ),
                    )?;
                    let count = |bit: u32, v: u64, what: &str| {
                        if fs.unsupported & bit != 0 {
                            format!("? {what}")
                        } else {
                            format!("{v} {what}")
                        }
                    };
                    line(
                        f,
                        4,
                        "inodes",
                        format!(
                            "{}, {}",
                            count(fs_info_uns::TOTAL_INODES, fs.total_inodes, "total"),
                            count(fs_info_uns::USED_INODES, fs.used_inodes, "used"),
                        ),
                    )?;
                    line(f, 4, "status", show(&fs.fs_status))?;
                    env(f, 4, "env", &fs.fs_env)?;
                }
            }
        }

        if heading(f, "Tape devices", &self.tape_info, |b| b.tape_info.len())? {
            if let Some(b) = self.tape_info.ok() {
                devices(f, &b.tape_info, TAPE_ATTRS)?;
            }
        }
        if heading(f, "SCSI devices", &self.scsi_info, |b| b.scsi_info.len())? {
            if let Some(b) = self.scsi_info.ok() {
                devices(f, &b.scsi_info, &[])?;
            }
        }

        if heading(f, "Extensions", &self.ext_list, |b| b.class_list.len())? {
            if let Some(b) = self.ext_list.ok() {
                for c in &b.class_list {
                    let versions: Vec<String> = c
                        .ext_version
                        .iter()
                        .enumerate()
                        .map(|(i, v)| {
                            if i == 0 {
                                format!("{v} (default)")
                            } else {
                                v.to_string()
                            }
                        })
                        .collect();
                    let label = format!("{:#06x}", c.ext_class_id);
                    line(
                        f,
                        2,
                        &label,
                        format!(
                            "{}: versions {}",
                            ext_class_owner(c.ext_class_id),
                            if versions.is_empty() {
                                "none".to_string()
                            } else {
                                versions.join(", ")
                            }
                        ),
                    )?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::types::{
        AddrType, ButypeInfo, ClassList, ConnectionStatusReason, DeviceCapability, FsInfo,
    };
    use crate::wire::xdr::Fixed;

    fn sample_report() -> QueryReport {
        QueryReport {
            server: "filer:10000".into(),
            peer: "192.0.2.7:10000".into(),
            user: "ndmp".into(),
            auth: AuthMethod::Md5,
            connection_status: NotifyConnectionStatusPost {
                reason: ConnectionStatusReason::CONNECTED,
                protocol_version: 4,
                text_reason: "".into(),
            },
            version: 4,
            host_info: Answer::Reply(ConfigGetHostInfoReply {
                error: NdmpError::NO_ERR,
                hostname: "filer".into(),
                os_type: "Linux".into(),
                os_vers: "6.1".into(),
                hostid: "abc".into(),
            }),
            server_info: Answer::Reply(ConfigGetServerInfoReply {
                error: NdmpError::NO_ERR,
                vendor_name: "V".into(),
                product_name: "P".into(),
                revision_number: "1".into(),
                auth_type: vec![AuthType::TEXT, AuthType::MD5],
            }),
            connection_type: Answer::Reply(ConfigGetConnectionTypeReply {
                error: NdmpError::NO_ERR,
                addr_types: vec![AddrType::LOCAL, AddrType::TCP],
            }),
            auth_attr: vec![
                AuthAttrAnswer {
                    auth_type: AuthType::TEXT,
                    answer: Answer::Reply(ConfigGetAuthAttrReply {
                        error: NdmpError::NO_ERR,
                        server_attr: AuthAttr::Text,
                    }),
                },
                AuthAttrAnswer {
                    auth_type: AuthType::MD5,
                    answer: Answer::Reply(ConfigGetAuthAttrReply {
                        error: NdmpError::NO_ERR,
                        server_attr: AuthAttr::Md5 {
                            challenge: Fixed([7; 64]),
                        },
                    }),
                },
            ],
            butype_info: Answer::Reply(ConfigGetButypeInfoReply {
                error: NdmpError::NO_ERR,
                butype_info: vec![ButypeInfo {
                    butype_name: "dump".into(),
                    default_env: vec![Pval::new("FILESYSTEM", ""), Pval::new("HIST", "n")],
                    attrs: 0x7fe | 0x8000,
                }],
            }),
            fs_info: Answer::Reply(ConfigGetFsInfoReply {
                error: NdmpError::NO_ERR,
                fs_info: vec![FsInfo {
                    unsupported: fs_info_uns::USED_INODES,
                    fs_type: "ext4".into(),
                    fs_logical_device: "/export".into(),
                    fs_physical_device: "/dev/sda1".into(),
                    total_size: 100 << 30,
                    used_size: 40 << 30,
                    avail_size: 60 << 30,
                    total_inodes: 6_553_600,
                    used_inodes: 0,
                    fs_env: vec![],
                    fs_status: "online".into(),
                }],
            }),
            tape_info: Answer::Reply(ConfigGetTapeInfoReply {
                error: NdmpError::NO_ERR,
                tape_info: vec![DeviceInfo {
                    model: "vtape".into(),
                    caplist: vec![DeviceCapability {
                        device: "tape0".into(),
                        attr: tape_attr::REWIND | tape_attr::UNLOAD,
                        capability: vec![Pval::new("EXECUTE_CDB", "f")],
                    }],
                }],
            }),
            scsi_info: Answer::Error {
                error: NdmpError::NOT_SUPPORTED_ERR,
            },
            ext_list: Answer::Reply(ConfigGetExtListReply {
                error: NdmpError::NO_ERR,
                class_list: vec![ClassList {
                    ext_class_id: 0x2050,
                    ext_version: vec![2, 1],
                }],
            }),
        }
    }

    #[test]
    fn client_query_report_text_names_everything() {
        let text = sample_report().to_string();
        for want in [
            "NDMP server filer:10000",
            "192.0.2.7:10000",
            "MD5 as ndmp",
            "  hostname          filer",
            "auth types        TEXT, MD5",
            "MD5 challenge (64 bytes)",
            "data conn         LOCAL, TCP",
            "BACKUP_FILELIST",
            "BACKUP_FH_DIR",
            "0x8000",
            "FILESYSTEM = \"\"",
            "HIST       = n",
            "100.0 GiB total, 40.0 GiB used, 60.0 GiB available",
            "6553600 total, ? used",
            "REWIND UNLOAD",
            "EXECUTE_CDB = f",
            "SCSI devices: not supported by the server",
            "0x2050",
            "NetApp snapshot management: versions 2 (default), 1",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
        assert!(
            text.lines().all(|l| l.len() <= WIDTH + 8),
            "over-long line in:\n{text}"
        );
        let mut silent = sample_report();
        silent.ext_list = Answer::NoReply {
            no_reply_within_secs: 3,
        };
        assert!(silent
            .to_string()
            .contains("Extensions: no answer within 3 s"));
        let v = serde_json::to_value(&silent).unwrap();
        assert_eq!(v["ext_list"]["no_reply_within_secs"], 3);
    }

    #[test]
    fn client_query_report_json_keeps_errors_uniform() {
        let v = serde_json::to_value(sample_report()).unwrap();
        assert_eq!(v["scsi_info"]["error"], "NOT_SUPPORTED_ERR");
        assert_eq!(v["host_info"]["error"], "NO_ERR");
        assert_eq!(v["host_info"]["hostname"], "filer");
        assert_eq!(v["auth"], "md5");
        assert_eq!(
            v["auth_attr"][1]["answer"]["server_attr"]["auth_type"],
            "MD5"
        );
        assert_eq!(v["butype_info"]["butype_info"][0]["attrs"], 0x87fe);
    }

    #[test]
    fn client_helpers() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
        assert_eq!(flag_names(0, TAPE_ATTRS), vec!["none"]);
        assert_eq!(flag_names(5, TAPE_ATTRS), vec!["0x5", "REWIND", "RAW"]);
        assert_eq!(ext_class_owner(0x2113), "Commvault");
        assert_eq!(ext_class_owner(0x7ff1), "test");
        assert_eq!("Md5".parse::<AuthMethod>(), Ok(AuthMethod::Md5));
        assert!("kerberos".parse::<AuthMethod>().is_err());
    }
}
