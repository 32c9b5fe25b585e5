//! `gensyslog`: a seeded, realistic site syslog corpus for the benchmarks.
//!
//! Writes RFC 3164 lines as rsyslog's traditional file format puts them on disk, for a site of
//! many VMs and hypervisors over one day: sshd (accepted / failed / invalid user / disconnect),
//! pam sessions, sudo, su, kernel netfilter LOG lines, CRON, systemd, dhclient, nova-compute.
//! The same seed always gives the same bytes. Needles for the search benchmark are planted at
//! fixed fractions of the file and printed on stderr with their exact counts, so the peer
//! (ripgrep) doubles as an oracle.
//!
//! The PRNG is SplitMix64 written here (10 lines) rather than the `rand` crate: the output must
//! stay byte-identical across dependency upgrades for figures to stay comparable.
//!
//! Usage: gensyslog LINES SEED > file

use std::io::{self, BufWriter, Write};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
    fn pick_u64<'a>(&mut self, items: &'a [u64]) -> &'a u64 {
        &items[self.below(items.len() as u64) as usize]
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const USERS: [&str; 12] = [
    "alice", "bob", "carol", "dave", "atlas001", "cmsprd", "lhcbpil", "alicesgm", "root", "ubuntu",
    "centos", "admin",
];
const BAD_USERS: [&str; 10] = [
    "oracle", "test", "guest", "postgres", "ftpuser", "pi", "support", "user1", "git", "hadoop",
];
const COMMANDS: [&str; 6] = [
    "/usr/bin/systemctl restart condor",
    "/bin/ls -l /var/log",
    "/usr/bin/tail -f /var/log/messages",
    "/usr/sbin/iptables -L -n",
    "/usr/bin/yum update -y",
    "/bin/cat /etc/shadow",
];

/// What stays fixed for one host over the day, as on a real site: its address, MAC, tap
/// device, the pids its daemons count up from, its kernel uptime.
struct Host {
    name: String,
    ip: String,
    mac: String,
    tap: u32,
    next_pid: u64,
    uptime_us: u64,
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let lines: u64 = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let seed: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(42);
    let mut rng = Rng(seed);
    let out = io::stdout();
    let mut w = BufWriter::with_capacity(1 << 20, out.lock());
    let hosts = 1000u64;
    let mut site: Vec<Host> = (0..hosts)
        .map(|n| Host {
            name: if n < 40 {
                format!("hv{n:03}.cloud.example.org")
            } else {
                format!("vm-{n:04}")
            },
            ip: format!("10.{}.{}.{}", n / 250 % 4, n % 250, 10 + n % 200),
            mac: format!(
                "{:02x}:{:02x}:{:02x}",
                rng.below(256),
                rng.below(256),
                rng.below(256)
            ),
            tap: rng.next() as u32,
            next_pid: 1000 + rng.below(30_000),
            uptime_us: rng.below(9_000_000_000_000),
        })
        .collect();
    // Internet scanners and users' home addresses: a pool with a heavy head, as real
    // auth logs show (a few sources make most of the noise).
    let attackers: Vec<String> = (0..20_000)
        .map(|_| {
            format!(
                "{}.{}.{}.{}",
                11 + rng.below(200),
                rng.below(256),
                rng.below(256),
                1 + rng.below(254)
            )
        })
        .collect();
    // Each user has one or two keys.
    let keys: Vec<String> = (0..USERS.len() * 2)
        .map(|_| {
            format!(
                "{:016x}{:016x}{:011x}",
                rng.next(),
                rng.next(),
                rng.next() >> 20
            )
        })
        .collect();
    // Instances that live on the site today.
    let instances: Vec<String> = (0..3000)
        .map(|_| {
            format!(
                "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
                rng.next() as u32,
                rng.below(65_536),
                rng.below(4096),
                rng.below(4096),
                rng.next() & 0xffff_ffff_ffff
            )
        })
        .collect();
    // One day, Oct 14, spread evenly.
    let needle_at = [lines / 3, lines / 2, lines * 9 / 10];
    let rare_ip_at = [lines / 4, lines * 3 / 5, lines * 4 / 5];
    for i in 0..lines {
        let secs = i * 86_400 / lines.max(1);
        let (hh, mm, ss) = (secs / 3600, secs / 60 % 60, secs % 60);
        let ts = format!("{} 14 {hh:02}:{mm:02}:{ss:02}", MONTHS[9]);
        let h = &mut site[rng.below(hosts) as usize];
        h.next_pid += 1 + rng.below(3);
        h.uptime_us += 1 + rng.below(2_000_000);
        let (host, pid, int) = (h.name.clone(), h.next_pid, h.ip.clone());
        let (mac, tap, uptime) = (h.mac.clone(), h.tap, h.uptime_us);
        // Skewed pick: squaring a uniform draw favours the head of the pool.
        let a = rng.below(attackers.len() as u64);
        let ext = attackers[(a * a / attackers.len() as u64) as usize].clone();
        let user_i = rng.below(USERS.len() as u64) as usize;
        let port = 1024 + rng.below(64_000);
        if needle_at.contains(&i) {
            writeln!(
                w,
                "{ts} {host} condor_starter[{pid}]: payload finished trace_id=ZQX-7781-NEEDLE-4402 status=0"
            )?;
            continue;
        }
        if rare_ip_at.contains(&i) {
            writeln!(
                w,
                "{ts} {host} sshd[{pid}]: Accepted publickey for cmsprd from 203.0.113.77 port {port} ssh2: RSA SHA256:q9nAqkbhXgF0d3ZyX2Fzc2V0X2tleV9mb3JfYmVuY2g"
            )?;
            continue;
        }
        match rng.below(100) {
            0..=17 => writeln!(
                w,
                "{ts} {host} sshd[{pid}]: Failed password for {} from {ext} port {port} ssh2",
                USERS[user_i]
            )?,
            18..=27 => writeln!(
                w,
                "{ts} {host} sshd[{pid}]: Invalid user {} from {ext} port {port}",
                rng.pick(&BAD_USERS)
            )?,
            28..=33 => writeln!(
                w,
                "{ts} {host} sshd[{pid}]: Accepted publickey for {} from {ext} port {port} ssh2: RSA SHA256:{}",
                USERS[user_i],
                keys[user_i * 2 + (rng.below(2) as usize)]
            )?,
            34..=39 => writeln!(
                w,
                "{ts} {host} sshd[{pid}]: pam_unix(sshd:session): session opened for user {} by (uid=0)",
                rng.pick(&USERS)
            )?,
            40..=44 => writeln!(
                w,
                "{ts} {host} sshd[{pid}]: Received disconnect from {ext} port {port}:11: Bye Bye [preauth]"
            )?,
            45..=49 => writeln!(
                w,
                "{ts} {host} sudo: {} : TTY=pts/{} ; PWD=/home/{} ; USER=root ; COMMAND={}",
                rng.pick(&USERS),
                rng.below(8),
                rng.pick(&USERS),
                rng.pick(&COMMANDS)
            )?,
            50..=51 => writeln!(
                w,
                "{ts} {host} su[{pid}]: pam_unix(su:session): session opened for user root by {}(uid=1000)",
                rng.pick(&USERS)
            )?,
            52..=69 => writeln!(
                w,
                "{ts} {host} kernel: [{}.{:06}] IPTABLES-IN: IN=tap{tap:08x} OUT=br-int MAC=fa:16:3e:{mac}:fa:16:3e:00:00:01:08:00 SRC={ext} DST={int} LEN={} TOS=0x00 PREC=0x00 TTL={} ID={} DF PROTO=TCP SPT={port} DPT={} WINDOW=29200 RES=0x00 SYN URGP=0",
                uptime / 1_000_000,
                uptime % 1_000_000,
                *rng.pick_u64(&[44, 52, 60, 60, 60, 1500]),
                *rng.pick_u64(&[48, 52, 56, 64]),
                rng.below(65_536),
                rng.pick(&["22", "443", "80", "9618", "3306", "6379"])
            )?,
            70..=77 => writeln!(
                w,
                "{ts} {host} CRON[{pid}]: (root) CMD (/usr/lib/sa/sa1 1 1 >/dev/null 2>&1)"
            )?,
            78..=85 => writeln!(
                w,
                "{ts} {host} systemd[1]: Started Session {} of user {}.",
                rng.below(100_000),
                rng.pick(&USERS)
            )?,
            86..=90 => writeln!(
                w,
                "{ts} {host} dhclient[{pid}]: DHCPACK of {int} from 10.0.0.1 (xid=0x{:08x})",
                rng.next() as u32
            )?,
            _ => writeln!(
                w,
                "{ts} {host} nova-compute[{pid}]: INFO nova.compute.manager [req-{:08x}-{:04x}] [instance: {}] Took {}.{:02} seconds to spawn the instance on the hypervisor.",
                rng.next() as u32,
                rng.below(65_536),
                instances[rng.below(instances.len() as u64) as usize],
                rng.below(60),
                rng.below(100)
            )?,
        }
    }
    w.flush()?;
    eprintln!(
        "needle ZQX-7781-NEEDLE-4402: {} lines; ip 203.0.113.77: {} lines",
        needle_at.iter().filter(|&&n| n < lines).count(),
        rare_ip_at.iter().filter(|&&n| n < lines).count()
    );
    Ok(())
}
