//! Issue 12's identity and payload sources against samples written from each producer's code
//! (testdata/grid/): INDIGO IAM SCIM exports (shapes from iam-login-service
//! `it/infn/mw/iam/api/scim/model/` — ScimUser, ScimIndigoUser, ScimOidcId, ScimSshKey,
//! ScimX509Certificate, ScimGroup, ScimListResponse), ARC A-REX job log lines (nordugrid/arc
//! `src/services/a-rex/grid-manager/log/JobLog.cpp`), an HTCondor-CE audit log (HTCondor
//! `schedd.cpp` AuditLogNewConnection / AuditLogJobProxy, `qmgmt_receivers.cpp`
//! CONDOR_NewProc; the example in htcondor-ce's operation docs), glexec / LCMAPS syslog lines
//! (lcmaps-namespace's `glexec.mon[%d#%ld]: Started, target uid %d`, glideinWMS's glexec
//! monitor parser for `Used DN/VO/FQAN`), and job ads with WLCG tokens (HTCondor's
//! AuthToken* job attributes). Bad input — SCIM documents with missing fields, a token subject
//! without an issuer, truncated lines — is kept raw with issues, never a panic.

use std::path::PathBuf;

use decode::framing::{Framer, framing};
use model::envelope::{DecodeHints, Format, RecordEnvelope, YearRule};
use model::{Event, EventClass, Observer, Origin, Received, fields};

fn testdata(rel: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/grid")
        .join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

fn dec(format: Format, raw: &[u8]) -> Event {
    decode::decode(&RecordEnvelope {
        received: Received::from_stored(1_792_000_000_000_000_000), // 2026-10-14
        observer: Observer::Vo,
        format,
        hints: DecodeHints {
            year: YearRule::Fixed(2026),
            tz: None,
        },
        origin: Origin::File {
            path: "test".into(),
            line: 1,
        },
        raw: raw.to_vec(),
    })
}

/// The file framed as ingest frames it, each record decoded; detection checked first.
fn file(name: &str, format: Format) -> Vec<Event> {
    let bytes = testdata(name);
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').take(50).collect();
    assert_eq!(decode::detect(&lines), format, "{name} detected");
    let mut f = Framer::new(framing(format));
    let mut out = Vec::new();
    f.push(&bytes, &mut out);
    f.finish(&mut out);
    out.iter().map(|fr| dec(format, &fr.raw)).collect()
}

#[test]
fn iam_scim_users_become_directory_entries_with_oidc_ids_certificates_and_keys() {
    let evs = file("iam-scim-users.json", Format::ScimDirectory);
    // head, 3 resources, tail
    assert_eq!(
        evs.len(),
        5,
        "{:?}",
        evs.iter().map(|e| &e.message).collect::<Vec<_>>()
    );
    assert!(
        evs[0].message.contains("totalResults=3"),
        "{}",
        evs[0].message
    );
    assert!(evs[0].issues.is_empty() && evs[4].issues.is_empty());
    let jane = &evs[1];
    assert_eq!(jane.class, EventClass::IdentityDirectory);
    assert!(jane.issues.is_empty(), "{:?}", jane.issues);
    let f = |k: &str| jane.field(k).map(str::to_string);
    assert_eq!(
        f(fields::SCIM_ID).as_deref(),
        Some("73f16d93-2441-4a50-88ff-85360d78c6b5")
    );
    assert_eq!(f(fields::USER_NAME).as_deref(), Some("jdoe"));
    assert_eq!(f(fields::PERSON_NAME).as_deref(), Some("Jane Doe"));
    assert_eq!(f(fields::EMAIL).as_deref(), Some("jane.doe@example.org"));
    assert_eq!(f(fields::GROUPS).as_deref(), Some("atlas,atlas/production"));
    assert_eq!(
        f(fields::OIDC_IDS).as_deref(),
        Some("https://accounts.google.com 105440632287425289613")
    );
    assert_eq!(
        f(fields::CERT_DNS).as_deref(),
        Some("CN=Jane Doe,OU=Users,O=Example,DC=example,DC=org")
    );
    assert_eq!(
        f(fields::ISSUER_ORIGIN).as_deref(),
        Some("https://iam.example.org")
    );
    assert!(f(fields::SSH_KEYS).is_some_and(|k| k.starts_with("SHA256:")));
    assert_eq!(f(fields::ACTIVE).as_deref(), Some("true"));
    // Given + family name when there is no `formatted`.
    assert_eq!(evs[2].field(fields::PERSON_NAME), Some("Mal Ory"));
    // No id: kept, not a directory entry.
    assert_eq!(evs[3].class, EventClass::Other);
    assert!(evs[3].issues.iter().any(|i| i.kind == "missing_field"));
    for e in &evs {
        assert!(!e.raw.is_empty());
    }
}

#[test]
fn scim_groups_and_bad_documents() {
    let evs = file("iam-scim-groups.json", Format::ScimDirectory);
    assert_eq!(evs.len(), 3);
    let g = &evs[1];
    assert_eq!(g.field("directory"), Some("group"));
    assert_eq!(g.field(fields::USER_NAME), Some("atlas"));
    assert_eq!(
        g.field(fields::MEMBERS).map(|m| m.split(',').count()),
        Some(2)
    );
    // Wrong types, unknown resources, not JSON: issues, never a panic, raw kept.
    for (raw, kind) in [
        (&br#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"id":"x","emails":"a@b"}"#[..], "wrong_type"),
        (br#"{"schemas":["urn:example:Thing"],"id":"x"}"#, "unknown_resource"),
        (br#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"id":"x","urn:indigo-dc:scim:schemas:IndigoUser":{"oidcIds":[{"issuer":"https://i"}]}}"#, "missing_field"),
        (b"{\"id\": ", "bad_json"),
        (b"[1]", "not_object"),
    ] {
        let e = dec(Format::ScimDirectory, raw);
        assert!(e.issues.iter().any(|i| i.kind == kind), "{kind}: {:?}", e.issues);
        assert_eq!(e.raw, raw);
    }
}

#[test]
fn arc_job_log_started_and_finished() {
    let evs = file("arc-jobs.log", Format::ArcJobLog);
    assert_eq!(evs.len(), 3);
    let s = &evs[0];
    assert_eq!(s.class, EventClass::JobRun);
    assert_eq!(
        s.field(fields::JOB_ID),
        Some("arc:4fJNDmQ7yQsnK2Nbq5Mbms9oABFKDmABFKDmoGFKDmABFKDmlxyPDm")
    );
    assert_eq!(s.field(fields::TARGET_UID), Some("40012:40000"));
    assert_eq!(
        s.field(fields::DN),
        Some("/DC=ch/DC=cern/OU=Organic Units/OU=Users/CN=mallory/CN=123456/CN=Mal Ory")
    );
    assert_eq!(s.field(fields::PAYLOAD_PHASE), Some("start"));
    assert_eq!(s.field(fields::JOB_START), Some("2026-10-14T09:10:02Z"));
    assert_eq!(s.field("queue"), Some("grid"));
    let f = &evs[1];
    assert_eq!(f.field(fields::PAYLOAD_PHASE), Some("end"));
    assert_eq!(f.field(fields::JOB_END), Some("2026-10-14T10:42:55Z"));
    assert_eq!(f.field("lrms_id"), Some("881234"));
    assert_eq!(
        f.field("failure"),
        Some("Job \"payload\" was killed by signal 9")
    );
    // Cut short inside a quoted value: kept with an issue, no fields guessed.
    assert_eq!(evs[2].class, EventClass::Other);
    assert!(evs[2].issues.iter().any(|i| i.kind == "bad_value"));
}

#[test]
fn ce_audit_log_lines_carry_their_connection_and_identity() {
    let evs = file("ce-AuditLog", Format::CondorAuditLog);
    assert_eq!(evs.len(), 10);
    let auth = &evs[1];
    assert_eq!(auth.field(fields::CORRELATION), Some("cid:130"));
    assert_eq!(
        auth.field(fields::TOKEN_ISSUER),
        Some("https://iam.example.org/")
    );
    assert_eq!(
        auth.field(fields::TOKEN_SUBJECT),
        Some("73f16d93-2441-4a50-88ff-85360d78c6b5")
    );
    assert_eq!(
        auth.field(fields::USER),
        Some("atlasprd@users.htcondor.org")
    );
    assert_eq!(
        auth.reported.time.map(|t| t.to_string()).as_deref(),
        Some("2026-10-14T09:00:01Z")
    );
    let sub = &evs[2];
    assert_eq!(sub.class, EventClass::JobRun);
    assert_eq!(sub.field(fields::JOB_ID), Some("2758.0"));
    assert_eq!(sub.field(fields::PAYLOAD_SOURCE), Some("ce-audit"));
    assert_eq!(evs[0].field(fields::SRC_IP), Some("192.0.2.40"));
    assert!(
        evs[4]
            .field(fields::DN)
            .is_some_and(|d| d.ends_with("CN=Mal Ory"))
    );
    assert_eq!(evs[7].field(fields::VO), Some("atlas"));
    // A token method whose AuthId has no issuer part: kept, flagged, no subject guessed.
    let bad = &evs[9];
    assert!(bad.issues.iter().any(|i| i.kind == "token_without_issuer"));
    assert_eq!(bad.field(fields::TOKEN_SUBJECT), None);
}

#[test]
fn glexec_lines_are_payload_starts_ends_and_identity_fragments() {
    let evs = file("glexec.log", Format::Syslog);
    assert_eq!(evs.len(), 8);
    let cred = &evs[0];
    assert_eq!(cred.field(fields::PAYLOAD_SOURCE), Some("glexec"));
    assert_eq!(cred.field(fields::TARGET_UID), Some("40042"));
    assert!(
        cred.field(fields::DN)
            .is_some_and(|d| d.ends_with("CN=Mal Ory"))
    );
    let start = &evs[1];
    assert_eq!(start.class, EventClass::JobRun);
    assert_eq!(
        start.field(fields::JOB_ID),
        Some("glexec:atlas-wn-06:20413#20414")
    );
    assert_eq!(start.field(fields::TARGET_UID), Some("40042"));
    assert_eq!(start.field(fields::JOB_START), Some("2026-10-14T09:30:00Z"));
    for e in &evs[2..5] {
        assert_eq!(
            e.field(fields::CORRELATION),
            Some("glexec.mon:20413#20414"),
            "{}",
            e.message
        );
    }
    assert_eq!(evs[3].field(fields::VO), Some("atlas"));
    assert_eq!(
        evs[4].field(fields::FQAN),
        Some("/atlas/Role=NULL/Capability=NULL")
    );
    let end = &evs[5];
    assert_eq!(end.field(fields::PAYLOAD_PHASE), Some("end"));
    assert_eq!(
        end.field(fields::JOB_ID),
        Some("glexec:atlas-wn-06:20413#20414")
    );
    // Truncated: kept, flagged, nothing guessed.
    for e in &evs[6..] {
        assert!(
            e.issues.iter().any(|i| i.kind == "truncated_glexec"),
            "{}: {:?}",
            e.message,
            e.issues
        );
        assert_eq!(e.field(fields::DN), None);
        assert_eq!(e.class, EventClass::Other);
    }
}

#[test]
fn job_ads_with_wlcg_tokens() {
    let ad = br#"[
{"ClusterId": 2758, "ProcId": 0, "GlobalJobId": "ce01.example.org#2758.0#1792000000", "Owner": "atlasprd",
 "AuthTokenSubject": "73f16d93-2441-4a50-88ff-85360d78c6b5", "AuthTokenIssuer": "https://iam.example.org/",
 "AuthTokenId": "a1b2c3", "AuthTokenScopes": "compute.create,compute.read", "AuthTokenGroups": "/atlas/production,/atlas",
 "JobStatus": 2, "JobCurrentStartDate": 1792000800, "StartdIpAddr": "<10.20.0.20:9618>"},
{"ClusterId": 2760, "ProcId": 0, "Owner": "atlasprd", "AuthTokenSubject": "orphan-subject", "JobStatus": 2, "JobCurrentStartDate": 1792000800}
]"#;
    let mut f = Framer::new(framing(Format::CondorHistoryJson));
    let mut out = Vec::new();
    f.push(ad, &mut out);
    f.finish(&mut out);
    let evs: Vec<Event> = out
        .iter()
        .map(|fr| dec(Format::CondorHistoryJson, &fr.raw))
        .collect();
    let e = &evs[0];
    assert_eq!(
        e.field(fields::TOKEN_ISSUER),
        Some("https://iam.example.org/")
    );
    assert_eq!(
        e.field(fields::TOKEN_SUBJECT),
        Some("73f16d93-2441-4a50-88ff-85360d78c6b5")
    );
    assert_eq!(e.field(fields::TOKEN_ID), Some("a1b2c3"));
    assert_eq!(
        e.field(fields::TOKEN_SCOPES),
        Some("compute.create,compute.read")
    );
    assert_eq!(e.field(fields::VO), Some("atlas"), "from the first group");
    assert!(e.issues.is_empty(), "{:?}", e.issues);
    // A subject without an issuer names nobody: kept, flagged.
    let o = &evs[1];
    assert_eq!(o.class, EventClass::JobRun);
    assert_eq!(o.field(fields::TOKEN_SUBJECT), Some("orphan-subject"));
    assert!(o.issues.iter().any(|i| i.kind == "token_without_issuer"));
}

/// Arbitrary bytes through every new decoder and the SCIM framer: never a panic, raw kept.
#[test]
fn garbage_never_panics() {
    let samples: [&[u8]; 9] = [
        b"",
        b"\xff\xfe{\"Resources\": [",
        b"]}",
        b"2026-13-40 99:99:99 Started - job id: ",
        b"99/99/99 99:99:99 (cid:) (D_AUDIT) AuthMethod=",
        b"Oct 14 09:30:00 h glexec.mon[",
        b"Oct 14 09:30:00 h glexec[1]: LCMAPS CRED FINAL: DN:\"",
        b"{\"schemas\":null,\"id\":5}",
        b"{\"Resources\":[{\"a\":\"\\\"]}\"}]}",
    ];
    for s in samples {
        for format in [
            Format::ScimDirectory,
            Format::ArcJobLog,
            Format::CondorAuditLog,
            Format::Syslog,
        ] {
            let e = dec(format, s);
            assert_eq!(e.raw, s);
        }
        let mut f = Framer::new(framing(Format::ScimDirectory));
        let mut out = Vec::new();
        f.push(s, &mut out);
        f.finish(&mut out);
        assert_eq!(f.framed_offset(), s.len() as u64);
    }
}
