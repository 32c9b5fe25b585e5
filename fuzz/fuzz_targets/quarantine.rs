//! Fuzz the quarantine's decoders of outside input (issue 13): the first byte picks one —
//! 0: a custody record in syslog (`pugmark-quarantine` … `custody {JSON}`) decoded as the
//! collector would (class `vm.custody` only with a step; the raw bytes kept); 1: a libvirt
//! domain XML from the hook's stdin; 2: an OpenNebula VM XML. Never a panic; every disk a
//! parse returns is a path under the datastores or a pool/image, and a UUID is lowercase.
#![no_main]

use libfuzzer_sys::fuzz_target;
use model::envelope::RecordEnvelope;
use model::{DecodeHints, EventClass, Format, Observer, Origin, Received};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    match pick % 3 {
        0 => {
            let mut raw = b"<110>1 2026-12-06T07:00:00Z hv1 pugmark-quarantine - custody - custody ".to_vec();
            raw.extend_from_slice(rest);
            for observer in [Observer::Collector, Observer::Vm, Observer::Image] {
                let env = RecordEnvelope {
                    received: Received::from_stored(1_760_000_000_000_000_000),
                    observer,
                    format: Format::Syslog,
                    hints: DecodeHints::default(),
                    origin: Origin::File { path: "q-1:u@/var/log/secure".into(), line: 1 },
                    raw: raw.clone(),
                };
                let e = decode::decode(&env);
                assert_eq!(e.raw, raw);
                if e.class == EventClass::VmCustody {
                    assert_eq!(observer, Observer::Collector);
                    assert!(e.field("custody_step").is_some());
                }
            }
        }
        1 => {
            if let Ok(d) = quarantine::libvirt::domain_disks(&String::from_utf8_lossy(rest)) {
                assert!(quarantine::libvirt::is_uuid(&d.vm_uuid));
                assert_eq!(d.vm_uuid, d.vm_uuid.to_ascii_lowercase());
            }
        }
        _ => {
            let ds = std::path::Path::new("/var/lib/one/datastores");
            if let Ok(d) = quarantine::libvirt::one_vm_disks(&String::from_utf8_lossy(rest), ds) {
                for (s, _) in d.disks {
                    if let quarantine::Source::Path { path } = s {
                        assert!(path.starts_with(ds), "{}", path.display());
                        assert!(!path.components().any(|c| c == std::path::Component::ParentDir));
                    }
                }
            }
        }
    }
});
