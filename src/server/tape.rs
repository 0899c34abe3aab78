//! The TAPE interface of a session (spec §3.4): open/close with exclusive drive locking, the
//! implicit filemark, MTIO, record reads and writes, and TAPE_GET_STATE.

use super::session::Session;
use crate::mover::SharedDrive;
use crate::tape::library::OpenError;
use crate::tape::{TapeDevice, TapeError};
use crate::wire::header::Header;
use crate::wire::messages::*;
use crate::wire::types::*;
use crate::wire::{NdmpError, Opaque, Reply};
use bytes::Bytes;
use tracing::{info, warn};

/// The largest record TAPE_READ returns; a larger count reads at most this much (the rest of
/// a longer record is discarded, as the spec says for short reads).
pub const MAX_READ: usize = crate::tape::st::MAX_BLOCK;

/// The tape a session has open.
#[derive(Debug)]
pub struct TapeState {
    /// Shared with the mover engine while it streams; `None` once the drive was lost.
    drive: Option<SharedDrive>,
    pub mode: TapeOpenMode,
    /// Data was written since the last filemark: the spec's implicit filemark is owed.
    dirty: bool,
    /// The last TAPE_CLOSE failed; the next one closes without further I/O.
    close_failed: bool,
    /// The cartridge was ejected (MTIO OFF); I/O now reports NO_TAPE_LOADED.
    ejected: bool,
}

/// The NDMP error for a device error.
pub fn tape_error(e: &TapeError) -> NdmpError {
    match e {
        TapeError::Eof => NdmpError::EOF_ERR,
        TapeError::Eom => NdmpError::EOM_ERR,
        TapeError::Bot | TapeError::Io(_) => NdmpError::IO_ERR,
        TapeError::WriteProtected => NdmpError::WRITE_PROTECT_ERR,
        TapeError::NoTape => NdmpError::NO_TAPE_LOADED_ERR,
        TapeError::NotSupported(_) => NdmpError::NOT_SUPPORTED_ERR,
    }
}

impl Session {
    /// Runs `f` on the open drive on the blocking pool. `None` when no drive is open (or the
    /// operation panicked, which loses the drive and releases its lock).
    async fn on_drive<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut dyn TapeDevice) -> T + Send + 'static,
    ) -> Option<T> {
        let drive = self.tape.as_ref()?.drive.clone()?;
        let joined = tokio::task::spawn_blocking(move || {
            let mut d = drive.lock().unwrap_or_else(|p| p.into_inner());
            f(d.device.as_mut())
        })
        .await;
        match joined {
            Ok(out) => Some(out),
            Err(e) => {
                warn!("tape operation failed: {e}");
                self.tape = None;
                self.entry.update(|i| i.tape = Default::default());
                None
            }
        }
    }

    /// The open drive's name, and whether its tape was ejected.
    pub(super) fn tape_identity(&self) -> Option<(String, bool)> {
        let t = self.tape.as_ref()?;
        let name = t
            .drive
            .as_ref()?
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .name
            .clone();
        Some((name, t.ejected))
    }

    /// The open drive, for the mover to stream to.
    pub(super) fn shared_drive(&self) -> Option<SharedDrive> {
        self.tape.as_ref()?.drive.clone()
    }

    /// The mover wrote records: the implicit filemark is owed at close.
    pub(super) fn tape_written(&mut self) {
        if let Some(t) = self.tape.as_mut() {
            t.dirty = true;
        }
    }

    /// Refuses a TAPE request while the mover streams to the drive.
    pub(super) async fn tape_busy(&mut self, h: &Header) -> std::io::Result<bool> {
        if !self.mover_has_tape() {
            return Ok(false);
        }
        let why = "the mover is using the tape (only TAPE_GET_STATE until it pauses or halts)";
        self.refuse(h, NdmpError::DEVICE_BUSY_ERR, why).await?;
        Ok(true)
    }

    /// Writes the filemark owed after data, before anything but EOF/TUR moves the tape.
    async fn settle_filemark(&mut self) -> Result<(), TapeError> {
        let owed = matches!(&self.tape, Some(t) if t.dirty && t.mode != TapeOpenMode::READ);
        if !owed {
            return Ok(());
        }
        match self.on_drive(|d| d.write_filemarks(1)).await {
            Some(Ok(())) => {
                if let Some(t) = self.tape.as_mut() {
                    t.dirty = false;
                }
                Ok(())
            }
            Some(Err(e)) => Err(e),
            None => Err(TapeError::Io("drive lost".into())),
        }
    }

    /// Answers a TAPE request with `error` and, for unexpected device errors, a LOG_MESSAGE
    /// naming the cause.
    async fn tape_fail(
        &mut self,
        h: &Header,
        body: Reply,
        e: Option<&TapeError>,
    ) -> std::io::Result<()> {
        if let Some(TapeError::Io(cause)) = e {
            self.log_error(h, &format!("tape: {cause}")).await?;
        }
        self.reply(h, body).await
    }

    fn tape_check(&self) -> Result<(), NdmpError> {
        match &self.tape {
            None => Err(NdmpError::DEV_NOT_OPEN_ERR),
            Some(t) if t.ejected => Err(NdmpError::NO_TAPE_LOADED_ERR),
            Some(t) if t.drive.is_none() => Err(NdmpError::IO_ERR),
            Some(_) => Ok(()),
        }
    }

    pub(super) async fn tape_open(
        &mut self,
        h: &Header,
        r: TapeOpenRequest,
    ) -> std::io::Result<()> {
        if self.tape.is_some() || self.scsi.is_some() {
            let why = "a device is already open on this connection";
            return self.refuse(h, NdmpError::DEVICE_OPENED_ERR, why).await;
        }
        let writable = match r.mode {
            TapeOpenMode::READ => false,
            TapeOpenMode::RDWR | TapeOpenMode::RAW => true,
            other => {
                let why = format!("tape open mode {other:?} is not READ, RDWR or RAW");
                return self.refuse(h, NdmpError::ILLEGAL_ARGS_ERR, &why).await;
            }
        };
        let name = match r.device.as_str() {
            Some(n) => n.to_string(),
            None => {
                let why = "no such tape drive";
                return self.refuse(h, NdmpError::NO_DEVICE_ERR, why).await;
            }
        };
        let shared = self.shared.clone();
        let opened = {
            let name = name.clone();
            tokio::task::spawn_blocking(move || shared.library.open_drive(&name, writable)).await
        };
        let opened = match opened {
            Ok(r) => r,
            Err(e) => Err(OpenError::Io(name.clone(), TapeError::Io(e.to_string()))),
        };
        match opened {
            Ok(drive) => {
                info!(drive = %name, mode = ?r.mode, "tape opened");
                let mode_name = match r.mode {
                    TapeOpenMode::READ => "read",
                    TapeOpenMode::RDWR => "read_write",
                    _ => "raw",
                };
                self.entry.update(|i| {
                    i.tape.device = Some(name.clone());
                    i.tape.mode = Some(mode_name);
                });
                self.tape = Some(TapeState {
                    drive: Some(std::sync::Arc::new(std::sync::Mutex::new(drive))),
                    mode: r.mode,
                    dirty: false,
                    close_failed: false,
                    ejected: false,
                });
                self.ok(h).await
            }
            Err(e) => {
                let code = match &e {
                    OpenError::NoDevice(_) => NdmpError::NO_DEVICE_ERR,
                    OpenError::Busy(_) => NdmpError::DEVICE_BUSY_ERR,
                    OpenError::NoTape(_) => NdmpError::NO_TAPE_LOADED_ERR,
                    OpenError::WriteProtected(_) => NdmpError::WRITE_PROTECT_ERR,
                    OpenError::Io(_, te) => tape_error(te),
                };
                self.refuse(h, code, &e.to_string()).await
            }
        }
    }

    pub(super) async fn tape_close(&mut self, h: &Header) -> std::io::Result<()> {
        if self.tape.is_some() && self.tape_busy(h).await? {
            return Ok(());
        }
        match self.close_tape().await {
            Ok(()) => self.ok(h).await,
            Err(NdmpError::DEV_NOT_OPEN_ERR) => {
                self.refuse(h, NdmpError::DEV_NOT_OPEN_ERR, "no tape is open")
                    .await
            }
            Err(code) => {
                self.refuse(
                    h,
                    code,
                    "closing the tape failed; close again to release it",
                )
                .await
            }
        }
    }

    /// Closes the session's tape: the implicit filemark, then flush and release. A failed
    /// close keeps the drive open once; the next close releases it without further I/O.
    pub(super) async fn close_tape(&mut self) -> Result<(), NdmpError> {
        let Some(t) = self.tape.as_ref() else {
            return Err(NdmpError::DEV_NOT_OPEN_ERR);
        };
        if !t.close_failed && !t.ejected && t.drive.is_some() {
            let mut result = self.settle_filemark().await;
            if result.is_ok() {
                result = self
                    .on_drive(|d| d.flush())
                    .await
                    .unwrap_or(Err(TapeError::Io("drive lost".into())));
            }
            if let Err(e) = result {
                warn!("tape close failed: {e}");
                if let Some(t) = self.tape.as_mut() {
                    t.close_failed = true;
                }
                return Err(tape_error(&e));
            }
        }
        self.tape = None;
        self.entry.update(|i| i.tape = Default::default());
        info!("tape closed");
        Ok(())
    }

    pub(super) async fn tape_get_state(&mut self, h: &Header) -> std::io::Result<()> {
        if let Err(code) = self.tape_check() {
            let body = Reply::with_error(h.message_code, code)
                .unwrap_or(Reply::TapeGetState(TapeGetStateReply::default()));
            return self.reply(h, body).await;
        }
        let status = match self.on_drive(|d| d.status()).await {
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                let body = Reply::TapeGetState(TapeGetStateReply {
                    error: tape_error(&e),
                    ..Default::default()
                });
                return self.tape_fail(h, body, Some(&e)).await;
            }
            None => {
                let body = Reply::TapeGetState(TapeGetStateReply {
                    error: NdmpError::IO_ERR,
                    ..Default::default()
                });
                return self.reply(h, body).await;
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
        self.reply(h, body).await
    }

    pub(super) async fn tape_mtio(
        &mut self,
        h: &Header,
        r: TapeMtioRequest,
    ) -> std::io::Result<()> {
        let reply = |error, resid_count| Reply::TapeMtio(TapeMtioReply { error, resid_count });
        if self.tape.is_none() {
            return self.reply(h, reply(NdmpError::DEV_NOT_OPEN_ERR, 0)).await;
        }
        if self.tape_busy(h).await? {
            return Ok(());
        }
        let op = r.tape_op;
        if !MtioOp::ALL.contains(&op) {
            let why = format!("unknown MTIO operation {op:?}");
            return self.refuse(h, NdmpError::ILLEGAL_ARGS_ERR, &why).await;
        }
        if let Err(code) = self.tape_check() {
            return self.reply(h, reply(code, r.count)).await;
        }
        let counted = matches!(
            op,
            MtioOp::FSF | MtioOp::BSF | MtioOp::FSR | MtioOp::BSR | MtioOp::EOF
        );
        if counted && r.count == 0 {
            return self.reply(h, reply(NdmpError::NO_ERR, 0)).await;
        }
        if op == MtioOp::EOF && self.tape.as_ref().map(|t| t.mode) == Some(TapeOpenMode::READ) {
            let why = "the tape is open for reading only";
            return self.refuse(h, NdmpError::PERMISSION_ERR, why).await;
        }
        if op != MtioOp::EOF && op != MtioOp::TUR {
            if let Err(e) = self.settle_filemark().await {
                let body = reply(tape_error(&e), r.count);
                return self.tape_fail(h, body, Some(&e)).await;
            }
        }
        let count = r.count;
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
                .unwrap_or(Err(TapeError::Io("drive lost".into())))
                // stopping early at a filemark, BOT or blank tape is NO_ERR with a resid
                .map(|s| s.resid)
            }
            MtioOp::REW => self
                .on_drive(|d| d.rewind())
                .await
                .unwrap_or(Err(TapeError::Io("drive lost".into())))
                .map(|_| 0),
            MtioOp::EOF => {
                let r = self
                    .on_drive(move |d| d.write_filemarks(count))
                    .await
                    .unwrap_or(Err(TapeError::Io("drive lost".into())));
                if r.is_ok() {
                    if let Some(t) = self.tape.as_mut() {
                        t.dirty = false;
                    }
                }
                r.map(|_| 0)
            }
            MtioOp::OFF => {
                let r = self
                    .on_drive(|d| d.unload())
                    .await
                    .unwrap_or(Err(TapeError::Io("drive lost".into())));
                if r.is_ok() {
                    self.eject().await;
                }
                r.map(|_| 0)
            }
            _ => self
                .on_drive(|d| d.ready())
                .await
                .unwrap_or(Err(TapeError::Io("drive lost".into())))
                .map(|_| 0),
        };
        match result {
            Ok(resid) => self.reply(h, reply(NdmpError::NO_ERR, resid)).await,
            Err(e) => {
                let body = reply(tape_error(&e), count);
                self.tape_fail(h, body, Some(&e)).await
            }
        }
    }

    /// After MTIO OFF the cartridge of a library drive waits in the drive, unloaded, for the
    /// robot (or an operator) to take it.
    async fn eject(&mut self) {
        let Some(t) = self.tape.as_mut() else { return };
        t.ejected = true;
        let name = t
            .drive
            .as_ref()
            .map(|d| d.lock().unwrap_or_else(|p| p.into_inner()).name.clone())
            .unwrap_or_default();
        let shared = self.shared.clone();
        let r = tokio::task::spawn_blocking(move || shared.library.mark_ejected(&name)).await;
        if let Ok(Ok(Some(label))) = r {
            info!(cartridge = %label, "cartridge ejected; it waits in the drive for the robot");
        }
    }

    pub(super) async fn tape_write(
        &mut self,
        h: &Header,
        r: TapeWriteRequest,
    ) -> std::io::Result<()> {
        let reply = |error, count| Reply::TapeWrite(TapeWriteReply { error, count });
        if let Err(code) = self.tape_check() {
            return self.reply(h, reply(code, 0)).await;
        }
        if self.tape_busy(h).await? {
            return Ok(());
        }
        if self.tape.as_ref().map(|t| t.mode) == Some(TapeOpenMode::READ) {
            let why = "the tape is open for reading only";
            return self.refuse(h, NdmpError::PERMISSION_ERR, why).await;
        }
        let data: Bytes = r.data_out.0;
        if data.is_empty() {
            return self.reply(h, reply(NdmpError::NO_ERR, 0)).await;
        }
        let result = self
            .on_drive(move |d| d.write_record(&data))
            .await
            .unwrap_or(Err(TapeError::Io("drive lost".into())));
        match result {
            Ok(w) => {
                if let Some(t) = self.tape.as_mut() {
                    t.dirty = true;
                }
                self.reply(h, reply(NdmpError::NO_ERR, w.bytes as u32))
                    .await
            }
            Err(e) => {
                let body = reply(tape_error(&e), 0);
                self.tape_fail(h, body, Some(&e)).await
            }
        }
    }

    pub(super) async fn tape_read(
        &mut self,
        h: &Header,
        r: TapeReadRequest,
    ) -> std::io::Result<()> {
        let reply = |error, data: Bytes| {
            Reply::TapeRead(TapeReadReply {
                error,
                data_in: Opaque(data),
            })
        };
        if let Err(code) = self.tape_check() {
            return self.reply(h, reply(code, Bytes::new())).await;
        }
        if self.tape_busy(h).await? {
            return Ok(());
        }
        if r.count == 0 {
            return self.reply(h, reply(NdmpError::NO_ERR, Bytes::new())).await;
        }
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
            .unwrap_or(Err(TapeError::Io("drive lost".into())));
        match result {
            Ok(buf) => {
                self.reply(h, reply(NdmpError::NO_ERR, Bytes::from(buf)))
                    .await
            }
            Err(e) => {
                let body = reply(tape_error(&e), Bytes::new());
                self.tape_fail(h, body, Some(&e)).await
            }
        }
    }
}
