//! The CONNECT and CONFIG interfaces of a session (spec §3.1, §3.2): version negotiation,
//! authentication, what is allowed before it, the CONFIG_* answers and extension lists.

use super::admission::Ticket;
use super::outbox::Outbox;
use super::shared::Ctx;
use crate::auth::{ct_eq, md5_digest};
use crate::config::AuthMethod;
use crate::error::Refusal;
use crate::wire::header::Header;
use crate::wire::messages::*;
use crate::wire::types::*;
use crate::wire::xdr::Fixed;
use crate::wire::{MessageCode, NdmpError, Reply, Request};
use tracing::{info, warn};

/// The protocol version a session starts with, and the highest spoken.
pub const NDMP_VERSION: u16 = 4;

/// The versions CONNECT_OPEN accepts.
pub const VERSIONS: &[u16] = &[3, NDMP_VERSION];

/// Extension classes offered by CONFIG_GET_EXT_LIST: only what is implemented. NetApp CAE
/// (IPv6 data addresses) and CAB (data-connection prepare), version 1 each; 0x2050
/// (snapshot management, restartable backup) is not offered: none of it is implemented.
const EXTENSIONS: &[(u16, &[u16])] = &[
    (crate::wire::netapp::CLASS_CAE, &[1]),
    (crate::wire::netapp::CLASS_CAB, &[1]),
];

/// The requests a DMA may send before it has authenticated (spec §5): enough to agree on a
/// version, learn how to log in, and do it. Everything else is NOT_AUTHORIZED until then.
pub const BEFORE_AUTH: &[MessageCode] = &[
    MessageCode::CONNECT_OPEN,
    MessageCode::CONNECT_CLIENT_AUTH,
    MessageCode::CONNECT_CLOSE,
    MessageCode::CONFIG_GET_SERVER_INFO,
    MessageCode::CONFIG_GET_AUTH_ATTR,
];

/// How the session must answer a request before looking at its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Dispatch it.
    Allowed,
    /// Answer with the error in the header (the code has no reply body we could fill).
    InHeader(Refusal),
    /// Answer with the error in the reply body.
    Refused(Refusal),
}

/// The admission table: codes this server does not know (`known` false) and posts are
/// never requests a DMA may make; the rest need authentication unless in [`BEFORE_AUTH`].
pub fn admission(code: MessageCode, known: bool, authenticated: bool) -> Admission {
    if !known {
        return Admission::InHeader(Refusal::new(
            NdmpError::NOT_SUPPORTED_ERR,
            format!("message {:#x} is not supported", code.0),
        ));
    }
    if code.is_post() {
        return Admission::InHeader(Refusal::new(
            NdmpError::NOT_SUPPORTED_ERR,
            format!("{code:?} is sent by servers, not DMAs"),
        ));
    }
    if !authenticated && !BEFORE_AUTH.contains(&code) {
        return Admission::Refused(Refusal::new(
            NdmpError::NOT_AUTHORIZED_ERR,
            format!("{code:?} needs a logged-in session: authenticate first (CONNECT_CLIENT_AUTH)"),
        ));
    }
    Admission::Allowed
}

#[derive(Debug, Default, Clone, Copy)]
struct ExtState {
    /// CONFIG_GET_EXT_LIST has been answered.
    listed: bool,
    /// Extensions were selected or used: D+N is over for this session.
    closed: bool,
}

/// The CONNECT/CONFIG server of one session: who logged in, the MD5 challenge handed out,
/// and where extension negotiation stands.
pub struct ConnectServer {
    ctx: Ctx,
    /// This connection's place: waiting to authenticate, then a session.
    ticket: Ticket,
    /// The authenticated user.
    user: Option<String>,
    /// The MD5 challenge handed out and not yet used.
    challenge: Option<[u8; 64]>,
    ext: ExtState,
}

/// The method's name in the REST view.
fn method_name(m: AuthMethod) -> &'static str {
    match m {
        AuthMethod::Md5 => "md5",
        AuthMethod::Text => "text",
        AuthMethod::None => "none",
    }
}

impl ConnectServer {
    /// A server for a new connection admitted with `ticket`: nobody logged in yet.
    pub fn new(ctx: Ctx, ticket: Ticket) -> ConnectServer {
        ConnectServer {
            ctx,
            ticket,
            user: None,
            challenge: None,
            ext: ExtState::default(),
        }
    }

    /// True once CONNECT_CLIENT_AUTH succeeded.
    pub fn authenticated(&self) -> bool {
        self.user.is_some()
    }

    /// A message of an extension class arrived: discovery and negotiation are over.
    pub fn extension_used(&mut self) {
        self.ext.closed = true;
    }

    /// The configured methods as the runtime settings (REST `authentication_types`) leave
    /// them, read anew for each request so a change (or a reload) applies to the next session.
    fn methods(&self) -> Vec<AuthMethod> {
        let s = &self.ctx.shared;
        s.settings.methods(&s.config().auth.methods)
    }

    /// The methods the config offers, before the runtime settings.
    fn configured(&self) -> Vec<AuthMethod> {
        self.ctx.shared.config().auth.methods.clone()
    }

    /// The offered methods as words: "MD5, TEXT".
    fn offered(&self) -> String {
        let names: Vec<String> = self
            .methods()
            .iter()
            .map(|m| method_name(*m).to_uppercase())
            .collect();
        names.join(", ")
    }

    /// Answers a CONNECT_* or CONFIG_* request; any other request the session passes here
    /// is one no server implements, and is refused NOT_SUPPORTED.
    pub async fn handle(
        &mut self,
        h: &Header,
        req: Request,
        out: &mut Outbox,
    ) -> std::io::Result<()> {
        let body = match req {
            Request::ConnectOpen(r) => return self.connect_open(h, r, out).await,
            Request::ConnectClientAuth(r) => return self.client_auth(h, r.auth_data, out).await,
            Request::ConnectServerAuth(r) => return self.server_auth(h, r.client_attr, out).await,
            Request::ConfigGetServerInfo(_) => self.server_info(),
            Request::ConfigGetAuthAttr(r) => match self.auth_attr(r.auth_type) {
                Ok(b) => b,
                Err(r) => return out.refuse(h, r).await,
            },
            Request::ConfigGetExtList(_) => match self.get_ext_list() {
                Ok(b) => b,
                Err(r) => return out.refuse(h, r).await,
            },
            Request::ConfigSetExtList(r) => {
                let selected = r.selected();
                return match check_ext_selection(&self.ext, &selected) {
                    Ok(()) => {
                        self.ext.closed = true;
                        for s in &selected {
                            self.ctx
                                .entry
                                .add_extension(s.ext_class_id, s.ext_version, true);
                        }
                        info!(classes = ?selected, "extensions selected");
                        out.ok(h).await
                    }
                    Err(r) => out.refuse(h, r).await,
                };
            }
            Request::ConfigGetHostInfo(_) => {
                let host = &self.ctx.shared.host;
                Reply::ConfigGetHostInfo(ConfigGetHostInfoReply {
                    error: NdmpError::NO_ERR,
                    hostname: host.hostname.as_str().into(),
                    os_type: host.os_type.as_str().into(),
                    os_vers: host.os_vers.as_str().into(),
                    hostid: host.hostid.as_str().into(),
                })
            }
            Request::ConfigGetConnectionType(_) => {
                let mut addr_types = vec![AddrType::LOCAL, AddrType::TCP];
                // a DMA that never selected CAE may not know the type: it is listed once the
                // class is in effect
                if self.ctx.entry.has_extension(crate::wire::netapp::CLASS_CAE) {
                    addr_types.push(AddrType::TCP_IPV6);
                }
                Reply::ConfigGetConnectionType(ConfigGetConnectionTypeReply {
                    error: NdmpError::NO_ERR,
                    addr_types,
                })
            }
            Request::ConfigGetButypeInfo(_) => {
                let mut butype_info = butype_info();
                if out.version() == crate::wire::v3::VERSION {
                    // v3 states file history with one bit of its own
                    for b in &mut butype_info {
                        b.attrs |= crate::wire::v3::BUTYPE_BACKUP_FILE_HISTORY;
                    }
                }
                Reply::ConfigGetButypeInfo(ConfigGetButypeInfoReply {
                    error: NdmpError::NO_ERR,
                    butype_info,
                })
            }
            Request::ConfigGetFsInfo(_) => {
                let cfg = &self.ctx.shared.config();
                let mut fs_info = super::sysinfo::fs_info(cfg);
                // what a backup of each export reads: "btrfs" (a snapshot) or "none"
                for (info, e) in fs_info.iter_mut().zip(&cfg.exports) {
                    info.fs_env
                        .push(Pval::new("SNAPSHOT", crate::snapshot::describe(e)));
                }
                Reply::ConfigGetFsInfo(ConfigGetFsInfoReply {
                    error: NdmpError::NO_ERR,
                    fs_info,
                })
            }
            Request::ConfigGetTapeInfo(_) => Reply::ConfigGetTapeInfo(ConfigGetTapeInfoReply {
                error: NdmpError::NO_ERR,
                tape_info: super::sysinfo::tape_info(&self.ctx.shared.config()),
            }),
            Request::ConfigGetScsiInfo(_) => Reply::ConfigGetScsiInfo(ConfigGetScsiInfoReply {
                error: NdmpError::NO_ERR,
                scsi_info: super::sysinfo::scsi_info(&self.ctx.shared.config()),
            }),
            other => {
                let why = format!("{:?} is not supported by this server yet", other.code());
                return out
                    .refuse(h, Refusal::new(NdmpError::NOT_SUPPORTED_ERR, why))
                    .await;
            }
        };
        out.reply(h, body).await
    }

    async fn connect_open(
        &mut self,
        h: &Header,
        r: ConnectOpenRequest,
        out: &mut Outbox,
    ) -> std::io::Result<()> {
        let v = r.protocol_version;
        if VERSIONS.contains(&v) {
            if self.authenticated() && v != out.version() {
                let why = format!(
                    "the session speaks NDMP version {}; the version cannot change after login",
                    out.version()
                );
                return out
                    .refuse(h, Refusal::new(NdmpError::ILLEGAL_STATE_ERR, why))
                    .await;
            }
            // the reply has the same layout in both versions; what follows is in version v
            out.ok(h).await?;
            if v != out.version() {
                info!("speaking NDMP version {v}");
            }
            out.set_version(v);
            return Ok(());
        }
        let why = format!(
            "NDMP version {v} is not supported; this server speaks versions 3 and {NDMP_VERSION}"
        );
        out.refuse(h, Refusal::new(NdmpError::ILLEGAL_ARGS_ERR, why))
            .await
    }

    fn server_info(&self) -> Reply {
        let auth_type = self
            .methods()
            .iter()
            .map(|m| match m {
                AuthMethod::Md5 => AuthType::MD5,
                AuthMethod::Text => AuthType::TEXT,
                AuthMethod::None => AuthType::NONE,
            })
            .collect();
        // Product and version stay hidden until the DMA has authenticated (spec §5): they
        // tell an attacker which bugs to try.
        let known = self.user.is_some();
        let pick = |s: &str| if known { s.into() } else { "".into() };
        Reply::ConfigGetServerInfo(ConfigGetServerInfoReply {
            error: NdmpError::NO_ERR,
            vendor_name: pick(super::shared::VENDOR),
            product_name: pick(super::shared::PRODUCT),
            revision_number: pick(super::shared::REVISION),
            auth_type,
        })
    }

    fn auth_attr(&mut self, t: AuthType) -> Result<Reply, Refusal> {
        let attr = match t {
            AuthType::MD5 if self.methods().contains(&AuthMethod::Md5) => {
                let mut c = [0u8; 64];
                if getrandom::fill(&mut c).is_err() {
                    return Err(Refusal::new(
                        NdmpError::UNDEFINED_ERR,
                        "no randomness for a challenge",
                    ));
                }
                self.challenge = Some(c);
                AuthAttr::Md5 {
                    challenge: Fixed(c),
                }
            }
            AuthType::TEXT if self.methods().contains(&AuthMethod::Text) => AuthAttr::Text,
            AuthType::NONE if self.methods().contains(&AuthMethod::None) => AuthAttr::None,
            other => {
                return Err(Refusal::new(
                    NdmpError::ILLEGAL_ARGS_ERR,
                    format!(
                        "authentication type {other:?} is not offered (this server offers {})",
                        self.offered()
                    ),
                ))
            }
        };
        Ok(Reply::ConfigGetAuthAttr(ConfigGetAuthAttrReply {
            error: NdmpError::NO_ERR,
            server_attr: attr,
        }))
    }

    async fn client_auth(
        &mut self,
        h: &Header,
        data: AuthData,
        out: &mut Outbox,
    ) -> std::io::Result<()> {
        let shared = self.ctx.shared.clone();
        let users = shared.settings.logins(&shared.users());
        let had_challenge = self.challenge.is_some();
        let (method, user, ok) = match &data {
            AuthData::None => (AuthMethod::None, "(none)".to_string(), true),
            AuthData::Text(t) => {
                let user = t.auth_id.to_string();
                let ok = users.iter().any(|u| {
                    // evaluate both comparisons for every user: no early exit on the name
                    let name = ct_eq(u.name.as_bytes(), t.auth_id.as_bytes());
                    let pw = ct_eq(&u.password, t.auth_password.as_bytes());
                    name & pw & !u.password.is_empty()
                });
                (AuthMethod::Text, user, ok)
            }
            AuthData::Md5(m) => {
                let user = m.auth_id.to_string();
                // a challenge is good for one attempt, so a captured digest cannot be replayed
                let ok = match self.challenge.take() {
                    Some(c) => users.iter().any(|u| {
                        let name = ct_eq(u.name.as_bytes(), m.auth_id.as_bytes());
                        let digest = md5_digest(&u.password, &c);
                        name & ct_eq(&digest, &m.auth_digest.0) & !u.password.is_empty()
                    }),
                    None => false,
                };
                (AuthMethod::Md5, user, ok)
            }
        };
        if !self.methods().contains(&method) && self.configured().contains(&method) {
            // configured, but an administrator switched it off (REST authentication_types):
            // a refusal of policy, as a wrong password is, not a malformed request
            let why = format!(
                "authentication method {} is switched off on this server (it offers {})",
                method_name(method).to_uppercase(),
                self.offered()
            );
            warn!(user = %user, peer = %self.ctx.peer, "{why}");
            return out
                .refuse(h, Refusal::new(NdmpError::NOT_AUTHORIZED_ERR, why))
                .await;
        }
        if !self.methods().contains(&method) {
            let why = format!(
                "authentication method {} is not offered (this server offers {})",
                method_name(method).to_uppercase(),
                self.offered()
            );
            return out
                .refuse(h, Refusal::new(NdmpError::ILLEGAL_ARGS_ERR, why))
                .await;
        }
        let peer = self.ctx.peer;
        if ok {
            // the right password, but the sessions are full: the DMA may try again later
            if let Err(why) = self.ticket.authenticated() {
                warn!(user = %user, "authenticated, but {why}");
                return out
                    .refuse(
                        h,
                        Refusal::new(NdmpError::NOT_AUTHORIZED_ERR, why.to_string()),
                    )
                    .await;
            }
            shared.throttle.success(peer.ip());
            info!(user = %user, method = ?method, "authenticated");
            self.ctx.entry.update(|i| {
                i.user = Some(user.clone());
                i.auth_method = Some(method_name(method));
            });
            self.user = Some(user);
            return out.ok(h).await;
        }
        let delay = shared.throttle.failure(peer.ip());
        warn!(
            user = %user,
            method = ?method,
            peer = %peer,
            failures = shared.throttle.failures(peer.ip()),
            "authentication failed"
        );
        tokio::time::sleep(delay).await;
        let why = match (&data, method) {
            (AuthData::Md5(_), _) if !had_challenge => format!(
                "authentication of user {user:?} failed: MD5 needs a fresh challenge \
                 (CONFIG_GET_AUTH_ATTR) before each attempt"
            ),
            (AuthData::None, _) => "authentication failed".to_string(),
            _ => format!("authentication of user {user:?} failed: unknown user or wrong password"),
        };
        out.refuse(h, Refusal::new(NdmpError::NOT_AUTHORIZED_ERR, why))
            .await
    }

    /// CONNECT_SERVER_AUTH: the server proves it knows the session user's password by
    /// digesting the DMA's challenge with it.
    async fn server_auth(
        &mut self,
        h: &Header,
        attr: AuthAttr,
        out: &mut Outbox,
    ) -> std::io::Result<()> {
        let AuthAttr::Md5 { challenge } = attr else {
            let why = "server authentication needs an MD5 challenge";
            return out
                .refuse(h, Refusal::new(NdmpError::ILLEGAL_ARGS_ERR, why))
                .await;
        };
        let user = self.user.clone().unwrap_or_default();
        let s = &self.ctx.shared;
        let logins = s.settings.logins(&s.users());
        let Some(cred) = logins.iter().find(|u| u.name == user) else {
            let why = "this session's user has no password to prove";
            return out
                .refuse(h, Refusal::new(NdmpError::ILLEGAL_ARGS_ERR, why))
                .await;
        };
        let digest = md5_digest(&cred.password, &challenge.0);
        let body = Reply::ConnectServerAuth(ConnectServerAuthReply {
            error: NdmpError::NO_ERR,
            server_result: AuthData::Md5(AuthMd5 {
                auth_id: user.as_str().into(),
                auth_digest: Fixed(digest),
            }),
        });
        out.reply(h, body).await
    }

    fn get_ext_list(&mut self) -> Result<Reply, Refusal> {
        if self.ext.closed {
            return Err(Refusal::new(
                NdmpError::EXT_DANDN_ILLEGAL_ERR,
                "extensions are already selected for this session",
            ));
        }
        self.ext.listed = true;
        let class_list = EXTENSIONS
            .iter()
            .map(|(class, versions)| ClassList {
                ext_class_id: *class,
                ext_version: versions.to_vec(),
            })
            .collect();
        Ok(Reply::ConfigGetExtList(ConfigGetExtListReply {
            error: NdmpError::NO_ERR,
            class_list,
        }))
    }
}

/// Only what the DATA server really implements is offered: dump backups with incrementals
/// and history whose fh_info locates each file; recovery of the whole image or a name list,
/// sequential or by direct access; history regenerated from an image. tar: path history
/// (FH_ADD_FILE) with each member's header offset.
fn butype_info() -> Vec<ButypeInfo> {
    use crate::wire::types::butype_attr as a;
    let env = || {
        vec![
            Pval::new("HIST", "y"),
            Pval::new("LEVEL", "0"),
            Pval::new("UPDATE", "y"),
        ]
    };
    let dump = ButypeInfo {
        butype_name: "dump".into(),
        default_env: env(),
        attrs: a::BACKUP_INCREMENTAL
            | a::BACKUP_FH_DIR
            | a::BACKUP_FH_FILE
            | a::BACKUP_DIRECT
            | a::RECOVER_FILELIST
            | a::RECOVER_DIRECT
            | a::RECOVER_FILEHIST
            | a::RECOVER_FH_DIR
            | a::RECOVER_FH_FILE,
    };
    let tar = ButypeInfo {
        butype_name: "tar".into(),
        default_env: env(),
        attrs: a::BACKUP_INCREMENTAL
            | a::BACKUP_FH_FILE
            | a::BACKUP_DIRECT
            | a::RECOVER_FILELIST
            | a::RECOVER_DIRECT
            | a::RECOVER_FILEHIST
            | a::RECOVER_FH_FILE,
    };
    vec![dump, tar]
}

/// The spec's D+N rules (§3.2.10), in the order its error list gives them.
fn check_ext_selection(ext: &ExtState, selected: &[ClassVersion]) -> Result<(), Refusal> {
    if ext.closed {
        return Err(Refusal::new(
            NdmpError::EXT_DANDN_ILLEGAL_ERR,
            "extensions are already selected for this session",
        ));
    }
    if !ext.listed {
        return Err(Refusal::new(
            NdmpError::PRECONDITION_ERR,
            "CONFIG_GET_EXT_LIST must come before CONFIG_SET_EXT_LIST",
        ));
    }
    for (i, a) in selected.iter().enumerate() {
        if selected[..i]
            .iter()
            .any(|b| b.ext_class_id == a.ext_class_id)
        {
            return Err(Refusal::new(
                NdmpError::EXT_DUPL_CLASSES_ERR,
                format!("class {:#06x} is selected twice", a.ext_class_id),
            ));
        }
    }
    for s in selected {
        match EXTENSIONS.iter().find(|(c, _)| *c == s.ext_class_id) {
            None => {
                return Err(Refusal::new(
                    NdmpError::CLASS_NOT_SUPPORTED_ERR,
                    format!("extension class {:#06x} is not offered", s.ext_class_id),
                ))
            }
            Some((_, versions)) if !versions.contains(&s.ext_version) => {
                return Err(Refusal::new(
                    NdmpError::VERSION_NOT_SUPPORTED_ERR,
                    format!(
                        "version {} of class {:#06x} is not offered",
                        s.ext_version, s.ext_class_id
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cv(c: u16, v: u16) -> ClassVersion {
        ClassVersion {
            ext_class_id: c,
            ext_version: v,
        }
    }

    fn code(r: Result<(), Refusal>) -> NdmpError {
        r.err().map_or(NdmpError::NO_ERR, |r| r.error)
    }

    #[test]
    fn ext_selection_rules() {
        let fresh = ExtState::default();
        assert_eq!(
            code(check_ext_selection(&fresh, &[])),
            NdmpError::PRECONDITION_ERR
        );
        let listed = ExtState {
            listed: true,
            closed: false,
        };
        assert_eq!(code(check_ext_selection(&listed, &[])), NdmpError::NO_ERR);
        assert_eq!(
            code(check_ext_selection(
                &listed,
                &[cv(0x2052, 1), cv(0x2052, 2)]
            )),
            NdmpError::EXT_DUPL_CLASSES_ERR
        );
        assert_eq!(
            code(check_ext_selection(
                &listed,
                &[cv(0x2051, 1), cv(0x2052, 1)]
            )),
            NdmpError::NO_ERR
        );
        // snapshot management is not implemented, so not offered
        assert_eq!(
            code(check_ext_selection(
                &listed,
                &[cv(0x2051, 1), cv(0x2050, 3)]
            )),
            NdmpError::CLASS_NOT_SUPPORTED_ERR
        );
        assert_eq!(
            code(check_ext_selection(&listed, &[cv(0x2052, 2)])),
            NdmpError::VERSION_NOT_SUPPORTED_ERR
        );
        let closed = ExtState {
            listed: true,
            closed: true,
        };
        assert_eq!(
            code(check_ext_selection(&closed, &[])),
            NdmpError::EXT_DANDN_ILLEGAL_ERR
        );
    }

    #[test]
    fn every_request_code_has_a_refusal_body() {
        // Outbox::refuse relies on this to answer in the body rather than the header
        for code in Request::CODES {
            if code.is_post() || *code == MessageCode::CONNECT_CLOSE {
                continue;
            }
            assert!(
                Reply::with_error(*code, NdmpError::NOT_SUPPORTED_ERR).is_some(),
                "{code:?}"
            );
        }
    }

    #[test]
    fn the_admission_table() {
        use Admission as A;
        for code in Request::CODES {
            if code.is_post() {
                continue;
            }
            let before = admission(*code, true, false);
            let after = admission(*code, true, true);
            assert_eq!(after, A::Allowed, "{code:?} after authentication");
            if BEFORE_AUTH.contains(code) {
                assert_eq!(before, A::Allowed, "{code:?} before authentication");
            } else {
                let A::Refused(r) = before else {
                    panic!("{code:?} before authentication: {before:?}")
                };
                assert_eq!(r.error, NdmpError::NOT_AUTHORIZED_ERR, "{code:?}");
            }
        }
        // posts and unknown codes are never a DMA's requests, logged in or not
        for authenticated in [false, true] {
            for (code, known) in [
                (MessageCode::NOTIFY_DATA_READ, true),
                (MessageCode(0x0777), false),
            ] {
                let A::InHeader(r) = admission(code, known, authenticated) else {
                    panic!("{code:?} is refused in the header")
                };
                assert_eq!(r.error, NdmpError::NOT_SUPPORTED_ERR);
            }
        }
    }
}
