//! What the `ndmpd` subcommands do once clap has parsed them: start the server, act as a
//! DMA, manage virtual cartridges, decode captures, and print the outcome.

pub mod args;
pub mod check;
pub mod dma;
pub mod output;
pub mod pcap;
pub mod serve;
pub mod vtape;

/// The multi-threaded tokio runtime `serve` and `dma` run on; exits the process (status 1)
/// when it cannot be built.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| {
            eprintln!("ndmpd: cannot start the async runtime: {e}");
            std::process::exit(1)
        })
}
