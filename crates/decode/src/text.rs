//! Small byte helpers shared by the decoders: terminator stripping, lossy text, token scans.
//! Everything here is linear in its input and panic-free on any bytes.

/// Strip one line terminator (`\n`, `\r\n`) and any further trailing `\r`. The raw bytes keep
/// what they were given; only the parsed view loses the terminator.
pub(crate) fn strip_terminators(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    if end > 0 && line[end - 1] == b'\n' {
        end -= 1;
    }
    while end > 0 && line[end - 1] == b'\r' {
        end -= 1;
    }
    &line[..end]
}

/// Lossy UTF-8 text of some bytes.
pub(crate) fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Index of the first byte at or after `from` that is not a space (or `b.len()`).
pub(crate) fn skip_spaces(b: &[u8], from: usize) -> usize {
    let mut i = from;
    while i < b.len() && b[i] == b' ' {
        i += 1;
    }
    i
}

/// End (exclusive) of the token starting at `from`: the next space, or `b.len()`.
pub(crate) fn token_end(b: &[u8], from: usize) -> usize {
    match b.get(from..) {
        Some(rest) => memchr::memchr(b' ', rest).map_or(b.len(), |i| from + i),
        None => b.len(),
    }
}
