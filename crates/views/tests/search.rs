//! End-to-end tests of the search index: synthetic events in, ledger positions out.
//!
//! Events are built directly (model has pub fields); each test states which documents must
//! come back, checked against the same predicate evaluated on the events in memory.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use model::{Event, EventClass, Observer, Origin, Received, Reported};
use views::{DocKey, IndexQuery, Keyword, SearchIndex};

const N: u64 = 300;

fn ts(secs: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_700_000_000 + secs).expect("valid time")
}

/// Event number `i` (ledger seq `i + 1`). Times are deliberately not in seq order (every 7th
/// event is reported 1000 s earlier) so ordering by time is tested, not by insertion.
fn event(i: u64) -> Event {
    let host = format!("vm-{:02}.Example.org", i % 10);
    let app = if i.is_multiple_of(3) { "sshd" } else { "CRON" };
    let ip: IpAddr = if i.is_multiple_of(5) {
        format!("2001:db8:{:x}::{}", i % 4, i).parse().expect("ip")
    } else {
        format!("10.{}.0.{}", i % 4, i % 250).parse().expect("ip")
    };
    let mut fields = BTreeMap::new();
    fields.insert("user".to_string(), format!("User{}", i % 7));
    fields.insert("src_ip".to_string(), ip.to_string());
    let message = if i == 123 {
        "token ZQX-7781-NEEDLE-4402 seen".to_string()
    } else if i.is_multiple_of(11) {
        format!("Failed password for user{} from {ip} port 22", i % 7)
    } else {
        format!("password accepted failed later for user{} from {ip}", i % 7)
    };
    let secs = if i.is_multiple_of(7) {
        i as i64 - 1000
    } else {
        i as i64
    };
    Event {
        received: Received::from_stored(ts(i as i64).as_nanosecond()),
        reported: Reported::new(Some(ts(secs)), "x"),
        observer: if i.is_multiple_of(2) {
            Observer::Vm
        } else {
            Observer::Hypervisor
        },
        source_kind: "syslog-rfc3164".to_string(),
        origin: Origin::File {
            path: "t.log".to_string(),
            line: i + 1,
        },
        host: Some(host),
        app: Some(app.to_string()),
        pid: None,
        facility: None,
        severity: None,
        msgid: None,
        message,
        fields,
        ips: vec![ip],
        class: if i.is_multiple_of(11) {
            EventClass::AuthFailure
        } else {
            EventClass::Other
        },
        issues: Vec::new(),
        raw: Vec::new(),
    }
}

fn events() -> Vec<(u64, Event)> {
    (0..N).map(|i| (i + 1, event(i))).collect()
}

fn build(dir: &std::path::Path) -> SearchIndex {
    let index = SearchIndex::open_or_create(dir).expect("open");
    let mut w = index.writer(50_000_000).expect("writer");
    // Two commits make two segments: results must merge across them.
    for (seq, e) in events() {
        w.add(seq, &e).expect("add");
        if seq == N / 2 {
            w.commit(seq).expect("commit");
        }
    }
    w.commit(N).expect("commit");
    w.finish().expect("finish");
    index.reload().expect("reload");
    index
}

/// The seqs the index returns for `q`, in time order, and checks count/first_by_time agree.
fn seqs(index: &SearchIndex, q: &IndexQuery) -> Vec<u64> {
    let all = index.all_by_time(q).expect("search");
    assert_eq!(
        index.count(q).expect("count"),
        all.len() as u64,
        "count of {q:?}"
    );
    let (total, first) = index.first_by_time(q, 5).expect("top");
    assert_eq!(total, all.len() as u64);
    assert_eq!(
        first,
        all.iter().copied().take(5).collect::<Vec<DocKey>>(),
        "top-5 of {q:?}"
    );
    all.into_iter().map(|k| k.seq).collect()
}

/// The seqs of events satisfying `pred`, in (time, seq) order.
fn oracle(pred: impl Fn(&Event) -> bool) -> Vec<u64> {
    let mut v: Vec<(jiff::Timestamp, u64)> = events()
        .into_iter()
        .filter(|(_, e)| pred(e))
        .map(|(s, e)| (e.placed(), s))
        .collect();
    v.sort();
    v.into_iter().map(|(_, s)| s).collect()
}

type Pred = Box<dyn Fn(&Event) -> bool>;

#[test]
fn queries_match_the_in_memory_oracle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = build(dir.path());
    assert_eq!(index.num_docs(), N);

    let cases: Vec<(IndexQuery, Pred)> = vec![
        (IndexQuery::All, Box::new(|_| true)),
        (IndexQuery::Nothing, Box::new(|_| false)),
        (
            IndexQuery::Text("PASSWORD".into()),
            Box::new(|e| e.message.to_lowercase().contains("password")),
        ),
        (
            // Phrase candidates: the conjunction of tokens (a superset of the phrase).
            IndexQuery::Text("Failed password".into()),
            Box::new(|e| e.message.contains("ailed") && e.message.contains("password")),
        ),
        (
            IndexQuery::Text("zqx-7781-needle-4402".into()),
            Box::new(|e| e.message.contains("ZQX-7781-NEEDLE-4402")),
        ),
        (IndexQuery::Text("example".into()), Box::new(|_| true)),
        (
            IndexQuery::Text("sshd".into()),
            Box::new(|e| e.app.as_deref() == Some("sshd")),
        ),
        // Host and app words come from the names' keyword terms, not from `text` postings:
        // alone, together, and with message words.
        // (`03` in `vm-03.Example.org` touches a `.`: not a word, as before.)
        (IndexQuery::Text("vm-03".into()), Box::new(|_| false)),
        (
            IndexQuery::Text("Example sshd user3".into()),
            Box::new(|e| e.app.as_deref() == Some("sshd") && e.message.contains("user3")),
        ),
        (
            IndexQuery::TextPhrase("CRO".into()),
            Box::new(|e| e.app.as_deref() == Some("CRON")),
        ),
        (IndexQuery::TextPhrase("exam".into()), Box::new(|_| true)),
        (
            IndexQuery::Ip("10.1.0.5".parse().expect("ip")),
            Box::new(|e| e.ips.contains(&"10.1.0.5".parse().expect("ip"))),
        ),
        (
            IndexQuery::IpRange {
                first: "10.2.0.0".parse().expect("ip"),
                last: "10.2.255.255".parse().expect("ip"),
            },
            Box::new(|e| matches!(e.ips[0], IpAddr::V4(v) if v.octets()[1] == 2)),
        ),
        (
            IndexQuery::IpRange {
                first: "2001:db8:1::".parse().expect("ip"),
                last: "2001:db8:1:ffff:ffff:ffff:ffff:ffff".parse().expect("ip"),
            },
            Box::new(|e| e.ips[0].to_string().starts_with("2001:db8:1::")),
        ),
        (
            IndexQuery::Keyword(Keyword::Host, "VM-03.example.ORG".into()),
            Box::new(|e| e.host.as_deref() == Some("vm-03.Example.org")),
        ),
        (
            IndexQuery::Keyword(Keyword::App, "cron".into()),
            Box::new(|e| e.app.as_deref() == Some("CRON")),
        ),
        (
            IndexQuery::Keyword(Keyword::Class, "auth.failure".into()),
            Box::new(|e| e.class == EventClass::AuthFailure),
        ),
        (
            IndexQuery::Keyword(Keyword::Observer, "hypervisor".into()),
            Box::new(|e| e.observer == Observer::Hypervisor),
        ),
        (
            IndexQuery::Keyword(Keyword::Source, "syslog-rfc3164".into()),
            Box::new(|_| true),
        ),
        (
            IndexQuery::Field {
                name: "user".into(),
                value: "user3".into(),
            },
            Box::new(|e| e.field("user") == Some("User3")),
        ),
        (
            IndexQuery::Time {
                from: Some(ts(10)),
                to: Some(ts(20)),
            },
            Box::new(|e| e.placed() >= ts(10) && e.placed() < ts(20)),
        ),
        (
            IndexQuery::Time {
                from: None,
                to: Some(ts(0)),
            },
            Box::new(|e| e.placed() < ts(0)),
        ),
        (
            IndexQuery::And(vec![
                IndexQuery::Keyword(Keyword::App, "sshd".into()),
                IndexQuery::Not(Box::new(IndexQuery::Text("failed".into()))),
            ]),
            Box::new(|e| {
                e.app.as_deref() == Some("sshd") && !e.message.to_lowercase().contains("failed")
            }),
        ),
        (
            IndexQuery::Not(Box::new(IndexQuery::Keyword(Keyword::App, "sshd".into()))),
            Box::new(|e| e.app.as_deref() != Some("sshd")),
        ),
        (
            IndexQuery::Or(vec![
                IndexQuery::Field {
                    name: "user".into(),
                    value: "user1".into(),
                },
                IndexQuery::Keyword(Keyword::Class, "auth.failure".into()),
            ]),
            Box::new(|e| e.field("user") == Some("User1") || e.class == EventClass::AuthFailure),
        ),
    ];
    for (q, pred) in cases {
        assert_eq!(seqs(&index, &q), oracle(pred), "query {q:?}");
    }
    // Dictionary-only answers know the names' words too.
    for (phrase, may) in [
        ("vm-0", true),
        ("cro", true),
        ("sshd user3", true),
        ("zzhost", false),
    ] {
        assert_eq!(
            index
                .may_match(&IndexQuery::TextPhrase(phrase.into()))
                .expect("may_match"),
            may,
            "{phrase}"
        );
    }
}

#[test]
fn limit_takes_the_earliest_in_time_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = build(dir.path());
    let (total, first) = index.first_by_time(&IndexQuery::All, 3).expect("top");
    assert_eq!(total, N);
    // Event 0 (seq 1) and every 7th are 1000 s early: 0 → -1000, 7 → -993, 14 → -986.
    assert_eq!(first.iter().map(|k| k.seq).collect::<Vec<_>>(), [1, 8, 15]);
    assert_eq!(first[0].time, ts(-1000));
    assert_eq!(index.first_by_time(&IndexQuery::All, 0).expect("top").1, []);
}

#[test]
fn last_indexed_seq_survives_reopen_and_recreate_empties() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("index");
    {
        let index = SearchIndex::open_or_create(&path).expect("open");
        assert_eq!(index.last_indexed_seq().expect("seq"), None);
    }
    drop(build(&path));
    let index = SearchIndex::open_or_create(&path).expect("reopen");
    assert_eq!(index.last_indexed_seq().expect("seq"), Some(N));
    assert_eq!(
        index
            .count(&IndexQuery::Text("needle".into()))
            .expect("count"),
        1
    );
    drop(index);

    let index = SearchIndex::recreate(&path).expect("recreate");
    assert_eq!(index.last_indexed_seq().expect("seq"), None);
    assert_eq!(index.num_docs(), 0);

    let mut w = index.writer(20_000_000).expect("writer");
    w.add(7, &event(7)).expect("add");
    w.commit(7).expect("commit");
    w.delete_all().expect("delete all");
    w.finish().expect("finish");
    index.reload().expect("reload");
    assert_eq!(index.num_docs(), 0);
    assert_eq!(index.last_indexed_seq().expect("seq"), None);
}

#[test]
fn recreate_refuses_a_directory_that_is_not_an_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("precious.txt"), b"evidence").expect("write");
    let err = SearchIndex::recreate(dir.path())
        .err()
        .expect("must refuse");
    assert!(err.to_string().contains("refusing to delete"), "{err}");
    assert!(dir.path().join("precious.txt").try_exists().expect("stat"));
}

/// Windows and order run on where a record is placed (`Event::placed`): a VM's line received
/// live stands at its receipt, not at the two-hours-earlier time its clock claimed; a plain
/// file's line at its claim; a hypervisor's line received an hour late at its own time.
#[test]
fn windows_and_order_use_the_placed_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = SearchIndex::open_or_create(dir.path()).expect("open");
    let mut live_vm = event(0);
    live_vm.observer = Observer::Vm;
    live_vm.origin = Origin::Peer {
        addr: "10.0.0.5:40000".into(),
        listener: "tcp".into(),
    };
    live_vm.received = Received::from_stored(ts(7200).as_nanosecond());
    live_vm.reported = Reported::new(Some(ts(0)), "x");
    let mut file_vm = event(2);
    file_vm.observer = Observer::Vm;
    file_vm.reported = Reported::new(Some(ts(100)), "x");
    let mut late_hv = event(1);
    late_hv.origin = Origin::Peer {
        addr: "192.0.2.1:514".into(),
        listener: "relp".into(),
    };
    late_hv.received = Received::from_stored(ts(7300).as_nanosecond());
    late_hv.reported = Reported::new(Some(ts(3700)), "x");
    let mut w = index.writer(50_000_000).expect("writer");
    for (seq, e) in [(1, &live_vm), (2, &file_vm), (3, &late_hv)] {
        w.add(seq, e).expect("add");
    }
    w.commit(3).expect("commit");
    w.finish().expect("finish");
    index.reload().expect("reload");
    let window = |from: i64, to: i64| {
        seqs(
            &index,
            &IndexQuery::Time {
                from: Some(ts(from)),
                to: Some(ts(to)),
            },
        )
    };
    assert_eq!(window(7000, 7400), [1]);
    assert_eq!(window(-100, 200), [2]);
    assert_eq!(window(3600, 3800), [3]);
    let all = index.all_by_time(&IndexQuery::All).expect("all");
    assert_eq!(
        all,
        [
            DocKey {
                time: ts(100),
                seq: 2
            },
            DocKey {
                time: ts(3700),
                seq: 3
            },
            DocKey {
                time: ts(7200),
                seq: 1
            },
        ]
    );
}

/// An index whose time column held `Event::time` (the schema before `placed`) would answer
/// windows by the VM's claim: it is refused with the remedy, and `reindex` rebuilds it.
#[test]
fn an_index_from_before_the_placed_column_is_refused_until_reindex() {
    use tantivy::schema::{DateOptions, NumericOptions, Schema};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("index");
    std::fs::create_dir_all(&path).expect("mkdir");
    let mut b = Schema::builder();
    b.add_u64_field("seq", NumericOptions::default().set_fast());
    b.add_date_field("time", DateOptions::default().set_fast());
    tantivy::Index::create_in_dir(&path, b.build()).expect("old index");
    let err = SearchIndex::open_or_create(&path)
        .err()
        .expect("an old index is refused");
    assert!(err.to_string().contains("run `pugmark reindex`"), "{err}");
    let index = SearchIndex::recreate(&path).expect("reindex");
    assert_eq!(index.num_docs(), 0);
}

/// A reader's position is the commit its snapshot holds, not the newest one on disk: a search
/// scans the ledger after it, so a commit landing after the reader opened must not move it
/// (records between the snapshot and the newer commit would be in neither answer).
#[test]
fn snapshot_position_is_the_commit_the_reader_sees() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("index");
    let index = SearchIndex::open_or_create(&path).expect("open");
    let mut w = index.writer(20_000_000).expect("writer");
    for seq in 1..=10 {
        w.add(seq, &event(seq - 1)).expect("add");
    }
    w.commit(10).expect("commit");
    let reader = SearchIndex::open_or_create(&path).expect("reader");
    assert_eq!(reader.snapshot_seq(), Some(10));
    assert_eq!(reader.num_docs(), 10);
    // A live writer commits more after the reader opened.
    for seq in 11..=25 {
        w.add(seq, &event(seq - 1)).expect("add");
    }
    w.commit(25).expect("commit");
    assert_eq!(reader.last_indexed_seq().expect("seq"), Some(25));
    assert_eq!(reader.snapshot_seq(), Some(10), "moved past the snapshot");
    assert_eq!(reader.count(&IndexQuery::All).expect("count"), 10);
    reader.reload().expect("reload");
    assert_eq!(reader.snapshot_seq(), Some(25));
    assert_eq!(reader.count(&IndexQuery::All).expect("count"), 25);
    w.finish().expect("finish");
    let empty = SearchIndex::open_or_create(dir.path().join("empty")).expect("open");
    assert_eq!(empty.snapshot_position(), None);
}

/// A search reads the index's snapshot and then the ledger after the snapshot's commit: while
/// a writer commits, every handle opened (or reloaded) must report the position its snapshot
/// holds, never a newer one (the records in between would be in neither part of the answer).
#[test]
fn snapshot_position_holds_under_a_committing_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("index");
    let index = SearchIndex::open_or_create(&path).expect("open");
    let mut w = index.writer(20_000_000).expect("writer");
    let done = AtomicBool::new(false);
    let checks = AtomicU64::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            // Every position is a document, so a commit at `seq` holds exactly `seq` of them.
            for seq in 1..=1500u64 {
                w.add(seq, &event(seq % N)).expect("add");
                if seq % 5 == 0 {
                    w.commit(seq).expect("commit");
                }
            }
            done.store(true, Ordering::SeqCst);
        });
        let mut reader: Option<SearchIndex> = None;
        while !done.load(Ordering::SeqCst) {
            let r = SearchIndex::open_or_create(&path).expect("reader");
            let pos = r.snapshot_seq().unwrap_or(0);
            assert_eq!(r.count(&IndexQuery::All).expect("count"), pos, "at open");
            if let Some(old) = &reader {
                old.reload().expect("reload");
                let pos = old.snapshot_seq().unwrap_or(0);
                assert_eq!(old.count(&IndexQuery::All).expect("count"), pos, "reload");
            }
            reader = Some(r);
            checks.fetch_add(1, Ordering::Relaxed);
        }
    });
    assert!(checks.load(Ordering::Relaxed) > 10, "the reader barely ran");
    w.finish().expect("finish");
}
