use std::net::{IpAddr, SocketAddr};

use model::flow::{FlowNat, FlowRecord};

use super::*;

fn rec(i: u64) -> FlowRecord {
    let v6 = i.is_multiple_of(7);
    let src: IpAddr = if v6 {
        format!("2001:db8::{:x}", i % 300).parse().unwrap()
    } else {
        format!("10.0.{}.{}", (i / 250) % 250, i % 250)
            .parse()
            .unwrap()
    };
    FlowRecord {
        version: if i.is_multiple_of(3) { 10 } else { 9 },
        exporter: (!i.is_multiple_of(5))
            .then(|| SocketAddr::from(([192, 0, 2, (i % 3) as u8], 2055))),
        domain: (i % 4) as u32,
        datagram_seq: i * 3 / 2,
        flowset: (i % 2) as u16,
        record: (i % 30) as u16,
        template: 256,
        src: (!i.is_multiple_of(11)).then_some(src),
        dst: Some("198.51.100.7".parse().unwrap()),
        src_port: (i % 60000) as u16,
        dst_port: 443,
        proto: if i.is_multiple_of(2) { 6 } else { 17 },
        tcp_flags: (i % 256) as u8,
        tos: 0,
        packets: i % 1000 + 1,
        bytes: (i % 1000 + 1) * 100,
        sampling: 1,
        start_ms: (!i.is_multiple_of(13)).then_some(1_700_000_000_000 + i as i64 * 10),
        end_ms: (!i.is_multiple_of(17)).then_some(1_700_000_000_500 + i as i64 * 10),
        export_ms: 1_700_000_001_000 + (i as i64 / 30) * 1000,
        in_if: 1,
        out_if: 2,
        nat: (i.is_multiple_of(19)).then(|| FlowNat {
            src: Some("203.0.113.1".parse().unwrap()),
            dst: None,
            src_port: Some(40000),
            dst_port: None,
            event: Some(1),
        }),
    }
}

fn rows(n: u64) -> Vec<FlowRow> {
    (1..=n)
        .map(|i| FlowRow {
            seq: i * 2,
            sub: 0,
            observer: if i.is_multiple_of(9) {
                "hypervisor"
            } else {
                "network"
            }
            .to_string(),
            rec: rec(i),
        })
        .collect()
}

#[test]
fn partition_round_trips_every_field() {
    let rs = rows(5000);
    let bytes = encode(&rs).unwrap();
    let part = Part::open(&bytes).unwrap();
    assert_eq!(part.decode_all().unwrap(), rs);
    // Compressed well below the record encoding (~100 bytes a flow).
    assert!(bytes.len() < 5000 * 40, "{} bytes", bytes.len());
    assert!(part.has_addr("198.51.100.7".parse().unwrap()).unwrap());
    assert!(part.has_addr("10.0.0.5".parse().unwrap()).unwrap());
    assert!(!part.has_addr("10.9.9.9".parse().unwrap()).unwrap());
    assert!(part.has_addr("2001:db8::7".parse().unwrap()).unwrap());
}

#[test]
fn damaged_partitions_are_errors_not_panics() {
    let bytes = encode(&rows(300)).unwrap();
    for cut in [0, 7, 8, 13, 40, bytes.len() / 2, bytes.len() - 1] {
        let r = Part::open(&bytes[..cut]).and_then(|p| p.decode_all());
        assert!(r.is_err(), "cut at {cut}");
    }
    let mut flipped = bytes.clone();
    // The row count says one more row than the columns hold.
    flipped[8] = flipped[8].wrapping_add(1);
    assert!(Part::open(&flipped).and_then(|p| p.decode_all()).is_err());
}

#[test]
fn store_commits_scans_filters_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let all = rows(3000);
    {
        let mut s = FlowStore::open(dir.path()).unwrap();
        assert!(s.last_position().is_none());
        for (k, r) in all.iter().enumerate() {
            s.add(r.seq, r.observer.clone(), r.rec.clone()).unwrap();
            if k % 100 == 99 {
                // Many small commits, as a live server makes: merged as they pile up.
                s.commit_at(r.seq + 1, Some([7; 32])).unwrap();
            }
        }
        s.commit_at(6001, None).unwrap();
        assert!(s.partitions().len() < 30 / SMALL_RUN + SMALL_RUN);
        // Adding again what it holds changes nothing (a catch-up after a crash).
        s.add(all[5].seq, "network".into(), all[5].rec.clone())
            .unwrap();
        s.commit_at(6001, None).unwrap();
    }
    let s = FlowStore::open(dir.path()).unwrap();
    assert_eq!(s.last_position(), Some((6001, None)));
    assert_eq!(s.rows(), 3000);
    let mut got = Vec::new();
    s.scan(&FlowFilter::default(), &mut |r| got.push(r.clone()))
        .unwrap();
    assert_eq!(got, all);
    let f = FlowFilter {
        src: Net::parse("10.0.1.0/24"),
        proto: Some(6),
        port: Some(443),
        from_ms: Some(1_700_000_010_000),
        ..FlowFilter::default()
    };
    let mut got = Vec::new();
    s.scan(&f, &mut |r| got.push(r.seq)).unwrap();
    let want: Vec<u64> = all.iter().filter(|r| f.matches(r)).map(|r| r.seq).collect();
    assert!(!want.is_empty());
    assert_eq!(got, want);
    // Address filters read only the rows the postings name: the same rows as judging all.
    for (src, dst, ip) in [
        (Some("10.0.3.17"), None, None),
        (None, Some("198.51.100.7"), None),
        (None, None, Some("10.0.2.0/23")),
        (Some("10.0.1.0/24"), None, Some("10.0.1.8/29")),
        (None, None, Some("2001:db8::/120")),
        (None, None, Some("2001:db8::7")),
        (Some("::ffff:10.0.3.17"), None, None),
        (None, None, Some("0.0.0.0/0")),
        (None, None, Some("::/0")),
    ] {
        let f = FlowFilter {
            src: src.and_then(Net::parse),
            dst: dst.and_then(Net::parse),
            ip: ip.and_then(Net::parse),
            ..FlowFilter::default()
        };
        let mut got = Vec::new();
        s.scan(&f, &mut |r| got.push(r.clone())).unwrap();
        let want: Vec<FlowRow> = all.iter().filter(|r| f.matches(r)).cloned().collect();
        assert_eq!(got, want, "{src:?} {dst:?} {ip:?}");
    }
    // An address no partition holds opens none of them past the address index.
    let f = FlowFilter {
        ip: Net::parse("172.16.0.1"),
        ..FlowFilter::default()
    };
    let st = s.scan(&f, &mut |_| panic!("no flow has it")).unwrap();
    assert_eq!(st.rows_read, 0);
}

#[test]
fn uncommitted_partitions_are_debris_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = FlowStore::open(dir.path()).unwrap();
        for r in rows(10) {
            s.add(r.seq, r.observer, r.rec).unwrap();
        }
        s.commit_at(20, None).unwrap();
        for r in rows(20).into_iter().skip(10) {
            s.add(r.seq, r.observer, r.rec).unwrap();
        }
        s.write_pending().unwrap();
        // No commit: a crash here.
    }
    let s = FlowStore::open(dir.path()).unwrap();
    assert_eq!(s.rows(), 10);
    let files = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".pmf")
        })
        .count();
    assert_eq!(files, 1);
}

#[test]
fn nets_parse_like_cidr() {
    let n = Net::parse("10.1.2.3/16").unwrap();
    assert!(n.contains("10.1.255.255".parse().unwrap()));
    assert!(!n.contains("10.2.0.0".parse().unwrap()));
    assert!(n.contains("::ffff:10.1.0.1".parse().unwrap()));
    assert!(Net::parse("10.0.0.0/33").is_none());
    assert!(
        Net::parse("2001:db8::/32")
            .unwrap()
            .contains("2001:db8:1::1".parse().unwrap())
    );
}

#[test]
fn aggregate_from_columns_equals_rows_summed() {
    let dir = tempfile::tempdir().unwrap();
    let all = rows(5000);
    let mut s = FlowStore::open(dir.path()).unwrap();
    for (k, r) in all.iter().enumerate() {
        s.add(r.seq, r.observer.clone(), r.rec.clone()).unwrap();
        if k % 700 == 0 {
            s.commit_at(r.seq, None).unwrap();
        }
    }
    s.commit_at(10_000, None).unwrap();
    let filters = [
        FlowFilter::default(),
        FlowFilter {
            ip: Net::parse("10.0.0.0/16"),
            proto: Some(17),
            from_ms: Some(1_700_000_005_000),
            to_ms: Some(1_700_000_040_000),
            ..FlowFilter::default()
        },
        FlowFilter {
            dst: Net::parse("198.51.100.7"),
            port: Some(443),
            exporter: Some("192.0.2.1".parse().unwrap()),
            ..FlowFilter::default()
        },
        FlowFilter {
            src: Net::parse("2001:db8::/32"),
            ..FlowFilter::default()
        },
    ];
    for f in &filters {
        for key in [Key::Src, Key::Dst, Key::Port, Key::Proto] {
            let mut want = Groups::default();
            let mut total = Agg::default();
            for r in all.iter().filter(|r| f.matches(r)) {
                let (p, b, t) = (r.rec.packets_scaled(), r.rec.bytes_scaled(), r.time_ms());
                total.add(p, b, t);
                let mut keys = Vec::new();
                match key {
                    Key::Src => keys.extend(r.rec.src.map(KeyVal::Ip)),
                    Key::Dst => keys.extend(r.rec.dst.map(KeyVal::Ip)),
                    Key::Port => {
                        keys.push(KeyVal::Port(r.rec.src_port));
                        if r.rec.dst_port != r.rec.src_port {
                            keys.push(KeyVal::Port(r.rec.dst_port));
                        }
                    }
                    Key::Proto => keys.push(KeyVal::Proto(r.rec.proto)),
                }
                for k in keys {
                    want.entry(k).or_default().add(p, b, t);
                }
            }
            for threads in [1, 2, 3] {
                let (got, got_total, _) = s.aggregate(f, key, threads).unwrap();
                assert_eq!(got, want, "{f:?} {key:?}");
                assert_eq!(got_total, total);
            }
            let top = top_n(want.clone(), |a| a.bytes, 5);
            let mut all_sorted: Vec<_> = want.into_iter().collect();
            all_sorted.sort_by(|x, y| y.1.bytes.cmp(&x.1.bytes).then_with(|| x.0.cmp(&y.0)));
            all_sorted.truncate(5);
            assert_eq!(top, all_sorted);
        }
    }
}

/// The postings list, for each address of the index, exactly the rows holding it as source
/// or destination; a partition written before the postings (no columns 42/43) still decodes
/// whole and reports no address index (readers then judge its rows one by one).
#[test]
fn postings_name_every_row_of_each_address_and_old_partitions_still_read() {
    let rows = rows(5000);
    let bytes = encode(&rows).unwrap();
    let part = Part::open(&bytes).unwrap();
    let ix = part.addr_index().unwrap().expect("postings");
    let mut seen = 0usize;
    for (k, a) in ix.addr4.iter().enumerate() {
        let ip = IpAddr::V4((*a).into());
        let want: Vec<u32> = (0..rows.len() as u32)
            .filter(|&i| {
                let r = &rows[i as usize].rec;
                r.src == Some(ip) || r.dst == Some(ip)
            })
            .collect();
        assert_eq!(ix.post4.rows_of(k).unwrap(), want, "{ip}");
        seen += want.len();
    }
    for (k, a) in ix.addr6.iter().enumerate() {
        let ip = IpAddr::V6((*a).into());
        let n = rows
            .iter()
            .filter(|r| r.rec.src == Some(ip) || r.rec.dst == Some(ip))
            .count();
        assert_eq!(ix.post6.rows_of(k).unwrap().len(), n, "{ip}");
        seen += n;
    }
    assert!(seen >= rows.len());
    // The same rows as a file without columns 42 and 43.
    let old = part::without_columns(&bytes, &[part::C_POST4, part::C_POST6]);
    let p = Part::open(&old).unwrap();
    assert!(p.addr_index().unwrap().is_none());
    assert_eq!(p.decode_all().unwrap(), rows);
    // Read from the file, column by column, the same.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.pmf");
    std::fs::write(&path, &bytes).unwrap();
    let f = std::fs::File::open(&path).unwrap();
    let p = Part::open_file(&f).unwrap();
    assert_eq!(p.decode_all().unwrap(), rows);
    let keep: Vec<FlowRow> = rows.iter().step_by(7).cloned().collect();
    assert_eq!(p.decode_where(&|i| i % 7 == 0).unwrap(), keep);
}

/// Derived rows (docs/design/flow-derivation.md step 3): (E, 1 + k), the datagram's own
/// position in `rec.datagram_seq`.
fn derived(e: u64, n: u64, d: u64) -> Vec<(String, FlowRecord)> {
    (0..n)
        .map(|k| {
            let mut r = rec(e * 10 + k);
            r.datagram_seq = d;
            r.flowset = 1;
            r.record = k as u16;
            ("network".to_string(), r)
        })
        .collect()
}

/// Column 29 round-trips a derived row's index; a partition of legacy rows is the same bytes
/// as before the column existed (it is not written), and reads back as legacy.
#[test]
fn derived_rows_round_trip_and_legacy_partitions_keep_their_bytes() {
    let legacy = rows(400);
    let bytes = encode(&legacy).unwrap();
    let part = Part::open(&bytes).unwrap();
    assert!(!part.has_column(part::C_SUB));
    assert!(part.decode_all().unwrap().iter().all(|r| r.sub == 0));
    let mut mixed = legacy.clone();
    for (k, (observer, rec)) in derived(900, 40, 899).into_iter().enumerate() {
        mixed.push(FlowRow {
            seq: 900,
            sub: k as u32 + 1,
            observer,
            rec,
        });
    }
    let bytes = encode(&mixed).unwrap();
    let part = Part::open(&bytes).unwrap();
    assert!(part.has_column(part::C_SUB));
    assert_eq!(part.decode_all().unwrap(), mixed);
    let last = mixed.last().unwrap();
    assert_eq!(
        last.position(),
        model::flow::flow_pos(900, 39),
        "a derived row's key is its flow position"
    );
    assert_eq!(mixed[0].position(), Some(mixed[0].seq));
}

/// A datagram's rows are added once: again (a catch-up), or at or before what a committed
/// store holds, they are skipped whole; legacy and derived adds share the one position.
#[test]
fn derived_flows_are_added_once_and_found_by_position_and_by_citation() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = FlowStore::open(dir.path()).unwrap();
        let old = rows(5);
        for r in &old {
            s.add(r.seq, r.observer.clone(), r.rec.clone()).unwrap();
        }
        assert_eq!(s.add_derived(20, derived(20, 3, 20)).unwrap(), 0);
        // Again, and an earlier position: nothing.
        s.add_derived(20, derived(20, 3, 20)).unwrap();
        s.add_derived(15, derived(15, 2, 15)).unwrap();
        // A datagram that gave no flow moves the position all the same.
        s.add_derived(21, Vec::new()).unwrap();
        s.add_derived(21, derived(21, 2, 21)).unwrap();
        // Flows of an earlier datagram emitted late (their set waited for its template).
        s.add_derived(25, derived(25, 2, 19)).unwrap();
        s.commit_at(25, None).unwrap();
        assert_eq!(s.rows(), 5 + 3 + 2);
        s.add(24, "network".into(), rec(24)).unwrap();
        s.add_derived(25, derived(25, 2, 19)).unwrap();
        s.commit_at(25, None).unwrap();
        assert_eq!(s.rows(), 10);
    }
    let s = FlowStore::open(dir.path()).unwrap();
    assert_eq!(s.rows(), 10);
    let p = model::flow::flow_pos(20, 1).unwrap();
    let r = s.locate(p).unwrap().unwrap();
    assert_eq!((r.seq, r.sub, r.rec.record), (20, 2, 1));
    assert_eq!(
        s.locate(model::flow::flow_pos(20, 3).unwrap()).unwrap(),
        None
    );
    assert_eq!(
        s.locate(20).unwrap(),
        None,
        "a ledger position is not a flow position"
    );
    // By citation: the datagram the flow came in and its place there.
    let at = |f, r| model::flow::FlowAt {
        flowset: f,
        record: r,
    };
    let late = s.find(19, at(1, 1)).unwrap().unwrap();
    assert_eq!((late.seq, late.sub), (25, 2));
    assert_eq!(
        s.find(20, at(1, 2)).unwrap().unwrap().position(),
        Some(model::flow::flow_pos(20, 2).unwrap())
    );
    assert_eq!(s.find(20, at(1, 3)).unwrap(), None);
    // A legacy flow is found by its datagram too.
    let old = &rows(5)[2];
    let found = s
        .find(old.rec.datagram_seq, model::flow::FlowAt::of(&old.rec))
        .unwrap()
        .unwrap();
    assert_eq!(found, *old);
}

fn manifest_version(dir: &Path) -> u64 {
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join(MANIFEST)).unwrap()).unwrap();
    m["version"].as_u64().unwrap()
}

/// The decoders' state is durable with the commit that names it, read back checked, replaced
/// files deleted, unnamed ones deleted at open; a damaged one is an error, never a guess. A
/// store with derived rows or a state says manifest version 2 (earlier builds refuse it); a
/// store of legacy rows keeps version 1.
#[test]
fn the_decoder_state_commits_with_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let states = |d: &Path| -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(d)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".state"))
            .collect();
        v.sort();
        v
    };
    {
        let mut s = FlowStore::open(dir.path()).unwrap();
        s.add(3, "network".into(), rec(3)).unwrap();
        s.commit_at(3, None).unwrap();
        assert_eq!(manifest_version(dir.path()), 1);
        assert_eq!(s.decoder_state().unwrap(), None);
        let one: Vec<u8> = (0..5000u32).flat_map(|v| v.to_le_bytes()).collect();
        s.commit_at_with_state(4, None, Some(&one)).unwrap();
        assert_eq!(manifest_version(dir.path()), 2);
        assert_eq!(s.decoder_state().unwrap(), Some(one.clone()));
        // No new state: the one named stays.
        s.add_derived(5, derived(5, 2, 5)).unwrap();
        s.commit_at(5, None).unwrap();
        assert_eq!(s.decoder_state().unwrap(), Some(one));
        assert_eq!(states(dir.path()).len(), 1);
        // A new state replaces the file.
        s.commit_at_with_state(6, None, Some(b"two")).unwrap();
        assert_eq!(states(dir.path()).len(), 1);
        assert_eq!(s.decoder_state().unwrap(), Some(b"two".to_vec()));
    }
    // An unnamed state file (a commit that did not finish) is debris.
    fs::write(dir.path().join("decoder-0000000099.state"), b"x").unwrap();
    let s = FlowStore::open(dir.path()).unwrap();
    assert_eq!(states(dir.path()).len(), 1);
    assert_eq!(s.decoder_state().unwrap(), Some(b"two".to_vec()));
    assert!(FlowStore::open_read(dir.path()).is_ok());
    // Damaged: refused, saying what to do.
    let named = states(dir.path()).remove(0);
    let path = dir.path().join(&named);
    let mut b = fs::read(&path).unwrap();
    let last = b.len() - 1;
    b[last] ^= 1;
    fs::write(&path, &b).unwrap();
    let e = s.decoder_state().unwrap_err().to_string();
    assert!(e.contains("reindex"), "{e}");
    fs::remove_file(&path).unwrap();
    assert!(s.decoder_state().is_err());
    // A version this build does not know is refused.
    let m = fs::read_to_string(dir.path().join(MANIFEST)).unwrap();
    fs::write(
        dir.path().join(MANIFEST),
        m.replace("\"version\":2", "\"version\":3"),
    )
    .unwrap();
    assert!(FlowStore::open_read(dir.path()).is_err());
}

/// Full partitions are encoded and written on the part writer's thread while the next one
/// fills. They are listed in order, every row once. A write that fails loses nothing: its
/// rows go back to pending (before those added since), the commit waiting for it says so,
/// and the next commit that can write lists them all.
#[test]
fn background_partitions_keep_order_and_lose_nothing_on_a_failed_write() {
    let dir = tempfile::tempdir().unwrap();
    let n = (2 * PART_ROWS + PART_ROWS / 2) as u64;
    let all = rows(n);
    let first = PART_ROWS + 10;
    let mut s = FlowStore::open(dir.path()).unwrap();
    // The first partition's file cannot be created: a directory has its name.
    let blocked = dir
        .path()
        .join(format!("part-{:010}.pmf", s.manifest.next_file));
    std::fs::create_dir(&blocked).unwrap();
    for r in &all[..first] {
        s.add(r.seq, r.observer.clone(), r.rec.clone()).unwrap();
    }
    let at = all[first - 1].seq;
    assert!(s.commit_at(at, None).is_err());
    assert_eq!(
        s.pending.len(),
        first,
        "the failed partition's rows are pending again"
    );
    std::fs::remove_dir(&blocked).unwrap();
    s.commit_at(at, None).unwrap();
    assert_eq!(s.rows(), first as u64);
    // Two more full partitions through the part writer, then the rest at the commit.
    for r in &all[first..] {
        s.add(r.seq, r.observer.clone(), r.rec.clone()).unwrap();
    }
    s.commit_at(all[all.len() - 1].seq, None).unwrap();
    drop(s);
    let s = FlowStore::open(dir.path()).unwrap();
    assert_eq!(s.rows(), n);
    let seqs: Vec<(u64, u64)> = s
        .partitions()
        .iter()
        .map(|p| (p.first_seq, p.last_seq))
        .collect();
    assert!(seqs.windows(2).all(|w| w[0].1 < w[1].0), "{seqs:?}");
    let mut got = Vec::new();
    s.scan(&FlowFilter::default(), &mut |r| got.push(r.clone()))
        .unwrap();
    assert!(got == all, "every row once, in order");
}
