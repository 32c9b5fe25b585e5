//! `pugmark challenge`: the traceability challenge (issue 3). `generate` writes a seeded site
//! day in the real source formats with questions and ground truth; `run` ingests it into a
//! fresh store and scores `who` against that truth. The work is in `crate::challenge`; this
//! file only parses flags.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::challenge::{Cloud, generate, run};

#[derive(Debug, Args)]
pub struct ChallengeArgs {
    #[command(subcommand)]
    pub command: ChallengeCommand,
}

#[derive(Debug, Subcommand)]
pub enum ChallengeCommand {
    /// Write a seeded site day (notifications, directory, condor history, VM syslog,
    /// hypervisor netfilter) and answers.json with questions and ground truth.
    Generate(GenerateArgs),
    /// Ingest a generated challenge into a fresh store and score every answer.
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Seed: the same seed gives the same bytes.
    #[arg(long)]
    pub seed: u64,
    /// VMs created over the day.
    #[arg(long, default_value_t = 100)]
    pub vms: usize,
    /// Length of the day in hours.
    #[arg(long, default_value_t = 24)]
    pub hours: u32,
    /// VM syslog and hypervisor lines per VM-hour, as a multiple of the default mix (about
    /// one of each a minute); the questions do not change.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=60))]
    pub density: u32,
    /// Directory to write into (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// The cloud framework whose records tell the day.
    #[arg(long, value_enum, default_value_t = Cloud::Openstack)]
    pub cloud: Cloud,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A directory written by `pugmark challenge generate`.
    pub dir: PathBuf,
    /// Fresh data directory for the run (must be empty). Default: DIR/run-store, emptied first.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The score table as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ChallengeArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ChallengeCommand::Generate(a) => {
            let w = generate::generate_for(
                generate::Params {
                    seed: a.seed,
                    vms: a.vms,
                    hours: a.hours,
                    density: a.density,
                },
                a.cloud,
                &a.out,
            )?;
            println!(
                "wrote {}: {} questions, {} {}, {} jobs, {} VM syslog lines, {} netfilter lines, {} {} log lines, {} conntrack events; {} problems for check",
                a.out.display(),
                w.questions,
                w.notifications,
                match a.cloud {
                    Cloud::Openstack => "notifications",
                    Cloud::Opennebula => "hook documents",
                },
                w.jobs,
                w.syslog_lines,
                w.netfilter_lines,
                w.nova_log_lines,
                match a.cloud {
                    Cloud::Openstack => "nova-compute",
                    Cloud::Opennebula => "oned and VM",
                },
                w.conntrack_lines,
                w.expected_findings
            );
            Ok(ExitCode::SUCCESS)
        }
        ChallengeCommand::Run(a) => run::run(run::RunOptions {
            dir: a.dir,
            data: a.data,
            json: a.json,
        }),
    }
}
