//! ndmpd, an NDMP v4 server and tape mover engine: the wire layer, one server per NDMP interface
//! over the DATA and MOVER engines and the tape library, a DMA client, the REST view, and pcap.
#![warn(missing_docs)]

pub mod auth;
pub mod capture;
pub mod catalog;
pub mod client;
pub mod config;
pub mod data;
pub mod dataconn;
pub mod error;
pub mod format;
pub mod fslock;
pub mod metrics;
pub mod mover;
pub mod pcap;
pub mod registry;
pub mod rest;
pub mod scheduler;
pub mod scsi;
pub mod server;
pub mod settings;
pub mod snapshot;
pub mod tape;
pub mod timefmt;
pub mod units;
pub mod wire;
