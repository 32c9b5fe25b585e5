//! HTCondor decoders against real and hand-written data: the corpus job ad
//! (`htcondor_test.old.ad`) decoded as a `-l` ad and, converted to the JSON shape
//! `condor_history -json` prints (testdata/htcondor_test.old.json), as a JSON element — the
//! two decoders must agree field for field; the corpus userlogs framed with `...` and counted
//! per event code against ORACLES.md §4; hand-written sinful strings, IPv6, missing attributes
//! and garbage. One test binary.

use std::collections::BTreeMap;
use std::path::PathBuf;

use decode::framing::{Framer, Framing};
use model::envelope::{DecodeHints, Format, RecordEnvelope, YearRule};
use model::{Event, EventClass, Observer, Origin, Received};

fn corpus(rel: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/corpus")
        .join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

fn testdata(rel: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

fn dec_with(format: Format, raw: &[u8], hints: DecodeHints) -> Event {
    decode::decode(&RecordEnvelope {
        received: Received::from_stored(1_780_000_000_000_000_000), // 2026-05-28
        observer: Observer::Vo,
        format,
        hints,
        origin: Origin::File {
            path: "test".into(),
            line: 1,
        },
        raw: raw.to_vec(),
    })
}

fn dec(format: Format, raw: &[u8]) -> Event {
    dec_with(format, raw, DecodeHints::default())
}

fn frames(data: &[u8], framing: Framing) -> Vec<Vec<u8>> {
    let mut f = Framer::new(framing);
    let mut out = Vec::new();
    f.push(data, &mut out);
    f.finish(&mut out);
    out.into_iter().map(|fr| fr.raw).collect()
}

/// The event has these fields (others may exist), this class, and the raw bytes untouched.
fn check(ev: &Event, raw: &[u8], class: EventClass, expected: &[(&str, &str)]) {
    assert_eq!(ev.raw, raw, "raw must be untouched");
    for (k, v) in expected {
        assert_eq!(ev.field(k), Some(*v), "field {k} of {:?}", ev.fields);
    }
    assert_eq!(ev.class, class, "{ev:?}");
}

fn issue_kinds(ev: &Event) -> Vec<&str> {
    ev.issues.iter().map(|i| i.kind.as_str()).collect()
}

#[test]
fn old_ad_classad() {
    let raw = corpus("htcondor/htcondor_test.old.ad");
    let ads = frames(&raw, Framing::Blocks);
    assert_eq!(ads.len(), 1);
    let ev = dec(Format::CondorClassAd, &ads[0]);
    assert_eq!(ev.source_kind, "condor-classad");
    assert!(ev.issues.is_empty(), "{:?}", ev.issues);
    check(
        &ev,
        &ads[0],
        EventClass::JobRun,
        &[
            ("job_id", "hcc-briantest.unl.edu#15.0#1357311627"),
            ("job_owner", "bbockelm"),
            ("user", "bbockelm@users.opensciencegrid.org"),
            (
                "dn",
                "/DC=com/DC=DigiCert-Grid/O=Open Science Grid/OU=People/CN=Brian Bockelman",
            ),
            ("command", "ps"),
            ("job_status", "idle"),
            ("schedd", "hcc-briantest.unl.edu"),
        ],
    );
    // Idle, never started: no start, no end, no place; reported = EnteredCurrentStatus.
    for absent in ["job_start", "job_end", "exec_ip", "exec_host", "vo"] {
        assert_eq!(ev.field(absent), None, "{absent}");
    }
    assert_eq!(ev.reported.text, "EnteredCurrentStatus = 1357311628");
    assert_eq!(
        ev.reported.time.map(|t| t.to_string()).as_deref(),
        Some("2013-01-04T15:00:28Z")
    );
    assert_eq!(ev.message, "job 15.0 of bbockelm (idle)");
}

#[test]
fn old_ad_json_agrees_with_classad() {
    let ad = corpus("htcondor/htcondor_test.old.ad");
    let json = testdata("htcondor_test.old.json");
    let elems = frames(&json, Framing::JsonArray);
    assert_eq!(elems.len(), 1);
    let a = dec(Format::CondorClassAd, &ad);
    let j = dec(Format::CondorHistoryJson, &elems[0]);
    assert_eq!(j.source_kind, "condor-history-json");
    assert!(j.issues.is_empty(), "{:?}", j.issues);
    assert_eq!(a.fields, j.fields);
    assert_eq!(a.class, j.class);
    assert_eq!(a.message, j.message);
    assert_eq!(a.reported, j.reported);
    assert_eq!(a.ips, j.ips);
}

#[test]
fn completed_jobs_json() {
    let data = testdata("condor_history_completed.json");
    let elems = frames(&data, Framing::JsonArray);
    assert_eq!(elems.len(), 2);
    let ev = dec(Format::CondorHistoryJson, &elems[0]);
    assert!(ev.issues.is_empty(), "{:?}", ev.issues);
    check(
        &ev,
        &elems[0],
        EventClass::JobRun,
        &[
            ("job_id", "schedd01.example.org#1234.0#1761900000"),
            ("job_owner", "cmsprd"),
            ("user", "cmsprd@example.org"),
            ("vo", "cms"),
            ("exec_ip", "10.1.2.3"),
            ("exec_addrs", "10.1.2.3,2001:db8::42"),
            ("exec_alias", "vm-0042.cloud.example.org"),
            ("exec_host", "vm-0042.cloud.example.org"),
            ("exec_slot", "slot1_3"),
            ("job_start", "2025-10-31T08:50:00Z"),
            ("job_end", "2025-10-31T09:50:00Z"),
            ("job_status", "completed"),
            ("command", "/home/cmsprd/run.sh"),
        ],
    );
    assert_eq!(ev.reported.text, "JobCurrentStartDate = 1761900600");
    assert_eq!(
        ev.message,
        "job 1234.0 of cmsprd ran on vm-0042.cloud.example.org from 2025-10-31T08:50:00Z \
         to 2025-10-31T09:50:00Z (completed)"
    );
    assert!(ev.ips.contains(&"10.1.2.3".parse().unwrap()));

    // IPv6 startd, no GlobalJobId, removed: end = EnteredCurrentStatus, host = alias.
    let ev = dec(Format::CondorHistoryJson, &elems[1]);
    check(
        &ev,
        &elems[1],
        EventClass::JobRun,
        &[
            ("job_id", "77.3"),
            ("exec_ip", "2001:db8:1::7"),
            ("exec_host", "wn7.example.net"),
            ("job_start", "2025-10-31T08:40:00Z"),
            ("job_end", "2025-10-31T09:40:00Z"),
            ("job_status", "removed"),
        ],
    );
    assert_eq!(ev.reported.text, "JobStartDate = 1761900000");
}

#[test]
fn classad_hand_written() {
    let raw = b"ClusterId = 9\nProcId = 1\nOwner = \"bob\"\nRemoteHost = \"slot2@wn2.example\"\n\
StartdIpAddr = \"<192.0.2.7:9618?addrs=192.0.2.7-9618&alias=wn2.example>\"\n\
JobCurrentStartDate = 1700000000\nCompletionDate = 1700003600\nJobStatus = 4\n\
this line is garbage\nx509UserProxyVOName = \"dteam\"";
    let ev = dec(Format::CondorClassAd, raw);
    check(
        &ev,
        raw,
        EventClass::JobRun,
        &[
            ("job_id", "9.1"),
            ("exec_ip", "192.0.2.7"),
            ("exec_host", "wn2.example"),
            ("exec_slot", "slot2"),
            ("vo", "dteam"),
            ("job_start", "2023-11-14T22:13:20Z"),
            ("job_end", "2023-11-14T23:13:20Z"),
        ],
    );
    assert_eq!(issue_kinds(&ev), ["bad_classad"]);
    let bad = &ev.issues[0];
    assert_eq!(&raw[bad.offset..bad.offset + 9], b"this line");
}

#[test]
fn missing_and_garbage() {
    // Nothing identifies the job: one missing_attribute issue, class other.
    let raw = b"Owner = \"x\"\nCmd = \"y\"";
    let ev = dec(Format::CondorClassAd, raw);
    assert_eq!(issue_kinds(&ev), ["missing_attribute"]);
    assert_eq!(ev.class, EventClass::Other);
    assert_eq!(ev.field("job_owner"), Some("x"));

    // Only a cluster: still a job, no issue; odd attributes are issues, not panics.
    let raw = b"{\"ClusterId\": 5, \"JobStartDate\": -3, \"StartdIpAddr\": \"10.0.0.1\", \"QDate\": \"soon\"}";
    let ev = dec(Format::CondorHistoryJson, raw);
    assert_eq!(ev.field("job_id"), Some("5"));
    let mut kinds = issue_kinds(&ev);
    kinds.sort_unstable();
    assert_eq!(kinds, ["bad_sinful", "bad_timestamp", "bad_timestamp"]);
    let at = ev
        .issues
        .iter()
        .find(|i| i.kind == "bad_sinful")
        .unwrap()
        .offset;
    assert!(raw[at..].starts_with(b"\"StartdIpAddr\""));

    for (raw, kind) in [
        (&b"{\"ClusterId\": 5,"[..], "bad_json"),
        (b"[1, 2]", "bad_json"),
        (b"\xff\xfe garbage", "bad_json"),
        (b"", "bad_json"),
    ] {
        let ev = dec(Format::CondorHistoryJson, raw);
        assert_eq!(issue_kinds(&ev), [kind], "{raw:?}");
        assert_eq!(ev.raw, raw);
    }
    // serde_json's line / column of where it gave up, as a byte offset (the `}` after `tru`).
    let ev = dec(Format::CondorHistoryJson, b"{\"a\":\n  tru}");
    assert_eq!(ev.issues[0].offset, 11, "{:?}", ev.issues);

    let ev = dec(Format::CondorClassAd, b"\xff\xfe = \x00\n== nonsense ==");
    assert!(issue_kinds(&ev).contains(&"invalid_utf8"));
    assert!(issue_kinds(&ev).contains(&"bad_classad"));
}

/// ORACLES.md §4: event counts per code for every corpus userlog.
#[test]
fn userlog_event_counts() {
    let table: [(&str, &str); 5] = [
        (
            "htcondor_test_condor.log",
            "000:42 001:35 002:48 003:53 004:35 005:43 006:32 007:28 008:35 009:40 010:31 \
             011:49 012:48 013:43 014:42 015:40 016:41 017:46 018:41 019:38 020:35 022:3 \
             023:1 024:2",
        ),
        ("htcondor_test_log.txt", "000:2 028:2"),
        (
            "htcondor_job_dagman_gt1957.testlog",
            "000:2 001:2 005:2 009:1",
        ),
        (
            "htcondor_job_dagman_recovery_event_check.log.dummy",
            "000:2 001:2 005:2 016:1",
        ),
        (
            "htcondor_job_dagman_abnormal_term_recovery_retries-nodeA.dummy_log",
            "000:1 001:1 005:1 009:1",
        ),
    ];
    let hints = DecodeHints {
        year: YearRule::Fixed(2013),
        tz: Some("America/Chicago".into()),
    };
    for (file, expected) in table {
        let data = corpus(&format!("htcondor/{file}"));
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for raw in frames(&data, Framing::Terminated(b"...")) {
            let ev = dec_with(Format::CondorUserlog, &raw, hints.clone());
            assert_eq!(ev.source_kind, "condor-userlog");
            assert_eq!(ev.raw, raw);
            assert!(
                ev.issues.is_empty(),
                "{file}: {:?} in {}",
                ev.issues,
                ev.message
            );
            assert!(ev.reported.time.is_some(), "{file}: {}", ev.message);
            let code = ev.field("condor_event").expect("code").to_string();
            let want = if code == "001" || code == "005" {
                EventClass::JobRun
            } else {
                EventClass::Other
            };
            assert_eq!(ev.class, want, "{code}");
            *counts.entry(code).or_default() += 1;
        }
        let got: Vec<String> = counts.iter().map(|(c, n)| format!("{c}:{n}")).collect();
        let want: Vec<&str> = expected.split_whitespace().collect();
        assert_eq!(got, want, "{file}");
    }
}

#[test]
fn userlog_events() {
    let hints = DecodeHints {
        year: YearRule::Fixed(2013),
        tz: Some("America/Chicago".into()),
    };
    let data = corpus("htcondor/htcondor_test_condor.log");
    let evs: Vec<(Vec<u8>, Event)> = frames(&data, Framing::Terminated(b"..."))
        .into_iter()
        .map(|raw| {
            let ev = dec_with(Format::CondorUserlog, &raw, hints.clone());
            (raw, ev)
        })
        .collect();
    let (raw, ev) = &evs[0];
    check(
        ev,
        raw,
        EventClass::Other,
        &[
            ("condor_event", "000"),
            ("job_id", "2758.0"),
            ("submit_ip", "128.105.175.133"),
            ("dag_node", "A"),
            ("action", "condor.submit"),
        ],
    );
    assert_eq!(ev.reported.text, "03/20 21:04:58");
    assert_eq!(
        ev.reported.time.map(|t| t.to_string()).as_deref(),
        Some("2013-03-21T02:04:58Z")
    );
    let (raw, ev) = &evs[1];
    check(
        ev,
        raw,
        EventClass::JobRun,
        &[
            ("exec_ip", "128.105.144.30"),
            ("job_start", "2013-03-21T02:05:25Z"),
        ],
    );
    assert_eq!(ev.message, "Job executing on host: <128.105.144.30:32794>");
    let (raw, ev) = &evs[2];
    check(
        ev,
        raw,
        EventClass::JobRun,
        &[("exit_code", "0"), ("job_end", "2013-03-21T02:05:32Z")],
    );
    // The -1 cluster and the empty `Job executing on host:`.
    let empty = evs
        .iter()
        .find(|(r, _)| r.starts_with(b"001 (-01.-01.-01)"))
        .unwrap();
    assert_eq!(empty.1.field("job_id"), None);
    assert_eq!(empty.1.field("exec_ip"), None);
    assert!(empty.1.issues.is_empty());
    let generic = evs
        .iter()
        .find(|(r, _)| r.starts_with(b"008 (-01.-01.-01) 05/22 18:28:20 \n"))
        .unwrap();
    assert_eq!(generic.1.message, "generic event");

    // Abnormal termination.
    let data = corpus("htcondor/htcondor_job_dagman_gt1957.testlog");
    let term = frames(&data, Framing::Terminated(b"..."))
        .into_iter()
        .map(|raw| dec(Format::CondorUserlog, &raw))
        .find(|e| e.field("condor_event") == Some("005"))
        .unwrap();
    assert_eq!(term.field("exit_signal"), Some("11"));

    // 028 job ad information: attributes as fields.
    let data = corpus("htcondor/htcondor_test_log.txt");
    let ad = frames(&data, Framing::Terminated(b"..."))
        .into_iter()
        .map(|raw| dec(Format::CondorUserlog, &raw))
        .find(|e| e.field("condor_event") == Some("028"))
        .unwrap();
    assert_eq!(ad.field("ad.EventTime"), Some("2013-11-15T17:05:55"));
    assert_eq!(
        ad.field("ad.SubmitHost"),
        Some("<169.228.38.38:9615?sock=18627_6227_3>")
    );
    assert_eq!(ad.field("submit_ip"), Some("169.228.38.38"));
    assert_eq!(
        ad.field("ad.JOBGLIDEIN_CMSSite"),
        Some("$$([ifThenElse(GLIDEIN_CMSSite is undefined, \"Unknown\", GLIDEIN_CMSSite)])")
    );
    assert_eq!(ad.field("ad.CurrentTime"), Some("time()"));
    assert!(ad.issues.is_empty(), "{:?}", ad.issues);
}

#[test]
fn userlog_modern() {
    let data = testdata("condor_userlog_modern.log");
    let evs: Vec<Event> = frames(&data, Framing::Terminated(b"..."))
        .into_iter()
        .map(|raw| dec(Format::CondorUserlog, &raw))
        .collect();
    assert_eq!(evs.len(), 3);
    assert!(evs.iter().all(|e| e.issues.is_empty()), "{evs:?}");
    assert_eq!(evs[0].field("submit_ip"), Some("192.0.2.10"));
    let ex = &evs[1];
    assert_eq!(ex.field("exec_ip"), Some("10.1.2.3"));
    assert_eq!(ex.field("exec_alias"), Some("vm-0042.cloud.example.org"));
    assert_eq!(ex.field("exec_host"), Some("vm-0042.cloud.example.org"));
    assert_eq!(ex.field("exec_slot"), Some("slot1_1"));
    assert_eq!(ex.field("job_start"), Some("2025-10-31T10:05:00Z"));
    assert_eq!(evs[2].field("exit_code"), Some("3"));
    assert_eq!(evs[2].field("job_end"), Some("2025-10-31T11:05:00Z"));
}

#[test]
fn userlog_bad() {
    for (raw, kinds) in [
        (&b"garbage\n..."[..], vec!["bad_event"]),
        (
            b"001 (1.0.0) yesterday Job executing\n...",
            vec!["bad_event"],
        ),
        (
            b"001 (1.0.0) 02/30 10:00:00 Job executing on host: <1.2.3.4:1>\n...",
            vec!["bad_timestamp"],
        ),
        (
            b"001 (1.0.0) 01/30 10:00:00 Job executing on host: <1.2.3.4:1>",
            vec!["missing_terminator"],
        ),
        (
            b"001 (1.0.0) 01/30 10:00:00 Job executing on host: nowhere\n...",
            vec!["bad_sinful"],
        ),
        (b"", vec!["bad_event"]),
        (b"\xff\xff\xff", vec!["invalid_utf8", "bad_event"]),
    ] {
        let ev = dec(Format::CondorUserlog, raw);
        assert_eq!(issue_kinds(&ev), kinds, "{}", String::from_utf8_lossy(raw));
        assert_eq!(ev.raw, raw);
    }
}

#[test]
fn detection() {
    let det = |data: &[u8]| {
        let lines: Vec<&[u8]> = data.split(|b| *b == b'\n').take(50).collect();
        decode::detect(&lines)
    };
    assert_eq!(
        det(&corpus("htcondor/htcondor_test_condor.log")),
        Format::CondorUserlog
    );
    assert_eq!(
        det(&corpus("htcondor/htcondor_test_log.txt")),
        Format::CondorUserlog
    );
    assert_eq!(
        det(&corpus("htcondor/htcondor_test.old.ad")),
        Format::CondorClassAd
    );
    assert_eq!(
        det(&testdata("htcondor_test.old.json")),
        Format::CondorHistoryJson
    );
    assert_eq!(
        det(&testdata("condor_history_completed.json")),
        Format::CondorHistoryJson
    );
    for syslog in [
        "syslog/loghub_Linux_2k.log",
        "auth/loghub_OpenSSH_2k.log",
        "firewall/crowdsec/iptables-logs__iptables-logs.log",
    ] {
        assert_eq!(det(&corpus(syslog)), Format::Syslog, "{syslog}");
    }
}
