//! `pugmark token`: a bearer token for `POST /api/v1/events` and the `[[senders.map]]` entry
//! that maps it to an observer. The token is printed once; the config keeps only its
//! SHA-256 (`token_sha256`), so a config file that leaks does not let anyone post.
//! `--stdin` hashes a token the site made itself instead of making one.

use std::io::Read;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use model::Observer;

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The sender's name: shown by `pugmark status`, stored as the origin identity
    /// `bearer:NAME` of every record it posts.
    #[arg(long)]
    pub name: String,
    /// The observer its records are stored under: cloud, vo, hypervisor, network, vm or
    /// collector.
    #[arg(long)]
    pub observer: Observer,
    /// Read the token from stdin (one line) instead of making a new one.
    #[arg(long)]
    pub stdin: bool,
    /// Print {"name", "observer", "token", "token_sha256", "toml"} as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: TokenArgs) -> anyhow::Result<ExitCode> {
    let token = if args.stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the token from stdin")?;
        let t = s.trim_end_matches(['\n', '\r']).to_string();
        if t.is_empty() || t.contains(char::is_whitespace) {
            bail!("the token on stdin must be one non-empty word");
        }
        t
    } else {
        serve::senders::new_token()?
    };
    let toml = serve::senders::token_entry(&args.name, args.observer, &token);
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "name": args.name,
                "observer": args.observer.as_str(),
                "token": token,
                "token_sha256": serve::senders::token_sha256(&token),
                "toml": toml,
            })
        );
    } else {
        if !args.stdin {
            println!(
                "# The token, shown once: give it to {} as \"Authorization: Bearer TOKEN\".\n# {token}",
                args.name
            );
        }
        print!("{toml}");
    }
    Ok(ExitCode::SUCCESS)
}
