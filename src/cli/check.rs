//! `ndmpd check-config` (every problem of a config file with its line) and the hidden
//! `ndmpd generate-assets` (man pages and shell completions from the clap definitions).

use super::output::outln;
use ndmpd::config::{self, Severity};
use std::path::Path;
use std::process::ExitCode;

/// Prints each problem of `file` as `FILE:LINE:COL: error: ...`, then a summary line;
/// exit status 0 when ndmpd would start with it (warnings allowed), 1 otherwise.
pub fn check_config(file: &Path) -> ExitCode {
    let shown = file.display();
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            outln!("{shown}: error: cannot read it: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (cfg, diagnostics) = config::check_text(&text, true);
    let mut errors = 0;
    let mut warnings = 0;
    for d in &diagnostics {
        let what = match d.severity {
            Severity::Error => {
                errors += 1;
                "error"
            }
            Severity::Warning => {
                warnings += 1;
                "warning"
            }
        };
        match d.position {
            Some((line, col)) => outln!("{shown}:{line}:{col}: {what}: {}", d.message),
            None => outln!("{shown}: {what}: {}", d.message),
        }
    }
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    if cfg.is_some() && errors == 0 {
        match warnings {
            0 => outln!("{shown}: OK"),
            n => outln!("{shown}: OK ({})", plural(n, "warning")),
        }
        ExitCode::SUCCESS
    } else {
        outln!(
            "{shown}: {}, {}: ndmpd would not start with it",
            plural(errors, "error"),
            plural(warnings, "warning")
        );
        ExitCode::FAILURE
    }
}

/// Writes `DIR/man/*.1` (ndmpd and each subcommand) and `DIR/completions/` for bash, zsh
/// and fish.
pub fn generate_assets(dir: &Path) -> ExitCode {
    match write_assets(dir) {
        Ok(n) => {
            outln!("ndmpd: wrote {n} files under {}", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ndmpd: generate-assets {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}

fn write_assets(dir: &Path) -> std::io::Result<usize> {
    use clap::CommandFactory;
    use clap_complete::Shell;
    let mut cmd = super::args::Cli::command();
    cmd.build();
    let man = dir.join("man");
    std::fs::create_dir_all(&man)?;
    let mut n = 0;
    let mut pages = vec![(String::from("ndmpd"), cmd.clone())];
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = format!("ndmpd-{}", sub.get_name());
        // the page's title names the subcommand as `ndmpd-serve`; clap takes names as
        // 'static strings, and this one-shot command runs once
        let title: &'static str = Box::leak(name.clone().into_boxed_str());
        let page = sub
            .clone()
            .name(title)
            .bin_name(format!("ndmpd {}", sub.get_name()));
        pages.push((name, page));
    }
    for (name, page) in pages {
        let mut out = Vec::new();
        clap_mangen::Man::new(page).render(&mut out)?;
        std::fs::write(man.join(format!("{name}.1")), out)?;
        n += 1;
    }
    let comp = dir.join("completions");
    std::fs::create_dir_all(&comp)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, "ndmpd", &comp)?;
        n += 1;
    }
    Ok(n)
}
