//! The TAPE state table of spec §3.4 as plain data: which request is admitted with the drive
//! closed, open read-only or read-write, ejected, or lent to the mover, and when a filemark is owed.

use crate::error::Refusal;
use crate::mover::TapeAccess;
use crate::wire::types::{MtioOp, TapeOpenMode};
use crate::wire::NdmpError;

/// A TAPE request, reduced to what the state table needs to know about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapeRequest {
    /// TAPE_OPEN in this mode; `other_device` when the connection has a SCSI device open.
    Open {
        /// The mode asked for.
        mode: TapeOpenMode,
        /// A SCSI device is open on this connection.
        other_device: bool,
    },
    /// TAPE_CLOSE.
    Close,
    /// TAPE_GET_STATE.
    GetState,
    /// TAPE_MTIO.
    Mtio {
        /// The operation.
        op: MtioOp,
        /// Its count.
        count: u32,
    },
    /// TAPE_WRITE of `len` bytes.
    Write {
        /// Bytes to write.
        len: usize,
    },
    /// TAPE_READ of up to `count` bytes.
    Read {
        /// Bytes asked for.
        count: u32,
    },
    /// TAPE_EXECUTE_CDB.
    ExecuteCdb,
}

/// What the table says to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    /// Go on to the device.
    Go,
    /// Answer NO_ERR without touching the device (a count or length of zero).
    Nothing,
    /// Answer at once with this code in the reply body, with the spec's counts for it: the
    /// answer to the DMA's question is the state itself (no tape open, no tape loaded).
    Answer(NdmpError),
    /// Refuse with the code and a LOG_MESSAGE in words.
    Refuse(Refusal),
}

/// The text of a request refused because the mover streams to the drive.
pub const BUSY: &str = "the mover is using the tape (only TAPE_GET_STATE until it pauses or halts)";

/// An open tape's variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Open {
    mode: TapeOpenMode,
    /// Data was written since the last filemark: the spec's implicit filemark is owed.
    filemark_owed: bool,
    /// The last TAPE_CLOSE failed; the next one closes without further I/O.
    close_failed: bool,
    /// The cartridge was unloaded (MTIO OFF); I/O now reports NO_TAPE_LOADED.
    ejected: bool,
}

/// The TAPE state of one session: closed, or open with its mode and flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TapeMachine {
    open: Option<Open>,
}

fn refuse(error: NdmpError, why: impl Into<String>) -> Admit {
    Admit::Refuse(Refusal::new(error, why))
}

impl TapeMachine {
    /// The spec's rules for `req`, in the order its error lists give them; `mover_busy` when
    /// the mover holds the drive (LISTEN or ACTIVE).
    pub fn admit(&self, req: TapeRequest, mover_busy: bool) -> Admit {
        use TapeRequest as R;
        let busy = || refuse(NdmpError::DEVICE_BUSY_ERR, BUSY);
        match req {
            R::Open { mode, other_device } => {
                if self.open.is_some() || other_device {
                    return refuse(
                        NdmpError::DEVICE_OPENED_ERR,
                        "a device is already open on this connection",
                    );
                }
                if !matches!(
                    mode,
                    TapeOpenMode::READ | TapeOpenMode::RDWR | TapeOpenMode::RAW
                ) {
                    return refuse(
                        NdmpError::ILLEGAL_ARGS_ERR,
                        format!("tape open mode {mode:?} is not READ, RDWR or RAW"),
                    );
                }
                Admit::Go
            }
            R::Close => match self.open {
                None => refuse(NdmpError::DEV_NOT_OPEN_ERR, "no tape is open"),
                Some(_) if mover_busy => busy(),
                Some(_) => Admit::Go,
            },
            R::GetState => match self.loaded() {
                Err(code) => Admit::Answer(code),
                Ok(_) => Admit::Go,
            },
            R::Mtio { op, count } => {
                let Some(open) = self.open else {
                    return Admit::Answer(NdmpError::DEV_NOT_OPEN_ERR);
                };
                if mover_busy {
                    return busy();
                }
                if !MtioOp::ALL.contains(&op) {
                    return refuse(
                        NdmpError::ILLEGAL_ARGS_ERR,
                        format!("unknown MTIO operation {op:?}"),
                    );
                }
                if let Err(code) = self.loaded() {
                    return Admit::Answer(code);
                }
                let counted = matches!(
                    op,
                    MtioOp::FSF | MtioOp::BSF | MtioOp::FSR | MtioOp::BSR | MtioOp::EOF
                );
                if counted && count == 0 {
                    return Admit::Nothing;
                }
                if op == MtioOp::EOF && open.mode == TapeOpenMode::READ {
                    return refuse(
                        NdmpError::PERMISSION_ERR,
                        "the tape is open for reading only",
                    );
                }
                Admit::Go
            }
            R::Write { len } => {
                let open = match self.loaded() {
                    Err(code) => return Admit::Answer(code),
                    Ok(o) => o,
                };
                if mover_busy {
                    return busy();
                }
                if open.mode == TapeOpenMode::READ {
                    return refuse(
                        NdmpError::PERMISSION_ERR,
                        "the tape is open for reading only",
                    );
                }
                if len == 0 {
                    return Admit::Nothing;
                }
                Admit::Go
            }
            R::Read { count } => {
                if let Err(code) = self.loaded() {
                    return Admit::Answer(code);
                }
                if mover_busy {
                    return busy();
                }
                if count == 0 {
                    return Admit::Nothing;
                }
                Admit::Go
            }
            R::ExecuteCdb => {
                // identification works on an empty (ejected) drive too
                if self.open.is_none() {
                    return Admit::Answer(NdmpError::DEV_NOT_OPEN_ERR);
                }
                if mover_busy {
                    return busy();
                }
                Admit::Go
            }
        }
    }

    /// Open with a cartridge in the drive; else the code that says why not.
    fn loaded(&self) -> Result<Open, NdmpError> {
        match self.open {
            None => Err(NdmpError::DEV_NOT_OPEN_ERR),
            Some(o) if o.ejected => Err(NdmpError::NO_TAPE_LOADED_ERR),
            Some(o) => Ok(o),
        }
    }

    /// TAPE_OPEN succeeded.
    pub fn opened(&mut self, mode: TapeOpenMode) {
        self.open = Some(Open {
            mode,
            filemark_owed: false,
            close_failed: false,
            ejected: false,
        });
    }

    /// True while a tape is open (ejected or not).
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// True once MTIO OFF unloaded the cartridge.
    pub fn is_ejected(&self) -> bool {
        self.open.is_some_and(|o| o.ejected)
    }

    /// How the mover may use the drive.
    pub fn access(&self) -> TapeAccess {
        match self.open {
            None => TapeAccess::NotOpen,
            Some(o) if o.mode == TapeOpenMode::READ => TapeAccess::ReadOnly,
            Some(_) => TapeAccess::ReadWrite,
        }
    }

    /// Records went to tape (TAPE_WRITE or the mover): a filemark is owed.
    pub fn wrote(&mut self) {
        if let Some(o) = self.open.as_mut() {
            o.filemark_owed = true;
        }
    }

    /// True when the implicit filemark must be written before the tape moves or closes.
    pub fn filemark_owed(&self) -> bool {
        self.open
            .is_some_and(|o| o.filemark_owed && o.mode != TapeOpenMode::READ)
    }

    /// Whether an MTIO operation must first settle the owed filemark: all but writing
    /// filemarks (which settles it) and TUR (which does not move the tape).
    pub fn settles_before(op: MtioOp) -> bool {
        op != MtioOp::EOF && op != MtioOp::TUR
    }

    /// A filemark was written.
    pub fn filemark_written(&mut self) {
        if let Some(o) = self.open.as_mut() {
            o.filemark_owed = false;
        }
    }

    /// MTIO OFF unloaded the cartridge.
    pub fn ejected(&mut self) {
        if let Some(o) = self.open.as_mut() {
            o.ejected = true;
        }
    }

    /// Whether TAPE_CLOSE must still settle the filemark and flush: not after a failed
    /// close, nor with no cartridge in the drive.
    pub fn close_needs_io(&self) -> bool {
        self.open.is_some_and(|o| !o.close_failed && !o.ejected)
    }

    /// TAPE_CLOSE failed; the drive stays open once so the DMA can retry.
    pub fn close_failed(&mut self) {
        if let Some(o) = self.open.as_mut() {
            o.close_failed = true;
        }
    }

    /// The tape is closed (or the drive was lost).
    pub fn closed(&mut self) {
        self.open = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use NdmpError as E;
    use TapeRequest as R;

    /// A table row: a request, whether the mover is busy, and the outcome in each state.
    type Row = (TapeRequest, bool, [(NdmpError, &'static str); 5]);

    /// The states the table distinguishes.
    fn states() -> Vec<(&'static str, TapeMachine)> {
        let mut read = TapeMachine::default();
        read.opened(TapeOpenMode::READ);
        let mut rdwr = TapeMachine::default();
        rdwr.opened(TapeOpenMode::RDWR);
        let mut dirty = rdwr;
        dirty.wrote();
        let mut ejected = rdwr;
        ejected.ejected();
        vec![
            ("closed", TapeMachine::default()),
            ("read", read),
            ("rdwr", rdwr),
            ("rdwr+written", dirty),
            ("ejected", ejected),
        ]
    }

    /// The code a request gets (NO_ERR for Go and Nothing), and whether a log goes with it.
    fn code(a: &Admit) -> (E, &'static str) {
        match a {
            Admit::Go => (E::NO_ERR, "go"),
            Admit::Nothing => (E::NO_ERR, "nothing"),
            Admit::Answer(c) => (*c, "answer"),
            Admit::Refuse(r) => (r.error, "refuse"),
        }
    }

    #[test]
    fn the_spec_table_for_every_state() {
        use MtioOp as M;
        let read = |count| R::Read { count };
        let write = |len| R::Write { len };
        let mtio = |op, count| R::Mtio { op, count };
        let open = |mode| R::Open {
            mode,
            other_device: false,
        };
        // (request, mover busy, [closed, read, rdwr, rdwr+written, ejected])
        #[rustfmt::skip]
        let table: Vec<Row> = vec![
            (open(TapeOpenMode::RDWR), false, [(E::NO_ERR, "go"), (E::DEVICE_OPENED_ERR, "refuse"), (E::DEVICE_OPENED_ERR, "refuse"), (E::DEVICE_OPENED_ERR, "refuse"), (E::DEVICE_OPENED_ERR, "refuse")]),
            (open(TapeOpenMode(9)), false, [(E::ILLEGAL_ARGS_ERR, "refuse"), (E::DEVICE_OPENED_ERR, "refuse"), (E::DEVICE_OPENED_ERR, "refuse"), (E::DEVICE_OPENED_ERR, "refuse"), (E::DEVICE_OPENED_ERR, "refuse")]),
            (R::Close, false, [(E::DEV_NOT_OPEN_ERR, "refuse"), (E::NO_ERR, "go"), (E::NO_ERR, "go"), (E::NO_ERR, "go"), (E::NO_ERR, "go")]),
            (R::Close, true, [(E::DEV_NOT_OPEN_ERR, "refuse"), (E::DEVICE_BUSY_ERR, "refuse"), (E::DEVICE_BUSY_ERR, "refuse"), (E::DEVICE_BUSY_ERR, "refuse"), (E::DEVICE_BUSY_ERR, "refuse")]),
            (R::GetState, false, [(E::DEV_NOT_OPEN_ERR, "answer"), (E::NO_ERR, "go"), (E::NO_ERR, "go"), (E::NO_ERR, "go"), (E::NO_TAPE_LOADED_ERR, "answer")]),
            // GET_STATE is the one request allowed while the mover streams
            (R::GetState, true, [(E::DEV_NOT_OPEN_ERR, "answer"), (E::NO_ERR, "go"), (E::NO_ERR, "go"), (E::NO_ERR, "go"), (E::NO_TAPE_LOADED_ERR, "answer")]),
            (mtio(M::FSF, 1), false, [(E::DEV_NOT_OPEN_ERR, "answer"), (E::NO_ERR, "go"), (E::NO_ERR, "go"), (E::NO_ERR, "go"), (E::NO_TAPE_LOADED_ERR, "answer")]),
            (mtio(M::FSF, 1), true, [(E::DEV_NOT_OPEN_ERR, "answer"), (E::DEVICE_BUSY_ERR, "refuse"), (E::DEVICE_BUSY_ERR, "refuse"), (E::DEVICE_BUSY_ERR, "refuse"), (E::DEVICE_BUSY_ERR, "refuse")]),
            (mtio(M::BSR, 0), false, [(E::DEV_NOT_OPEN_ERR, "answer"), (E::NO_ERR, "nothing"), (E::NO_ERR, "nothing"), (E::NO_ERR, "nothing"), (E::NO_TAPE_LOADED_ERR, "answer")]),
            (mtio(M::REW, 0), false, [(E::DEV_NOT_OPEN_ERR, "answer"), (E::NO_ERR, "go"), (E::NO_ERR, "go"), (E::NO_ERR, "go"), (E::NO_TAPE_LOADED_ERR, "answer")]),
            (mtio(M::EOF, 1), false, [(E::DEV_NOT_OPEN_ERR, "answer"), (E::PERMISSION_ERR, "refuse"), (E::NO_ERR, "go"), (E::NO_ERR, "go"), (E::NO_TAPE_LOADED_ERR, "answer")]),
            (mtio(M::EOF, 0), false, [(E::DEV_NOT_OPEN_ERR, "answer"), (E::NO_ERR, "nothing"), (E::NO_ERR, "nothing"), (E::NO_ERR, "nothing"), (E::NO_TAPE_LOADED_ERR, "answer")]),
            (mtio(MtioOp(99), 1), false, [(E::DEV_NOT_OPEN_ERR, "answer"), (E::ILLEGAL_ARGS_ERR, "refuse"), (E::ILLEGAL_ARGS_ERR, "refuse"), (E::ILLEGAL_ARGS_ERR, "refuse"), (E::ILLEGAL_ARGS_ERR, "refuse")]),
            (write(10), false, [(E::DEV_NOT_OPEN_ERR, "answer"), (E::PERMISSION_ERR, "refuse"), (E::NO_ERR, "go"), (E::NO_ERR, "go"), (E::NO_TAPE_LOADED_ERR, "answer")]),
            (write(10), true, [(E::DEV_NOT_OPEN_ERR, "answer"), (E::DEVICE_BUSY_ERR, "refuse"), (E::DEVICE_BUSY_ERR, "refuse"), (E::DEVICE_BUSY_ERR, "refuse"), (E::NO_TAPE_LOADED_ERR, "answer")]),
            (write(0), false, [(E::DEV_NOT_OPEN_ERR, "answer"), (E::PERMISSION_ERR, "refuse"), (E::NO_ERR, "nothing"), (E::NO_ERR, "nothing"), (E::NO_TAPE_LOADED_ERR, "answer")]),
            (read(10), false, [(E::DEV_NOT_OPEN_ERR, "answer"), (E::NO_ERR, "go"), (E::NO_ERR, "go"), (E::NO_ERR, "go"), (E::NO_TAPE_LOADED_ERR, "answer")]),
            (read(10), true, [(E::DEV_NOT_OPEN_ERR, "answer"), (E::DEVICE_BUSY_ERR, "refuse"), (E::DEVICE_BUSY_ERR, "refuse"), (E::DEVICE_BUSY_ERR, "refuse"), (E::NO_TAPE_LOADED_ERR, "answer")]),
            (read(0), false, [(E::DEV_NOT_OPEN_ERR, "answer"), (E::NO_ERR, "nothing"), (E::NO_ERR, "nothing"), (E::NO_ERR, "nothing"), (E::NO_TAPE_LOADED_ERR, "answer")]),
            (R::ExecuteCdb, false, [(E::DEV_NOT_OPEN_ERR, "answer"), (E::NO_ERR, "go"), (E::NO_ERR, "go"), (E::NO_ERR, "go"), (E::NO_ERR, "go")]),
            (R::ExecuteCdb, true, [(E::DEV_NOT_OPEN_ERR, "answer"), (E::DEVICE_BUSY_ERR, "refuse"), (E::DEVICE_BUSY_ERR, "refuse"), (E::DEVICE_BUSY_ERR, "refuse"), (E::DEVICE_BUSY_ERR, "refuse")]),
        ];
        let states = states();
        for (req, busy, want) in table {
            for ((name, m), want) in states.iter().zip(want) {
                assert_eq!(
                    code(&m.admit(req, busy)),
                    want,
                    "{req:?} busy={busy} in {name}"
                );
            }
        }
    }

    #[test]
    fn a_scsi_device_on_the_connection_blocks_tape_open() {
        let r = TapeMachine::default().admit(
            R::Open {
                mode: TapeOpenMode::READ,
                other_device: true,
            },
            false,
        );
        assert_eq!(code(&r), (E::DEVICE_OPENED_ERR, "refuse"));
    }

    #[test]
    fn refusals_say_why_in_words() {
        let mut m = TapeMachine::default();
        m.opened(TapeOpenMode::READ);
        let Admit::Refuse(r) = m.admit(R::Write { len: 1 }, false) else {
            panic!("a write to a read-only tape is refused")
        };
        assert_eq!(r.why, "the tape is open for reading only");
        let Admit::Refuse(r) = m.admit(R::Read { count: 1 }, true) else {
            panic!("busy")
        };
        assert_eq!(r.why, BUSY);
    }

    #[test]
    fn the_filemark_is_owed_after_writing_until_written_and_never_read_only() {
        let mut m = TapeMachine::default();
        m.opened(TapeOpenMode::RDWR);
        assert!(!m.filemark_owed());
        m.wrote();
        assert!(m.filemark_owed());
        m.filemark_written();
        assert!(!m.filemark_owed());
        let mut r = TapeMachine::default();
        r.opened(TapeOpenMode::READ);
        r.wrote();
        assert!(!r.filemark_owed());
        assert!(TapeMachine::settles_before(MtioOp::REW));
        assert!(TapeMachine::settles_before(MtioOp::FSF));
        assert!(!TapeMachine::settles_before(MtioOp::EOF));
        assert!(!TapeMachine::settles_before(MtioOp::TUR));
    }

    #[test]
    fn close_needs_io_until_it_failed_once_or_the_tape_is_out() {
        let mut m = TapeMachine::default();
        assert!(!m.close_needs_io());
        m.opened(TapeOpenMode::RDWR);
        assert!(m.close_needs_io());
        m.close_failed();
        assert!(!m.close_needs_io(), "the second close releases without I/O");
        let mut e = TapeMachine::default();
        e.opened(TapeOpenMode::RDWR);
        e.ejected();
        assert!(!e.close_needs_io());
        assert!(e.is_ejected() && e.is_open());
        e.closed();
        assert!(!e.is_open());
        assert_eq!(e.access(), TapeAccess::NotOpen);
    }

    #[test]
    fn the_mover_sees_the_open_mode() {
        let mut m = TapeMachine::default();
        assert_eq!(m.access(), TapeAccess::NotOpen);
        m.opened(TapeOpenMode::READ);
        assert_eq!(m.access(), TapeAccess::ReadOnly);
        m.opened(TapeOpenMode::RAW);
        assert_eq!(m.access(), TapeAccess::ReadWrite);
    }
}
