//! Fuzz the ledger envelope reader (model::Envelope::decode): garbage never panics, and
//! anything it accepts re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use model::Envelope;

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = Envelope::decode(data) {
        let again = env.encode();
        assert_eq!(Envelope::decode(&again), Ok(env));
    }
});
