//! `pugmark ingest --sender-from-path PATTERN`: the sender's address read from a file's path,
//! for central loggers that keep one directory (or file) per sender
//! (`/var/log/remote/%FROMHOST-IP%/…`, docs/SITES.md).
//!
//! The pattern is a path with exactly one `{ip}` placeholder: `/var/log/remote/{ip}/`,
//! `/srv/logs/{ip}.log`, `remote/{ip}/`. It matches a path that begins with the text before
//! the placeholder; the placeholder takes the characters up to the next `/` (one path
//! component) and, when text follows the placeholder in the pattern, up to where that text
//! begins (so `{ip}.log` takes `10.0.0.5` out of `10.0.0.5.log`); that text must follow. What
//! the placeholder took must parse as an IPv4 or IPv6 address (an IPv4-mapped IPv6 address
//! counts as IPv4), else the path does not match. Written by hand: a dozen lines of
//! prefix/suffix matching, where a regex engine would bring a dependency and a second syntax
//! for one placeholder.

use std::net::IpAddr;

/// A parsed `--sender-from-path` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderPattern {
    before: String,
    after: String,
}

/// The placeholder a pattern must hold once.
pub const PLACEHOLDER: &str = "{ip}";

impl SenderPattern {
    /// Parse a pattern; the error says what is wrong in one line.
    pub fn parse(pattern: &str) -> Result<SenderPattern, String> {
        let Some((before, after)) = pattern.split_once(PLACEHOLDER) else {
            return Err(format!(
                "--sender-from-path {pattern:?} has no {PLACEHOLDER} (e.g. /var/log/remote/{PLACEHOLDER}/)"
            ));
        };
        if after.contains(PLACEHOLDER) {
            return Err(format!(
                "--sender-from-path {pattern:?} has {PLACEHOLDER} more than once"
            ));
        }
        Ok(SenderPattern {
            before: before.to_string(),
            after: after.to_string(),
        })
    }

    /// The sender address the path names, or `None` when it does not match.
    pub fn sender(&self, path: &str) -> Option<IpAddr> {
        let rest = path.strip_prefix(self.before.as_str())?;
        let component = rest.split('/').next().unwrap_or("");
        // Text after the placeholder: up to its first occurrence inside the component, or at
        // the component's end when it begins with `/`.
        let (ip, tail) = match self.after.chars().next() {
            None => (component, ""),
            Some('/') => (component, &rest[component.len()..]),
            Some(_) => {
                let at = component.find(self.after.split('/').next().unwrap_or(""))?;
                (&component[..at], &rest[at..])
            }
        };
        if !tail.starts_with(self.after.as_str()) {
            return None;
        }
        let ip: IpAddr = ip.parse().ok()?;
        Some(match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(p: &str, path: &str) -> Option<String> {
        SenderPattern::parse(p)
            .unwrap()
            .sender(path)
            .map(|i| i.to_string())
    }

    #[test]
    fn directories_files_and_v6() {
        let dir = "/var/log/remote/{ip}/";
        assert_eq!(
            s(dir, "/var/log/remote/10.42.0.12/2026-12-06.log").as_deref(),
            Some("10.42.0.12")
        );
        assert_eq!(
            s(dir, "/var/log/remote/2001:db8::7/x.log").as_deref(),
            Some("2001:db8::7")
        );
        assert_eq!(
            s(dir, "/var/log/remote/::ffff:10.1.2.3/x.log").as_deref(),
            Some("10.1.2.3")
        );
        assert_eq!(
            s("/srv/{ip}.log", "/srv/192.0.2.9.log").as_deref(),
            Some("192.0.2.9")
        );
        assert_eq!(
            s("logs/{ip}", "logs/192.0.2.9").as_deref(),
            Some("192.0.2.9")
        );
        assert_eq!(
            s("/r/{ip}/auth/", "/r/192.0.2.9/auth/x.log").as_deref(),
            Some("192.0.2.9")
        );
    }

    #[test]
    fn what_does_not_match() {
        let dir = "/var/log/remote/{ip}/";
        assert_eq!(s(dir, "/var/log/other/10.0.0.1/x.log"), None);
        assert_eq!(s(dir, "/var/log/remote/web01/x.log"), None);
        assert_eq!(
            s(dir, "/var/log/remote/10.0.0.1"),
            None,
            "no / after the address"
        );
        assert_eq!(s("/r/{ip}/auth/", "/r/192.0.2.9/cron/x.log"), None);
        assert_eq!(s("/srv/{ip}.log", "/srv/192.0.2.9.txt"), None);
        assert_eq!(s(dir, ""), None);
    }

    #[test]
    fn bad_patterns_are_explained() {
        assert!(SenderPattern::parse("/var/log/remote/").is_err());
        assert!(SenderPattern::parse("/{ip}/{ip}").is_err());
    }
}
