//! `challenge generate --cloud opennebula`: the same site day (VMs, addresses, placements,
//! owners, payloads, VM syslog, hypervisor lines, the problems for `check`) told by an
//! OpenNebula front-end instead of nova and Keystone:
//!
//! - `one-hooks.xml`: what the site kit's state hooks write into the spool, one `<VM>`
//!   document (the hook's `$TEMPLATE`, decoded) per RUNNING — at creation, after a NIC
//!   hot-plug, after a migration — and per DONE, each with the VM's history so far;
//! - `onevm-list.xml`: the periodic `onevm list -x` at the end of the day: one `VM_POOL`, the
//!   VMs not DONE, each with only its last history record (as `one.vmpool.info` answers);
//! - `onevnet-show.xml`: `onevnet show -x` of the private network at the end of the day;
//! - `oned.log`: the API requests behind it all (allocate, deploy, attach/detach, migrate,
//!   terminate) with their results, in file mode;
//! - `oned-syslog.log`: the VMs' state changes as oned writes them in syslog mode (`[VM n]`
//!   label), archived by the central rsyslog; and `vms/<id>.log`, the per-VM logs of a few
//!   VMs in file mode (the same changes twice: duplicates must not matter).
//!
//! Identities are OpenNebula's: VM `one-<ID>` (IDs in creation order from 100), users by UID
//! (from 2; 0 and 1 are oneadmin and serveradmin) named in every VM document (so no user is
//! unknown, unlike the Keystone day's removed user), groups by GID (from 100). The VM's tap
//! device for NIC n is `one-<ID>-n`.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

use super::generate::{Holding, Site, Vm, put, strftime};

/// The front-end's name in its syslog lines.
const FRONTEND: &str = "one-fe";
/// VMActions codes (include/VMActions.h) that close a history record.
const LIVE_MIGRATE: u32 = 2;
const NIC_ATTACH: u32 = 23;
const NIC_DETACH: u32 = 24;
const TERMINATE_HARD: u32 = 28;

/// Rename the site's identities the way OpenNebula numbers them.
pub fn convert(site: &mut Site) {
    for (i, vm) in site.vms.iter_mut().enumerate() {
        vm.uuid = model::fields::opennebula_vm(100 + i as u64);
    }
    for (i, u) in site.users.iter_mut().enumerate() {
        u.id = (2 + i).to_string();
        u.in_directory = true;
    }
    for (i, p) in site.projects.iter_mut().enumerate() {
        p.id = (100 + i).to_string();
    }
}

/// The VM's numeric id.
pub fn vm_id(vm: &Vm) -> u64 {
    vm.uuid
        .strip_prefix("one-")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The tap device of the VM's first NIC.
pub fn tap(vm: &Vm) -> String {
    format!("one-{}-0", vm_id(vm))
}

struct Hist {
    host: usize,
    stime: i64,
    etime: i64,
    action: u32,
}

/// What changes a VM's document, in time order: (time, what).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Change {
    Attach,
    Detach,
    Migrate(usize),
}

/// The VM's history as of `t` (records closed by changes up to `t` included).
fn history_at(vm: &Vm, t: i64) -> Vec<Hist> {
    let mut changes: Vec<(i64, Change)> = Vec::new();
    if let Some(a) = vm.holdings.get(1) {
        changes.push((a.from, Change::Attach));
        if let Some(d) = a.to {
            changes.push((d, Change::Detach));
        }
    }
    for &(tm, hv) in vm.placements.iter().skip(1) {
        changes.push((tm, Change::Migrate(hv)));
    }
    changes.sort();
    let first_host = vm.placements.first().map_or(0, |p| p.1);
    let mut hist = vec![Hist {
        host: first_host,
        stime: vm.created,
        etime: 0,
        action: 0,
    }];
    for (tc, c) in changes {
        if tc > t {
            break;
        }
        let (host, action) = match c {
            Change::Attach => (hist.last().map_or(first_host, |h| h.host), NIC_ATTACH),
            Change::Detach => (hist.last().map_or(first_host, |h| h.host), NIC_DETACH),
            Change::Migrate(hv) => (hv, LIVE_MIGRATE),
        };
        if let Some(last) = hist.last_mut() {
            last.etime = tc;
            last.action = action;
        }
        hist.push(Hist {
            host,
            stime: tc,
            etime: 0,
            action: 0,
        });
    }
    if let Some(d) = vm.deleted.filter(|d| *d <= t)
        && let Some(last) = hist.last_mut()
    {
        last.etime = d;
        last.action = TERMINATE_HARD;
    }
    hist
}

/// The NICs of the VM at `t`: (NIC_ID, holding).
fn nics_at(vm: &Vm, t: i64) -> Vec<(usize, &Holding)> {
    vm.holdings
        .iter()
        .enumerate()
        .filter(|(i, h)| *i == 0 || (h.from <= t && h.to.is_none_or(|to| t < to)))
        .collect()
}

/// One `<VM>` document as of `t`; `last_only` keeps only the last history record (pool info).
fn vm_xml(site: &Site, vm: &Vm, t: i64, last_only: bool) -> String {
    let id = vm_id(vm);
    let user = &site.users[vm.user];
    let group = &site.projects[user.project];
    let done = vm.deleted.is_some_and(|d| d <= t);
    let (state, lcm) = if done { (6, 0) } else { (3, 3) };
    let hist = history_at(vm, t);
    let mut x = String::with_capacity(2048);
    let _ = write!(
        x,
        "<VM><ID>{id}</ID><UID>{}</UID><GID>{}</GID><UNAME>{}</UNAME><GNAME>{}</GNAME><NAME>{}</NAME>\
<PERMISSIONS><OWNER_U>1</OWNER_U><OWNER_M>1</OWNER_M><OWNER_A>0</OWNER_A><GROUP_U>0</GROUP_U><GROUP_M>0</GROUP_M><GROUP_A>0</GROUP_A><OTHER_U>0</OTHER_U><OTHER_M>0</OTHER_M><OTHER_A>0</OTHER_A></PERMISSIONS>\
<LAST_POLL>0</LAST_POLL><STATE>{state}</STATE><LCM_STATE>{lcm}</LCM_STATE><PREV_STATE>3</PREV_STATE><PREV_LCM_STATE>3</PREV_LCM_STATE><RESCHED>0</RESCHED>\
<STIME>{}</STIME><ETIME>{}</ETIME><DEPLOY_ID>one-{id}</DEPLOY_ID><MONITORING/><SCHED_ACTIONS/><TEMPLATE>\
<CONTEXT><NETWORK><![CDATA[YES]]></NETWORK><SET_HOSTNAME><![CDATA[{}]]></SET_HOSTNAME><SSH_PUBLIC_KEY><![CDATA[ssh-ed25519 AAAAC3Nza {}]]></SSH_PUBLIC_KEY></CONTEXT>\
<CPU><![CDATA[4]]></CPU><DISK><DATASTORE><![CDATA[ceph]]></DATASTORE><DISK_ID><![CDATA[0]]></DISK_ID><IMAGE><![CDATA[alma9-wn]]></IMAGE><IMAGE_ID><![CDATA[12]]></IMAGE_ID></DISK><MEMORY><![CDATA[8192]]></MEMORY>",
        user.id,
        group.id,
        user.name,
        group.name,
        vm.hostname,
        vm.created,
        vm.deleted.filter(|_| done).unwrap_or(0),
        vm.hostname,
        user.name,
    );
    for (n, h) in nics_at(vm, t) {
        let _ = write!(
            x,
            "<NIC><BRIDGE><![CDATA[br0]]></BRIDGE><IP><![CDATA[{}]]></IP><MAC><![CDATA[{}]]></MAC><NETWORK><![CDATA[private]]></NETWORK><NETWORK_ID><![CDATA[0]]></NETWORK_ID><NIC_ID><![CDATA[{n}]]></NIC_ID><TARGET><![CDATA[one-{id}-{n}]]></TARGET><VN_MAD><![CDATA[bridge]]></VN_MAD></NIC>",
            h.ip, h.mac
        );
    }
    let _ = write!(
        x,
        "<TEMPLATE_ID><![CDATA[7]]></TEMPLATE_ID><TM_MAD_SYSTEM><![CDATA[ceph]]></TM_MAD_SYSTEM><VMID><![CDATA[{id}]]></VMID></TEMPLATE><USER_TEMPLATE/><HISTORY_RECORDS>"
    );
    let skip = if last_only {
        hist.len().saturating_sub(1)
    } else {
        0
    };
    for (seq, h) in hist.iter().enumerate().skip(skip) {
        let _ = write!(
            x,
            "<HISTORY><OID>{id}</OID><SEQ>{seq}</SEQ><HOSTNAME>{}</HOSTNAME><HID>{}</HID><CID>0</CID><STIME>{}</STIME><ETIME>{}</ETIME><VM_MAD><![CDATA[kvm]]></VM_MAD><TM_MAD><![CDATA[ceph]]></TM_MAD><DS_ID>0</DS_ID><PLAN_ID>-1</PLAN_ID><ACTION_ID>-1</ACTION_ID><PSTIME>{}</PSTIME><PETIME>{}</PETIME><RSTIME>{}</RSTIME><RETIME>{}</RETIME><ESTIME>0</ESTIME><EETIME>0</EETIME><ACTION>{}</ACTION><UID>{}</UID><GID>{}</GID><REQUEST_ID>-1</REQUEST_ID></HISTORY>",
            site.hypervisors[h.host],
            h.host + 1,
            h.stime,
            h.etime,
            if seq == 0 { h.stime } else { 0 },
            if seq == 0 { h.stime } else { 0 },
            h.stime,
            h.etime,
            h.action,
            user.id,
            group.id,
        );
    }
    x.push_str("</HISTORY_RECORDS></VM>");
    x
}

/// What [`write()`] wrote.
pub struct Written {
    pub documents: usize,
    pub log_lines: usize,
    /// The files to ingest, with the observer each needs (None: the format's default).
    pub files: Vec<(String, Option<String>)>,
}

/// Write the front-end's side of the day into `out`.
pub fn write(site: &Site, out: &Path) -> Result<Written> {
    // The state hooks: RUNNING at creation and after each change, DONE at deletion.
    let mut hooks: Vec<(i64, u64, String)> = Vec::new();
    let mut oned: Vec<(i64, String)> = Vec::new();
    let mut vmlog: Vec<(i64, u64, String)> = Vec::new();
    let mut req = 4000u64;
    let mut request = |t: i64, uid: &str, call: &str, params: &str, result: &str| {
        req += 1;
        let stamp = ctime(t);
        oned.push((
            t,
            format!(
                "{stamp} [Z0][ReM][D]: Req:{req} UID:{uid} IP:10.0.0.10 {call} invoked {params}"
            ),
        ));
        oned.push((
            t,
            format!("{stamp} [Z0][ReM][D]: Req:{req} UID:{uid} {call} result SUCCESS, {result}"),
        ));
    };
    for vm in &site.vms {
        let id = vm_id(vm);
        let uid = &site.users[vm.user].id;
        let mut moments = vec![vm.created];
        request(
            vm.created - 5,
            uid,
            "one.vm.allocate",
            ", \"NAME=...\", false",
            &id.to_string(),
        );
        let hv0 = vm.placements.first().map_or(0, |p| p.1);
        request(
            vm.created - 2,
            "0",
            "one.vm.deploy",
            &format!(", {id}, {}, false, 0, \"\"", hv0 + 1),
            &id.to_string(),
        );
        for (t, text) in [
            (vm.created, "New state is ACTIVE"),
            (vm.created, "New LCM state is PROLOG"),
            (vm.created, "New LCM state is BOOT"),
            (vm.created, "New LCM state is RUNNING"),
        ] {
            vmlog.push((t, id, text.to_string()));
        }
        if let Some(a) = vm.holdings.get(1) {
            moments.push(a.from);
            request(
                a.from,
                uid,
                "one.vm.attachnic",
                &format!(", {id}, \"NIC=[NETWORK=private]\""),
                &id.to_string(),
            );
            vmlog.push((a.from, id, "New LCM state is HOTPLUG_NIC".into()));
            vmlog.push((a.from, id, "New LCM state is RUNNING".into()));
            if let Some(d) = a.to {
                moments.push(d);
                request(
                    d,
                    uid,
                    "one.vm.detachnic",
                    &format!(", {id}, 1"),
                    &id.to_string(),
                );
                vmlog.push((d, id, "New LCM state is HOTPLUG_NIC".into()));
                vmlog.push((d, id, "New LCM state is RUNNING".into()));
            }
        }
        for &(tm, hv) in vm.placements.iter().skip(1) {
            moments.push(tm);
            request(
                tm,
                "0",
                "one.vm.migrate",
                &format!(", {id}, {}, true, false, 0, 0", hv + 1),
                &id.to_string(),
            );
            vmlog.push((tm, id, "New LCM state is MIGRATE".into()));
            vmlog.push((tm, id, "New LCM state is RUNNING".into()));
        }
        if let Some(d) = vm.deleted {
            moments.push(d);
            request(
                d,
                uid,
                "one.vm.action",
                &format!(", \"terminate-hard\", {id}"),
                &id.to_string(),
            );
            vmlog.push((d, id, "New LCM state is CLEANUP_DELETE".into()));
            vmlog.push((d, id, "New state is DONE".into()));
        }
        for t in moments {
            hooks.push((t, id, vm_xml(site, vm, t, false)));
        }
    }
    hooks.sort();
    // Stable: lines of one moment keep the order oned writes them in.
    oned.sort_by_key(|l| l.0);
    vmlog.sort_by_key(|l| (l.0, l.1));
    let documents = hooks.len();
    put(&out.join("one-hooks.xml"), hooks.into_iter().map(|h| h.2))?;
    // The end-of-day pool: VMs not DONE, last history record only.
    let mut pool = String::from("<VM_POOL>");
    for vm in site.vms.iter().filter(|vm| vm.deleted.is_none()) {
        pool.push_str(&vm_xml(site, vm, site.end, true));
    }
    pool.push_str("</VM_POOL>");
    fs::write(out.join("onevm-list.xml"), pool + "\n").context("writing onevm-list.xml")?;
    // The network's leases at the end of the day.
    let mut leases = String::new();
    for vm in site.vms.iter().filter(|vm| vm.deleted.is_none()) {
        for (_, h) in nics_at(vm, site.end) {
            let _ = write!(
                leases,
                "<LEASE><IP><![CDATA[{}]]></IP><MAC><![CDATA[{}]]></MAC><VM><![CDATA[{}]]></VM></LEASE>",
                h.ip,
                h.mac,
                vm_id(vm)
            );
        }
    }
    fs::write(
        out.join("onevnet-show.xml"),
        format!("<VNET><ID>0</ID><UID>0</UID><GID>0</GID><UNAME>oneadmin</UNAME><GNAME>oneadmin</GNAME><NAME>private</NAME><BRIDGE>br0</BRIDGE><VN_MAD>bridge</VN_MAD><AR_POOL><AR><AR_ID><![CDATA[0]]></AR_ID><IP><![CDATA[10.20.0.2]]></IP><SIZE><![CDATA[4000]]></SIZE><TYPE><![CDATA[IP4]]></TYPE><LEASES>{leases}</LEASES></AR></AR_POOL></VNET>\n"),
    )
    .context("writing onevnet-show.xml")?;
    let mut log_lines = put(&out.join("oned.log"), oned.into_iter().map(|l| l.1))?;
    // Syslog mode, through the central rsyslog's archive (received stamp, front-end address).
    log_lines += put(
        &out.join("oned-syslog.log"),
        vmlog.iter().map(|(t, id, text)| {
            format!(
                "{}.000500+00:00 10.0.0.10 <30>{} {FRONTEND} oned[2211]: [VM {id}][Z0][VM][I]: {text}",
                strftime(*t, "%Y-%m-%dT%H:%M:%S"),
                strftime(*t, "%b %e %H:%M:%S"),
            )
        }),
    )?;
    let mut files: Vec<(String, Option<String>)> = vec![
        ("one-hooks.xml".into(), None),
        ("onevm-list.xml".into(), None),
        ("onevnet-show.xml".into(), None),
        ("oned.log".into(), None),
        ("oned-syslog.log".into(), Some("cloud".into())),
    ];
    // File-mode logs of the first few VMs.
    fs::create_dir_all(out.join("vms")).context("creating vms/")?;
    for vm in site.vms.iter().take(4) {
        let id = vm_id(vm);
        let name = format!("vms/{id}.log");
        log_lines += put(
            &out.join(&name),
            vmlog
                .iter()
                .filter(|(_, v, _)| *v == id)
                .map(|(t, _, text)| format!("{} [Z0][VM][I]: {text}", ctime(*t))),
        )?;
        files.push((name, None));
    }
    Ok(Written {
        documents,
        log_lines,
        files,
    })
}

/// `ctime(3)` without its newline, as src/log/Log.cc writes it (UTC here).
fn ctime(t: i64) -> String {
    strftime(t, "%a %b %e %H:%M:%S %Y")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::challenge::generate::{Params, build, rfc3339};

    #[test]
    fn the_attach_vm_history_closes_with_the_hotplug_actions() {
        let mut site = build(Params {
            seed: 7,
            vms: 30,
            hours: 24,
            density: 1,
        });
        convert(&mut site);
        let (v, ta, td) = site.specials.attach.expect("an attach VM");
        let vm = &site.vms[v];
        let h = history_at(vm, td);
        let actions: Vec<u32> = h.iter().map(|h| h.action).collect();
        assert!(actions.starts_with(&[NIC_ATTACH]) || actions.contains(&NIC_ATTACH));
        assert!(actions.contains(&NIC_DETACH));
        assert_eq!(nics_at(vm, ta).len(), 2);
        assert_eq!(nics_at(vm, td).len(), 1);
        assert_eq!(rfc3339(vm.created), rfc3339(h[0].stime));
    }
}
