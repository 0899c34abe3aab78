//! One NDMP control connection: the connection status notice, version negotiation,
//! authentication, the pre-auth rules, CONFIG_* answers and the dispatch of every request.

use super::data::DataSession;
use super::mover::MoverSession;
use super::scsi::ScsiState;
use super::tape::TapeState;
use super::Shared;
use crate::auth::{ct_eq, md5_digest};
use crate::config::AuthMethod;
use crate::registry::SessionEntry;
use crate::wire::header::{Body, Header, Message, MessageError};
use crate::wire::messages::*;
use crate::wire::record::RecordCodec;
use crate::wire::types::*;
use crate::wire::xdr::{Fixed, Limits};
use crate::wire::{NdmpError, Reply, Request};
use futures::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;
use tracing::{debug, info, warn, Instrument};

/// The only protocol version spoken.
pub const NDMP_VERSION: u16 = 4;

/// Undecodable messages in a row after which the peer is taken to be sending garbage.
const MAX_BAD_IN_A_ROW: u32 = 8;

/// Extension classes offered by CONFIG_GET_EXT_LIST (none yet).
const EXTENSIONS: &[(u16, &[u16])] = &[];

/// Runs one control connection to its end.
pub async fn run(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let local = match stream.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let kill = shared.shutdown.child_token();
    let registration = shared.registry.register(peer, local, kill);
    let entry = registration.entry().clone();
    let span = tracing::info_span!("session", id = entry.id, %peer);
    async move {
        let framed = Framed::new(stream, RecordCodec::new(shared.config.max_record));
        let mut s = Session {
            framed,
            shared: shared.clone(),
            entry,
            peer,
            seq: 0,
            user: None,
            challenge: None,
            ext: ExtState::default(),
            tape: None,
            scsi: None,
            local,
            mover: MoverSession::default(),
            data: DataSession::default(),
        };
        let (data_bytes, mover) = (
            s.data.machine.bytes_processed.clone(),
            s.mover.machine.progress.clone(),
        );
        s.entry.set_counters(Box::new(move || {
            (
                data_bytes.load(std::sync::atomic::Ordering::Relaxed),
                mover.bytes_moved.load(std::sync::atomic::Ordering::Relaxed),
            )
        }));
        if shared.registry.len() > shared.config.max_sessions {
            info!("refused: {} sessions already", shared.config.max_sessions);
            let _ = s
                .post(Request::NotifyConnectionStatus(
                    NotifyConnectionStatusPost {
                        reason: ConnectionStatusReason::REFUSED,
                        protocol_version: NDMP_VERSION,
                        text_reason: "session limit reached; try again later".into(),
                    },
                ))
                .await;
            return;
        }
        info!("connected");
        s.serve().await;
        info!("closed");
    }
    .instrument(span)
    .await;
    drop(registration);
}

#[derive(Debug, Default)]
struct ExtState {
    /// CONFIG_GET_EXT_LIST has been answered.
    listed: bool,
    /// Extensions were selected or used: D+N is over for this session.
    closed: bool,
}

/// What the dispatcher wants next.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Continue,
    Close,
}

pub(super) struct Session {
    framed: Framed<TcpStream, RecordCodec>,
    pub(super) shared: Arc<Shared>,
    pub(super) entry: Arc<SessionEntry>,
    peer: SocketAddr,
    /// Sequence number of the last message we sent.
    seq: u32,
    /// The authenticated user.
    user: Option<String>,
    /// The MD5 challenge handed out and not yet used.
    challenge: Option<[u8; 64]>,
    ext: ExtState,
    /// The tape drive this connection has open.
    pub(super) tape: Option<TapeState>,
    pub(super) scsi: Option<ScsiState>,
    /// Our end of the control connection: data connections listen on its address.
    pub(super) local: SocketAddr,
    pub(super) mover: MoverSession,
    pub(super) data: DataSession,
}

fn now() -> u32 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

impl Session {
    async fn serve(&mut self) {
        let hello = Request::NotifyConnectionStatus(NotifyConnectionStatusPost {
            reason: ConnectionStatusReason::CONNECTED,
            protocol_version: NDMP_VERSION,
            text_reason: "ndmpd ready".into(),
        });
        if self.post(hello).await.is_err() {
            return;
        }
        let kill = self.entry.kill_token().clone();
        let mut ops = self.entry.take_ops();
        let limits = Limits::default();
        let mut bad_in_a_row = 0u32;
        loop {
            let record = tokio::select! {
                _ = kill.cancelled() => {
                    let why = if self.shared.shutdown.is_cancelled() {
                        "server shutting down"
                    } else {
                        "session ended by the operator"
                    };
                    info!("{why}");
                    // the DMA hears DATA and MOVER halt (ABORTED) before the session goes
                    if !matches!(self.data.machine.state, DataState::IDLE | DataState::HALTED) {
                        let _ = self.data_halt(DataHaltReason::ABORTED).await;
                    }
                    self.release_mover().await;
                    let _ = self.post(Request::NotifyConnectionStatus(NotifyConnectionStatusPost {
                        reason: ConnectionStatusReason::SHUTDOWN,
                        protocol_version: NDMP_VERSION,
                        text_reason: why.into(),
                    })).await;
                    break;
                }
                r = self.framed.next() => r,
                Some(op) = async {
                    match ops.as_mut() {
                        Some(o) => o.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    let crate::registry::Op::CancelData = op;
                    if self.data.machine.state == DataState::ACTIVE {
                        info!("job canceled by the operator");
                        if let Err(e) = self.data_halt(DataHaltReason::ABORTED).await {
                            debug!("write failed: {e}");
                            break;
                        }
                    }
                    continue;
                }
                Some(o) = super::data::next_out(&mut self.data.run) => {
                    if let Err(e) = self.on_backup_out(o).await {
                        debug!("write failed: {e}");
                        break;
                    }
                    continue;
                }
                Some(ev) = self.data.events.recv() => {
                    if let Err(e) = self.on_data_event(ev).await {
                        debug!("write failed: {e}");
                        break;
                    }
                    continue;
                }
                Some(ev) = self.mover.events.recv() => {
                    if let Err(e) = self.on_mover_event(ev).await {
                        debug!("write failed: {e}");
                        break;
                    }
                    continue;
                }
            };
            let record = match record {
                None => {
                    debug!("peer closed the connection");
                    break;
                }
                Some(Err(e)) => {
                    warn!("closing: {e}");
                    break;
                }
                Some(Ok(r)) => r,
            };
            match Message::decode_with(record, limits) {
                Ok(msg) => {
                    bad_in_a_row = 0;
                    match self.handle(msg).await {
                        Ok(Next::Continue) => {}
                        Ok(Next::Close) => break,
                        Err(e) => {
                            debug!("write failed: {e}");
                            break;
                        }
                    }
                }
                Err(MessageError::Body { header, err }) => {
                    bad_in_a_row += 1;
                    warn!("undecodable {:?} body: {err}", header.message_code);
                    if !header.is_reply() && !header.message_code.is_post() {
                        let text =
                            format!("cannot decode {:?} request: {err}", header.message_code);
                        if self
                            .refuse_in_header(&header, NdmpError::XDR_DECODE_ERR, &text)
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                }
                Err(e) => {
                    // no usable header: nothing to answer, the record is dropped
                    bad_in_a_row += 1;
                    warn!("dropping record: {e}");
                }
            }
            if bad_in_a_row >= MAX_BAD_IN_A_ROW {
                warn!("closing: {bad_in_a_row} undecodable messages in a row");
                break;
            }
        }
        self.release_devices().await;
        let _ = SinkExt::<&Message>::close(&mut self.framed).await;
    }

    /// However the session ends, its tape is closed as TAPE_CLOSE would (implicit filemark)
    /// and its drive lock released.
    async fn release_devices(&mut self) {
        self.release_data();
        self.release_mover().await;
        if self.tape.is_some() && self.close_tape().await.is_err() {
            // a failed close keeps the drive once; the second close releases it regardless
            let _ = self.close_tape().await;
        }
        self.close_scsi().await;
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    async fn send(&mut self, msg: Message) -> std::io::Result<()> {
        self.framed
            .send(&msg)
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
    }

    pub(super) async fn post(&mut self, body: Request) -> std::io::Result<()> {
        let seq = self.next_seq();
        self.send(Message::request(seq, now(), body)).await
    }

    pub(super) async fn reply(&mut self, req: &Header, body: Reply) -> std::io::Result<()> {
        let seq = self.next_seq();
        self.send(Message::reply(seq, now(), req.sequence, body))
            .await
    }

    /// Answers with `error` in the reply body (the spec's preferred form, and one every
    /// dissector decodes), plus a LOG_MESSAGE saying why.
    pub(super) async fn refuse(
        &mut self,
        req: &Header,
        error: NdmpError,
        why: &str,
    ) -> std::io::Result<()> {
        match Reply::with_error(req.message_code, error) {
            Some(body) => {
                self.log_error(req, why).await?;
                self.reply(req, body).await
            }
            None => self.refuse_in_header(req, error, why).await,
        }
    }

    /// Answers with `error` in the header and no body: for codes without a reply layout and
    /// bodies that cannot be decoded.
    async fn refuse_in_header(
        &mut self,
        req: &Header,
        error: NdmpError,
        why: &str,
    ) -> std::io::Result<()> {
        self.log_error(req, why).await?;
        let seq = self.next_seq();
        self.send(Message::header_error(seq, now(), req, error))
            .await
    }

    pub(super) async fn log_error(&mut self, req: &Header, text: &str) -> std::io::Result<()> {
        self.log_typed(req, LogType::ERROR, text).await
    }

    pub(super) async fn log_warning(&mut self, req: &Header, text: &str) -> std::io::Result<()> {
        self.log_typed(req, LogType::WARNING, text).await
    }

    async fn log_typed(
        &mut self,
        req: &Header,
        log_type: LogType,
        text: &str,
    ) -> std::io::Result<()> {
        self.post(Request::LogMessage(LogMessagePost {
            log_type,
            message_id: 0,
            entry: text.into(),
            associated_message_valid: HasAssociatedMessage::HAS_ASSOCIATED_MESSAGE,
            associated_message_sequence: req.sequence,
        }))
        .await
    }

    pub(super) async fn ok(&mut self, req: &Header) -> std::io::Result<()> {
        match Reply::with_error(req.message_code, NdmpError::NO_ERR) {
            Some(body) => self.reply(req, body).await,
            None => Ok(()),
        }
    }

    fn methods(&self) -> &[AuthMethod] {
        &self.shared.config.auth.methods
    }

    async fn handle(&mut self, msg: Message) -> std::io::Result<Next> {
        let h = msg.header;
        let req = match msg.body {
            Body::Request(r) => r,
            // We send no requests, so a reply from the DMA answers nothing.
            Body::Reply(_) | Body::Empty => {
                debug!("ignoring unsolicited {:?} reply", h.message_code);
                return Ok(Next::Continue);
            }
        };
        if h.message_code.class() != 0 {
            // using any extension ends discovery and negotiation
            self.ext.closed = true;
        }
        match req {
            Request::ConnectClose(_) => return Ok(Next::Close),
            Request::ConnectOpen(r) => self.connect_open(&h, r).await?,
            Request::ConnectClientAuth(r) => self.client_auth(&h, r.auth_data).await?,
            Request::ConfigGetServerInfo(_) => self.server_info(&h).await?,
            Request::ConfigGetAuthAttr(r) => self.auth_attr(&h, r.auth_type).await?,
            Request::Unknown { code, .. } => {
                let why = format!("message {:#x} is not supported", code.0);
                self.refuse_in_header(&h, NdmpError::NOT_SUPPORTED_ERR, &why)
                    .await?
            }
            r if h.message_code.is_post() => {
                let why = format!("{:?} is sent by servers, not DMAs", r.code());
                self.refuse_in_header(&h, NdmpError::NOT_SUPPORTED_ERR, &why)
                    .await?
            }
            _ if self.user.is_none() => {
                let why = "authenticate first (CONNECT_CLIENT_AUTH)";
                self.refuse(&h, NdmpError::NOT_AUTHORIZED_ERR, why).await?
            }
            Request::ConnectServerAuth(r) => self.server_auth(&h, r.client_attr).await?,
            Request::ConfigGetHostInfo(_) => {
                let host = &self.shared.host;
                let body = Reply::ConfigGetHostInfo(ConfigGetHostInfoReply {
                    error: NdmpError::NO_ERR,
                    hostname: host.hostname.as_str().into(),
                    os_type: host.os_type.as_str().into(),
                    os_vers: host.os_vers.as_str().into(),
                    hostid: host.hostid.as_str().into(),
                });
                self.reply(&h, body).await?
            }
            Request::ConfigGetConnectionType(_) => {
                let body = Reply::ConfigGetConnectionType(ConfigGetConnectionTypeReply {
                    error: NdmpError::NO_ERR,
                    addr_types: vec![AddrType::LOCAL, AddrType::TCP],
                });
                self.reply(&h, body).await?
            }
            Request::ConfigGetButypeInfo(_) => {
                // Only what the DATA server really implements is offered: dump backups with
                // incrementals and history whose fh_info locates each file; recovery of the
                // whole image or a name list, sequential or by direct access; history
                // regenerated from an image.
                use crate::wire::types::butype_attr as a;
                let dump = ButypeInfo {
                    butype_name: "dump".into(),
                    default_env: vec![
                        Pval::new("HIST", "y"),
                        Pval::new("LEVEL", "0"),
                        Pval::new("UPDATE", "y"),
                    ],
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
                // tar: path history (FH_ADD_FILE) with each member's header offset
                let tar = ButypeInfo {
                    butype_name: "tar".into(),
                    default_env: vec![
                        Pval::new("HIST", "y"),
                        Pval::new("LEVEL", "0"),
                        Pval::new("UPDATE", "y"),
                    ],
                    attrs: a::BACKUP_INCREMENTAL
                        | a::BACKUP_FH_FILE
                        | a::BACKUP_DIRECT
                        | a::RECOVER_FILELIST
                        | a::RECOVER_DIRECT
                        | a::RECOVER_FILEHIST
                        | a::RECOVER_FH_FILE,
                };
                let body = Reply::ConfigGetButypeInfo(ConfigGetButypeInfoReply {
                    error: NdmpError::NO_ERR,
                    butype_info: vec![dump, tar],
                });
                self.reply(&h, body).await?
            }
            Request::ConfigGetFsInfo(_) => {
                let fs_info = super::sysinfo::fs_info(&self.shared.config);
                let body = Reply::ConfigGetFsInfo(ConfigGetFsInfoReply {
                    error: NdmpError::NO_ERR,
                    fs_info,
                });
                self.reply(&h, body).await?
            }
            Request::ConfigGetTapeInfo(_) => {
                let tape_info = super::sysinfo::tape_info(&self.shared.config);
                let body = Reply::ConfigGetTapeInfo(ConfigGetTapeInfoReply {
                    error: NdmpError::NO_ERR,
                    tape_info,
                });
                self.reply(&h, body).await?
            }
            Request::ConfigGetScsiInfo(_) => {
                let scsi_info = super::sysinfo::scsi_info(&self.shared.config);
                let body = Reply::ConfigGetScsiInfo(ConfigGetScsiInfoReply {
                    error: NdmpError::NO_ERR,
                    scsi_info,
                });
                self.reply(&h, body).await?
            }
            Request::ConfigGetExtList(_) => self.get_ext_list(&h).await?,
            Request::TapeOpen(r) => self.tape_open(&h, r).await?,
            Request::TapeClose(_) => self.tape_close(&h).await?,
            Request::TapeGetState(_) => self.tape_get_state(&h).await?,
            Request::TapeMtio(r) => self.tape_mtio(&h, r).await?,
            Request::TapeWrite(r) => self.tape_write(&h, r).await?,
            Request::TapeRead(r) => self.tape_read(&h, r).await?,
            Request::TapeExecuteCdb(r) => self.tape_execute_cdb(&h, r).await?,
            Request::ScsiOpen(r) => self.scsi_open(&h, r).await?,
            Request::ScsiClose(_) => self.scsi_close(&h).await?,
            Request::ScsiGetState(_) => self.scsi_get_state(&h).await?,
            Request::ScsiResetDevice(_) => self.scsi_reset(&h).await?,
            Request::ScsiExecuteCdb(r) => self.scsi_execute_cdb(&h, r).await?,
            Request::ConfigSetExtList(r) => self.set_ext_list(&h, r.selected()).await?,
            r @ (Request::MoverGetState(_)
            | Request::MoverSetRecordSize(_)
            | Request::MoverSetWindow(_)
            | Request::MoverListen(_)
            | Request::MoverConnect(_)
            | Request::MoverContinue(_)
            | Request::MoverRead(_)
            | Request::MoverAbort(_)
            | Request::MoverClose(_)
            | Request::MoverStop(_)) => self.mover_request(&h, r).await?,
            r @ (Request::DataGetState(_)
            | Request::DataListen(_)
            | Request::DataConnect(_)
            | Request::DataAbort(_)
            | Request::DataStop(_)
            | Request::DataGetEnv(_)
            | Request::DataStartBackup(_)
            | Request::DataStartRecover(_)
            | Request::DataStartRecoverFilehist(_)) => self.data_request(&h, r).await?,
            other => {
                let why = format!("{:?} is not supported by this server yet", other.code());
                self.refuse(&h, NdmpError::NOT_SUPPORTED_ERR, &why).await?
            }
        }
        Ok(Next::Continue)
    }

    async fn connect_open(&mut self, h: &Header, r: ConnectOpenRequest) -> std::io::Result<()> {
        if r.protocol_version == NDMP_VERSION {
            self.ok(h).await
        } else {
            let why = format!(
                "NDMP version {} is not supported; this server speaks version {NDMP_VERSION}",
                r.protocol_version
            );
            self.refuse(h, NdmpError::ILLEGAL_ARGS_ERR, &why).await
        }
    }

    async fn server_info(&mut self, h: &Header) -> std::io::Result<()> {
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
        let body = Reply::ConfigGetServerInfo(ConfigGetServerInfoReply {
            error: NdmpError::NO_ERR,
            vendor_name: pick(super::VENDOR),
            product_name: pick(super::PRODUCT),
            revision_number: pick(super::REVISION),
            auth_type,
        });
        self.reply(h, body).await
    }

    async fn auth_attr(&mut self, h: &Header, t: AuthType) -> std::io::Result<()> {
        let attr = match t {
            AuthType::MD5 if self.methods().contains(&AuthMethod::Md5) => {
                let mut c = [0u8; 64];
                if getrandom::fill(&mut c).is_err() {
                    return self
                        .refuse(h, NdmpError::UNDEFINED_ERR, "no randomness for a challenge")
                        .await;
                }
                self.challenge = Some(c);
                AuthAttr::Md5 {
                    challenge: Fixed(c),
                }
            }
            AuthType::TEXT if self.methods().contains(&AuthMethod::Text) => AuthAttr::Text,
            AuthType::NONE if self.methods().contains(&AuthMethod::None) => AuthAttr::None,
            other => {
                let why = format!("authentication type {other:?} is not offered");
                return self.refuse(h, NdmpError::ILLEGAL_ARGS_ERR, &why).await;
            }
        };
        let body = Reply::ConfigGetAuthAttr(ConfigGetAuthAttrReply {
            error: NdmpError::NO_ERR,
            server_attr: attr,
        });
        self.reply(h, body).await
    }

    async fn client_auth(&mut self, h: &Header, data: AuthData) -> std::io::Result<()> {
        let had_challenge = self.challenge.is_some();
        let (method, user, ok) = match &data {
            AuthData::None => (AuthMethod::None, "(none)".to_string(), true),
            AuthData::Text(t) => {
                let user = t.auth_id.to_string();
                let ok = self.shared.users.iter().any(|u| {
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
                    Some(c) => self.shared.users.iter().any(|u| {
                        let name = ct_eq(u.name.as_bytes(), m.auth_id.as_bytes());
                        let digest = md5_digest(&u.password, &c);
                        name & ct_eq(&digest, &m.auth_digest.0) & !u.password.is_empty()
                    }),
                    None => false,
                };
                (AuthMethod::Md5, user, ok)
            }
        };
        if !self.methods().contains(&method) {
            let why = format!("authentication method {method:?} is not offered");
            return self.refuse(h, NdmpError::ILLEGAL_ARGS_ERR, &why).await;
        }
        if ok {
            self.shared.throttle.success(self.peer.ip());
            info!(user = %user, method = ?method, "authenticated");
            let name: &'static str = match method {
                AuthMethod::Md5 => "md5",
                AuthMethod::Text => "text",
                AuthMethod::None => "none",
            };
            self.entry.update(|i| {
                i.user = Some(user.clone());
                i.auth_method = Some(name);
            });
            self.user = Some(user);
            return self.ok(h).await;
        }
        let delay = self.shared.throttle.failure(self.peer.ip());
        warn!(
            user = %user,
            method = ?method,
            peer = %self.peer,
            failures = self.shared.throttle.failures(self.peer.ip()),
            "authentication failed"
        );
        tokio::time::sleep(delay).await;
        let why = match (&data, method) {
            (AuthData::Md5(_), _) if !had_challenge => {
                "authentication failed (for MD5, ask CONFIG_GET_AUTH_ATTR for a fresh challenge)"
            }
            _ => "authentication failed",
        };
        self.refuse(h, NdmpError::NOT_AUTHORIZED_ERR, why).await
    }

    /// CONNECT_SERVER_AUTH: the server proves it knows the session user's password by
    /// digesting the DMA's challenge with it.
    async fn server_auth(&mut self, h: &Header, attr: AuthAttr) -> std::io::Result<()> {
        let AuthAttr::Md5 { challenge } = attr else {
            let why = "server authentication needs an MD5 challenge";
            return self.refuse(h, NdmpError::ILLEGAL_ARGS_ERR, why).await;
        };
        let user = self.user.clone().unwrap_or_default();
        let Some(cred) = self.shared.users.iter().find(|u| u.name == user) else {
            let why = "this session's user has no password to prove";
            return self.refuse(h, NdmpError::ILLEGAL_ARGS_ERR, why).await;
        };
        let digest = md5_digest(&cred.password, &challenge.0);
        let body = Reply::ConnectServerAuth(ConnectServerAuthReply {
            error: NdmpError::NO_ERR,
            server_result: AuthData::Md5(AuthMd5 {
                auth_id: user.as_str().into(),
                auth_digest: Fixed(digest),
            }),
        });
        self.reply(h, body).await
    }

    async fn get_ext_list(&mut self, h: &Header) -> std::io::Result<()> {
        if self.ext.closed {
            let why = "extensions are already selected for this session";
            return self.refuse(h, NdmpError::EXT_DANDN_ILLEGAL_ERR, why).await;
        }
        self.ext.listed = true;
        let class_list = EXTENSIONS
            .iter()
            .map(|(class, versions)| ClassList {
                ext_class_id: *class,
                ext_version: versions.to_vec(),
            })
            .collect();
        let body = Reply::ConfigGetExtList(ConfigGetExtListReply {
            error: NdmpError::NO_ERR,
            class_list,
        });
        self.reply(h, body).await
    }

    async fn set_ext_list(
        &mut self,
        h: &Header,
        selected: Vec<ClassVersion>,
    ) -> std::io::Result<()> {
        let (error, why) = check_ext_selection(&self.ext, &selected);
        if error.is_ok() {
            self.ext.closed = true;
            return self.ok(h).await;
        }
        self.refuse(h, error, &why).await
    }
}

/// The spec's D+N rules (§3.2.10), in the order its error list gives them.
fn check_ext_selection(ext: &ExtState, selected: &[ClassVersion]) -> (NdmpError, String) {
    if ext.closed {
        return (
            NdmpError::EXT_DANDN_ILLEGAL_ERR,
            "extensions are already selected for this session".into(),
        );
    }
    if !ext.listed {
        return (
            NdmpError::PRECONDITION_ERR,
            "CONFIG_GET_EXT_LIST must come before CONFIG_SET_EXT_LIST".into(),
        );
    }
    for (i, a) in selected.iter().enumerate() {
        if selected[..i]
            .iter()
            .any(|b| b.ext_class_id == a.ext_class_id)
        {
            return (
                NdmpError::EXT_DUPL_CLASSES_ERR,
                format!("class {:#06x} is selected twice", a.ext_class_id),
            );
        }
    }
    for s in selected {
        match EXTENSIONS.iter().find(|(c, _)| *c == s.ext_class_id) {
            None => {
                return (
                    NdmpError::CLASS_NOT_SUPPORTED_ERR,
                    format!("extension class {:#06x} is not offered", s.ext_class_id),
                )
            }
            Some((_, versions)) if !versions.contains(&s.ext_version) => {
                return (
                    NdmpError::VERSION_NOT_SUPPORTED_ERR,
                    format!(
                        "version {} of class {:#06x} is not offered",
                        s.ext_version, s.ext_class_id
                    ),
                )
            }
            Some(_) => {}
        }
    }
    (NdmpError::NO_ERR, String::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::MessageCode;

    fn cv(c: u16, v: u16) -> ClassVersion {
        ClassVersion {
            ext_class_id: c,
            ext_version: v,
        }
    }

    #[test]
    fn ext_selection_rules() {
        let fresh = ExtState::default();
        assert_eq!(
            check_ext_selection(&fresh, &[]).0,
            NdmpError::PRECONDITION_ERR
        );
        let listed = ExtState {
            listed: true,
            closed: false,
        };
        assert_eq!(check_ext_selection(&listed, &[]).0, NdmpError::NO_ERR);
        assert_eq!(
            check_ext_selection(&listed, &[cv(0x2052, 1), cv(0x2052, 2)]).0,
            NdmpError::EXT_DUPL_CLASSES_ERR
        );
        assert_eq!(
            check_ext_selection(&listed, &[cv(0x2052, 1)]).0,
            NdmpError::CLASS_NOT_SUPPORTED_ERR
        );
        let closed = ExtState {
            listed: true,
            closed: true,
        };
        assert_eq!(
            check_ext_selection(&closed, &[]).0,
            NdmpError::EXT_DANDN_ILLEGAL_ERR
        );
    }

    #[test]
    fn every_request_code_has_a_refusal_body() {
        // refuse() relies on this to answer in the body rather than the header
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
}
