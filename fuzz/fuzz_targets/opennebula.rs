//! Fuzz the OpenNebula decoders (issue 12): the first byte picks the path — the XML framer then
//! the XML decoder on each record (a `VM_POOL`, hook documents, `onevnet show -x`), or the log
//! decoder on each line (`oned.log` / a per-VM log, the VM id from the file name). Never a
//! panic; the raw bytes kept; every address the decoder keeps parses; a VM's identity is
//! always `one-<digits>`.
#![no_main]

use decode::framing::{Framer, framing};
use libfuzzer_sys::fuzz_target;
use model::envelope::RecordEnvelope;
use model::{DecodeHints, Format, Origin, Received, fields};

fn check(format: Format, raw: Vec<u8>) {
    let env = RecordEnvelope {
        received: Received::from_stored(1_760_000_000_000_000_000),
        observer: format.default_observer(),
        format,
        hints: DecodeHints::default(),
        origin: Origin::File { path: "/var/log/one/42.log".into(), line: 1 },
        raw: raw.clone(),
    };
    let event = decode::decode(&env);
    assert_eq!(event.raw, raw);
    for a in event.field(fields::VM_IPS).unwrap_or("").split(',').filter(|a| !a.is_empty()) {
        assert!(a.parse::<std::net::IpAddr>().is_ok(), "vm_ips {a}");
    }
    if let Some(u) = event.field(fields::VM_UUID) {
        assert_eq!(fields::parse_opennebula_vm(u).as_deref(), Some(u), "{u}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let format = if pick % 2 == 0 { Format::OpennebulaXml } else { Format::OpennebulaLog };
    let mut framer = Framer::new(framing(format));
    let mut frames = Vec::new();
    for chunk in rest.chunks(usize::from(pick / 2).max(1)) {
        framer.push(chunk, &mut frames);
    }
    framer.finish(&mut frames);
    assert_eq!(framer.framed_offset(), rest.len() as u64);
    for f in frames {
        check(format, f.raw);
    }
});
