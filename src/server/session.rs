//! One NDMP control connection: the loop that reads requests and the events of the session's
//! interfaces, and the dispatch of each request to the server of its interface.

use super::admission::Ticket;
use super::connect::{self, Admission, ConnectServer, NDMP_VERSION};
use super::data::DataServer;
use super::inbox::{Inbox, PRE_AUTH_MAX_RECORD};
use super::mover::MoverServer;
use super::msglog::{self, Dir};
use super::outbox::Outbox;
use super::scsi::ScsiServer;
use super::shared::{Ctx, Shared};
use super::tape::TapeServer;
use crate::dataconn::LocalLink;
use crate::error::Refusal;
use crate::wire::header::{Body, Message, MessageError};
use crate::wire::messages::NotifyConnectionStatusPost;
use crate::wire::record::RecordCodec;
use crate::wire::types::{ConnectionStatusReason, DataHaltReason};
use crate::wire::xdr::Limits;
use crate::wire::{NdmpError, Request};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::TcpStream;
use tracing::{debug, info, warn, Instrument};

/// Undecodable messages in a row after which the peer is taken to be sending garbage.
const MAX_BAD_IN_A_ROW: u32 = 8;

/// Tells a connection that was not admitted why (NOTIFY_CONNECTION_STATUS REFUSED) and
/// closes it, giving a peer that does not read at most a few seconds.
pub async fn refuse(stream: TcpStream, why: String) {
    let (_read, write) = stream.into_split();
    let mut out = Outbox::new(write, RecordCodec::new(PRE_AUTH_MAX_RECORD));
    let refused = status(ConnectionStatusReason::REFUSED, &why);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), out.post(refused)).await;
}

/// Runs one control connection to its end; `ticket` is its place among the connections
/// waiting to authenticate.
pub async fn run(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>, ticket: Ticket) {
    let local = match stream.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let kill = shared.shutdown.child_token();
    let registration = shared.registry.register(peer, local, kill);
    let entry = registration.entry().clone();
    let span = tracing::info_span!("session", id = entry.id, %peer);
    async move {
        let ctx = Ctx {
            shared: shared.clone(),
            entry,
            peer,
            local,
        };
        let mut s = Session::new(ctx, stream, ticket);
        let (data_bytes, mover) = (s.data.bytes(), s.mover.progress());
        s.ctx.entry.set_counters(Box::new(move || {
            (
                data_bytes.load(Ordering::Relaxed),
                mover.bytes_moved.load(Ordering::Relaxed),
            )
        }));
        info!("connected");
        s.serve().await;
        info!("closed");
    }
    .instrument(span)
    .await;
    drop(registration);
}

fn status(reason: ConnectionStatusReason, text: &str) -> Request {
    Request::NotifyConnectionStatus(NotifyConnectionStatusPost {
        reason,
        protocol_version: NDMP_VERSION,
        text_reason: text.into(),
    })
}

/// What the dispatcher wants next.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Continue,
    Close,
}

/// One control connection: the reading half, the outbox, and one server per interface. The
/// servers never see each other; what one needs of another is passed here, in `handle`.
struct Session {
    ctx: Ctx,
    read: Inbox,
    /// When the connection is closed if it has not authenticated.
    auth_deadline: tokio::time::Instant,
    out: Outbox,
    connect: ConnectServer,
    data: DataServer,
    mover: MoverServer,
    tape: TapeServer,
    scsi: ScsiServer,
}

impl Session {
    fn new(ctx: Ctx, stream: TcpStream, ticket: Ticket) -> Session {
        let max = ctx.shared.config().max_record;
        let (read, write) = stream.into_split();
        let link = LocalLink::default();
        let budget = ctx.shared.record_budget.clone();
        let timeout = ctx.shared.admission.preauth_timeout();
        Session {
            // until the DMA has logged in, only the small messages that lead there
            read: Inbox::new(read, PRE_AUTH_MAX_RECORD, budget),
            auth_deadline: tokio::time::Instant::now() + timeout,
            out: Outbox::new(write, RecordCodec::new(max)),
            connect: ConnectServer::new(ctx.clone(), ticket),
            data: DataServer::new(ctx.clone(), link.clone()),
            mover: MoverServer::new(ctx.clone(), link),
            tape: TapeServer::new(ctx.clone()),
            scsi: ScsiServer::new(ctx.clone()),
            ctx,
        }
    }

    async fn serve(&mut self) {
        let hello = status(ConnectionStatusReason::CONNECTED, "ndmpd ready");
        if self.out.post(hello).await.is_err() {
            return;
        }
        let kill = self.ctx.entry.kill_token().clone();
        let mut ops = self.ctx.entry.take_ops();
        let limits = Limits::default();
        let mut bad_in_a_row = 0u32;
        let why: &str = loop {
            let deadline = (!self.connect.authenticated()).then_some(self.auth_deadline);
            let record = tokio::select! {
                _ = kill.cancelled() => {
                    self.killed().await;
                    break "the session was ended";
                }
                _ = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                } => {
                    let secs = self.ctx.shared.admission.preauth_timeout().as_secs();
                    let why = format!("not authenticated within {secs} s");
                    info!("closing: {why}");
                    let _ = self.out.post(status(ConnectionStatusReason::SHUTDOWN, &why)).await;
                    break "the DMA did not authenticate";
                }
                r = self.read.next() => r,
                Some(op) = async {
                    match ops.as_mut() {
                        Some(o) => o.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    let crate::registry::Op::CancelData = op;
                    if let Err(e) = self.data.cancel(&mut self.out).await {
                        debug!("write failed: {e}");
                        break "the DMA's control connection failed";
                    }
                    continue;
                }
                input = self.data.next() => {
                    if let Err(e) = self.data.on_input(input, &mut self.out).await {
                        debug!("write failed: {e}");
                        break "the DMA's control connection failed";
                    }
                    continue;
                }
                Some(ev) = self.mover.next_event() => {
                    match self.mover.on_event(ev, &mut self.out).await {
                        Ok(wrote) => self.mover_wrote(wrote),
                        Err(e) => {
                            debug!("write failed: {e}");
                            break "the DMA's control connection failed";
                        }
                    }
                    continue;
                }
            };
            let record = match record {
                None => {
                    debug!("peer closed the connection");
                    break "the DMA closed its control connection";
                }
                Some(Err(e)) => {
                    warn!("closing: {e}");
                    break "the DMA's control connection failed";
                }
                Some(Ok(r)) => r,
            };
            // the record's budget is held until its message has been handled
            match Message::decode_version(record.record.clone(), limits, self.out.version()) {
                Ok(msg) => {
                    msglog::message(Dir::Recv, &msg);
                    bad_in_a_row = 0;
                    let was = self.connect.authenticated();
                    match self.handle(msg).await {
                        Ok(Next::Continue) => {}
                        Ok(Next::Close) => break "the DMA closed its control connection",
                        Err(e) => {
                            debug!("write failed: {e}");
                            break "the DMA's control connection failed";
                        }
                    }
                    if !was && self.connect.authenticated() {
                        self.read
                            .set_max_record(self.ctx.shared.config().max_record);
                    }
                }
                Err(MessageError::Body { header, err }) => {
                    bad_in_a_row += 1;
                    warn!("undecodable {:?} body: {err}", header.message_code);
                    if !header.is_reply() && !header.message_code.is_post() {
                        let why = format!("cannot decode {:?} request: {err}", header.message_code);
                        let r = Refusal::new(NdmpError::XDR_DECODE_ERR, why);
                        if self.out.refuse_in_header(&header, r).await.is_err() {
                            break "the DMA's control connection failed";
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
                break "the DMA sent messages that could not be decoded";
            }
        };
        self.release_devices(why).await;
    }

    /// The operator or a shutdown ended the session: the DMA hears DATA and MOVER halt
    /// (ABORTED), then NOTIFY_CONNECTION_STATUS(SHUTDOWN).
    async fn killed(&mut self) {
        let why = if self.ctx.shared.shutdown.is_cancelled() {
            "server shutting down"
        } else {
            "session ended by the operator"
        };
        info!("{why}");
        if self.data.is_busy() {
            let _ = self
                .data
                .halt(DataHaltReason::ABORTED, Some(why), &mut self.out)
                .await;
        }
        let wrote = self.mover.release(&mut self.out).await;
        self.mover_wrote(wrote);
        let _ = self
            .out
            .post(status(ConnectionStatusReason::SHUTDOWN, why))
            .await;
    }

    /// However the session ends, its data connections go, its tape is closed as TAPE_CLOSE
    /// would (implicit filemark) and its drive and changer locks are released.
    async fn release_devices(&mut self, why: &str) {
        self.data.end(why);
        let wrote = self.mover.release(&mut self.out).await;
        self.mover_wrote(wrote);
        self.tape.release().await;
        self.scsi.close().await;
    }

    /// Records went to tape through the mover: the tape owes its filemark.
    fn mover_wrote(&mut self, wrote: bool) {
        if wrote {
            self.tape.written();
        }
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
            self.connect.extension_used();
        }
        if let Request::ConnectClose(_) = req {
            return Ok(Next::Close);
        }

        let known = !matches!(req, Request::Unknown { .. });
        match connect::admission(h.message_code, known, self.connect.authenticated()) {
            Admission::Allowed => {}
            Admission::InHeader(r) => {
                self.out.refuse_in_header(&h, r).await?;
                return Ok(Next::Continue);
            }
            Admission::Refused(r) => {
                self.out.refuse(&h, r).await?;
                return Ok(Next::Continue);
            }
        }
        // a v3 session's differing requests become the v4 values the servers take
        let v3 = self.out.version() == crate::wire::v3::VERSION;
        let req = match if v3 {
            crate::wire::v3::upgrade(req)
        } else {
            Ok(req)
        } {
            Ok(r) => r,
            Err(u) => {
                self.out.refuse(&h, Refusal::new(u.error, u.why)).await?;
                return Ok(Next::Continue);
            }
        };
        let out = &mut self.out;
        match req {
            r @ (Request::TapeOpen(_)
            | Request::TapeClose(_)
            | Request::TapeGetState(_)
            | Request::TapeMtio(_)
            | Request::TapeWrite(_)
            | Request::TapeRead(_)
            | Request::TapeExecuteCdb(_)) => {
                let (mover_busy, scsi_open) = (self.mover.has_tape(), self.scsi.is_open());
                self.tape.handle(&h, r, out, mover_busy, scsi_open).await?
            }
            r @ (Request::ScsiOpen(_)
            | Request::ScsiClose(_)
            | Request::ScsiGetState(_)
            | Request::ScsiResetDevice(_)
            | Request::ScsiExecuteCdb(_)) => {
                let tape_open = self.tape.is_open();
                self.scsi.handle(&h, r, out, tape_open).await?
            }
            r @ (Request::MoverGetState(_)
            | Request::MoverSetRecordSize(_)
            | Request::MoverSetWindow(_)
            | Request::MoverListen(_)
            | Request::MoverConnect(_)
            | Request::MoverContinue(_)
            | Request::MoverRead(_)
            | Request::MoverAbort(_)
            | Request::MoverClose(_)
            | Request::MoverStop(_)) => {
                // the mover borrows the open drive; what it wrote puts a filemark owed on
                // the tape, and a MOVER_CONNECT(LOCAL) hands DATA its end of the pipe
                let loan = self.tape.loan();
                let wrote = self.mover.handle(&h, r, out, loan).await?;
                self.mover_wrote(wrote);
                self.data.adopt_local();
            }
            r @ (Request::DataGetState(_)
            | Request::DataListen(_)
            | Request::DataConnect(_)
            | Request::DataAbort(_)
            | Request::DataStop(_)
            | Request::DataGetEnv(_)
            | Request::DataStartBackup(_)
            | Request::DataStartRecover(_)
            | Request::DataStartRecoverFilehist(_)
            | Request::CabDataConnPrepare(_)) => {
                let align = self.mover.read_alignment();
                self.data.handle(&h, r, out, align).await?
            }
            // CONNECT_* and CONFIG_*, and the refusal of anything no server implements
            r => self.connect.handle(&h, r, out).await?,
        }
        Ok(Next::Continue)
    }
}
