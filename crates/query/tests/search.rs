//! End-to-end search: events indexed into a real (temporary) index, fetched back from an
//! in-memory "ledger", compared with hand-written expectations and with a brute-force scan.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use model::{Event, EventClass, Observer, Origin, Received, Reported};
use proptest::prelude::*;
use query::search::{Fetch, SearchRequest, run};
use views::SearchIndex;

fn ts(secs: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_700_000_000 + secs).expect("valid time")
}

struct Spec {
    secs: i64,
    host: &'static str,
    app: &'static str,
    message: String,
    user: &'static str,
    ip: &'static str,
    class: EventClass,
}

fn event(s: &Spec) -> Event {
    let ip: IpAddr = s.ip.parse().expect("ip");
    let mut fields = BTreeMap::new();
    fields.insert("user".to_string(), s.user.to_string());
    fields.insert("src_ip".to_string(), s.ip.to_string());
    Event {
        received: Received::from_stored(ts(s.secs).as_nanosecond()),
        reported: Reported::new(Some(ts(s.secs)), ""),
        observer: Observer::Vm,
        source_kind: "syslog-rfc3164".into(),
        origin: Origin::File {
            path: "t".into(),
            line: 1,
        },
        host: Some(s.host.into()),
        app: Some(s.app.into()),
        pid: Some("42".into()),
        facility: None,
        severity: None,
        msgid: None,
        message: s.message.clone(),
        fields,
        ips: vec![ip],
        class: s.class,
        issues: vec![],
        raw: vec![],
    }
}

struct Store {
    _dir: tempfile::TempDir,
    index: SearchIndex,
    events: HashMap<u64, Event>,
}

fn store(events: Vec<Event>) -> Store {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = SearchIndex::open_or_create(dir.path()).expect("open");
    let mut w = index.writer(20_000_000).expect("writer");
    let mut map = HashMap::new();
    for (i, e) in events.into_iter().enumerate() {
        let seq = i as u64 + 1;
        w.add(seq, &e).expect("add");
        map.insert(seq, e);
    }
    w.commit(map.len() as u64).expect("commit");
    w.finish().expect("finish");
    index.reload().expect("reload");
    Store {
        _dir: dir,
        index,
        events: map,
    }
}

impl Store {
    fn search(&self, req: &SearchRequest) -> (u64, Vec<u64>, usize) {
        let mut fetched = 0usize;
        let mut fetch = |seq: u64| -> anyhow::Result<Event> {
            fetched += 1;
            self.events
                .get(&seq)
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("no #{seq}"))
        };
        let out = run(&self.index, req, &mut fetch as &mut dyn Fetch).expect("search");
        assert_eq!(
            out.truncated,
            !req.count_only && out.total > out.hits.len() as u64
        );
        (out.total, out.hits.iter().map(|h| h.seq).collect(), fetched)
    }

    /// Brute force: every event checked with the query's exact meaning, time-ordered.
    fn oracle(&self, req: &SearchRequest) -> (u64, Vec<u64>) {
        let expr = req.expr().expect("parse");
        let mut m: Vec<(jiff::Timestamp, u64)> = self
            .events
            .iter()
            .filter(|(_, e)| expr.matches(e))
            .map(|(s, e)| (e.placed(), *s))
            .collect();
        m.sort();
        let total = m.len() as u64;
        let limit = if req.count_only { 0 } else { req.limit };
        (total, m.into_iter().take(limit).map(|(_, s)| s).collect())
    }
}

fn req(q: &str, limit: usize) -> SearchRequest {
    SearchRequest {
        query: q.into(),
        limit,
        ..SearchRequest::default()
    }
}

fn fixture() -> Store {
    let spec = |secs, host, app, message: &str, user, ip, class| Spec {
        secs,
        host,
        app,
        message: message.to_string(),
        user,
        ip,
        class,
    };
    use EventClass::*;
    store(
        [
            spec(
                5,
                "vm-01",
                "sshd",
                "Failed password for alice from 10.0.0.7 port 22",
                "alice",
                "10.0.0.7",
                AuthFailure,
            ),
            spec(
                3,
                "vm-02",
                "sshd",
                "password failed, try again",
                "bob",
                "10.0.1.9",
                AuthFailure,
            ),
            spec(
                9,
                "vm-01",
                "sshd",
                "Accepted password for alice from 10.0.0.7",
                "alice",
                "10.0.0.7",
                AuthLogin,
            ),
            spec(
                1,
                "vm-03",
                "app",
                "token ZQX-7781-NEEDLE-4402 seen",
                "carol",
                "2001:db8::5",
                Other,
            ),
            spec(
                2,
                "vm-03",
                "app",
                "token ZQX 7781 NEEDLE 4402 split",
                "carol",
                "2001:db8:1::5",
                Other,
            ),
            spec(
                7,
                "vm-02",
                "cron",
                "FAILED PASSWORD (upper case)",
                "root",
                "192.168.1.1",
                Other,
            ),
        ]
        .iter()
        .map(event)
        .collect(),
    )
}

#[test]
fn phrases_are_checked_on_the_events_and_counts_stay_exact() {
    let s = fixture();
    // The index finds 3 events with both tokens; 2 hold the phrase (case-insensitive).
    assert_eq!(
        s.search(&req(r#""failed password""#, 10)),
        (2, vec![1, 6], 3)
    );
    let mut count = req(r#""failed password""#, 10);
    count.count_only = true;
    assert_eq!(s.search(&count).0, 2);
    assert_eq!(s.search(&req("ZQX-7781-NEEDLE-4402", 10)).1, [4]);
    assert_eq!(s.search(&req("zqx needle", 10)).1, [4, 5]);
    // Words are answered by the index alone: only the shown hits are fetched, counts need none.
    assert_eq!(s.search(&req("password", 1)), (4, vec![2], 1));
    let mut c = req("password", 1);
    c.count_only = true;
    assert_eq!(s.search(&c), (4, vec![], 0));
    assert_eq!(
        s.search(&req(r#"password -"failed password""#, 10)).1,
        [2, 3]
    );
}

#[test]
fn fields_ips_filters_and_limit() {
    let s = fixture();
    assert_eq!(s.search(&req("*", 2)), (6, vec![4, 5], 2));
    assert_eq!(s.search(&req("10.0.0.7", 10)).1, [1, 3]);
    assert_eq!(s.search(&req("10.0.0.0/16", 10)).1, [2, 1, 3]);
    assert_eq!(s.search(&req("ip:2001:db8::/48", 10)).1, [4]);
    assert_eq!(s.search(&req("src_ip:10.0.1.0/24", 10)).1, [2]);
    assert_eq!(s.search(&req("user:ALICE class:auth.login", 10)).1, [3]);
    assert_eq!(s.search(&req("host:vm-02 OR app:app", 10)).1, [4, 5, 2, 6]);
    let mut r = req("*", 10);
    r.from = Some(ts(2));
    r.to = Some(ts(7));
    r.host = Some("VM-03".into());
    assert_eq!(s.search(&r).1, [5]);
    let mut r = req("password", 10);
    r.fields = vec![("user".into(), "alice".into())];
    r.class = Some(EventClass::AuthFailure);
    r.app = Some("sshd".into());
    assert_eq!(s.search(&r).1, [1]);
}

#[test]
fn rendering_text_and_json() {
    let s = fixture();
    let mut fetch = |seq: u64| -> anyhow::Result<Event> {
        s.events
            .get(&seq)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no #{seq}"))
    };
    let out = run(&s.index, &req("needle 7781 -split", 5), &mut fetch).expect("search");
    assert_eq!(
        query::search::render_line(&out.hits[0]),
        "#4 2023-11-14T22:13:21Z [vm] vm-03 app[42]: token ZQX-7781-NEEDLE-4402 seen"
    );
    let json = serde_json::to_value(out.to_json()).expect("json");
    assert_eq!(json["total"], 1);
    assert_eq!(json["hits"][0]["seq"], 4);
    assert_eq!(json["hits"][0]["class"], "other");
    assert_eq!(json["hits"][0]["origin"]["kind"], "file");
    assert_eq!(json["hits"][0]["fields"]["user"], "carol");
    assert_eq!(json["hits"][0]["ips"][0], "2001:db8::5");
}

/// A VM's live line, stamped two hours before it arrived and holding terminal sequences:
/// the text line stands at the receipt with the claim beside it and shows the sequences
/// escaped; `--json` places it the same way and keeps the message exactly.
#[test]
fn a_live_line_renders_at_its_receipt_escaped_and_json_keeps_it_exact() {
    let mut e = event(&Spec {
        secs: 0,
        host: "vm-1",
        app: "sshd",
        message: "hi \x1b[2J\x1b]0;pwned\x07 x\ry".into(),
        user: "root",
        ip: "10.0.0.1",
        class: EventClass::Other,
    });
    e.origin = Origin::Peer {
        addr: "10.0.0.1:41000".into(),
        listener: "tcp".into(),
    };
    e.received = Received::from_stored(ts(7200).as_nanosecond());
    let s = store(vec![e.clone()]);
    let mut fetch = |seq: u64| -> anyhow::Result<Event> {
        s.events
            .get(&seq)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no #{seq}"))
    };
    let mut r = req("pwned", 5);
    r.from = Some(ts(7000));
    r.to = Some(ts(7400));
    let out = run(&s.index, &r, &mut fetch).expect("search");
    assert_eq!(out.total, 1);
    assert_eq!(
        query::search::render_line(&out.hits[0]),
        "#1 2023-11-15T00:13:20Z [vm] vm-1 sshd[42]: hi \\x1b[2J\\x1b]0;pwned\\x07 x\\ry \
         [reported 2023-11-14T22:13:20Z]"
    );
    let json = serde_json::to_value(out.to_json()).expect("json");
    assert_eq!(json["hits"][0]["time"], "2023-11-15T00:13:20Z");
    assert_eq!(json["hits"][0]["collected"], "2023-11-15T00:13:20Z");
    assert_eq!(json["hits"][0]["reported"]["time"], "2023-11-14T22:13:20Z");
    assert_eq!(json["hits"][0]["message"], e.message);
    r.from = Some(ts(-100));
    r.to = Some(ts(100));
    assert_eq!(run(&s.index, &r, &mut fetch).expect("search").total, 0);
}

#[test]
fn parse_errors_reach_the_caller_as_one_line() {
    let s = fixture();
    let mut fetch = |_seq: u64| -> anyhow::Result<Event> { anyhow::bail!("unused") };
    let err = run(&s.index, &req("(a", 5), &mut fetch).expect_err("must fail");
    assert_eq!(err.to_string(), "query error at column 1: unclosed '('");
}

const HOSTS: [&str; 3] = ["vm-01", "vm-02", "db-1"];
const APPS: [&str; 3] = ["sshd", "cron", "sudo"];
const WORDS: [&str; 9] = [
    "failed", "password", "Accepted", "root", "x-1", "session", "22", "v1.22", "be:22",
];
/// Ports as sshd prints them (`port 2509:11:` on disconnects): the field holds the number.
const PORTS: [&str; 3] = ["22", "2509:11:", "0"];
const USERS: [&str; 3] = ["alice", "bob", "root"];
const IPS: [&str; 4] = ["10.0.0.1", "10.0.1.2", "192.168.0.9", "2001:db8::7"];

fn arb_event() -> impl Strategy<Value = Event> {
    (
        0i64..50,
        0..3usize,
        0..3usize,
        prop::collection::vec(0..WORDS.len(), 1..5),
        0..3usize,
        0..4usize,
        any::<bool>(),
        0..PORTS.len(),
        prop::option::of(0i64..50),
    )
        .prop_map(|(secs, h, a, words, u, ip, fail, port, live)| {
            let message = words
                .iter()
                .map(|w| WORDS[*w])
                .collect::<Vec<_>>()
                .join(" ");
            let mut e = event(&Spec {
                secs,
                host: HOSTS[h],
                app: APPS[a],
                message: format!("{message} from {} port {}", IPS[ip], PORTS[port]),
                user: USERS[u],
                ip: IPS[ip],
                class: if fail {
                    EventClass::AuthFailure
                } else {
                    EventClass::Other
                },
            });
            let p = PORTS[port].split(':').next().unwrap_or_default();
            e.fields.insert("src_port".into(), p.to_string());
            // Received live at another time than the VM claims: placed at the receipt.
            if let Some(at) = live {
                e.origin = Origin::Peer {
                    addr: "10.0.0.9:514".into(),
                    listener: "tcp".into(),
                };
                e.received = Received::from_stored(ts(at).as_nanosecond());
            }
            e
        })
}

fn arb_leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        (0..WORDS.len()).prop_map(|w| WORDS[w].to_uppercase()),
        (0..WORDS.len(), 0..WORDS.len())
            .prop_map(|(a, b)| format!("\"{} {}\"", WORDS[a], WORDS[b])),
        (0..PORTS.len()).prop_map(|p| format!("\"port {}\"", PORTS[p])),
        prop::sample::select(vec!["22", "2509", "0", "11"]).prop_map(|p| format!("src_port:{p}")),
        (0..4usize).prop_map(|i| format!("src_ip:{}", IPS[i])),
        Just("\"0.1 port\"".to_string()),
        Just("22".to_string()),
        (0..3usize).prop_map(|h| format!("host:{}", HOSTS[h])),
        (0..3usize).prop_map(|a| format!("app:{}", APPS[a])),
        (0..3usize).prop_map(|u| format!("user:{}", USERS[u])),
        (0..4usize).prop_map(|i| IPS[i].to_string()),
        Just("10.0.0.0/16".to_string()),
        Just("src_ip:10.0.0.0/24".to_string()),
        Just("class:auth.failure".to_string()),
        Just("*".to_string()),
    ]
}

fn arb_query() -> impl Strategy<Value = String> {
    arb_leaf().prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} OR {b})")),
            inner.prop_map(|a| format!("-({a})")),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn index_search_equals_brute_force(
        events in prop::collection::vec(arb_event(), 1..60),
        queries in prop::collection::vec((arb_query(), 0usize..8, any::<bool>(), prop::option::of(0i64..50)), 1..8),
    ) {
        let s = store(events);
        for (q, limit, count_only, from) in queries {
            let mut r = req(&q, limit);
            r.count_only = count_only;
            r.from = from.map(ts);
            let (total, hits, _) = s.search(&r);
            prop_assert_eq!((total, hits), s.oracle(&r), "query {:?}", q);
        }
    }
}
