//! Fuzz the stateful NetFlow/IPFIX decoder and the capture reader.
//!
//! A capture (pcap/pcapng magic) is walked and every UDP payload fed to one decoder, in order.
//! Anything else is fed whole as one datagram (so corpus payload files are seeds as they are),
//! then read as a sequence of datagrams each prefixed by a big-endian u16 length, fed to the
//! same decoder: templates from earlier datagrams meet data in later ones, pending data is
//! held and released. Tight caps make the cap paths reachable. Never a panic; every flow's
//! compact encoding round-trips. The decoder's saved state (`snapshot`) restores under the
//! same limits to the same bytes, and the input read as saved state (`restore`) is refused
//! or restores to a state that saves as those very bytes.
#![no_main]

use std::net::SocketAddr;

use flow::{FlowDecoder, FlowRecord, Limits};
use libfuzzer_sys::fuzz_target;

fn check(records: Vec<FlowRecord>) {
    for r in records {
        let back = FlowRecord::decode(&r.encode()).expect("own encoding decodes");
        assert_eq!(back, r);
    }
}

/// What the decoder saved restores under the same limits, and saves again as the same bytes.
fn check_state(dec: &FlowDecoder, limits: &Limits) {
    let saved = dec.snapshot();
    let back = FlowDecoder::restore(&saved, limits.clone()).expect("own state restores");
    assert_eq!(back.snapshot(), saved);
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_exporters: 4,
        max_templates_per_exporter: 16,
        max_template_fields: 64,
        max_pending_per_exporter: 4,
        max_pending_bytes: 64 * 1024,
        pending_ms: 10,
    };
    if let Ok(dec) = FlowDecoder::restore(data, limits.clone()) {
        assert_eq!(dec.snapshot(), data, "restored state saves as its bytes");
    }
    let mut dec = FlowDecoder::new(limits.clone());
    if flow::pcap::is_capture(data) {
        if let Ok((grams, _)) = flow::pcap::udp_datagrams(data) {
            for (i, g) in grams.iter().enumerate() {
                check(dec.feed(g.src, i as u64, &g.payload, i as i64));
            }
        }
        check_state(&dec, &limits);
        dec.finish();
        return;
    }
    let ex: SocketAddr = SocketAddr::from(([192, 0, 2, 1], 2055));
    check(dec.feed(ex, 0, data, 0));
    let mut rest = data;
    let mut seq = 1u64;
    while rest.len() >= 2 {
        let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let body = &rest[2..];
        let take = n.min(body.len());
        check(dec.feed(ex, seq, &body[..take], seq as i64 * 3));
        rest = &body[take..];
        seq += 1;
    }
    check_state(&dec, &limits);
    dec.finish();
});
