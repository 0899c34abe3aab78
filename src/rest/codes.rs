//! ONTAP's error codes and messages this view answers with, besides the query language's
//! (`query::CODE_*`). The messages of the NDMP and job codes are the reference's descriptions.

/// "The UUID is not valid." (an `owner.uuid` that is not a UUID).
pub const INVALID_UUID: (&str, &str) = ("68812802", "The UUID is not valid.");
/// A DELETE naming an SVM-scope session (`A:B`) under a UUID that is not this SVM's.
pub const NO_SVM: (&str, &str) = (
    "68812803",
    "Failed to get the SVM name from the specified SVM UUID.",
);
/// A DELETE naming a node-scope session under a UUID that is not this node's.
pub const NO_NODE: (&str, &str) = (
    "68812804",
    "Failed to get the node name from the specified node UUID.",
);
/// Never answered: ndmpd's NDMP mode (node scope, SVM ids accepted) is always known.
pub const NO_MODE: (&str, &str) = ("68812805", "Failed to obtain the NDMP mode of operation.");
/// A DELETE whose path lacks the owner UUID or the session id.
pub const MISSING_IDS: (&str, &str) = ("68812806", "UUID and Session ID are required.");
/// A cancel of a job that has already ended.
pub const JOB_TERMINAL: (&str, &str) = ("458762", "Job is already in a terminal state.");
/// `action=pause` or `action=resume`: no ndmpd job can be paused or resumed by request.
pub const JOB_NO_PAUSE: &str = "458783";
/// A cancel whose job did not stop in time.
pub const JOB_FAILED: &str = "459753";
/// A path the view does not serve.
pub const NO_API: (&str, &str) = ("3", "API not found");
/// A method the path does not take.
pub const NO_METHOD: &str = "3";
/// No valid credentials.
pub const UNAUTHORIZED: (&str, &str) = ("6", "not authorized for that operation");
/// A read-only account asked for a change (HTTP 403).
pub const FORBIDDEN: (&str, &str) = ("6", "not authorized for that command");
/// Any other failure (a malformed request line, a session that would not end in time).
pub const OTHER: &str = "1";
/// ndmpd's own code for a snapshot request that conflicts with what exists (a name taken, a
/// snapshot a backup reads, an export that cannot have snapshots): HTTP 409.
pub const SNAPSHOT_CONFLICT: &str = "1";
