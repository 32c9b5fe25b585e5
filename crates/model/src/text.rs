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
}
