//! ndmpd: an NDMP v4 server and tape mover engine. This crate holds the wire layer, the
//! capture decoder used by `ndmpd pcap`, and (as they land) the servers.

pub mod auth;
pub mod capture;
pub mod client;
pub mod config;
pub mod data;
pub mod dataconn;
pub mod error;
pub mod format;
pub mod mover;
pub mod pcap;
pub mod registry;
pub mod rest;
pub mod scsi;
pub mod server;
pub mod tape;
pub mod timefmt;
pub mod wire;
