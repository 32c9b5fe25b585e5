//! Microbenchmark of decode + classify over the corpus' real syslog files (no criterion):
//! `cargo run --release -p decode --example bench`. Prints ns/line and lines/s for one core.
//! With file arguments, their lines instead (bench/nat/run: the conntrack log, issue 12).

use std::time::Instant;

use model::envelope::{DecodeHints, Format, RecordEnvelope, YearRule};
use model::{Observer, Origin, Received};

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus");
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let given: Vec<std::path::PathBuf> = std::env::args().skip(1).map(Into::into).collect();
    let files = if given.is_empty() {
        ["syslog/loghub_Linux_2k.log", "auth/loghub_OpenSSH_2k.log"]
            .iter()
            .map(|rel| root.join(rel))
            .collect()
    } else {
        given
    };
    for rel in files {
        let rel = rel.display().to_string();
        match std::fs::read(&rel) {
            Ok(data) => lines.extend(data.split(|b| *b == b'\n').map(<[u8]>::to_vec)),
            Err(e) => {
                eprintln!("cannot read {rel}: {e}");
                std::process::exit(1);
            }
        }
    }
    let envs: Vec<RecordEnvelope> = lines
        .into_iter()
        .map(|raw| RecordEnvelope {
            received: Received::from_stored(1_780_000_000_000_000_000),
            observer: Observer::Vm,
            format: Format::Syslog,
            hints: DecodeHints {
                year: YearRule::FromReceived,
                tz: std::env::var("TZ_HINT").ok(),
            },
            origin: Origin::File {
                path: "bench.log".into(),
                line: 1,
            },
            raw,
        })
        .collect();
    let rounds = (200_000 / envs.len().max(1)).clamp(1, 50);
    let mut sink = 0usize;
    let start = Instant::now();
    for _ in 0..rounds {
        for env in &envs {
            sink += decode::decode(env).fields.len();
        }
    }
    let n = (rounds * envs.len()) as f64;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} lines x {rounds}: {:.0} ns/line, {:.0} lines/s on one core (checksum {sink})",
        envs.len(),
        secs * 1e9 / n,
        n / secs
    );
}
