//! Print the flows the decoder finds in capture or payload files, replayed in order as one
//! exporter stream (a debugging aid: `cargo run -p flow --example flowdump -- FILE...`).
use std::net::SocketAddr;

fn main() {
    let mut dec = flow::FlowDecoder::default();
    let unknown: SocketAddr = SocketAddr::from(([0, 0, 0, 0], 0));
    let mut seq = 1;
    for f in std::env::args().skip(1) {
        let Ok(bytes) = std::fs::read(&f) else {
            eprintln!("cannot read {f}");
            continue;
        };
        let grams = if flow::pcap::is_capture(&bytes) {
            flow::pcap::udp_datagrams(&bytes)
                .map(|(g, _)| g.into_iter().map(|g| (g.src, g.payload)).collect())
                .unwrap_or_default()
        } else {
            vec![(unknown, bytes)]
        };
        for (src, payload) in grams {
            for r in dec.feed(src, seq, &payload, 0) {
                println!("{r:?}");
            }
            seq += 1;
        }
    }
    dec.finish();
    println!("{:?}", dec.stats());
}
