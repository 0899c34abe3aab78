//! The one error vocabulary of the NDMP interfaces: a `Refusal` (an NDMP error code and the
//! words a DMA reads in the LOG_MESSAGE beside it), and the one place device errors get codes.

use crate::scsi::sg::SgOpenError;
use crate::scsi::CdbError;
use crate::tape::library::OpenError;
use crate::tape::TapeError;
use crate::wire::NdmpError;

/// Why a request was refused: the NDMP error code and the LOG_MESSAGE text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The code the reply carries.
    pub error: NdmpError,
    /// What went wrong and, where there is one, what to do about it.
    pub why: String,
}

impl Refusal {
    /// A refusal with `error` and the words `why`.
    pub fn new(error: NdmpError, why: impl Into<String>) -> Refusal {
        Refusal {
            error,
            why: why.into(),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.error, self.why)
    }
}

/// `Err` of a new [`Refusal`]: the form every state-table check returns.
pub fn refuse<T>(error: NdmpError, why: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal::new(error, why))
}

/// The NDMP code of a tape device error (spec §3.4's error lists).
pub fn tape_code(e: &TapeError) -> NdmpError {
    match e {
        TapeError::Eof => NdmpError::EOF_ERR,
        TapeError::Eom => NdmpError::EOM_ERR,
        TapeError::Bot | TapeError::Io(_) => NdmpError::IO_ERR,
        TapeError::WriteProtected => NdmpError::WRITE_PROTECT_ERR,
        TapeError::NoTape => NdmpError::NO_TAPE_LOADED_ERR,
        TapeError::NotSupported(_) => NdmpError::NOT_SUPPORTED_ERR,
    }
}

/// The NDMP code of a failed TAPE_OPEN or device lock.
pub fn open_code(e: &OpenError) -> NdmpError {
    match e {
        OpenError::NoDevice(_) => NdmpError::NO_DEVICE_ERR,
        OpenError::Busy(_) => NdmpError::DEVICE_BUSY_ERR,
        OpenError::NoTape(_) => NdmpError::NO_TAPE_LOADED_ERR,
        OpenError::WriteProtected(_) => NdmpError::WRITE_PROTECT_ERR,
        OpenError::Io(_, te) => tape_code(te),
    }
}

/// The NDMP code of a failed open of a SCSI generic node.
pub fn sg_open_code(e: &SgOpenError) -> NdmpError {
    match e {
        SgOpenError::NotFound(_) | SgOpenError::NotSg(_) => NdmpError::NO_DEVICE_ERR,
        SgOpenError::Busy(_) => NdmpError::DEVICE_BUSY_ERR,
        SgOpenError::Permission(_) => NdmpError::PERMISSION_ERR,
        SgOpenError::Io(..) => NdmpError::IO_ERR,
    }
}

/// The NDMP code of a CDB that could not be executed (a CHECK CONDITION is not an error).
pub fn cdb_code(e: &CdbError) -> NdmpError {
    match e {
        CdbError::Timeout => NdmpError::TIMEOUT_ERR,
        CdbError::IllegalArgs(_) => NdmpError::ILLEGAL_ARGS_ERR,
        CdbError::Io(_) => NdmpError::IO_ERR,
    }
}

impl From<&OpenError> for Refusal {
    fn from(e: &OpenError) -> Refusal {
        Refusal::new(open_code(e), e.to_string())
    }
}

impl From<&SgOpenError> for Refusal {
    fn from(e: &SgOpenError) -> Refusal {
        Refusal::new(sg_open_code(e), e.to_string())
    }
}

impl From<&CdbError> for Refusal {
    fn from(e: &CdbError) -> Refusal {
        Refusal::new(cdb_code(e), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_errors_map_to_the_spec_codes() {
        assert_eq!(tape_code(&TapeError::Eom), NdmpError::EOM_ERR);
        assert_eq!(tape_code(&TapeError::Bot), NdmpError::IO_ERR);
        assert_eq!(
            open_code(&OpenError::Busy("vtape0".into())),
            NdmpError::DEVICE_BUSY_ERR
        );
        assert_eq!(
            open_code(&OpenError::Io("vtape0".into(), TapeError::WriteProtected)),
            NdmpError::WRITE_PROTECT_ERR
        );
        assert_eq!(cdb_code(&CdbError::Timeout), NdmpError::TIMEOUT_ERR);
        let r: Refusal = (&CdbError::IllegalArgs("empty CDB".into())).into();
        assert_eq!(
            (r.error, r.why.as_str()),
            (NdmpError::ILLEGAL_ARGS_ERR, "empty CDB")
        );
    }
}
