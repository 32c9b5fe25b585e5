//! Indexing throughput and query latency of the search index on synthetic syslog-like events
//! (~150-byte messages, sshd/cron/sudo/kernel mixes, 10.x addresses, a few rare needles).
//!
//! Run: `cargo run --release -p views --example index_bench -- [DOCS] [THREADS]`
//! (defaults 1000000 and 1). Prints docs/s for `IndexWriter::add` + commit, the index size,
//! and the latency of typical lookups on the committed index (median of 20 runs, warm).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use model::{Event, EventClass, Observer, Origin, Received, Reported};
use views::{IndexQuery, Keyword, SearchIndex};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const USERS: [&str; 8] = [
    "root", "admin", "alice", "bob", "oracle", "test", "ubuntu", "pi",
];

fn event(i: u64, rng: &mut Rng) -> Event {
    let ip = IpAddr::V4(Ipv4Addr::new(
        10,
        rng.below(4) as u8,
        rng.below(256) as u8,
        rng.below(256) as u8,
    ));
    let user = USERS[rng.below(8) as usize];
    let port = 1024 + rng.below(60000);
    let (app, message, class) = match rng.below(4) {
        0 => (
            "sshd",
            format!(
                "Failed password for invalid user {user} from {ip} port {port} ssh2 [preauth] session {:x}",
                rng.next()
            ),
            EventClass::AuthFailure,
        ),
        1 => (
            "sshd",
            format!(
                "Accepted publickey for {user} from {ip} port {port} ssh2: RSA SHA256:{:x}{:x}",
                rng.next(),
                rng.next()
            ),
            EventClass::AuthLogin,
        ),
        2 => (
            "CRON",
            format!(
                "pam_unix(cron:session): session opened for user {user} by (uid=0) job {}",
                rng.below(100000)
            ),
            EventClass::AuthSession,
        ),
        _ => (
            "kernel",
            format!(
                "IN=eth0 OUT= MAC=52:54:00:12:34:56 SRC={ip} DST=10.9.9.9 LEN=60 PROTO=TCP SPT={port} DPT=22 SYN"
            ),
            EventClass::NetConnection,
        ),
    };
    let message = if i % 1_000_003 == 777 {
        format!("{message} ZQX-7781-NEEDLE-4402")
    } else {
        message
    };
    let mut fields = BTreeMap::new();
    fields.insert("user".to_string(), user.to_string());
    fields.insert("src_ip".to_string(), ip.to_string());
    fields.insert("src_port".to_string(), port.to_string());
    let t = jiff::Timestamp::from_second(1_700_000_000 + (i / 50) as i64)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    Event {
        received: Received::from_stored(t.as_nanosecond()),
        reported: Reported::new(Some(t), "Nov 14 22:13:20"),
        observer: Observer::Vm,
        source_kind: "syslog-rfc3164".into(),
        origin: Origin::File {
            path: "bench.log".into(),
            line: i + 1,
        },
        host: Some(format!("vm-{:03}", rng.below(200))),
        app: Some(app.into()),
        pid: Some(rng.below(30000).to_string()),
        facility: Some(4),
        severity: Some(6),
        msgid: None,
        message,
        fields,
        ips: vec![ip],
        class,
        issues: vec![],
        raw: vec![],
    }
}

fn dir_size(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let docs: u64 = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let threads: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let tmp = std::env::temp_dir().join(format!("pugmark-index-bench-{}", std::process::id()));
    let index = SearchIndex::recreate(&tmp)?;

    // Events are generated up front so only indexing is timed.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let events: Vec<Event> = (0..docs).map(|i| event(i, &mut rng)).collect();
    let msg_bytes: usize = events.iter().map(|e| e.message.len()).sum();

    let start = Instant::now();
    let mut w = index.writer_with_threads(threads, 256_000_000)?;
    for (i, e) in events.iter().enumerate() {
        w.add(i as u64 + 1, e)?;
    }
    w.commit(docs)?;
    let indexed = start.elapsed();
    w.finish()?;
    let merged = start.elapsed();
    index.reload()?;
    println!(
        "indexed {docs} docs (avg message {} B) with {threads} thread(s): {:.0} docs/s to commit ({:.2} s), {:.2} s incl. merges; {} segments; index {:.1} MB ({:.1} B/doc)",
        msg_bytes as u64 / docs.max(1),
        docs as f64 / indexed.as_secs_f64(),
        indexed.as_secs_f64(),
        merged.as_secs_f64(),
        index.num_segments(),
        dir_size(&tmp) as f64 / 1e6,
        dir_size(&tmp) as f64 / docs.max(1) as f64,
    );

    let t0 = Instant::now();
    let reopened = SearchIndex::open_or_create(&tmp)?;
    println!("open: {:?}", t0.elapsed());
    let ip: IpAddr = "10.1.2.3".parse()?;
    let cases: Vec<(&str, IndexQuery)> = vec![
        (
            "rare token (needle)",
            IndexQuery::Text("ZQX-7781-NEEDLE-4402".into()),
        ),
        ("ip exact", IndexQuery::Ip(ip)),
        (
            "cidr /24",
            IndexQuery::IpRange {
                first: "10.1.2.0".parse()?,
                last: "10.1.2.255".parse()?,
            },
        ),
        (
            "host term",
            IndexQuery::Keyword(Keyword::Host, "vm-042".into()),
        ),
        ("common word (failed)", IndexQuery::Text("failed".into())),
        (
            "user=alice AND failed",
            IndexQuery::And(vec![
                IndexQuery::Field {
                    name: "user".into(),
                    value: "alice".into(),
                },
                IndexQuery::Text("failed".into()),
            ]),
        ),
        ("*", IndexQuery::All),
        (
            "time range 1h",
            IndexQuery::Time {
                from: jiff::Timestamp::from_second(1_700_003_600).ok(),
                to: jiff::Timestamp::from_second(1_700_007_200).ok(),
            },
        ),
    ];
    for (name, q) in &cases {
        let mut top = Vec::new();
        let mut count = Vec::new();
        let mut n = 0;
        for _ in 0..20 {
            let t = Instant::now();
            let (total, keys) = reopened.first_by_time(q, 100)?;
            top.push(t.elapsed());
            n = total;
            std::hint::black_box(keys);
            let t = Instant::now();
            std::hint::black_box(reopened.count(q)?);
            count.push(t.elapsed());
        }
        println!(
            "{name:>24}: {n:>8} matches; first 100 by time + total {:>9.3?}; count {:>9.3?}",
            median(top),
            median(count)
        );
    }
    let t = Instant::now();
    let all = reopened.all_by_time(&IndexQuery::Text("needle 7781".into()))?;
    println!(
        "all_by_time(needle 7781): {} keys in {:?}",
        all.len(),
        t.elapsed()
    );
    drop(reopened);
    drop(index);
    std::fs::remove_dir_all(&tmp)?;
    Ok(())
}
