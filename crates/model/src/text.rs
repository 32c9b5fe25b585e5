//! Text for a terminal: what a record says, with the bytes that would act on the analyst's
//! terminal shown instead of sent.
//!
//! A VM's user writes its syslog; a line holding `ESC[2J` (clear screen), `ESC]0;…BEL` (set
//! the window title), CR or backspace (overwrite what was printed before), or a newline (print
//! a line that looks like another hit) must not reach the terminal raw. Every text renderer
//! (search, hunt, timeline, who, report text/markdown, check, status) passes strings that came
//! from records through [`escape_controls`]; `--json` does not (serde writes control
//! characters as JSON escapes, so the original string round-trips), nor does report HTML
//! (HTML-escaped, and a browser does not act on control characters).
//!
//! Escaped: C0 controls except TAB (`\x1b`, `\r`, `\n`, `\x08`, …), DEL (`\x7f`), C1 controls
//! U+0080–U+009F (`\u{9b}`: some terminals act on them in UTF-8 too) and the Unicode
//! bidirectional controls (`\u{202e}`: they reorder what is shown, "Trojan Source"). Kept: TAB
//! (it moves the cursor forward only, and log lines use it as a separator) and every other
//! character. A backslash is not doubled: text output is for reading, `--json` is the exact form.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` is shown escaped (see the module docs).
pub fn is_escaped(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every control character shown as an escape (see the module docs); borrowed when
/// there is none, which is almost always.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_escaped) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !is_escaped(c) {
            out.push(c);
            continue;
        }
        // `write!` to a String cannot fail.
        let _ = match c {
            '\n' => out.write_str("\\n"),
            '\r' => out.write_str("\\r"),
            c if u32::from(c) < 0x80 => write!(out, "\\x{:02x}", u32::from(c)),
            c => write!(out, "\\u{{{:x}}}", u32::from(c)),
        };
    }
    Cow::Owned(out)
}

/// `ip.to_string()`, without the formatter for IPv4 (decoders write an address into several
/// fields of every NAT and netfilter record: `Display` was ~8 % of NAT ingest's CPU).
pub fn ip_string(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(a) => {
            let mut s = String::with_capacity(15);
            for (i, o) in a.octets().into_iter().enumerate() {
                if i > 0 {
                    s.push('.');
                }
                if o >= 100 {
                    s.push(char::from(b'0' + o / 100));
                }
                if o >= 10 {
                    s.push(char::from(b'0' + o / 10 % 10));
                }
                s.push(char::from(b'0' + o % 10));
            }
            s
        }
        v6 => v6.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_sequences_are_shown_not_sent() {
        let cases = [
            ("plain text", "plain text"),
            ("tab\tkept", "tab\tkept"),
            ("\x1b[2Jcleared", "\\x1b[2Jcleared"),
            ("\x1b]0;pwned\x07title", "\\x1b]0;pwned\\x07title"),
            ("over\rwrite", "over\\rwrite"),
            ("two\nlines", "two\\nlines"),
            ("back\x08space\x7f", "back\\x08space\\x7f"),
            ("nul\0", "nul\\x00"),
            ("csi\u{9b}2J", "csi\\u{9b}2J"),
            ("abc\u{202e}fed", "abc\\u{202e}fed"),
            ("Straße é ✓ \\x1b", "Straße é ✓ \\x1b"),
        ];
        for (input, shown) in cases {
            assert_eq!(escape_controls(input), shown, "{input:?}");
            assert!(
                !escape_controls(input)
                    .chars()
                    .any(|c| c.is_control() && c != '\t'),
                "{input:?}"
            );
        }
        assert!(matches!(escape_controls("no controls"), Cow::Borrowed(_)));
    }

    #[test]
    fn ip_string_is_display() {
        for o in 0..=255u8 {
            for ip in [
                std::net::IpAddr::from([o, 0, 10, 255 - o]),
                std::net::IpAddr::from([1, o, 100, 9]),
                std::net::IpAddr::from([0, 0, 0, o]),
            ] {
                assert_eq!(super::ip_string(ip), ip.to_string());
            }
        }
        for v6 in ["2001:db8::1", "::ffff:1.2.3.4", "fe80::1"] {
            let ip: std::net::IpAddr = v6.parse().unwrap_or(std::net::IpAddr::from([0u8; 16]));
            assert_eq!(super::ip_string(ip), ip.to_string());
        }
    }
}
