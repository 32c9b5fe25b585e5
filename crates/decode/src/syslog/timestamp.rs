//! Syslog timestamps: recognising them in bytes and turning them into instants.
//!
//! Shapes: RFC 3339 (`2026-10-14T08:00:01.123456+02:00`, up to 9 fraction digits, `Z` or
//! `±hh:mm`, or no zone at all) and BSD (`Mmm dd hh:mm:ss`, any case, one or two spaces or a
//! zero before a one-digit day, an optional year before the time as rsyslog accepts, an
//! optional fraction, an optional trailing `:`). A stamp without a zone is read in the zone of
//! [`DecodeHints::tz`] (IANA name or fixed offset; UTC when unset); a stamp without a year gets
//! one from [`YearRule`]. Recognition is separate from resolution so that the text can be kept
//! verbatim even when it cannot be made into an instant.

use std::cell::RefCell;

use jiff::civil::DateTime;
use jiff::tz::{Offset, TimeZone};
use jiff::{SignedDuration, Timestamp};
use model::envelope::{DecodeHints, YearRule};

/// A recognised timestamp, before hints are applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Stamp {
    /// Carried its own offset: an instant already.
    Instant(Timestamp),
    /// Date and time without a zone.
    Civil(DateTime),
    /// BSD: no year, no zone.
    YearLess {
        month: i8,
        day: i8,
        hour: i8,
        minute: i8,
        second: i8,
        nanos: i32,
    },
    /// Recognised shape, but the values are impossible (`Feb 30`, `25:00:00`).
    Invalid,
}

/// A timestamp found at the start of some bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Found {
    pub stamp: Stamp,
    /// Length of the timestamp text (what `Reported.text` keeps).
    pub text_len: usize,
    /// Bytes consumed, including a trailing `:` some senders add.
    pub consumed: usize,
}

/// Either shape at the start of `b`, followed by a space or the end.
pub(crate) fn parse_any(b: &[u8]) -> Option<Found> {
    parse_rfc3339(b).or_else(|| parse_bsd(b))
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<i32> {
    let s = b.get(at..at + n)?;
    let mut v = 0i32;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i32::from(c - b'0');
    }
    Some(v)
}

fn at_boundary(b: &[u8], i: usize) -> bool {
    i >= b.len() || b[i] == b' '
}

/// Fraction digits after a `.` at `at` (which must be the `.`): (nanos, bytes used incl. dot).
fn fraction(b: &[u8], at: usize) -> Option<(i32, usize)> {
    if b.get(at) != Some(&b'.') {
        return Some((0, 0));
    }
    let mut i = at + 1;
    let mut nanos = 0i32;
    let mut n = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        if n == 9 {
            return None;
        }
        nanos = nanos * 10 + i32::from(b[i] - b'0');
        n += 1;
        i += 1;
    }
    if n == 0 {
        return None;
    }
    for _ in n..9 {
        nanos *= 10;
    }
    Some((nanos, i - at))
}

fn small(v: i32) -> i8 {
    i8::try_from(v).unwrap_or(i8::MAX)
}

/// RFC 3339 / ISO 8601 with `T` (or a space, as some daemons write). Returns None when the shape is not there at all.
pub(crate) fn parse_rfc3339(b: &[u8]) -> Option<Found> {
    let year = digits(b, 0, 4)?;
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || b.get(13) != Some(&b':') {
        return None;
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) || b.get(16) != Some(&b':') {
        return None;
    }
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    let hour = digits(b, 11, 2)?;
    let minute = digits(b, 14, 2)?;
    let second = digits(b, 17, 2)?;
    let (nanos, flen) = fraction(b, 19)?;
    let mut i = 19 + flen;
    let mut offset: Option<i32> = None;
    match b.get(i) {
        Some(b'Z' | b'z') => {
            offset = Some(0);
            i += 1;
        }
        Some(&sign @ (b'+' | b'-')) => {
            let oh = digits(b, i + 1, 2)?;
            let (om, used) = if b.get(i + 3) == Some(&b':') {
                (digits(b, i + 4, 2)?, 6)
            } else if let Some(m) = digits(b, i + 3, 2) {
                (m, 5)
            } else {
                (0, 3)
            };
            let secs = (oh * 3600 + om * 60) * if sign == b'-' { -1 } else { 1 };
            offset = Some(secs);
            i += used;
        }
        _ => {}
    }
    if !at_boundary(b, i) {
        return None;
    }
    let second = second.min(59); // a leap second is kept in the text, read as :59
    let civil = DateTime::new(
        i16::try_from(year).unwrap_or(i16::MAX),
        small(month),
        small(day),
        small(hour),
        small(minute),
        small(second),
        nanos,
    );
    let stamp = match (civil, offset) {
        (Err(_), _) => Stamp::Invalid,
        (Ok(dt), None) => Stamp::Civil(dt),
        (Ok(dt), Some(secs)) => match Offset::from_seconds(secs).and_then(|o| o.to_timestamp(dt)) {
            Ok(ts) => Stamp::Instant(ts),
            Err(_) => Stamp::Invalid,
        },
    };
    Some(Found {
        stamp,
        text_len: i,
        consumed: i,
    })
}

const MONTHS: [&[u8; 3]; 12] = [
    b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec",
];

fn month_of(b: &[u8]) -> Option<i8> {
    let m = b.get(..3)?;
    let lower = [
        m[0].to_ascii_lowercase(),
        m[1].to_ascii_lowercase(),
        m[2].to_ascii_lowercase(),
    ];
    MONTHS
        .iter()
        .position(|name| **name == lower)
        .and_then(|p| i8::try_from(p + 1).ok())
}

/// `hh:mm:ss` at `at`.
fn clock(b: &[u8], at: usize) -> Option<(i32, i32, i32)> {
    if b.get(at + 2) != Some(&b':') || b.get(at + 5) != Some(&b':') {
        return None;
    }
    Some((
        digits(b, at, 2)?,
        digits(b, at + 3, 2)?,
        digits(b, at + 6, 2)?,
    ))
}

/// BSD `Mmm dd hh:mm:ss` and the variants rsyslog accepts.
pub(crate) fn parse_bsd(b: &[u8]) -> Option<Found> {
    let month = month_of(b)?;
    let mut i = 3;
    if b.get(i) != Some(&b' ') {
        return None;
    }
    while b.get(i) == Some(&b' ') {
        i += 1;
    }
    let day = if let Some(d) = digits(b, i, 2) {
        i += 2;
        d
    } else {
        let d = digits(b, i, 1)?;
        i += 1;
        d
    };
    if b.get(i) != Some(&b' ') {
        return None;
    }
    i += 1;
    // rsyslog accepts `Mmm dd yyyy hh:mm:ss`; the year then is the sender's word.
    let mut year = None;
    if let Some(y) = digits(b, i, 4)
        && b.get(i + 4) == Some(&b' ')
    {
        year = Some(y);
        i += 5;
    }
    let (hour, minute, second) = clock(b, i)?;
    i += 8;
    let (nanos, flen) = fraction(b, i)?;
    i += flen;
    let text_len = i;
    let mut consumed = i;
    if b.get(i) == Some(&b':') {
        consumed += 1;
    }
    if !at_boundary(b, consumed) {
        return None;
    }
    let (hour, minute, second, day) = (
        small(hour),
        small(minute),
        small(second.min(59)),
        small(day),
    );
    let stamp = match year {
        Some(y) => match DateTime::new(
            i16::try_from(y).unwrap_or(i16::MAX),
            month,
            day,
            hour,
            minute,
            second,
            nanos,
        ) {
            Ok(dt) => Stamp::Civil(dt),
            Err(_) => Stamp::Invalid,
        },
        None => {
            // Validate what can be validated without a year (Feb 29 needs one).
            match DateTime::new(2000, month, day, hour, minute, second, nanos) {
                Ok(_) => Stamp::YearLess {
                    month,
                    day,
                    hour,
                    minute,
                    second,
                    nanos,
                },
                Err(_) => Stamp::Invalid,
            }
        }
    };
    Some(Found {
        stamp,
        text_len,
        consumed,
    })
}

/// Why a recognised stamp could not become an instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ResolveError {
    /// The values are impossible, or the year rule found no year in which the date exists.
    Impossible,
}

/// The zone for zone-less stamps, from the hints. `Err(name)` when the name is not a zone
/// (the caller records an issue and UTC is used).
pub(crate) fn zone(hints: &DecodeHints) -> Result<TimeZone, String> {
    let Some(name) = hints.tz.as_deref() else {
        return Ok(TimeZone::UTC);
    };
    thread_local! {
        // Looking a zone up by name costs more than parsing a line; files use one zone.
        static LAST: RefCell<Option<(String, Result<TimeZone, String>)>> = const { RefCell::new(None) };
    }
    LAST.with(|cell| {
        let mut cache = cell.borrow_mut();
        if let Some((cached, result)) = cache.as_ref()
            && cached == name
        {
            return result.clone();
        }
        let result = lookup_zone(name);
        *cache = Some((name.to_string(), result.clone()));
        result
    })
}

fn lookup_zone(name: &str) -> Result<TimeZone, String> {
    let n = name.trim();
    if n.eq_ignore_ascii_case("utc") || n == "Z" {
        return Ok(TimeZone::UTC);
    }
    if let Some(first) = n.bytes().next()
        && (first == b'+' || first == b'-')
    {
        let b = n.as_bytes();
        let sign = if first == b'-' { -1 } else { 1 };
        let hours = digits(b, 1, 2);
        let minutes = match b.len() {
            3 => Some(0),
            5 => digits(b, 3, 2),
            6 if b[3] == b':' => digits(b, 4, 2),
            _ => None,
        };
        if let (Some(h), Some(m)) = (hours, minutes)
            && h <= 25
            && m < 60
            && let Ok(off) = Offset::from_seconds(sign * (h * 3600 + m * 60))
        {
            return Ok(TimeZone::fixed(off));
        }
        return Err(name.to_string());
    }
    TimeZone::get(n).map_err(|_| name.to_string())
}

/// Make an instant of a stamp, applying the zone and the year rule.
pub(crate) fn resolve(
    stamp: Stamp,
    tz: &TimeZone,
    year: YearRule,
    received: Timestamp,
) -> Result<Timestamp, ResolveError> {
    match stamp {
        Stamp::Instant(ts) => Ok(ts),
        Stamp::Civil(dt) => tz.to_timestamp(dt).map_err(|_| ResolveError::Impossible),
        Stamp::Invalid => Err(ResolveError::Impossible),
        Stamp::YearLess {
            month,
            day,
            hour,
            minute,
            second,
            nanos,
        } => {
            let make = |y: i16| {
                DateTime::new(y, month, day, hour, minute, second, nanos)
                    .ok()
                    .and_then(|dt| tz.to_timestamp(dt).ok())
            };
            match year {
                YearRule::Fixed(y) => make(y).ok_or(ResolveError::Impossible),
                YearRule::Reference(reference) => latest_year(reference, tz, make),
                YearRule::FromReceived => latest_year(received, tz, make),
            }
        }
    }
}

/// The latest year in which the stamp is not more than one day after the reference
/// (New-Year rollover: `Dec 31` read with a reference of Jan 2 is last year's). Looks back up
/// to 8 years so a `Feb 29` finds its leap year.
fn latest_year(
    reference: Timestamp,
    tz: &TimeZone,
    make: impl Fn(i16) -> Option<Timestamp>,
) -> Result<Timestamp, ResolveError> {
    let limit = reference
        .checked_add(SignedDuration::from_hours(24))
        .unwrap_or(reference);
    let ref_year = tz.to_datetime(reference).year();
    let mut y = ref_year.saturating_add(1);
    let lowest = ref_year.saturating_sub(8);
    while y >= lowest {
        if let Some(ts) = make(y)
            && ts <= limit
        {
            return Ok(ts);
        }
        if y == i16::MIN {
            break;
        }
        y -= 1;
    }
    Err(ResolveError::Impossible)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bsd_variants() {
        for (s, len) in [
            ("Mar  7 19:06:53 x", 15),
            ("Mar 7 19:06:53 x", 14),
            ("AUG 10 22:18:24 x", 15),
            ("Mar 7 2008 19:06:53: x", 19),
            ("Aug 03 21:39:20", 15),
        ] {
            let f = parse_bsd(s.as_bytes());
            assert_eq!(f.map(|f| f.text_len), Some(len), "{s}");
        }
        assert!(parse_bsd(b"Mar 7 19:06:53x").is_none());
        assert!(parse_bsd(b"Mat 7 19:06:53").is_none());
    }

    #[test]
    fn rfc3339_variants() {
        let f = parse_rfc3339(b"2003-08-24T05:14:15.000003-07:00 h");
        assert_eq!(
            f.map(|f| f.stamp),
            Some(Stamp::Instant(
                "2003-08-24T12:14:15.000003Z".parse().unwrap_or_default()
            ))
        );
        assert!(parse_rfc3339(b"2003-08-24T05:14:15.1234567891Z").is_none());
        assert!(matches!(
            parse_rfc3339(b"2003-08-24T05:14:15").map(|f| f.stamp),
            Some(Stamp::Civil(_))
        ));
    }

    #[test]
    fn zones() {
        let h = |tz: &str| DecodeHints {
            year: YearRule::FromReceived,
            tz: Some(tz.to_string()),
        };
        assert!(zone(&h("Europe/Zurich")).is_ok());
        assert!(zone(&h("+02:00")).is_ok());
        assert!(zone(&h("-0530")).is_ok());
        assert!(zone(&h("Mars/Olympus")).is_err());
        assert!(zone(&h("+2:00")).is_err());
    }
}
