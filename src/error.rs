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

/// What an NDMP error code means, in words an operator can act on: the words of a refusal
/// that has no more specific ones.
pub fn meaning(e: NdmpError) -> String {
    let words = match e {
        NdmpError::NOT_SUPPORTED_ERR => "this server does not support that request",
        NdmpError::DEVICE_BUSY_ERR => "the device is in use by another session",
        NdmpError::DEVICE_OPENED_ERR => "a device is already open on this connection",
        NdmpError::NOT_AUTHORIZED_ERR => "not authorized: authenticate first (CONNECT_CLIENT_AUTH)",
        NdmpError::PERMISSION_ERR => "permission denied",
        NdmpError::DEV_NOT_OPEN_ERR => {
            "no device is open on this connection (TAPE_OPEN or SCSI_OPEN first)"
        }
        NdmpError::IO_ERR => "the device reported an I/O error",
        NdmpError::TIMEOUT_ERR => "the operation timed out",
        NdmpError::ILLEGAL_ARGS_ERR => "an argument of the request is not valid",
        NdmpError::NO_TAPE_LOADED_ERR => "no cartridge is loaded in the drive",
        NdmpError::WRITE_PROTECT_ERR => "the cartridge is write protected",
        NdmpError::EOF_ERR => "a filemark was reached",
        NdmpError::EOM_ERR => "the end of the recorded data or of the medium was reached",
        NdmpError::FILE_NOT_FOUND_ERR => "no such file",
        NdmpError::NO_DEVICE_ERR => "no such device",
        NdmpError::ILLEGAL_STATE_ERR => "the request is not allowed in the current state",
        NdmpError::NO_MEM_ERR => "the server is out of memory or threads",
        NdmpError::CONNECT_ERR => "the data connection could not be made",
        NdmpError::PRECONDITION_ERR => "a request that must come first has not been made",
        NdmpError::XDR_DECODE_ERR => "the request could not be decoded",
        _ => return format!("refused with {e:?}"),
    };
    words.to_string()
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
