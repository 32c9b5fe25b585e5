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
