//! Fuzz the readers of the `rbd`/`ceph` CLIs' JSON (crates/rbd/src/json.rs): the first byte
//! picks the reader, the rest is the output. Never a panic; a parsed trash entry's times are
//! what its own strings say.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbd::json;

fuzz_target!(|data: &[u8]| {
    let (sel, rest) = data.split_first().map_or((0, data), |(s, r)| (*s, r));
    match sel % 6 {
        0 => {
            let _ = json::parse_info(rest);
        }
        1 => {
            let _ = json::parse_list(rest);
        }
        2 => {
            let _ = json::parse_snaps(rest);
        }
        3 => {
            let _ = json::parse_health(rest);
        }
        4 => {
            if let Ok(entries) = json::parse_trash(rest) {
                for e in entries {
                    if let Some(t) = e.protected_until {
                        let s = e.status.strip_prefix("protected until ").unwrap_or_default();
                        assert_eq!(json::parse_ctime(s), Some(t));
                    }
                }
            }
        }
        _ => {
            let _ = json::parse_pool_free(rest, "pugmark-evidence");
            let _ = json::parse_ctime(&String::from_utf8_lossy(rest));
        }
    }
});
