//! The observations one OpenNebula VM document holds besides its own (the decoder's event is
//! the VM as of the latest moment the document records): the VM at its creation (`STIME`) and
//! at the start of each placement in its history (`HISTORY` `STIME`, the host). Stored in
//! `vm_sub` with the document's ledger position, read back with the VM's other observations.
//!
//! Which NICs each of those moments lists, from what the document says and nothing more:
//! - OpenNebula closes a history record and opens a copy on the same host at each NIC attach
//!   and detach (src/dm/DispatchManagerActions.cc `close_cp_history`, `ACTION` 23
//!   `NIC_ATTACH_ACTION`, 24 `NIC_DETACH_ACTION`; include/VMActions.h);
//! - NIC ids grow: the NICs attached later are the highest ids, one per attach, in order;
//! - a detached NIC is no longer in the document, so no moment before the last detach can be
//!   listed completely: those moments list no address (they say nothing about leases, only
//!   about placement);
//! - `onevm list -x` (one.vmpool.info) carries only the last history record: a document whose
//!   history does not start at SEQ 0 cannot tell which NICs came before it, so its moments
//!   before the first record it shows list no address either.

use model::{Event, fields};

use super::VmObs;

const NIC_ATTACH: u32 = 23;
const NIC_DETACH: u32 = 24;

struct Hist {
    seq: u64,
    host: String,
    stime: i64,
    etime: i64,
    action: u32,
}

struct Nic {
    id: u32,
    ips: Vec<String>,
    mac: Option<String>,
}

const NS: i64 = 1_000_000_000;

fn history(e: &Event) -> Vec<Hist> {
    let mut out: Vec<Hist> = e
        .field(fields::ONE_HISTORY)
        .unwrap_or("")
        .split(',')
        .filter_map(|entry| {
            let (seq, rest) = entry.split_once('=')?;
            let mut p = rest.split('/');
            let host = p.next()?.to_string();
            let stime = p.next()?.parse().ok()?;
            let etime = p.next()?.parse().ok()?;
            let action = p.next()?.parse().ok()?;
            Some(Hist {
                seq: seq.parse().ok()?,
                host,
                stime,
                etime,
                action,
            })
        })
        .collect();
    out.sort_by_key(|h| h.seq);
    out.dedup_by_key(|h| h.seq);
    out
}

fn nics(e: &Event) -> Vec<Nic> {
    let mut out: Vec<Nic> = e
        .field(fields::ONE_NICS)
        .unwrap_or("")
        .split(',')
        .filter_map(|entry| {
            let (id, rest) = entry.split_once('=')?;
            let mut ips = Vec::new();
            let mut mac = None;
            for part in rest.split('/').filter(|p| !p.is_empty()) {
                if part.parse::<std::net::IpAddr>().is_ok() {
                    ips.push(part.to_string());
                } else {
                    mac = Some(part.to_lowercase());
                }
            }
            Some(Nic {
                id: id.parse().ok()?,
                ips,
                mac,
            })
        })
        .collect();
    out.sort_by_key(|n| n.id);
    out
}

/// The observations at the document's other moments, in time order.
pub(super) fn observations(e: &Event, base: &VmObs) -> Vec<VmObs> {
    let hist = history(e);
    let nics = nics(e);
    let attaches: Vec<i64> = hist
        .iter()
        .filter(|h| h.action == NIC_ATTACH && h.etime > 0)
        .map(|h| h.etime)
        .collect();
    let last_detach = hist
        .iter()
        .filter(|h| h.action == NIC_DETACH && h.etime > 0)
        .map(|h| h.etime)
        .max();
    // The last `attaches.len()` NICs by id came with the attaches, in order.
    let k = attaches.len().min(nics.len());
    let (first, later) = nics.split_at(nics.len() - k);
    let complete_from = match hist.first() {
        Some(h) if h.seq != 0 => Some(h.stime),
        _ => None,
    };
    let listed_at = |t: i64| -> Option<(Vec<String>, Vec<String>)> {
        if last_detach.is_some_and(|d| t < d) || complete_from.is_some_and(|c| t < c) {
            return None;
        }
        let present = first.iter().chain(
            later
                .iter()
                .zip(&attaches)
                .filter(|(_, at)| **at <= t)
                .map(|(n, _)| n),
        );
        let (mut ips, mut macs) = (Vec::new(), Vec::new());
        for n in present {
            ips.extend(n.ips.iter().cloned());
            macs.extend(n.mac.iter().cloned());
        }
        Some((ips, macs))
    };
    let mut out = Vec::new();
    let mut at = |t: i64, event_type: &str, hypervisor: Option<String>| {
        let (ips, macs) = listed_at(t).unwrap_or_default();
        out.push(VmObs {
            time_ns: t.saturating_mul(NS),
            event_type: Some(event_type.to_string()),
            hypervisor,
            ips,
            macs,
            ..base.clone()
        });
    };
    if let Some(s) = e
        .field(fields::ONE_STIME)
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
    {
        at(s.as_second(), "one.vm.create.stime", None);
    }
    for h in &hist {
        at(h.stime, "one.vm.history", Some(h.host.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{Observer, Origin, Received};
    use std::collections::BTreeMap;

    fn event(nics: &str, history: &str) -> Event {
        let mut f = BTreeMap::new();
        f.insert(fields::ONE_VM_ID.to_string(), "7".to_string());
        f.insert(
            fields::ONE_STIME.to_string(),
            "2026-10-14T08:00:00Z".to_string(),
        );
        f.insert(fields::ONE_NICS.to_string(), nics.to_string());
        f.insert(fields::ONE_HISTORY.to_string(), history.to_string());
        Event {
            source_kind: "opennebula-vm".into(),
            fields: f,
            class: model::EventClass::VmLifecycle,
            ..Event::blank(
                Received::from_stored(0),
                Observer::Cloud,
                Origin::File {
                    path: "x".into(),
                    line: 1,
                },
                Vec::new(),
            )
        }
    }

    fn base() -> VmObs {
        VmObs {
            seq: 1,
            time_ns: 0,
            observer: Observer::Cloud,
            uuid: "one-7".into(),
            event_type: None,
            state: None,
            hypervisor: None,
            name: None,
            hostname: None,
            user_id: Some("5".into()),
            project_id: None,
            image: None,
            ips: Vec::new(),
            macs: Vec::new(),
            summary: String::new(),
        }
    }

    const T0: i64 = 1_791_964_800; // 2026-10-14T08:00:00Z

    #[test]
    fn creation_and_each_placement_with_the_nics_present_then() {
        // NIC 1 attached at T0+600 (history 0 closed by action 23, copied as history 1), then
        // a live migration at T0+1200.
        let h = format!(
            "0=hv1/{}/{}/23,1=hv1/{}/{}/2,2=hv2/{}/0/0",
            T0 + 60,
            T0 + 600,
            T0 + 600,
            T0 + 1200,
            T0 + 1200
        );
        let obs = observations(
            &event(
                "0=10.0.0.5/02:00:0a:00:00:05,1=10.0.1.9/02:00:0a:00:01:09",
                &h,
            ),
            &base(),
        );
        let got: Vec<(i64, Option<&str>, Vec<&str>)> = obs
            .iter()
            .map(|o| {
                (
                    o.time_ns / NS - T0,
                    o.hypervisor.as_deref(),
                    o.ips.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (0, None, vec!["10.0.0.5"]),
                (60, Some("hv1"), vec!["10.0.0.5"]),
                (600, Some("hv1"), vec!["10.0.0.5", "10.0.1.9"]),
                (1200, Some("hv2"), vec!["10.0.0.5", "10.0.1.9"]),
            ]
        );
        assert!(obs.iter().all(|o| o.user_id.as_deref() == Some("5")));
    }

    #[test]
    fn moments_before_a_detach_list_no_address() {
        let h = format!("0=hv1/{}/{}/24,1=hv1/{}/0/0", T0 + 60, T0 + 900, T0 + 900);
        let obs = observations(&event("0=10.0.0.5", &h), &base());
        let ips: Vec<usize> = obs.iter().map(|o| o.ips.len()).collect();
        assert_eq!(ips, [0, 0, 1]);
    }

    #[test]
    fn a_partial_history_lists_addresses_only_from_its_first_record() {
        let h = format!("3=hv2/{}/0/0", T0 + 7200);
        let obs = observations(&event("0=10.0.0.5,4=10.0.9.9", &h), &base());
        let ips: Vec<usize> = obs.iter().map(|o| o.ips.len()).collect();
        assert_eq!(
            ips,
            [0, 2],
            "creation says nothing, the shown placement lists both"
        );
    }

    #[test]
    fn malformed_entries_are_skipped_not_guessed() {
        let obs = observations(
            &event("x=1.2.3.4,0=", "a=b/c,0=hv1/notanumber/0/0"),
            &base(),
        );
        assert_eq!(obs.len(), 1, "only the creation");
        assert!(obs[0].ips.is_empty());
    }
}
