//! pugmark's vocabulary: the plain data every other crate speaks.
//!
//! What is here: [`Event`] (one record as observed, DESIGN.md "Events and facts"), the two
//! times an event carries ([`Received`], made only by the collector clock, and [`Reported`],
//! made only by parsers), the [`Observer`] that decides how far an event can be believed,
//! [`Origin`] (where the bytes came from), [`EventClass`], normalised field names
//! ([`fields`]), [`escape_controls`] (record text for a terminal) and the [`Envelope`]: the collector-side record that the ledger stores.
//!
//! What is not here: I/O of any kind, parsing of source formats (crate `decode`), storage
//! (crates `ledger`, `views`). Everything is plain data with serde derives so that the CLI and
//! HTTP layers can print it as JSON.

pub mod envelope;
pub mod event;
pub mod fields;
pub mod flow;
pub mod sender_path;
pub mod text;
pub mod time;

pub use envelope::{
    Assembled, DecodeHints, Envelope, EnvelopeError, Format, Reassembler, Stored, YearRule,
};
pub use event::{Event, EventClass, Observer, Origin, ParseIssue};
pub use flow::FlowRecord;
pub use text::escape_controls;
pub use time::{Received, Reported};
