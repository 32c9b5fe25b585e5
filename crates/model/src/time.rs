//! The two clocks of an event.
//!
//! [`Received`] is the collector's clock: trusted, monotone enough, set when bytes arrive (or,
//! for a file import, when the import ran). [`Reported`] is what the source claims, kept
//! verbatim next to its parsed value. They are distinct newtypes so a claim can never be passed
//! where a trusted time is expected (STYLE.md convention 7).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The collector's clock at reception. Only `Received::now` (the clock) and
/// `Received::from_stored` (reading back what the clock wrote into the ledger) make one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Received(Timestamp);

impl Received {
    /// The collector clock. The one place in pugmark that reads the system time for evidence.
    #[allow(clippy::disallowed_methods)]
    pub fn now() -> Received {
        Received(Timestamp::now())
    }

    /// Rebuild a received time that the clock produced earlier and the ledger kept
    /// (nanoseconds since the Unix epoch). Out-of-range values clamp to the nearest bound.
    pub fn from_stored(unix_nanos: i128) -> Received {
        let ts = Timestamp::from_nanosecond(unix_nanos).unwrap_or(if unix_nanos < 0 {
            Timestamp::MIN
        } else {
            Timestamp::MAX
        });
        Received(ts)
    }

    pub fn timestamp(self) -> Timestamp {
        self.0
    }

    pub fn as_unix_nanos(self) -> i128 {
        self.0.as_nanosecond()
    }
}

/// What the source claims about its own time: the parsed instant when one could be made, and
/// the original text exactly as it appeared (empty when the record carried no timestamp).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Reported {
    /// The claimed instant, if the text could be parsed (for zone-less stamps, with the zone
    /// the import was told to assume; for year-less stamps, with the inferred year).
    pub time: Option<Timestamp>,
    /// The timestamp text as it appeared in the record.
    pub text: String,
}

impl Reported {
    pub fn new(time: Option<Timestamp>, text: impl Into<String>) -> Reported {
        Reported {
            time,
            text: text.into(),
        }
    }

    pub fn none() -> Reported {
        Reported::default()
    }
}
