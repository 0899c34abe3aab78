//! The TAPE interface of a session (spec §3.4): the drive's device I/O around the plain-data
//! state table in `state`: open/close with exclusive locks, the implicit filemark, MTIO, records.

pub mod state;

use super::outbox::Outbox;
use super::shared::Ctx;
use crate::error::{open_code, tape_code, Refusal};
use crate::mover::{SharedDrive, TapeAccess};
use crate::tape::library::OpenError;
use crate::tape::{TapeDevice, TapeError};
use crate::wire::header::Header;
use crate::wire::messages::*;
use crate::wire::types::*;
use crate::wire::{NdmpError, Opaque, Reply, Request};
use bytes::Bytes;
use state::{Admit, TapeMachine, TapeRequest};
use tracing::{info, warn};

/// The largest record TAPE_READ returns; a larger count reads at most this much (the rest of
/// a longer record is discarded, as the spec says for short reads).
pub const MAX_READ: usize = crate::tape::st::MAX_BLOCK;

/// The open drive as the mover borrows it: the handle and how it may be used.
pub struct DriveLoan {
    /// The drive, when one is open.
    pub drive: Option<SharedDrive>,
    /// How it is open.
    pub access: TapeAccess,
}

/// The TAPE server of one session.
pub struct TapeServer {
    ctx: Ctx,
    machine: TapeMachine,
    /// The open drive, shared with the mover engine while it streams.
    drive: Option<SharedDrive>,
}

fn lost() -> TapeError {
    TapeError::Io("drive lost".into())
}

impl TapeServer {
    /// No tape open.
    pub fn new(ctx: Ctx) -> TapeServer {
        TapeServer {
            ctx,
            machine: TapeMachine::default(),
            drive: None,
        }
    }

    /// True while a tape is open on this connection.
    pub fn is_open(&self) -> bool {
        self.machine.is_open()
    }

    /// The drive for the mover (MOVER_LISTEN, _CONNECT, _CONTINUE).
    pub fn loan(&self) -> DriveLoan {
        DriveLoan {
            drive: self.drive.clone(),
            access: self.machine.access(),
        }
    }

    /// The mover wrote records: the implicit filemark is owed at close.
    pub fn written(&mut self) {
        self.machine.wrote();
    }

    /// Answers a TAPE request. `mover_busy` while the mover holds the drive; `scsi_open`
    /// while this connection has a SCSI device open.
    pub async fn handle(
        &mut self,
        h: &Header,
        req: Request,
        out: &mut Outbox,
        mover_busy: bool,
        scsi_open: bool,
    ) -> std::io::Result<()> {
        let asked = match &req {
            Request::TapeOpen(r) => TapeRequest::Open {
                mode: r.mode,
                other_device: scsi_open,
            },
            Request::TapeClose(_) => TapeRequest::Close,
            Request::TapeGetState(_) => TapeRequest::GetState,
            Request::TapeMtio(r) => TapeRequest::Mtio {
                op: r.tape_op,
                count: r.count,
            },
            Request::TapeWrite(r) => TapeRequest::Write {
                len: r.data_out.0.len(),
            },
            Request::TapeRead(r) => TapeRequest::Read { count: r.count },
            Request::TapeExecuteCdb(_) => TapeRequest::ExecuteCdb,
            other => {
                let why = format!("{:?} is not a tape request", other.code());
                return out
                    .refuse(h, Refusal::new(NdmpError::NOT_SUPPORTED_ERR, why))
                    .await;
            }
        };
        match self.machine.admit(asked, mover_busy) {
            Admit::Refuse(r) => return out.refuse(h, r).await,
            Admit::Answer(code) => {
                let r = Refusal::new(code, state_words(code));
                return out.refuse_with(h, answer(&req, code), r).await;
            }
            Admit::Nothing => return out.reply(h, answer(&req, NdmpError::NO_ERR)).await,
            Admit::Go => {}
        }
        match req {
            Request::TapeOpen(r) => self.open(h, r, out).await,
            Request::TapeClose(_) => match self.close().await {
                Ok(()) => out.ok(h).await,
                Err(r) => out.refuse(h, r).await,
            },
            Request::TapeGetState(_) => self.get_state(h, out).await,
            Request::TapeMtio(r) => self.mtio(h, r, out).await,
            Request::TapeWrite(r) => self.write(h, r, out).await,
            Request::TapeRead(r) => self.read(h, r, out).await,
            Request::TapeExecuteCdb(r) => {
                let Some(name) = self.drive_name() else {
                    let code = NdmpError::DEV_NOT_OPEN_ERR;
                    let body = answer(&Request::TapeExecuteCdb(r), code);
                    let why = Refusal::new(code, state_words(code));
                    return out.refuse_with(h, body, why).await;
                };
                let ejected = self.machine.is_ejected();
                super::scsi::tape_execute_cdb(&self.ctx, h, name, ejected, r, out).await
            }
            _ => Ok(()),
        }
    }

    /// Runs `f` on the open drive on the blocking pool. `None` when no drive is open (or the
    /// operation panicked, which loses the drive and releases its lock).
    async fn on_drive<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut dyn TapeDevice) -> T + Send + 'static,
    ) -> Option<T> {
        let drive = self.drive.clone()?;
        let joined = tokio::task::spawn_blocking(move || {
            let mut d = drive.lock().unwrap_or_else(|p| p.into_inner());
            f(d.device.as_mut())
        })
        .await;
        match joined {
            Ok(out) => Some(out),
            Err(e) => {
                warn!("tape operation failed: {e}");
                self.released();
                None
            }
        }
    }

    fn released(&mut self) {
        self.drive = None;
        self.machine.closed();
        self.ctx.entry.update(|i| i.tape = Default::default());
    }

    /// The open drive's name.
    fn drive_name(&self) -> Option<String> {
        let d = self.drive.as_ref()?;
        Some(d.lock().unwrap_or_else(|p| p.into_inner()).name.clone())
    }

    /// Writes the filemark owed after data, before anything but EOF/TUR moves the tape.
    async fn settle_filemark(&mut self) -> Result<(), TapeError> {
        if !self.machine.filemark_owed() {
            return Ok(());
        }
        match self.on_drive(|d| d.write_filemarks(1)).await {
            Some(Ok(())) => {
                self.machine.filemark_written();
                Ok(())
            }
            Some(Err(e)) => Err(e),
            None => Err(lost()),
        }
    }

    /// Answers with a device error, after a LOG_MESSAGE naming the drive, what was asked
    /// and what the device said.
    async fn fail(
        &mut self,
        h: &Header,
        body: Reply,
        e: &TapeError,
        out: &mut Outbox,
    ) -> std::io::Result<()> {
        let drive = self.drive_name().unwrap_or_else(|| "the drive".into());
        let what = h.message_code;
        let why = match e {
            TapeError::Eof => format!("{what:?} on {drive}: a filemark was reached"),
            TapeError::Eom => format!(
                "{what:?} on {drive}: the end of the recorded data or of the medium was reached"
            ),
            TapeError::Bot => format!("{what:?} on {drive}: the beginning of the tape was reached"),
            other => format!("{what:?} on {drive} failed: {other}"),
        };
        out.refuse_with(h, body, Refusal::new(tape_code(e), why))
            .await
    }

    async fn open(
        &mut self,
        h: &Header,
        r: TapeOpenRequest,
        out: &mut Outbox,
    ) -> std::io::Result<()> {
        let writable = r.mode != TapeOpenMode::READ;
        let Some(name) = r.device.as_str().map(str::to_string) else {
            let why = no_such_drive(&self.ctx, &String::from_utf8_lossy(r.device.as_bytes()));
            return out
                .refuse(h, Refusal::new(NdmpError::NO_DEVICE_ERR, why))
                .await;
        };
        let shared = self.ctx.shared.clone();
        let opened = {
            let name = name.clone();
            tokio::task::spawn_blocking(move || shared.library.open_drive(&name, writable)).await
        };
        let opened = opened
            .unwrap_or_else(|e| Err(OpenError::Io(name.clone(), TapeError::Io(e.to_string()))));
        match opened {
            Ok(drive) => {
                info!(drive = %name, mode = ?r.mode, "tape opened");
                // ONTAP's words for the REST view
                let mode_name = match r.mode {
                    TapeOpenMode::READ => "read",
                    TapeOpenMode::RDWR => "read_write",
                    _ => "raw",
                };
                self.ctx.entry.update(|i| {
                    i.tape.device = Some(name.clone());
                    i.tape.mode = Some(mode_name);
                });
                self.drive = Some(std::sync::Arc::new(std::sync::Mutex::new(drive)));
                self.machine.opened(r.mode);
                out.ok(h).await
            }
            Err(OpenError::NoDevice(_)) if self.ctx.shared.library.drive(&name).is_none() => {
                let why = no_such_drive(&self.ctx, &name);
                out.refuse(h, Refusal::new(NdmpError::NO_DEVICE_ERR, why))
                    .await
            }
            Err(e @ OpenError::NoTape(_)) => {
                let why = format!(
                    "{e}: load one with the changer (MOVE MEDIUM) or `ndmpd vtape load {name} \
                     LABEL`"
                );
                out.refuse(h, Refusal::new(open_code(&e), why)).await
            }
            Err(e) => {
                out.refuse(h, Refusal::new(open_code(&e), e.to_string()))
                    .await
            }
        }
    }

    /// Closes the session's tape: the implicit filemark, then flush and release. A failed
    /// close keeps the drive open once; the next close releases it without further I/O.
    /// DEV_NOT_OPEN_ERR when no tape is open.
    pub async fn close(&mut self) -> Result<(), Refusal> {
        if !self.machine.is_open() {
            let code = NdmpError::DEV_NOT_OPEN_ERR;
            return Err(Refusal::new(code, state_words(code)));
        }
        if self.machine.close_needs_io() && self.drive.is_some() {
            let mut result = self.settle_filemark().await;
            if result.is_ok() {
                result = self
                    .on_drive(|d| d.flush())
                    .await
                    .unwrap_or_else(|| Err(lost()));
            }
            if let Err(e) = result {
                warn!("tape close failed: {e}");
                self.machine.close_failed();
                let drive = self.drive_name().unwrap_or_else(|| "the drive".into());
                let why = format!("closing {drive} failed ({e}); TAPE_CLOSE again to release it");
                return Err(Refusal::new(tape_code(&e), why));
            }
        }
        self.released();
        info!("tape closed");
        Ok(())
    }

    /// The session is ending: the tape is closed as TAPE_CLOSE would (implicit filemark) and
    /// its drive lock released, even when the first close fails.
    pub async fn release(&mut self) {
        if self.machine.is_open() && self.close().await.is_err() {
            let _ = self.close().await;
        }
    }

    async fn get_state(&mut self, h: &Header, out: &mut Outbox) -> std::io::Result<()> {
        let status = match self.on_drive(|d| d.status()).await {
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                let body = Reply::TapeGetState(TapeGetStateReply {
                    error: tape_code(&e),
                    ..Default::default()
                });
                return self.fail(h, body, &e, out).await;
            }
            None => {
                let body = Reply::TapeGetState(TapeGetStateReply {
                    error: NdmpError::IO_ERR,
                    ..Default::default()
                });
                let why = "the open tape drive was lost (its operation failed); open it again";
                return out
                    .refuse_with(h, body, Refusal::new(NdmpError::IO_ERR, why))
                    .await;
            }
        };
        let mut unsupported = 0;
        let mut uns = |v: Option<u64>, bit: u32| {
            v.unwrap_or_else(|| {
                unsupported |= bit;
                0
            })
        };
        let total_space = uns(status.total_space, tape_state::TOTAL_SPACE_UNS);
        let space_remain = uns(status.space_remain, tape_state::SPACE_REMAIN_UNS);
        let soft_errors = uns(
            status.soft_errors.map(u64::from),
            tape_state::SOFT_ERRORS_UNS,
        );
        let mut flags = tape_state::NOREWIND;
        if status.write_protected {
            flags |= tape_state::WR_PROT;
        }
        let body = Reply::TapeGetState(TapeGetStateReply {
            unsupported,
            error: NdmpError::NO_ERR,
            flags,
            // unknown positions are all ones (spec §3.4.3)
            file_num: status.file_num.unwrap_or(u32::MAX),
            soft_errors: soft_errors as u32,
            block_size: status.block_size,
            blockno: status.block_no.unwrap_or(u32::MAX),
            total_space,
            space_remain,
        });
        out.reply(h, body).await
    }

    async fn mtio(
        &mut self,
        h: &Header,
        r: TapeMtioRequest,
        out: &mut Outbox,
    ) -> std::io::Result<()> {
        let reply = |error, resid_count| Reply::TapeMtio(TapeMtioReply { error, resid_count });
        let (op, count) = (r.tape_op, r.count);
        if TapeMachine::settles_before(op) {
            if let Err(e) = self.settle_filemark().await {
                return self.fail(h, reply(tape_code(&e), count), &e, out).await;
            }
        }
        let result: Result<u32, TapeError> = match op {
            MtioOp::FSF | MtioOp::BSF | MtioOp::FSR | MtioOp::BSR => {
                let n = if matches!(op, MtioOp::FSF | MtioOp::FSR) {
                    count as i64
                } else {
                    -(count as i64)
                };
                let files = matches!(op, MtioOp::FSF | MtioOp::BSF);
                self.on_drive(move |d| {
                    if files {
                        d.space_filemarks(n)
                    } else {
                        d.space_records(n)
                    }
                })
                .await
                .unwrap_or_else(|| Err(lost()))
                // stopping early at a filemark, BOT or blank tape is NO_ERR with a resid
                .map(|s| s.resid)
            }
            MtioOp::REW => self
                .on_drive(|d| d.rewind())
                .await
                .unwrap_or_else(|| Err(lost()))
                .map(|_| 0),
            MtioOp::EOF => {
                let r = self
                    .on_drive(move |d| d.write_filemarks(count))
                    .await
                    .unwrap_or_else(|| Err(lost()));
                if r.is_ok() {
                    self.machine.filemark_written();
                }
                r.map(|_| 0)
            }
            MtioOp::OFF => {
                let r = self
                    .on_drive(|d| d.unload())
                    .await
                    .unwrap_or_else(|| Err(lost()));
                if r.is_ok() {
                    self.eject().await;
                }
                r.map(|_| 0)
            }
            _ => self
                .on_drive(|d| d.ready())
                .await
                .unwrap_or_else(|| Err(lost()))
                .map(|_| 0),
        };
        match result {
            Ok(resid) => out.reply(h, reply(NdmpError::NO_ERR, resid)).await,
            Err(e) => self.fail(h, reply(tape_code(&e), count), &e, out).await,
        }
    }

    /// After MTIO OFF the cartridge of a library drive waits in the drive, unloaded, for the
    /// robot (or an operator) to take it.
    async fn eject(&mut self) {
        self.machine.ejected();
        let name = self.drive_name().unwrap_or_default();
        let shared = self.ctx.shared.clone();
        let r = tokio::task::spawn_blocking(move || shared.library.mark_ejected(&name)).await;
        if let Ok(Ok(Some(label))) = r {
            info!(cartridge = %label, "cartridge ejected; it waits in the drive for the robot");
        }
    }

    async fn write(
        &mut self,
        h: &Header,
        r: TapeWriteRequest,
        out: &mut Outbox,
    ) -> std::io::Result<()> {
        let reply = |error, count| Reply::TapeWrite(TapeWriteReply { error, count });
        let data: Bytes = r.data_out.0;
        let result = self
            .on_drive(move |d| d.write_record(&data))
            .await
            .unwrap_or_else(|| Err(lost()));
        match result {
            Ok(w) => {
                self.machine.wrote();
                out.reply(h, reply(NdmpError::NO_ERR, w.bytes as u32)).await
            }
            Err(e) => self.fail(h, reply(tape_code(&e), 0), &e, out).await,
        }
    }

    async fn read(
        &mut self,
        h: &Header,
        r: TapeReadRequest,
        out: &mut Outbox,
    ) -> std::io::Result<()> {
        let reply = |error, data: Bytes| {
            Reply::TapeRead(TapeReadReply {
                error,
                data_in: Opaque(data),
            })
        };
        let want = (r.count as usize).min(MAX_READ);
        let result = self
            .on_drive(move |d| {
                let mut buf = vec![0u8; want];
                d.read_record(&mut buf).map(|(n, _full)| {
                    buf.truncate(n);
                    buf
                })
            })
            .await
            .unwrap_or_else(|| Err(lost()));
        match result {
            Ok(buf) => {
                out.reply(h, reply(NdmpError::NO_ERR, Bytes::from(buf)))
                    .await
            }
            Err(e) => {
                self.fail(h, reply(tape_code(&e), Bytes::new()), &e, out)
                    .await
            }
        }
    }
}

/// The words for a TAPE request answered from the state alone (no tape open, the cartridge
/// unloaded).
fn state_words(code: NdmpError) -> String {
    match code {
        NdmpError::DEV_NOT_OPEN_ERR => {
            "no tape is open on this connection (TAPE_OPEN first)".into()
        }
        NdmpError::NO_TAPE_LOADED_ERR => {
            "the cartridge was unloaded (MTIO OFF): close the tape, load a cartridge and open \
             the drive again"
                .into()
        }
        other => crate::error::meaning(other),
    }
}

/// "no such drive 'vtape9': drives are vtape0, vtape1", from the configured drives.
fn no_such_drive(ctx: &Ctx, name: &str) -> String {
    let cfg = ctx.shared.config();
    let names: Vec<&str> = cfg.tapes.iter().map(|t| t.name.as_str()).collect();
    if names.is_empty() {
        return format!("no such drive '{name}': this server has no tape drive configured");
    }
    format!("no such drive '{name}': drives are {}", names.join(", "))
}

/// The reply to a TAPE request that did not reach the device: `code` in its body, with
/// the counts the spec gives for that case (MTIO's residue is the whole count once a tape
/// is open, nothing when none is).
fn answer(req: &Request, code: NdmpError) -> Reply {
    match req {
        Request::TapeMtio(r) => Reply::TapeMtio(TapeMtioReply {
            error: code,
            resid_count: if code == NdmpError::DEV_NOT_OPEN_ERR || code.is_ok() {
                0
            } else {
                r.count
            },
        }),
        Request::TapeWrite(_) => Reply::TapeWrite(TapeWriteReply {
            error: code,
            count: 0,
        }),
        Request::TapeRead(_) => Reply::TapeRead(TapeReadReply {
            error: code,
            data_in: Opaque(Bytes::new()),
        }),
        other => Reply::with_error(other.code(), code)
            .unwrap_or(Reply::TapeGetState(TapeGetStateReply::default())),
    }
}
