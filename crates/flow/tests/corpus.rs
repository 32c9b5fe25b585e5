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
