//! NDMP v4 (and v3, in `v3`) on the wire, without I/O: XDR primitives, every message body, the
//! header, and RPC record marking. Pure functions over `bytes`; sockets live elsewhere.

pub mod fh;
pub mod header;
pub mod messages;
pub mod netapp;
pub mod record;
pub mod sample;
pub mod types;
pub mod v3;
pub mod xdr;

pub use header::{Body, Header, Message, MessageError, MessageType, HEADER_LEN};
pub use messages::{MessageCode, Reply, Request};
pub use record::{RecordCodec, RecordError};
pub use types::NdmpError;
pub use xdr::{Limits, NdmpString, Opaque, Xdr, XdrError, XdrReader};
