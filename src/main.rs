//! The `ndmpd` command line: the NDMP server (`serve`, the default) and its operator tools
//! (`dma` talks to an NDMP server as a DMA, `pcap` decodes captured NDMP conversations).

mod cli;

use clap::Parser;
use cli::args::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        None => cli::serve::serve(cli.serve),
        Some(Command::Serve(args)) => cli::serve::serve(args),
        Some(Command::Dma(cmd)) => cli::dma::run(cmd),
        Some(Command::Vtape(args)) => cli::vtape::run(args),
        Some(Command::Pcap { files, port, json }) => cli::pcap::run(&files, port, json),
    };
    // a reader gone before the last bytes left ends the process as at any other write
    cli::output::flush();
    code
}
