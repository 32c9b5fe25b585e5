//! Fuzz issue 12's identity and payload decoders: SCIM resources (bare, and framed out of a
//! ListResponse built around the input), ARC A-REX job log lines, HTCondor-CE audit log
//! lines, and glexec / LCMAPS syslog lines. Never a panic; the raw bytes kept; a token
//! subject never without its issuer on an audit line.
#![no_main]

use decode::framing::{Framer, Framing};
use libfuzzer_sys::fuzz_target;
use model::envelope::RecordEnvelope;
use model::{DecodeHints, Format, Origin, Received, fields};

fn check(format: Format, raw: Vec<u8>) {
    let env = RecordEnvelope {
        received: Received::from_stored(1_792_000_000_000_000_000),
        observer: format.default_observer(),
        format,
        hints: DecodeHints::default(),
        origin: Origin::File { path: "fuzz".into(), line: 1 },
        raw: raw.clone(),
    };
    let e = decode::decode(&env);
    assert_eq!(e.raw, raw);
    if format == Format::CondorAuditLog && e.field(fields::TOKEN_SUBJECT).is_some() {
        assert!(e.field(fields::TOKEN_ISSUER).is_some());
    }
}

fuzz_target!(|data: &[u8]| {
    let (sel, rest) = data.split_first().map_or((0, data), |(s, r)| (*s, r));
    let text = String::from_utf8_lossy(rest);
    match sel % 5 {
        0 => {
            check(Format::ScimDirectory, rest.to_vec());
            let page = format!(
                "{{\"totalResults\": 1, \"schemas\": [\"urn:ietf:params:scim:api:messages:2.0:ListResponse\"], \"Resources\": [{text}]}}"
            );
            let mut f = Framer::new(Framing::ScimList);
            let mut out = Vec::new();
            f.push(page.as_bytes(), &mut out);
            f.finish(&mut out);
            for fr in out {
                check(Format::ScimDirectory, fr.raw);
            }
        }
        1 => check(Format::ArcJobLog, format!("2026-10-14 09:10:02 Started - job id: {text}").into_bytes()),
        2 => check(Format::CondorAuditLog, format!("10/14/26 09:00:01 (cid:1) (D_AUDIT) {text}").into_bytes()),
        3 => check(Format::Syslog, format!("Oct 14 09:30:00 wn glexec.mon[1#2]: {text}").into_bytes()),
        _ => check(Format::Syslog, format!("Oct 14 09:30:00 wn glexec[1]: LCMAPS CRED FINAL: {text}").into_bytes()),
    }
});
