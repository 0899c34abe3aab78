//! The `ndmpd` command line: the NDMP server (`serve`, the default) and its operator tools
//! (`dma` talks to an NDMP server as a DMA, `pcap` decodes captured NDMP conversations).

use clap::{Args, Parser, Subcommand};
use ndmpd::config::{self, Config, Credentials};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "ndmpd",
    version,
    about = "NDMP v4 server and tape mover engine",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Args, Default)]
struct ServeArgs {
    /// TOML config file [default: /etc/ndmpd/ndmpd.toml when it exists]
    #[arg(long)]
    config: Option<PathBuf>,
    /// NDMP control address (repeatable) [default: 127.0.0.1:10000]
    #[arg(long)]
    listen: Vec<SocketAddr>,
    /// REST session view address
    #[arg(long)]
    rest_listen: Option<SocketAddr>,
    /// Server state directory (password, host id, virtual tapes)
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Directory tree DMAs may back up and restore into (repeatable)
    #[arg(long)]
    export: Vec<PathBuf>,
    /// A DMA login; its password comes from --password-file or NDMPD_PASSWORD
    #[arg(long)]
    user: Option<String>,
    #[command(flatten)]
    password: PasswordArgs,
}

#[derive(Args, Default)]
struct PasswordArgs {
    /// File whose first line is the password
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// The password (prefer --password-file: the environment is visible to the same user)
    #[arg(
        long = "password-env",
        env = "NDMPD_PASSWORD",
        hide_env_values = true,
        hide = true
    )]
    password_env: Option<String>,
}

impl PasswordArgs {
    fn read(&self) -> Result<Option<Vec<u8>>, String> {
        match (&self.password_file, &self.password_env) {
            (Some(f), _) => config::read_password_file(f)
                .map(Some)
                .map_err(|e| e.to_string()),
            (None, Some(p)) if !p.is_empty() => Ok(Some(p.as_bytes().to_vec())),
            _ => Ok(None),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the NDMP server (what `ndmpd` with no subcommand does)
    Serve(ServeArgs),
    /// Act as a DMA against an NDMP server
    #[command(subcommand)]
    Dma(DmaCommand),
    /// Decode the NDMP messages in pcap/pcapng captures, one line each.
    Pcap {
        /// Capture files (pcap or pcapng, e.g. from `tcpdump -w` or Wireshark).
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
        /// TCP port of the NDMP server in the capture.
        #[arg(long, default_value_t = 10000)]
        port: u16,
        /// One JSON object per message, with the decoded body.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum DmaCommand {
    /// Connect, authenticate and print everything CONFIG_* returns
    Query {
        /// NDMP server address
        #[arg(long, default_value = "127.0.0.1:10000")]
        server: String,
        /// Login name
        #[arg(long, default_value = config::DEFAULT_USER)]
        user: String,
        /// Authentication method
        #[arg(long, value_enum, default_value = "md5")]
        auth: ndmpd::client::query::AuthMethod,
        /// Print the replies as JSON
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        password: PasswordArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Dma(DmaCommand::Query {
            server,
            user,
            auth,
            json,
            password,
        })) => {
            let password = match password.read() {
                Ok(Some(p)) => p,
                Ok(None) if auth == ndmpd::client::query::AuthMethod::None => Vec::new(),
                Ok(None) => {
                    eprintln!(
                        "ndmpd dma query: give the password with --password-file or NDMPD_PASSWORD"
                    );
                    return ExitCode::from(2);
                }
                Err(e) => {
                    eprintln!("ndmpd dma query: {e}");
                    return ExitCode::from(2);
                }
            };
            runtime().block_on(ndmpd::client::query::run_query_cli(
                &server, &user, &password, auth, json,
            ))
        }
        Some(Command::Pcap { files, port, json }) => pcap(&files, port, json),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| {
            eprintln!("ndmpd: cannot start the async runtime: {e}");
            std::process::exit(1)
        })
}

/// Builds the effective configuration: file, then command-line overrides, then the embedded
/// defaults that make a fresh machine work. Returns it with the DMA logins.
fn effective_config(args: &ServeArgs) -> Result<(Config, Vec<Credentials>), String> {
    let default_path = PathBuf::from(config::DEFAULT_CONFIG_PATH);
    let path = match &args.config {
        Some(p) => Some(p.clone()),
        None if default_path.exists() => Some(default_path),
        None => None,
    };
    let mut cfg = match &path {
        Some(p) => Config::load(p).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    if !args.listen.is_empty() {
        cfg.listen = args.listen.clone();
    }
    if let Some(r) = args.rest_listen {
        cfg.rest_listen = Some(r);
    }
    if let Some(d) = &args.data_dir {
        cfg.data_dir = d.clone();
    }
    for e in &args.export {
        let abs =
            std::path::absolute(e).map_err(|err| format!("--export {}: {err}", e.display()))?;
        cfg.exports.push(config::Export { path: abs });
    }
    if path.is_none() {
        cfg.apply_embedded_defaults();
    }
    cfg.validate().map_err(|e| e.to_string())?;
    let mut users = config::load_credentials(&cfg).map_err(|e| e.to_string())?;
    if let Some(name) = &args.user {
        let password = args.password.read()?.ok_or_else(|| {
            format!("--user {name}: give the password with --password-file or NDMPD_PASSWORD")
        })?;
        users.retain(|u| &u.name != name);
        users.push(Credentials {
            name: name.clone(),
            password,
        });
    }
    if users.is_empty()
        && !cfg
            .auth
            .methods
            .iter()
            .all(|m| *m == config::AuthMethod::None)
    {
        let (password, created) =
            config::first_start_password(&cfg.data_dir).map_err(|e| e.to_string())?;
        let file = cfg.data_dir.join("password");
        if created {
            println!(
                "ndmpd: first start. DMA login: user {}, password {} (kept in {}, mode 0600)",
                config::DEFAULT_USER,
                String::from_utf8_lossy(&password),
                file.display()
            );
        } else {
            println!(
                "ndmpd: DMA login: user {}, password in {}",
                config::DEFAULT_USER,
                file.display()
            );
        }
        users.push(Credentials {
            name: config::DEFAULT_USER.into(),
            password,
        });
    }
    Ok((cfg, users))
}

fn serve(args: ServeArgs) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NDMPD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let (cfg, users) = match effective_config(&args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("ndmpd: {e}");
            return ExitCode::from(2);
        }
    };
    for e in &cfg.exports {
        if !e.path.is_dir() {
            tracing::warn!("export {} is not a directory", e.path.display());
        }
    }
    runtime().block_on(async move {
        let server = match ndmpd::server::Server::bind(cfg, users).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("ndmpd: {e}");
                return ExitCode::FAILURE;
            }
        };
        for a in server.local_addrs() {
            println!("ndmpd: NDMP v4 listening on {a}");
        }
        let token = server.shutdown_token();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            token.cancel();
        });
        match server.run().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ndmpd: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            // without signal handlers, Ctrl-C still ends the process the default way
            std::future::pending::<()>().await
        }
    }
}

fn pcap(files: &[std::path::PathBuf], port: u16, json: bool) -> ExitCode {
    use std::io::Write;
    let mut failed = false;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for path in files {
        let name = path.display().to_string();
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("{name}: {e}");
                failed = true;
                continue;
            }
        };
        let conv = ndmpd::pcap::decode_capture(&data, port);
        if let Some(e) = &conv.file_error {
            eprintln!(
                "{name}: {e} ({} message(s) decoded before it)",
                conv.events.len()
            );
        }
        if json {
            for e in &conv.events {
                let _ = writeln!(out, "{}", ndmpd::pcap::format_json(e, &name));
            }
        } else {
            let _ = writeln!(
                out,
                "{name}: {} NDMP connection(s) on port {port}, {} message(s)",
                conv.connections,
                conv.events.len()
            );
            if let Some(first) = conv.events.first() {
                let t0 = first.time;
                let _ = writeln!(out, "{}", ndmpd::pcap::header_line());
                for e in &conv.events {
                    let _ = writeln!(out, "{}", ndmpd::pcap::format_line(e, t0));
                }
            }
        }
        for e in conv.events.iter().filter(|e| e.outcome.is_err()) {
            if let Err(err) = &e.outcome {
                eprintln!(
                    "{name}: packet {}: connection {} {}: {err}",
                    e.packet,
                    e.conn,
                    e.direction.arrow()
                );
            }
        }
        for err in &conv.stream_errors {
            eprintln!("{name}: {err}");
        }
        if conv.failures() > 0 {
            failed = true;
        }
        if !json && conv.connections == 0 {
            eprintln!("{name}: no TCP traffic on port {port} (try --port)");
        }
    }
    let _ = out.flush();
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
