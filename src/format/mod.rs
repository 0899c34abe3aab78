//! Backup image formats: turning a directory tree into the byte stream a DATA server sends
//! to the mover, with no NDMP inside (the DATA server adds history posts and env handling).

pub mod changed;
pub mod dump;
pub mod finish;
pub mod fsops;
pub mod out;
pub mod recover;
pub mod tar;
