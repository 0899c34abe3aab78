//! A DMA (the NDMP client side) as an async library: one control connection, the CONFIG
//! query, backup, restore, list and changer jobs. Used by `ndmpd dma …`, tests and benches.

pub mod backup;
pub mod changer;
pub mod connection;
pub mod detect;
pub mod ext;
pub mod job;
pub mod query;
pub mod recorded;
pub mod restore;
pub mod session;

pub use connection::{Client, ClientError, CONNECT_TIMEOUT, DEFAULT_TIMEOUT};
pub use query::{query, query_version, QueryReport};
pub use session::{login, login_version, AuthMethod, Progress};
