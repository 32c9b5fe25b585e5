//! `pugmark api-token create|list|revoke`: local bearer tokens for the query API (scripts).
//! The secret is printed once; `DATA/api/tokens.json` keeps its SHA-256, name and role
//! (`crate::api::auth::ApiTokens`). Revocation takes effect at the next request.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serve::config::ApiRole;

use crate::api::auth::ApiTokens;
use crate::cli::DataArgs;

#[derive(Debug, Args)]
pub struct ApiTokenArgs {
    #[command(subcommand)]
    pub command: ApiTokenCommand,
}

#[derive(Debug, Subcommand)]
pub enum ApiTokenCommand {
    /// Make a token: prints the secret once ({"id", "name", "role", "token"} with --json).
    Create {
        #[command(flatten)]
        data: DataArgs,
        /// Who or what uses it (shown in the audit as the user).
        #[arg(long)]
        name: String,
        /// site (everything), csirt (everything, read-only) or vo:NAME (that VO's VMs only;
        /// NAME needs an [[api.vos]] entry in the server's config).
        #[arg(long, value_parser = |s: &str| s.parse::<ApiRole>())]
        role: ApiRole,
        #[arg(long)]
        json: bool,
    },
    /// The tokens (never their secrets).
    List {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long)]
        json: bool,
    },
    /// Revoke the live token with this name or id.
    Revoke {
        #[command(flatten)]
        data: DataArgs,
        /// Its name or id.
        which: String,
    },
}

pub fn run(args: ApiTokenArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ApiTokenCommand::Create {
            data,
            name,
            role,
            json,
        } => {
            let (secret, t) = ApiTokens::new(&data.data).create(&name, &role)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"id": t.id, "name": t.name, "role": t.role, "token": secret})
                );
            } else {
                println!(
                    "# The token, shown once (Authorization: Bearer TOKEN); id {} role {}\n{secret}",
                    t.id, t.role
                );
            }
        }
        ApiTokenCommand::List { data, json } => {
            let list = ApiTokens::new(&data.data).list()?;
            if json {
                println!("{}", serde_json::json!({ "tokens": list }));
            } else {
                let mut out = std::io::stdout().lock();
                for t in &list {
                    super::text_line(
                        &mut out,
                        &format!(
                            "{} {} {} created {}{}",
                            t.id,
                            t.name,
                            t.role,
                            t.created,
                            t.revoked
                                .as_ref()
                                .map(|r| format!(" REVOKED {r}"))
                                .unwrap_or_default()
                        ),
                    )?;
                }
            }
        }
        ApiTokenCommand::Revoke { data, which } => {
            for t in ApiTokens::new(&data.data).revoke(&which)? {
                println!("revoked {} ({})", t.id, t.name);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
