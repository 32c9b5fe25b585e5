//! IP addresses mentioned in free text, for IP search (`Event.ips`).
//!
//! A single linear scan: maximal runs of characters that can make up an address
//! (hex digits, `.`, `:`) that stand as their own word (not glued to letters, digits or `_`)
//! are tried as IPv4 or IPv6, then with a trailing `:port` or punctuation removed. Invalid
//! octets (`10.321.1.123`), versions (`1.4.1`), times (`06:55:46`) and MAC addresses are not
//! addresses and are not returned. Zone suffixes (`fe80::1%eth0`) end the run, so the address
//! before them is found. IPv4-mapped IPv6 (`::ffff:1.2.3.4`) is returned as the IPv4 address,
//! so a search for the address finds it however it was written.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn is_run_byte(b: u8) -> bool {
    b.is_ascii_hexdigit() || b == b'.' || b == b':'
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Every IPv4/IPv6 address mentioned in a text, in order of first mention, without duplicates.
pub fn extract_ips(text: &str) -> Vec<IpAddr> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !is_run_byte(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        let (mut dots, mut colons) = (0usize, 0usize);
        while i < b.len() && is_run_byte(b[i]) {
            dots += usize::from(b[i] == b'.');
            colons += usize::from(b[i] == b':');
            i += 1;
        }
        let end = i;
        // Cheap filter before parsing: IPv4 needs three dots, IPv6 two colons.
        if dots < 3 && colons < 2 {
            continue;
        }
        // A run glued to a word (`std::io`, `abc1.2.3.4`, `x1.2.3.4y`) is not an address.
        let glued_before = start > 0 && is_word_byte(b[start - 1]);
        let glued_after = end < b.len() && is_word_byte(b[end]) && b[end] != b'%';
        if glued_before || glued_after {
            continue;
        }
        // The run is ASCII, so slicing the str on these byte offsets is safe; use get() anyway.
        if let Some(run) = text.get(start..end)
            && let Some(ip) = parse_run(run).map(|ip| ip.to_canonical())
            && !out.contains(&ip)
        {
            out.push(ip);
        }
    }
    out
}

/// Try a run as an address, then with trailing punctuation or a `:port` removed.
fn parse_run(run: &str) -> Option<IpAddr> {
    // Words made of hex letters only (`a::b`, `dead:beef`) are far more often text than
    // addresses: require a decimal digit.
    if !run.bytes().any(|c| c.is_ascii_digit()) {
        return None;
    }
    let trimmed = run.trim_end_matches('.');
    if let Some(ip) = parse_one(trimmed) {
        return Some(ip);
    }
    // `1.2.3.4:22`, `1.2.3.4:` (`Received disconnect from 1.2.3.4: 11: …`)
    if let Some((left, _)) = trimmed.rsplit_once(':')
        && let Ok(v4) = left.parse::<Ipv4Addr>()
    {
        return Some(IpAddr::V4(v4));
    }
    None
}

fn parse_one(s: &str) -> Option<IpAddr> {
    if s.contains(':') {
        // `::` alone and runs without a hex digit are punctuation, not addresses.
        if !s.bytes().any(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        s.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
    } else {
        // Exactly four dotted parts; std rejects leading zeros and octets over 255.
        s.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(s: &str) -> Vec<String> {
        extract_ips(s).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn finds_addresses_in_sshd_text() {
        assert_eq!(
            ips("reverse mapping checking getaddrinfo for ns.x.com [173.234.31.186] failed"),
            ["173.234.31.186"]
        );
        assert_eq!(
            ips("Received disconnect from 1.2.3.4: 11: Bye"),
            ["1.2.3.4"]
        );
        assert_eq!(
            ips("host=/192.0.2.1 destination=192.0.2.2/11282"),
            ["192.0.2.1", "192.0.2.2"]
        );
        assert_eq!(
            ips("refused connect from x@::ffff:192.168.1.1 (::ffff:192.168.1.1)"),
            ["192.168.1.1"]
        );
        assert_eq!(
            ips("from fe80::1%eth0 port 22, 1.2.3.4."),
            ["fe80::1", "1.2.3.4"]
        );
    }

    #[test]
    fn ignores_things_that_only_look_like_addresses() {
        assert!(ips("10.321.1.123 syslogd 1.4.1 at 06:55:46 mac 00:0c:29:0d:11:74").is_empty());
        assert!(ips("std::io::Error a::b 220-135-151-1.hinet-ip.hinet.net ::").is_empty());
    }
}
