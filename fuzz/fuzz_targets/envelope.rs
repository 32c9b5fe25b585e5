//! Fuzz the ledger envelope reader (model::Envelope::decode): garbage never panics, and
//! anything it accepts re-encodes to the same bytes. The same bytes are also read as a run of
//! stored payloads (u16-length-prefixed) through `Envelope::decode_stored` and a
//! `Reassembler`, as every ledger reader does since split records (envelope v2): no panic,
//! every record it puts together spans positions already fed, in order, each position once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use model::{Envelope, Reassembler};

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = Envelope::decode(data) {
        let again = env.encode();
        assert_eq!(Envelope::decode(&again), Ok(env));
    }
    let mut r = Reassembler::new();
    let mut rest = data;
    let mut seq = 0u64;
    let mut next = 1u64;
    let mut check = |a: model::Assembled, fed: u64| {
        assert!(a.first >= next && a.first <= a.last && a.last <= fed);
        next = a.last + 1;
    };
    while rest.len() >= 2 {
        let n = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
        let (payload, tail) = rest[2..].split_at(n.min(rest.len() - 2));
        rest = tail;
        seq += 1;
        if let Ok(stored) = Envelope::decode_stored(payload) {
            r.push(seq, stored, &mut |a| check(a, seq));
        }
    }
    r.flush(&mut |a| check(a, seq));
});
