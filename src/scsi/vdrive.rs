//! TAPE_EXECUTE_CDB on a virtual drive: the identification commands DMAs send to match a
//! drive with its changer element (INQUIRY with serial number), and TEST UNIT READY.

use super::changer::{inquiry, report_luns, request_sense, serial, DRIVE_PRODUCT};
use super::sense::cond;
use super::{op, CdbOutcome, CdbRequest, DataDir};
use crate::tape::library::Library;

/// Answers one CDB for virtual drive `name`; `loaded` says whether its tape is in the drive
/// (not ejected). Everything else is ILLEGAL REQUEST: data moves through TAPE_READ/WRITE.
pub fn execute(lib: &Library, name: &str, loaded: bool, req: &CdbRequest) -> CdbOutcome {
    let opcode = req.cdb[0];
    if matches!(req.dir, DataDir::Out(_)) {
        return CdbOutcome::check(cond::INVALID_FIELD.at(0));
    }
    match opcode {
        op::INQUIRY => inquiry(req, 0x01, DRIVE_PRODUCT, &serial("VT", lib, name)),
        op::REQUEST_SENSE => request_sense(req, None),
        op::REPORT_LUNS => report_luns(req),
        op::TEST_UNIT_READY if loaded => CdbOutcome::good(Vec::new(), 0),
        op::TEST_UNIT_READY => CdbOutcome::check(cond::MEDIUM_NOT_PRESENT),
        _ => CdbOutcome::check(cond::INVALID_OPCODE),
    }
}
