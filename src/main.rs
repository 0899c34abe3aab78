//! The `ndmpd` command line: the NDMP server (`serve`, the default) and its operator tools
//! (`dma` talks to an NDMP server as a DMA, `pcap` decodes captured NDMP conversations,
//! `check-config` checks a config file).

mod cli;

use cli::args::Command;
use std::process::ExitCode;

fn main() -> ExitCode {
    let code = match cli::args::parse() {
        Command::Serve(args) => cli::serve::serve(args),
        Command::Dma(cmd) => cli::dma::run(cmd),
        Command::Vtape(args) => cli::vtape::run(args),
        Command::Pcap { files, port, json } => cli::pcap::run(&files, port, json),
        Command::CheckConfig { file } => cli::check::check_config(&file),
        Command::GenerateAssets { dir } => cli::check::generate_assets(&dir),
    };
    // a reader gone before the last bytes left ends the process as at any other write
    cli::output::flush();
    code
}
