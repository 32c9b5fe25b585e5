//! HTCondor "sinful strings": daemon addresses as `<10.1.2.3:9618?addrs=10.1.2.3-9618&alias=host>`.
//!
//! The part before `?` is the primary `host:port` (IPv6 in brackets: `<[2001:db8::1]:9618>`);
//! the query holds `addrs=` (every address the daemon listens on, `+`-separated `ip-port`,
//! IPv6 as `[2001-db8--1]-9618` with `-` for `:`, or with the colons kept), `alias=` (the host
//! name the daemon calls itself), and `sock=`, `noUDP`, `CCBID=`… which we ignore.
//! Pure parsing; callers decide which address names the machine.

use std::net::IpAddr;

/// What a sinful string says about where a daemon is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sinful {
    /// The primary address, when it is an IP (it can be a host name in old pools).
    pub ip: Option<IpAddr>,
    /// The primary host when it is a name, not an IP.
    pub host: Option<String>,
    pub port: Option<u16>,
    /// Every address from `addrs=`, in order, primary first when it is among them.
    pub addrs: Vec<IpAddr>,
    /// `alias=`: the daemon's host name.
    pub alias: Option<String>,
}

/// Parse a sinful string (surrounding whitespace allowed). `None` when it has no `<…>` shape.
pub fn parse(s: &str) -> Option<Sinful> {
    let t = s.trim();
    let inner = t.strip_prefix('<')?.strip_suffix('>')?;
    let (hostport, query) = match inner.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (inner, None),
    };
    let mut out = Sinful::default();
    if let Some((host, port)) = host_port(hostport, ':') {
        match parse_ip(host) {
            Some(ip) => out.ip = Some(ip),
            None if !host.is_empty() => out.host = Some(host.to_string()),
            None => {}
        }
        out.port = port.parse().ok();
    } else if !hostport.is_empty() {
        match parse_ip(hostport) {
            Some(ip) => out.ip = Some(ip),
            None => out.host = Some(hostport.to_string()),
        }
    }
    for param in query.unwrap_or_default().split('&') {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        match key {
            "addrs" => {
                for a in value.split('+') {
                    let ip = host_port(a, '-').and_then(|(h, _)| parse_ip(h));
                    if let Some(ip) = ip.or_else(|| parse_ip(a))
                        && !out.addrs.contains(&ip)
                    {
                        out.addrs.push(ip);
                    }
                }
            }
            "alias" if !value.is_empty() => out.alias = Some(value.to_string()),
            _ => {}
        }
    }
    if out.ip.is_none() {
        out.ip = out.addrs.first().copied();
    }
    Some(out)
}

/// Split `host<sep>port` with an optional `[…]` around the host.
fn host_port(s: &str, sep: char) -> Option<(&str, &str)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(sep)?;
        return Some((host, port));
    }
    s.rsplit_once(sep)
}

/// An IP, accepting the `addrs=` spelling of IPv6 with `-` for `:`.
fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse().ok().or_else(|| {
        if s.contains('-') && !s.contains('.') {
            s.replace('-', ":").parse().ok()
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn modern_with_addrs_and_alias() {
        let s = parse("<10.1.2.3:9618?addrs=10.1.2.3-9618+[2001-db8--1]-9618&alias=wn1.example.org&noUDP&sock=startd_1_2>").unwrap();
        assert_eq!(s.ip, Some(ip("10.1.2.3")));
        assert_eq!(s.port, Some(9618));
        assert_eq!(s.addrs, vec![ip("10.1.2.3"), ip("2001:db8::1")]);
        assert_eq!(s.alias.as_deref(), Some("wn1.example.org"));
    }

    #[test]
    fn ipv6_primary() {
        let s = parse("<[2001:db8::7]:9618?addrs=[2001:db8::7]-9618&alias=v6.example>").unwrap();
        assert_eq!(s.ip, Some(ip("2001:db8::7")));
        assert_eq!(s.addrs, vec![ip("2001:db8::7")]);
        assert_eq!(s.alias.as_deref(), Some("v6.example"));
    }

    #[test]
    fn old_and_odd() {
        let s = parse("<128.105.144.30:32794>").unwrap();
        assert_eq!((s.ip, s.port), (Some(ip("128.105.144.30")), Some(32794)));
        let s = parse("<169.228.38.38:9615?sock=18627_6227_3>").unwrap();
        assert_eq!(s.ip, Some(ip("169.228.38.38")));
        assert_eq!(s.alias, None);
        let s = parse("<submit.example.org:9618>").unwrap();
        assert_eq!(
            (s.ip, s.host.as_deref()),
            (None, Some("submit.example.org"))
        );
        let s = parse("<?addrs=10.0.0.9-9618>").unwrap();
        assert_eq!(s.ip, Some(ip("10.0.0.9")));
        assert_eq!(parse("10.0.0.1:9618"), None);
        assert_eq!(parse(""), None);
        assert!(parse("<>").is_some_and(|s| s.ip.is_none()));
    }
}
