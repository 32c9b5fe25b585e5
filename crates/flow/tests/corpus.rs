//! The flow decoder against the corpus oracles: every row of ../shared/corpus/ORACLES.md §1
//! (tshark 4.0 record counts for the akvorado pcaps and the logstash-codec-netflow payloads,
//! each file alone and replayed per exporter, templates first) must give the same number of
//! data records (flows plus options data), except where tshark itself is wrong; those rows
//! are listed in `TSHARK_WRONG` with the count we give and why.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::net::SocketAddr;
use std::path::PathBuf;

use flow::{FlowDecoder, Limits, Stats};

fn corpus() -> PathBuf {
    // PUGMARK_CORPUS first (scripts/test sets it), as the other suites do.
    let p = std::env::var_os("PUGMARK_CORPUS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus"),
        PathBuf::from,
    );
    assert!(
        p.join("ORACLES.md").is_file(),
        "test corpus missing at {} (expected shared/corpus beside the checkout)",
        p.display()
    );
    p
}

/// Rows where tshark 4.0's count is not the truth, with ours and the reason.
const TSHARK_WRONG: &[(&str, u64, &str)] = &[
    (
        "data+templates.pcap",
        22,
        "header count 24 = 2 templates + 22 records: a data set precedes its template in the \
         datagram; tshark cannot go back to it, we hold it and decode it at the datagram's end",
    ),
    (
        "netflow9_test_invalid01.dat",
        3,
        "the header count (2) covers only the templates and tshark stops there; an options \
         record (sampling 1 in 100) and two flows (IPv6, IPv4) follow in well-formed flowsets",
    ),
    (
        "ipfix_test_ixia_tpldata256.dat",
        1,
        "ORACLES.md: tshark decodes the ixia templates but 0 data records; ours is a sane UDP \
         flow (119.103.128.175:51695 -> 202.170.60.247:36197, 4 packets, 360 bytes)",
    ),
    ("ipfix_test_ixia_tpldata271.dat", 2, "as tpldata256"),
    (
        "ipfix_test_ixia_tpldata256.dat ipfix_test_ixia_tpldata271.dat",
        3,
        "as tpldata256",
    ),
    (
        "netflow9_test_h3c_tpl3281.dat netflow9_test_h3c_data3281.dat",
        16,
        "tshark flags the H3C set malformed after 1 record; its 16 records decode (logstash spec agrees)",
    ),
    (
        "netflow9_test_h3c_netstream_varstring_tpl3281.dat netflow9_test_h3c_netstream_varstring_data3281.dat",
        1,
        "same count as tshark, but tshark calls it malformed: the variable-length field decodes",
    ),
];

struct Row {
    files: Vec<String>,
    data_records: u64,
}

fn rows() -> Vec<Row> {
    let text = std::fs::read_to_string(corpus().join("ORACLES.md")).unwrap();
    let section = text
        .split("## 2.")
        .next()
        .unwrap()
        .split("## 1.")
        .nth(1)
        .unwrap()
        .to_string();
    let mut out = Vec::new();
    for line in section.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | files | pkts | versions | header sums | templates | options templates | data records | …
        if cells.len() < 9 || !(cells[1].ends_with(".pcap") || cells[1].ends_with(".dat")) {
            continue;
        }
        out.push(Row {
            files: cells[1].split_whitespace().map(String::from).collect(),
            data_records: cells[7].parse().unwrap(),
        });
    }
    out
}

fn replay(files: &[String]) -> Stats {
    let mut dec = FlowDecoder::new(Limits::default());
    let mut seq = 1u64;
    let unknown: SocketAddr = "0.0.0.0:0".parse().unwrap();
    for f in files {
        let dir = if f.ends_with(".pcap") {
            "netflow/akvorado_pcaps"
        } else {
            "netflow/logstash-codec-netflow_raw_udp_payloads"
        };
        let bytes = std::fs::read(corpus().join(dir).join(f)).unwrap();
        if flow::pcap::is_capture(&bytes) {
            let (grams, _) = flow::pcap::udp_datagrams(&bytes).unwrap();
            for g in grams {
                dec.feed(g.src, seq, &g.payload, 0);
                seq += 1;
            }
        } else {
            dec.feed(unknown, seq, &bytes, 0);
            seq += 1;
        }
    }
    dec.finish();
    dec.stats().clone()
}

#[test]
fn every_oracle_row_matches_tshark_or_a_known_tshark_error() {
    let rows = rows();
    assert!(rows.len() > 90, "only {} oracle rows found", rows.len());
    let mut failures = Vec::new();
    for row in &rows {
        let key = row.files.join(" ");
        let stats = replay(&row.files);
        let want = TSHARK_WRONG
            .iter()
            .find(|(k, _, _)| *k == key)
            .map_or(row.data_records, |(_, n, _)| *n);
        if stats.data_records() != want {
            failures.push(format!(
                "{key}: {} records (flows {}, options {}), oracle {want}; problems {:?}",
                stats.data_records(),
                stats.flows,
                stats.options_records,
                stats.problems
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn payloads() -> Vec<(String, Vec<u8>)> {
    let dir = corpus().join("netflow/logstash-codec-netflow_raw_udp_payloads");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Truncated packets and templates that lie about lengths: every prefix of every corpus
/// payload, and every payload with one length byte flipped, after the whole corpus taught
/// the decoder its templates. Counted, never a panic.
#[test]
fn truncations_and_lying_lengths_never_panic() {
    let unknown: SocketAddr = "0.0.0.0:0".parse().unwrap();
    let all = payloads();
    let mut dec = FlowDecoder::default();
    for (_, b) in &all {
        dec.feed(unknown, 1, b, 0);
    }
    for (_, b) in &all {
        for n in 0..b.len() {
            dec.feed(unknown, 2, &b[..n], 0);
        }
        for at in [2usize, 3, 22, 23, 26, 27, 30, 31] {
            let mut m = b.clone();
            if let Some(x) = m.get_mut(at) {
                *x ^= 0xff;
                dec.feed(unknown, 3, &m, 0);
            }
        }
    }
    assert!(dec.stats().problems.values().sum::<u64>() > 0);
}

/// A flood of templates and template-less data from one exporter stays within the caps.
#[test]
fn caches_are_capped() {
    let limits = Limits {
        max_templates_per_exporter: 8,
        max_pending_per_exporter: 4,
        ..Limits::default()
    };
    let mut dec = FlowDecoder::new(limits);
    let ex: SocketAddr = "192.0.2.9:2055".parse().unwrap();
    for id in 256u16..1256 {
        // v9 header, one template flowset with one template of one 4-byte field, then a data
        // flowset for a template that never comes.
        let mut d = vec![0, 9, 0, 2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0];
        d.extend_from_slice(&[0, 0, 0, 12]);
        d.extend_from_slice(&id.to_be_bytes());
        d.extend_from_slice(&[0, 1, 0, 8, 0, 4]);
        d.extend_from_slice(&(id + 5000).to_be_bytes());
        d.extend_from_slice(&[0, 8, 10, 0, 0, 1]);
        dec.feed(ex, u64::from(id), &d, 0);
    }
    let s = dec.stats();
    assert_eq!(s.templates, 8);
    assert_eq!(s.problems.get("template_cap"), Some(&992));
    assert_eq!(s.pending_held, 4);
    assert_eq!(s.dropped_sets, 996);
}

/// Data before its template is held and decoded when the template arrives; it names its
/// own datagram.
#[test]
fn data_before_template_is_decoded_later() {
    let dir = corpus().join("netflow/akvorado_pcaps");
    let mut dec = FlowDecoder::default();
    let mut seen = Vec::new();
    for (seq, f) in [(1u64, "data.pcap"), (2, "template.pcap")] {
        let (grams, _) = flow::pcap::udp_datagrams(&std::fs::read(dir.join(f)).unwrap()).unwrap();
        for g in grams {
            seen.extend(dec.feed(g.src, seq, &g.payload, 0));
        }
    }
    assert_eq!(seen.len(), 4);
    assert!(seen.iter().all(|r| r.datagram_seq == 1));
    assert_eq!(dec.stats().pending_decoded, 1);
}

/// Cisco ASA NSEL (NetFlow v9) exports its translations: the newer templates in IEs 225–228
/// and 281/282 (postNATSource…, postNAPT…), the older in 40001–40004 (NF_F_XLATE_*). Both
/// logstash-codec-netflow samples decode with them; a post-NAT source that differs from the
/// source is a translation; the fields survive the record's byte encoding.
#[test]
fn cisco_asa_nsel_translations_are_read() {
    let dir = corpus().join("netflow/logstash-codec-netflow_raw_udp_payloads");
    // (The ASA samples' flows are identity translations — xlate = original, as logstash's
    // spec expects —: read, but no rewrite. A rewriting record is decode's test
    // `ipfix_nat_fields_become_a_translation`.)
    for (files, rewrites) in [
        (
            &[
                "netflow9_test_cisco_asa_1_tpl.dat",
                "netflow9_test_cisco_asa_1_data.dat",
            ][..],
            false,
        ),
        (
            &[
                "netflow9_test_cisco_asa_2_tpl_26x.dat",
                "netflow9_test_cisco_asa_2_tpl_27x.dat",
                "netflow9_test_cisco_asa_2_data.dat",
            ][..],
            false,
        ),
    ] {
        let mut dec = FlowDecoder::new(Limits::default());
        let unknown: SocketAddr = "0.0.0.0:0".parse().unwrap();
        let mut flows = Vec::new();
        for (seq, f) in files.iter().enumerate() {
            let bytes = std::fs::read(dir.join(f)).unwrap();
            flows.extend(dec.feed(unknown, seq as u64 + 1, &bytes, 0));
        }
        assert!(!flows.is_empty());
        assert!(
            flows.iter().all(|f| f.nat.is_some()),
            "{files:?}: {flows:?}"
        );
        let translated = flows
            .iter()
            .filter(|f| {
                f.nat
                    .as_ref()
                    .is_some_and(|n| n.src.is_some() && n.src != f.src)
            })
            .count();
        assert_eq!(translated > 0, rewrites, "{files:?}: {flows:#?}");
        for f in &flows {
            assert_eq!(&model::FlowRecord::decode(&f.encode()).unwrap(), f);
        }
    }
}

/// Every corpus datagram in one stream (the akvorado pcaps, then the logstash payloads), as
/// a collector would see them: (exporter, payload).
fn all_datagrams() -> Vec<(SocketAddr, Vec<u8>)> {
    let unknown: SocketAddr = "0.0.0.0:0".parse().unwrap();
    let dir = corpus().join("netflow/akvorado_pcaps");
    let mut pcaps: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
        .collect();
    pcaps.sort();
    let mut out = Vec::new();
    for p in pcaps {
        let (grams, _) = flow::pcap::udp_datagrams(&std::fs::read(p).unwrap()).unwrap();
        out.extend(grams.into_iter().map(|g| (g.src, g.payload)));
    }
    out.extend(payloads().into_iter().map(|(_, b)| (unknown, b)));
    out
}

/// Saved and restored at any point of the stream, the decoder goes on exactly as one that
/// never stopped (docs/design/flow-derivation.md §2.2): the same flows, in the same order,
/// from the rest of the stream, and the same state at the end. The stream's datagrams are
/// received a second apart, so sets waiting for a template are carried across the cut
/// (`data.pcap` precedes `template.pcap`).
#[test]
fn a_restored_decoder_goes_on_as_one_that_never_stopped() {
    let grams = all_datagrams();
    assert!(grams.len() > 100, "{} datagrams", grams.len());
    // Datagrams `range` of the stream, each at its own seq and a second after the one before.
    let feed = |dec: &mut FlowDecoder, range: std::ops::Range<usize>| {
        let mut out = Vec::new();
        for (i, (src, g)) in grams.iter().enumerate().take(range.end).skip(range.start) {
            out.extend(dec.feed(*src, i as u64 + 1, g, 1_000 * i as i64));
        }
        out
    };
    let mut whole = FlowDecoder::default();
    let all = feed(&mut whole, 0..grams.len());
    assert!(all.len() > 100, "{} flows", all.len());
    let mut carried_pending = false;
    for cut in 0..=grams.len() {
        let mut first = FlowDecoder::default();
        let mut got = feed(&mut first, 0..cut);
        let saved = first.snapshot();
        carried_pending |=
            first.stats().pending_held > first.stats().pending_decoded + first.stats().dropped_sets;
        let mut second = FlowDecoder::restore(&saved, Limits::default()).unwrap();
        assert_eq!(
            second.snapshot(),
            saved,
            "cut {cut}: restore then save is the same bytes"
        );
        got.extend(feed(&mut second, cut..grams.len()));
        assert_eq!(got, all, "cut {cut}: the flows differ");
        assert_eq!(
            second.snapshot(),
            whole.snapshot(),
            "cut {cut}: the end state differs"
        );
    }
    assert!(
        carried_pending,
        "no cut carried a set waiting for its template"
    );
}

/// Saved state that is cut short, has a byte changed, or exceeds the limits is refused
/// whole, never a panic; a restored decoder then decodes the corpus without one either.
#[test]
fn damaged_or_oversized_state_is_refused() {
    let mut dec = FlowDecoder::default();
    for (i, (src, g)) in all_datagrams().iter().enumerate() {
        dec.feed(*src, i as u64 + 1, g, 0);
    }
    let saved = dec.snapshot();
    assert!(saved.len() > 1000, "{} bytes", saved.len());
    for n in 0..saved.len() {
        assert!(
            FlowDecoder::restore(&saved[..n], Limits::default()).is_err(),
            "cut at {n}"
        );
    }
    let mut more = saved.clone();
    more.push(0);
    assert!(FlowDecoder::restore(&more, Limits::default()).is_err());
    let mut newer = saved.clone();
    newer[4] = 2;
    assert_eq!(
        FlowDecoder::restore(&newer, Limits::default()).unwrap_err(),
        flow::StateError::Version(2)
    );
    let tight = Limits {
        max_exporters: 1,
        ..Limits::default()
    };
    assert!(matches!(
        FlowDecoder::restore(&saved, tight),
        Err(flow::StateError::Limits(_))
    ));
    let unknown: SocketAddr = "0.0.0.0:0".parse().unwrap();
    for i in (0..saved.len()).step_by(3) {
        let mut bad = saved.clone();
        bad[i] ^= 0x5a;
        if let Ok(mut d) = FlowDecoder::restore(&bad, Limits::default()) {
            for (_, g) in payloads() {
                d.feed(unknown, 1, &g, 0);
            }
        }
    }
}

/// An IPFIX message (RFC 7011 §3.1) of the given sets: header with observation domain 1.
fn ipfix(sets: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = sets.concat();
    let mut m = Vec::new();
    m.extend_from_slice(&10u16.to_be_bytes());
    m.extend_from_slice(&u16::try_from(16 + body.len()).unwrap().to_be_bytes());
    m.extend_from_slice(&1_700_000_000u32.to_be_bytes());
    m.extend_from_slice(&1u32.to_be_bytes());
    m.extend_from_slice(&1u32.to_be_bytes());
    m.extend_from_slice(&body);
    m
}

/// A set: id, length, content.
fn set(id: u16, content: &[u8]) -> Vec<u8> {
    let mut s = id.to_be_bytes().to_vec();
    s.extend_from_slice(&u16::try_from(4 + content.len()).unwrap().to_be_bytes());
    s.extend_from_slice(content);
    s
}

fn be(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Times an exporter sends as the largest 8-byte values: flowStartSeconds (150) times 1000,
/// and a systemInitTimeMilliseconds (160, options data) plus a flowStartSysUpTime (22),
/// overflowed i64 (a panic in checked builds: found through a damaged saved state). They
/// saturate instead, and the record is decoded.
#[test]
fn times_at_the_edge_of_i64_saturate() {
    let max = i64::MAX as u64;
    // Data template 256: flowStartSeconds (8 bytes), sourceIPv4Address.
    let t256 = set(
        2,
        &be(&[
            &256u16.to_be_bytes(),
            &2u16.to_be_bytes(),
            &150u16.to_be_bytes(),
            &8u16.to_be_bytes(),
            &8u16.to_be_bytes(),
            &4u16.to_be_bytes(),
        ]),
    );
    let d256 = set(256, &be(&[&max.to_be_bytes(), &[192, 0, 2, 7]]));
    // Options template 257 (scope: observationDomainId), systemInitTimeMilliseconds.
    let t257 = set(
        3,
        &be(&[
            &257u16.to_be_bytes(),
            &2u16.to_be_bytes(),
            &1u16.to_be_bytes(),
            &149u16.to_be_bytes(),
            &4u16.to_be_bytes(),
            &160u16.to_be_bytes(),
            &8u16.to_be_bytes(),
        ]),
    );
    let d257 = set(257, &be(&[&1u32.to_be_bytes(), &max.to_be_bytes()]));
    // Data template 258: flowStartSysUpTime (4 bytes), relative to that init time.
    let t258 = set(
        2,
        &be(&[
            &258u16.to_be_bytes(),
            &1u16.to_be_bytes(),
            &22u16.to_be_bytes(),
            &4u16.to_be_bytes(),
        ]),
    );
    let d258 = set(258, &u32::MAX.to_be_bytes());
    let mut dec = FlowDecoder::default();
    let ex: SocketAddr = "192.0.2.1:4739".parse().unwrap();
    let flows = dec.feed(ex, 1, &ipfix(&[t256, d256, t257, d257, t258, d258]), 0);
    assert_eq!(flows.len(), 2, "{:?}", dec.stats());
    assert_eq!(flows[0].start_ms, Some(i64::MAX));
    assert_eq!(flows[1].start_ms, Some(i64::MAX));
}
