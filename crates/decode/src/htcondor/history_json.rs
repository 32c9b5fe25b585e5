//! (being written) history_json decoder.

use model::{DecodeHints, Event};

/// Fill `ev` from its raw bytes. Never fails: what is not understood becomes a parse issue.
pub fn parse_into(ev: &mut Event, _hints: &DecodeHints) {
    crate::decode_raw(
        ev,
        "unsupported_format",
        "a format this build decodes (decoder not written yet)",
    );
}
