//! The MOVER state table of spec §3.6 as plain data: which request is legal in which state,
//! the window rules, and the variables MOVER_GET_STATE reports. No I/O happens here.

use super::progress::Progress;
use crate::error::{refuse, Refusal};
use crate::wire::messages::MoverGetStateReply;
use crate::wire::types::{
    Addr, AddrType, MoverHaltReason, MoverMode, MoverPauseReason, MoverState,
};
use crate::wire::NdmpError;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A window or read length of all ones: "to the end of the tape file".
pub const INFINITE: u64 = u64::MAX;

/// The part of the image stream the mover may touch without the DMA's help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Window {
    /// First byte of the image stream in the window.
    pub offset: u64,
    /// Bytes in the window (all ones: to the end).
    pub length: u64,
}

impl Window {
    /// Stream offset just past the window; all ones when the length is infinite.
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.length)
    }

    /// True when stream offset `pos` lies in the window.
    pub fn contains(&self, pos: u64) -> bool {
        pos >= self.offset && pos < self.end()
    }
}

/// How the session's tape is open, as far as the mover cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapeAccess {
    /// No tape is open.
    NotOpen,
    /// Open READ: the mover may only recover from it.
    ReadOnly,
    /// Open RDWR or RAW.
    ReadWrite,
}

/// The mover variables of spec §3.6.1.1. Counters that the engine moves while it runs
/// (record number, bytes moved, bytes left to read) live in `progress`, shared with it.
/// Private: they change only through the transitions below.
#[derive(Debug)]
pub struct Mover {
    state: MoverState,
    mode: MoverMode,
    pause_reason: MoverPauseReason,
    halt_reason: MoverHaltReason,
    record_size: u32,
    window: Window,
    seek_position: u64,
    /// The peer of the data connection once one exists; LOCAL otherwise.
    connection: Addr,
    progress: Arc<Progress>,
}

/// A MOVER request that needs no I/O to be judged (LISTEN and CONNECT need a socket first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoverRequest {
    /// MOVER_SET_RECORD_SIZE.
    SetRecordSize(u32),
    /// MOVER_SET_WINDOW.
    SetWindow {
        /// Window offset in the image stream.
        offset: u64,
        /// Window length (all ones: to the end).
        length: u64,
    },
    /// MOVER_CONTINUE.
    Continue,
    /// MOVER_READ.
    Read {
        /// Where the DATA server wants to read from.
        offset: u64,
        /// How much (all ones: to the end).
        length: u64,
    },
    /// MOVER_ABORT.
    Abort,
    /// MOVER_CLOSE.
    Close,
    /// MOVER_STOP.
    Stop,
}

/// What the session must carry out for a request the state machine accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Nothing beyond answering NO_ERR.
    Reply,
    /// MOVER_CONTINUE: hand the engine the tape again, with this window.
    Resume(Window),
    /// MOVER_READ: ask the engine for this range.
    Read {
        /// Stream offset.
        offset: u64,
        /// Bytes.
        length: u64,
    },
    /// MOVER_ABORT (`abort`) or MOVER_CLOSE: halt the engine and report its halt before the
    /// reply.
    Halt {
        /// Abort (ABORTED) rather than close (CONNECT_CLOSED).
        abort: bool,
    },
    /// MOVER_STOP: withdraw what was offered for a LOCAL connection.
    Reset,
}

impl Default for Mover {
    fn default() -> Self {
        Mover {
            state: MoverState::IDLE,
            mode: MoverMode::NOACTION,
            pause_reason: MoverPauseReason::NA,
            halt_reason: MoverHaltReason::NA,
            record_size: 0,
            window: Window::default(),
            seek_position: 0,
            connection: Addr::Local,
            progress: Arc::new(Progress::default()),
        }
    }
}

impl Mover {
    /// Judges `req` and applies its transition; the effect is what the session must do.
    /// `max_record` bounds the record size; `tape` is how the session's tape is open.
    pub fn request(
        &mut self,
        req: MoverRequest,
        tape: TapeAccess,
        max_record: u32,
    ) -> Result<Effect, Refusal> {
        match req {
            MoverRequest::SetRecordSize(len) => self
                .set_record_size(len, max_record)
                .map(|()| Effect::Reply),
            MoverRequest::SetWindow { offset, length } => {
                self.set_window(offset, length).map(|()| Effect::Reply)
            }
            MoverRequest::Continue => {
                self.check_continue(tape)?;
                self.resumed();
                Ok(Effect::Resume(self.window))
            }
            MoverRequest::Read { offset, length } => {
                self.check_read(offset, length)?;
                // pending before the engine has it: a fast engine's "done" must not be
                // overwritten
                self.reading(offset, length);
                Ok(Effect::Read { offset, length })
            }
            MoverRequest::Abort => self.check_abort().map(|()| Effect::Halt { abort: true }),
            MoverRequest::Close => self.check_close().map(|()| Effect::Halt { abort: false }),
            MoverRequest::Stop => {
                self.check_stop()?;
                self.stopped();
                Ok(Effect::Reset)
            }
        }
    }

    /// The MOVER state.
    pub fn state(&self) -> MoverState {
        self.state
    }

    /// READ (backup: data connection to tape), WRITE (recovery) or NOACTION.
    pub fn mode(&self) -> MoverMode {
        self.mode
    }

    /// Why the mover is paused (NA otherwise).
    pub fn pause_reason(&self) -> MoverPauseReason {
        self.pause_reason
    }

    /// Why the mover halted (NA until it has).
    pub fn halt_reason(&self) -> MoverHaltReason {
        self.halt_reason
    }

    /// The tape record size in bytes (0 before MOVER_SET_RECORD_SIZE).
    pub fn record_size(&self) -> u32 {
        self.record_size
    }

    /// The current window.
    pub fn window(&self) -> Window {
        self.window
    }

    /// The data connection's peer (LOCAL before one exists).
    pub fn connection(&self) -> &Addr {
        &self.connection
    }

    /// The live counters the engine moves.
    pub fn progress(&self) -> &Arc<Progress> {
        &self.progress
    }

    /// True while the mover owns the tape (LISTEN or ACTIVE): TAPE requests other than
    /// TAPE_GET_STATE must wait.
    pub fn has_tape(&self) -> bool {
        matches!(self.state, MoverState::LISTEN | MoverState::ACTIVE)
    }

    /// MOVER_SET_RECORD_SIZE: only in IDLE; persists across STOP; clears the window.
    pub fn set_record_size(&mut self, len: u32, max: u32) -> Result<(), Refusal> {
        if self.state != MoverState::IDLE {
            return refuse(
                NdmpError::ILLEGAL_STATE_ERR,
                "the record size can only be set while the mover is IDLE",
            );
        }
        if len == 0 || len > max {
            return refuse(
                NdmpError::ILLEGAL_ARGS_ERR,
                format!("record size {len} is not between 1 and {max} bytes"),
            );
        }
        self.record_size = len;
        self.window = Window::default();
        self.progress.record_num.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// MOVER_SET_WINDOW: in IDLE (v4) or PAUSED, after the record size.
    ///
    /// The window (0, 0) in IDLE is accepted even before a record size: it is the reset value
    /// IDLE already has, and DMAs send it (ndmjob's test-mover expects NO_ERR). A transfer
    /// under an empty window pauses at once for the DMA to set a real one.
    pub fn set_window(&mut self, offset: u64, length: u64) -> Result<(), Refusal> {
        if !matches!(self.state, MoverState::IDLE | MoverState::PAUSED) {
            return refuse(
                NdmpError::ILLEGAL_STATE_ERR,
                "the window can only be set while the mover is IDLE or PAUSED",
            );
        }
        if self.state == MoverState::IDLE && offset == 0 && length == 0 {
            self.window = Window::default();
            self.progress.record_num.store(0, Ordering::Relaxed);
            return Ok(());
        }
        if self.record_size == 0 {
            return refuse(
                NdmpError::PRECONDITION_ERR,
                "set the record size (MOVER_SET_RECORD_SIZE) before the window",
            );
        }
        // all ones is NDMP_LENGTH_INFINITY whatever the offset: ndmjob sends offset N with
        // all ones when it does not know the next cartridge's size
        if length != INFINITE && offset.checked_add(length).is_none() {
            return refuse(
                NdmpError::ILLEGAL_ARGS_ERR,
                format!("window offset {offset} plus length {length} overflows"),
            );
        }
        let window = Window { offset, length };
        if self.state == MoverState::PAUSED {
            if length == 0 {
                return refuse(NdmpError::ILLEGAL_ARGS_ERR, "the window length is zero");
            }
            if let Err(why) = window_fits(self.mode, window, self.record_size) {
                return refuse(NdmpError::ILLEGAL_ARGS_ERR, why);
            }
        }
        self.window = window;
        let rs = u64::from(self.record_size);
        self.progress
            .record_num
            .store(offset / rs, Ordering::Relaxed);
        Ok(())
    }

    /// MOVER_SET_WINDOW in LISTEN, which NDMP v3 allows (v3 DMAs set the window after
    /// MOVER_LISTEN): the rules of a window set while PAUSED.
    pub fn set_window_listening(&mut self, offset: u64, length: u64) -> Result<(), Refusal> {
        if self.state != MoverState::LISTEN {
            return self.set_window(offset, length);
        }
        // an empty window is accepted as in IDLE: the transfer pauses at once for a real one
        if length != INFINITE && offset.checked_add(length).is_none() {
            return refuse(
                NdmpError::ILLEGAL_ARGS_ERR,
                format!("window offset {offset} plus length {length} overflows"),
            );
        }
        let window = Window { offset, length };
        if let Err(why) = window_fits(self.mode, window, self.record_size) {
            return refuse(NdmpError::ILLEGAL_ARGS_ERR, why);
        }
        self.window = window;
        let rs = u64::from(self.record_size.max(1));
        self.progress
            .record_num
            .store(offset / rs, Ordering::Relaxed);
        Ok(())
    }

    /// The checks MOVER_LISTEN and MOVER_CONNECT share, in the order the spec lists them.
    pub fn check_start(
        &self,
        mode: MoverMode,
        addr_type: AddrType,
        tape: TapeAccess,
    ) -> Result<(), Refusal> {
        if self.state != MoverState::IDLE {
            return refuse(
                NdmpError::ILLEGAL_STATE_ERR,
                "the mover is not IDLE (MOVER_STOP a halted mover first)",
            );
        }
        if !matches!(mode, MoverMode::READ | MoverMode::WRITE) {
            return refuse(
                NdmpError::ILLEGAL_ARGS_ERR,
                format!("mover mode {mode:?} is not READ or WRITE"),
            );
        }
        if !matches!(
            addr_type,
            AddrType::LOCAL | AddrType::TCP | AddrType::TCP_IPV6
        ) {
            return refuse(
                NdmpError::ILLEGAL_ARGS_ERR,
                format!("address type {addr_type:?} is not supported (LOCAL, TCP or TCP_IPV6)"),
            );
        }
        if self.record_size == 0 {
            return refuse(
                NdmpError::PRECONDITION_ERR,
                "set the record size (MOVER_SET_RECORD_SIZE) first",
            );
        }
        match tape {
            TapeAccess::NotOpen => {
                return refuse(
                    NdmpError::DEV_NOT_OPEN_ERR,
                    "no tape is open (TAPE_OPEN first)",
                )
            }
            TapeAccess::ReadOnly if mode == MoverMode::READ => {
                return refuse(
                    NdmpError::PERMISSION_ERR,
                    "a backup (mode READ) writes to tape, but the tape is open read-only",
                )
            }
            _ => {}
        }
        if let Err(why) = window_fits(mode, self.window, self.record_size) {
            return refuse(NdmpError::PRECONDITION_ERR, why);
        }
        Ok(())
    }

    /// LISTEN succeeded.
    pub fn listening(&mut self, mode: MoverMode) {
        self.state = MoverState::LISTEN;
        self.mode = mode;
    }

    /// A data connection exists (CONNECT succeeded, or the listener was reached).
    pub fn activated(&mut self, mode: MoverMode, peer: Addr) {
        self.state = MoverState::ACTIVE;
        self.mode = mode;
        self.connection = peer;
    }

    /// MOVER_CONTINUE: only PAUSED, with a window and a tape the mode can use.
    pub fn check_continue(&self, tape: TapeAccess) -> Result<(), Refusal> {
        if self.state != MoverState::PAUSED {
            return refuse(NdmpError::ILLEGAL_STATE_ERR, "the mover is not PAUSED");
        }
        if self.window.length == 0 {
            return refuse(
                NdmpError::PRECONDITION_ERR,
                "set a window (MOVER_SET_WINDOW) before continuing",
            );
        }
        match tape {
            TapeAccess::NotOpen => refuse(
                NdmpError::DEV_NOT_OPEN_ERR,
                "no tape is open (TAPE_OPEN first)",
            ),
            TapeAccess::ReadOnly if self.mode == MoverMode::READ => refuse(
                NdmpError::PERMISSION_ERR,
                "a backup (mode READ) writes to tape, but the tape is open read-only",
            ),
            _ => Ok(()),
        }
    }

    /// MOVER_CONTINUE accepted: ACTIVE again.
    pub fn resumed(&mut self) {
        self.state = MoverState::ACTIVE;
        self.pause_reason = MoverPauseReason::NA;
    }

    /// MOVER_READ: recover mode, ACTIVE, one at a time.
    pub fn check_read(&self, offset: u64, length: u64) -> Result<(), Refusal> {
        if self.state != MoverState::ACTIVE {
            return refuse(NdmpError::ILLEGAL_STATE_ERR, "the mover is not ACTIVE");
        }
        if self.mode != MoverMode::WRITE {
            return refuse(
                NdmpError::ILLEGAL_STATE_ERR,
                "MOVER_READ is for recovery (mode WRITE); this mover is writing tape",
            );
        }
        if self.progress.bytes_left_to_read.load(Ordering::Relaxed) > 0 {
            return refuse(
                NdmpError::READ_IN_PROGRESS_ERR,
                "a MOVER_READ is still in progress",
            );
        }
        if length == 0 {
            return refuse(NdmpError::ILLEGAL_ARGS_ERR, "the read length is zero");
        }
        if offset.checked_add(length).is_none() && length != INFINITE {
            return refuse(
                NdmpError::ILLEGAL_ARGS_ERR,
                format!("read offset {offset} plus length {length} overflows"),
            );
        }
        Ok(())
    }

    /// A MOVER_READ is pending from `offset` for `length` bytes.
    pub fn reading(&mut self, offset: u64, length: u64) {
        self.seek_position = offset;
        self.progress
            .bytes_left_to_read
            .store(length, Ordering::Relaxed);
    }

    /// MOVER_CLOSE: only PAUSED.
    pub fn check_close(&self) -> Result<(), Refusal> {
        if self.state != MoverState::PAUSED {
            return refuse(NdmpError::ILLEGAL_STATE_ERR, "the mover is not PAUSED");
        }
        Ok(())
    }

    /// MOVER_ABORT: from any state but IDLE.
    pub fn check_abort(&self) -> Result<(), Refusal> {
        if self.state == MoverState::IDLE {
            return refuse(NdmpError::ILLEGAL_STATE_ERR, "the mover is IDLE");
        }
        Ok(())
    }

    /// MOVER_STOP: only HALTED.
    pub fn check_stop(&self) -> Result<(), Refusal> {
        if self.state != MoverState::HALTED {
            return refuse(
                NdmpError::ILLEGAL_STATE_ERR,
                "the mover is not HALTED (MOVER_ABORT it first)",
            );
        }
        Ok(())
    }

    /// The engine paused for `reason` at `seek_position`.
    pub fn paused(&mut self, reason: MoverPauseReason, seek_position: u64) {
        self.state = MoverState::PAUSED;
        self.pause_reason = reason;
        self.seek_position = seek_position;
    }

    /// The engine halted (or never started) for `reason`.
    pub fn halted(&mut self, reason: MoverHaltReason) {
        self.state = MoverState::HALTED;
        self.halt_reason = reason;
        self.pause_reason = MoverPauseReason::NA;
        self.progress.bytes_left_to_read.store(0, Ordering::Relaxed);
    }

    /// MOVER_STOP: back to IDLE with every variable reset except the record size; the
    /// counters are reset in place, since the registry reads the same ones.
    pub fn stopped(&mut self) {
        let (record_size, progress) = (self.record_size, self.progress.clone());
        progress.reset();
        *self = Mover {
            record_size,
            progress,
            ..Mover::default()
        };
    }

    /// The MOVER_GET_STATE reply.
    pub fn report(&self) -> MoverGetStateReply {
        let p = &self.progress;
        MoverGetStateReply {
            error: NdmpError::NO_ERR,
            mode: self.mode,
            state: self.state,
            pause_reason: self.pause_reason,
            halt_reason: self.halt_reason,
            record_size: self.record_size,
            // the wire field is 32 bits; past 4 Gi records it wraps as other servers' do
            record_num: p.record_num.load(Ordering::Relaxed) as u32,
            bytes_moved: p.bytes_moved.load(Ordering::Relaxed),
            seek_position: self.seek_position,
            bytes_left_to_read: p.bytes_left_to_read.load(Ordering::Relaxed),
            window_offset: self.window.offset,
            window_length: self.window.length,
            data_connection_addr: self.connection.clone(),
        }
    }
}

/// The mode-dependent window rules of SET_WINDOW (PAUSED), LISTEN and CONNECT: a backup
/// window is whole records or open-ended, a recovery window starts on a record.
fn window_fits(mode: MoverMode, w: Window, record_size: u32) -> Result<(), String> {
    let rs = u64::from(record_size);
    match mode {
        MoverMode::READ if !w.length.is_multiple_of(rs) && w.end() != INFINITE => Err(format!(
            "a backup window must be a multiple of the record size {rs} or reach all ones; \
             length {} is not",
            w.length
        )),
        MoverMode::WRITE if !w.offset.is_multiple_of(rs) => Err(format!(
            "a recovery window must start on a record ({rs} bytes); offset {} does not",
            w.offset
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
