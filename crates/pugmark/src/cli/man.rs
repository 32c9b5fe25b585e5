//! `pugmark man --out DIR` and `pugmark completions SHELL` (both hidden): the man pages and
//! the shell completions the packages install, generated from the very CLI definition the
//! binary parses, so they cannot drift from it. One page per verb (`pugmark-serve.1`, …)
//! beside `pugmark.1`, by `clap_mangen`; completion scripts for bash, zsh and fish by
//! `clap_complete`. `scripts/package` runs both into the package's staging tree.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, CommandFactory, ValueEnum};

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory to write pugmark.1 and one pugmark-VERB.1 per verb into (made if missing).
    #[arg(long)]
    pub out: PathBuf,
}

/// The shells the packages ship completions for.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// bash, zsh or fish; the script goes to stdout.
    pub shell: Shell,
}

pub fn man(args: ManArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let cmd = super::Cli::command();
    // generate_to writes pugmark.1 and a page per visible subcommand, recursively
    // (`challenge generate` becomes pugmark-challenge-generate.1); hidden ones are skipped.
    clap_mangen::generate_to(cmd, &args.out)
        .with_context(|| format!("writing man pages to {}", args.out.display()))?;
    Ok(ExitCode::SUCCESS)
}

pub fn completions(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut cmd = super::Cli::command();
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut cmd, "pugmark", &mut std::io::stdout().lock());
    Ok(ExitCode::SUCCESS)
}
