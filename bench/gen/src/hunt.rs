//! `huntgen`: the network half of the hunt/check benchmark day (issue 5), and its indicators.
//!
//! * `huntgen flows NETFILTER_LOG YEAR PER_LINE SEED OUT.pcap`: NetFlow v9 export datagrams
//!   (the same template and framing as `flowbench gen`) derived from a generated challenge
//!   day's hypervisor netfilter log: for every kernel LOG line one flow with the line's own
//!   5-tuple at the line's second, and `PER_LINE - 1` more flows of the same VM address at
//!   the same instant with an outside pool (198.18.0.0/15: 500 busy addresses take half of
//!   those flows, 100,000 quiet ones the other half; direction either way). The VM addresses
//!   therefore are the site's leases at the flow's time (the hypervisor saw that VM then),
//!   which is what lets `check` run over the day without inventing unknown hosts. Datagrams
//!   leave in time order, 30 flows each, the template every 64 datagrams, export time one
//!   second after the latest flow they carry; the exporter booted an hour before the day.
//! * `huntgen iocs SEED VM_SYSLOG OUTDIR [N]`: N (default 10,000) distinct indicators as
//!   `OUTDIR/iocs.txt` (plain list) and `OUTDIR/iocs.misp.json` (one MISP event with the same
//!   values): ~60 % IPs, 10 % CIDRs, 27 % domains, 3 % URLs. A few hit: 60 quiet and 2 busy
//!   pool addresses, 20 sshd attacker addresses taken from the VM syslog, a /28 and a /26 of
//!   the pool, a /28 of the attackers' network; everything else is drawn from ranges the day
//!   never uses (100.64.0.0/10, 2001:db8::/32, `.invalid` names).

use std::collections::{BTreeSet, HashSet};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::net::Ipv4Addr;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const PER_DATAGRAM: usize = 30;
const BUSY: u32 = 500;
const QUIET: u32 = 100_000;
const POOL_BASE: u32 = 198 << 24 | 18 << 16;

/// Outside pool address `i` (0..BUSY busy, BUSY..BUSY+QUIET quiet).
fn outside(i: u32) -> u32 {
    POOL_BASE + 1 + i
}

const TEMPLATE: [(u16, u16); 12] = [
    (8, 4),
    (12, 4),
    (22, 4),
    (21, 4),
    (1, 4),
    (2, 4),
    (10, 4),
    (14, 4),
    (7, 2),
    (11, 2),
    (4, 1),
    (6, 1),
];

#[derive(Clone, Copy)]
struct Flow {
    first_ms: i64,
    dur_ms: u32,
    src: u32,
    dst: u32,
    sport: u16,
    dport: u16,
    proto: u8,
    packets: u32,
    bytes: u32,
}

fn datagram(flows: &[Flow], seq: u32, sent_ms: i64, boot_ms: i64, template: bool) -> Vec<u8> {
    let mut d = Vec::with_capacity(1400);
    let uptime = (sent_ms - boot_ms) as u32;
    d.extend_from_slice(&9u16.to_be_bytes());
    d.extend_from_slice(&((flows.len() + usize::from(template)) as u16).to_be_bytes());
    d.extend_from_slice(&uptime.to_be_bytes());
    d.extend_from_slice(&((sent_ms / 1000) as u32).to_be_bytes());
    d.extend_from_slice(&seq.to_be_bytes());
    d.extend_from_slice(&0u32.to_be_bytes());
    if template {
        d.extend_from_slice(&0u16.to_be_bytes());
        d.extend_from_slice(&((8 + 4 * TEMPLATE.len()) as u16).to_be_bytes());
        d.extend_from_slice(&1024u16.to_be_bytes());
        d.extend_from_slice(&(TEMPLATE.len() as u16).to_be_bytes());
        for (id, len) in TEMPLATE {
            d.extend_from_slice(&id.to_be_bytes());
            d.extend_from_slice(&len.to_be_bytes());
        }
    }
    let rec_len: usize = TEMPLATE.iter().map(|t| usize::from(t.1)).sum();
    let body = rec_len * flows.len();
    let pad = (4 - (body + 4) % 4) % 4;
    d.extend_from_slice(&1024u16.to_be_bytes());
    d.extend_from_slice(&((4 + body + pad) as u16).to_be_bytes());
    for f in flows {
        let first = (f.first_ms - boot_ms) as u32;
        let last = first.wrapping_add(f.dur_ms);
        for v in [f.src, f.dst, first, last, f.bytes, f.packets, 1, 2] {
            d.extend_from_slice(&v.to_be_bytes());
        }
        d.extend_from_slice(&f.sport.to_be_bytes());
        d.extend_from_slice(&f.dport.to_be_bytes());
        d.push(f.proto);
        d.push(0x1b);
    }
    d.extend(std::iter::repeat_n(0u8, pad));
    d
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 42);
    f.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0x08, 0x00]);
    let total = (20 + 8 + payload.len()) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0, 192, 0, 2, 10, 127, 0, 0, 1]);
    f.extend_from_slice(&2055u16.to_be_bytes());
    f.extend_from_slice(&2055u16.to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `Oct 14 00:00:25` (RFC 3164, UTC) in the given year → unix ms.
fn bsd_ms(line: &str, year: i64) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = MONTHS.iter().position(|x| line.get(..3) == Some(*x))? as i64 + 1;
    let d: i64 = line.get(4..6)?.trim().parse().ok()?;
    let h: i64 = line.get(7..9)?.parse().ok()?;
    let mi: i64 = line.get(10..12)?.parse().ok()?;
    let s: i64 = line.get(13..15)?.parse().ok()?;
    Some(((days_from_civil(year, m, d) * 24 + h) * 60 + mi) * 60_000 + s * 1000)
}

fn kv<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(key)?;
    line[at + key.len()..].split(' ').next()
}

pub fn flows(log: &str, year: i64, per_line: u64, seed: u64, out: &str) -> std::io::Result<()> {
    let mut rng = Rng(seed);
    let mut lines = Vec::new();
    for line in BufReader::new(std::fs::File::open(log)?).lines() {
        let line = line?;
        let (Some(t), Some(src), Some(dst)) = (
            bsd_ms(&line, year),
            kv(&line, " SRC=").and_then(|s| s.parse::<Ipv4Addr>().ok()),
            kv(&line, " DST=").and_then(|s| s.parse::<Ipv4Addr>().ok()),
        ) else {
            continue;
        };
        let proto = match kv(&line, " PROTO=") {
            Some("TCP") => 6,
            Some("UDP") => 17,
            Some("ICMP") => 1,
            _ => 0,
        };
        let port = |k| {
            kv(&line, k)
                .and_then(|p| p.parse::<u16>().ok())
                .unwrap_or(0)
        };
        lines.push((
            t,
            u32::from(src),
            u32::from(dst),
            proto,
            port(" SPT="),
            port(" DPT="),
        ));
    }
    lines.sort_by_key(|l| l.0);
    let Some(&(day_ms, ..)) = lines.first() else {
        eprintln!("huntgen: no netfilter lines in {log}");
        std::process::exit(1);
    };
    let boot_ms = day_ms - day_ms % 86_400_000 - 3_600_000;
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(out)?);
    w.write_all(&[0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0])?;
    w.write_all(&[0; 8])?;
    w.write_all(&65535u32.to_le_bytes())?;
    w.write_all(&1u32.to_le_bytes())?;
    let site = |a: u32| a >> 16 == (10 << 8 | 42);
    let mut batch: Vec<Flow> = Vec::with_capacity(PER_DATAGRAM);
    let (mut seq, mut total) = (0u32, 0u64);
    let mut emit =
        |batch: &mut Vec<Flow>, w: &mut BufWriter<std::fs::File>| -> std::io::Result<()> {
            let last = batch
                .iter()
                .map(|f| f.first_ms + i64::from(f.dur_ms))
                .max()
                .unwrap_or(boot_ms);
            let sent_ms = (last / 1000 + 1) * 1000;
            let f = frame(&datagram(
                batch,
                seq,
                sent_ms,
                boot_ms,
                seq.is_multiple_of(64),
            ));
            w.write_all(&((sent_ms / 1000) as u32).to_le_bytes())?;
            w.write_all(&0u32.to_le_bytes())?;
            w.write_all(&(f.len() as u32).to_le_bytes())?;
            w.write_all(&(f.len() as u32).to_le_bytes())?;
            w.write_all(&f)?;
            total += batch.len() as u64;
            seq += 1;
            batch.clear();
            Ok(())
        };
    for &(t, src, dst, proto, sport, dport) in &lines {
        let vm = if site(src) {
            Some(src)
        } else if site(dst) {
            Some(dst)
        } else {
            None
        };
        for k in 0..per_line {
            let mut f = Flow {
                first_ms: t,
                dur_ms: rng.below(3_000) as u32,
                src,
                dst,
                sport,
                dport,
                proto,
                packets: rng.below(200) as u32 + 1,
                bytes: 0,
            };
            if k > 0 {
                let Some(vm) = vm else { break };
                let o = if rng.below(2) == 0 {
                    outside(rng.below(u64::from(BUSY)) as u32)
                } else {
                    outside(BUSY + rng.below(u64::from(QUIET)) as u32)
                };
                let eph = 1024 + rng.below(60_000) as u16;
                let svc = [22u16, 80, 443, 53, 8080][rng.below(5) as usize];
                (f.src, f.dst, f.sport, f.dport) = if rng.below(2) == 0 {
                    (vm, o, eph, svc)
                } else {
                    (o, vm, svc, eph)
                };
                f.proto = [6u8, 6, 6, 17][rng.below(4) as usize];
            }
            f.bytes = f.packets * (40 + rng.below(1400) as u32);
            batch.push(f);
            if batch.len() == PER_DATAGRAM {
                emit(&mut batch, &mut w)?;
            }
        }
    }
    if !batch.is_empty() {
        emit(&mut batch, &mut w)?;
    }
    w.flush()?;
    eprintln!(
        "{total} flows in {seq} datagrams from {} netfilter lines",
        lines.len()
    );
    Ok(())
}

pub fn iocs(seed: u64, syslog: &str, dir: &str, n: usize) -> std::io::Result<()> {
    let mut rng = Rng(seed ^ 0x10c5);
    let mut out: Vec<(String, &'static str)> = Vec::new();
    let mut seen = HashSet::new();
    let mut add = |v: String, ty: &'static str, out: &mut Vec<(String, &'static str)>| {
        if seen.insert(v.clone()) {
            out.push((v, ty));
        }
    };
    // Hits: quiet and busy pool addresses, a /28 and a /26 of the quiet pool.
    for _ in 0..60 {
        let a = Ipv4Addr::from(outside(BUSY + rng.below(u64::from(QUIET)) as u32));
        add(a.to_string(), "ip-dst", &mut out);
    }
    for i in [7, 311] {
        add(Ipv4Addr::from(outside(i)).to_string(), "ip-dst", &mut out);
    }
    add("198.18.200.0/28".into(), "ip-dst", &mut out);
    add("198.18.230.64/26".into(), "ip-src", &mut out);
    // Hits in the syslog text: sshd attackers.
    let mut attackers = BTreeSet::new();
    for line in BufReader::new(std::fs::File::open(syslog)?).lines() {
        let line = line?;
        if let Some(a) = kv(&line, " from ").and_then(|s| s.parse::<Ipv4Addr>().ok())
            && !u32::from(a).to_be_bytes().starts_with(&[10])
        {
            attackers.insert(a);
        }
    }
    let attackers: Vec<Ipv4Addr> = attackers.into_iter().collect();
    for _ in 0..20.min(attackers.len()) {
        let a = attackers[rng.below(attackers.len() as u64) as usize];
        add(a.to_string(), "ip-src", &mut out);
    }
    if let Some(a) = attackers.get(attackers.len() / 2) {
        let o = a.octets();
        add(
            format!("{}.{}.{}.{}/28", o[0], o[1], o[2], o[3] & 0xf0),
            "ip-src",
            &mut out,
        );
    }
    // Misses, from ranges the day never uses.
    let cgnat = |r: &mut Rng| Ipv4Addr::from(100 << 24 | 64 << 16 | r.below(1 << 22) as u32);
    while out.len() < n * 55 / 100 {
        let a = cgnat(&mut rng);
        add(a.to_string(), "ip-dst", &mut out);
    }
    while out.len() < n * 60 / 100 {
        let v = format!(
            "2001:db8:{:x}:{:x}::{:x}",
            rng.below(65_536),
            rng.below(65_536),
            rng.below(65_536) + 1
        );
        add(v, "ip-dst", &mut out);
    }
    while out.len() < n * 70 / 100 {
        let a = cgnat(&mut rng);
        let len = 20 + rng.below(13) as u32;
        let masked = u32::from(a) & (u32::MAX << (32 - len));
        add(
            format!("{}/{len}", Ipv4Addr::from(masked)),
            "ip-dst",
            &mut out,
        );
    }
    const WORDS: [&str; 16] = [
        "update", "cdn", "login", "secure", "mail", "api", "files", "sync", "cloud", "portal",
        "auth", "data", "static", "img", "news", "track",
    ];
    while out.len() < n * 97 / 100 {
        let v = format!(
            "{}-{}{}.{}.invalid",
            WORDS[rng.below(16) as usize],
            WORDS[rng.below(16) as usize],
            rng.below(100_000),
            WORDS[rng.below(16) as usize]
        );
        add(v, "domain", &mut out);
    }
    while out.len() < n {
        let v = format!(
            "http://{}{}.invalid/{}/{}.php",
            WORDS[rng.below(16) as usize],
            rng.below(100_000),
            WORDS[rng.below(16) as usize],
            rng.below(1000)
        );
        add(v, "url", &mut out);
    }
    // Shuffle so hits are not all at the top of the files.
    for i in (1..out.len()).rev() {
        out.swap(i, rng.below(i as u64 + 1) as usize);
    }
    std::fs::create_dir_all(dir)?;
    let mut plain = BufWriter::new(std::fs::File::create(format!("{dir}/iocs.txt"))?);
    writeln!(plain, "# huntgen seed {seed}: {} indicators", out.len())?;
    for (v, _) in &out {
        writeln!(plain, "{v}")?;
    }
    plain.flush()?;
    let mut misp = BufWriter::new(std::fs::File::create(format!("{dir}/iocs.misp.json"))?);
    write!(
        misp,
        "{{\"Event\": {{\"info\": \"huntgen seed {seed}\", \"Attribute\": ["
    )?;
    for (i, (v, ty)) in out.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        write!(
            misp,
            "{sep}\n  {{\"type\": \"{ty}\", \"category\": \"Network activity\", \"to_ids\": true, \"value\": \"{v}\"}}"
        )?;
    }
    writeln!(misp, "\n]}}}}")?;
    misp.flush()?;
    eprintln!(
        "{} indicators in {dir}/iocs.txt and iocs.misp.json",
        out.len()
    );
    Ok(())
}

/// Issue 12's NAT benchmark: `events` conntrack events (`conntrack -E -o
/// timestamp,extended,id` lines, NEW and DESTROY of each connection, in time order) for the
/// VMs of a generated day, derived from its netfilter log so every inside address is a real
/// lease at that moment. Each VM sits behind one of four router gateways (203.0.113.1–4,
/// chosen by its address); each gateway hands out public ports 1024–65535 in turn, so a
/// public port is reused only hours later. A connection lives 1–300 s. Writes OUT (the
/// conntrack log) and OUT.queries (`public port at_ns inside_ip inside_port`, 2 000 random
/// connections asked at their middle: the oracle).
pub fn nat(log: &str, year: i64, events: u64, seed: u64, out: &str) -> std::io::Result<()> {
    let mut rng = Rng(seed);
    let mut lines = Vec::new();
    for line in BufReader::new(std::fs::File::open(log)?).lines() {
        let line = line?;
        let (Some(t), Some(src), Some(dst)) = (
            bsd_ms(&line, year),
            kv(&line, " SRC=").and_then(|s| s.parse::<Ipv4Addr>().ok()),
            kv(&line, " DST=").and_then(|s| s.parse::<Ipv4Addr>().ok()),
        ) else {
            continue;
        };
        if src.octets()[0] != 10 {
            continue;
        }
        let dport = kv(&line, " DPT=")
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or(443);
        lines.push((t, src, dst, dport));
    }
    lines.sort_by_key(|l| l.0);
    if lines.is_empty() {
        eprintln!("huntgen: no VM netfilter lines in {log}");
        std::process::exit(1);
    }
    let conns = events / 2;
    let per_line = conns.div_ceil(lines.len() as u64);
    let mut next_port = [1024u32; 4];
    let mut out_lines: Vec<(i64, String)> = Vec::with_capacity(events as usize);
    let mut queries = Vec::new();
    let mut id: u64 = 1_000_000_000;
    'all: for &(t, src, peer, dport) in &lines {
        for k in 0..per_line {
            if out_lines.len() as u64 >= events {
                break 'all;
            }
            let gw = (u32::from(src) % 4) as usize;
            let public = Ipv4Addr::new(203, 0, 113, gw as u8 + 1);
            let pport = next_port[gw];
            next_port[gw] = if pport >= 65535 { 1024 } else { pport + 1 };
            let sport = 32768 + rng.below(28000) as u16;
            let udp = rng.below(4) == 0;
            let start_us = t * 1000 + (k as i64) * 1_700_000 + rng.below(1_000_000) as i64;
            let life_us = 1_000_000 + rng.below(299_000_000) as i64;
            let end_us = start_us + life_us;
            id += 1 + rng.below(1000);
            let (p, num, head) = if udp {
                ("udp", 17, "30".to_string())
            } else {
                ("tcp", 6, "120 SYN_SENT".to_string())
            };
            let stamp = |us: i64| format!("[{}.{:06}]", us / 1_000_000, us % 1_000_000);
            out_lines.push((
                start_us,
                format!(
                    "{}\t    [NEW] ipv4     2 {p:<8} {num} {head} src={src} dst={peer} sport={sport} dport={dport} [UNREPLIED] src={peer} dst={public} sport={dport} dport={pport} id={id}",
                    stamp(start_us)
                ),
            ));
            out_lines.push((
                end_us,
                format!(
                    "{}\t[DESTROY] ipv4     2 {p:<8} {num} src={src} dst={peer} sport={sport} dport={dport} src={peer} dst={public} sport={dport} dport={pport} [ASSURED] delta-time={} id={id}",
                    stamp(end_us),
                    life_us / 1_000_000
                ),
            ));
            if rng.below(conns.max(1)) < 2000 {
                queries.push(format!(
                    "{public} {pport} {} {src} {sport}",
                    (start_us + life_us / 2) * 1000
                ));
            }
        }
    }
    out_lines.sort_by_key(|l| l.0);
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(out)?);
    for (_, l) in &out_lines {
        writeln!(w, "{l}")?;
    }
    w.flush()?;
    std::fs::write(format!("{out}.queries"), queries.join("\n") + "\n")?;
    eprintln!(
        "{} conntrack events in {out} ({} connections from {} netfilter lines), {} queries",
        out_lines.len(),
        out_lines.len() / 2,
        lines.len(),
        queries.len()
    );
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let r = match arg(1) {
        "flows" => flows(
            arg(2),
            arg(3).parse().unwrap_or(2026),
            arg(4).parse().unwrap_or(10),
            arg(5).parse().unwrap_or(42),
            arg(6),
        ),
        "nat" => nat(
            arg(2),
            arg(3).parse().unwrap_or(2026),
            arg(4).parse().unwrap_or(1_000_000),
            arg(5).parse().unwrap_or(42),
            arg(6),
        ),
        "iocs" => iocs(
            arg(2).parse().unwrap_or(42),
            arg(3),
            arg(4),
            arg(5).parse().unwrap_or(10_000),
        ),
        _ => {
            eprintln!(
                "usage: huntgen flows NETFILTER_LOG YEAR PER_LINE SEED OUT.pcap | iocs SEED VM_SYSLOG OUTDIR [N] | nat NETFILTER_LOG YEAR EVENTS SEED OUT.log"
            );
            std::process::exit(2);
        }
    };
    if let Err(e) = r {
        eprintln!("huntgen: {e}");
        std::process::exit(1);
    }
}
