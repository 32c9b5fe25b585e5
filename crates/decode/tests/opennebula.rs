//! OpenNebula decoders against samples written for these tests. Where each shape comes from:
//!
//! - `<VM>` / `<VM_POOL>`: OpenNebula share/doc/xsd/vm.xsd (element names and order) and the
//!   `one.vm.info` / `one.vmpool.info` replies in quattor's ncm-opennebula test data
//!   (src/test/perl/rpcdata.pm: CDATA template values, HISTORY with PSTIME/RSTIME…);
//!   NIC `TARGET` `one-<vm>-<nic>` and IP6_GLOBAL/IP6_ULA from vm.xsd's NIC attributes.
//! - `<VNET>` leases: vnet.xsd (AR_POOL/AR/LEASES/LEASE with IP, IP6, MAC, VM) and
//!   rpcdata.pm's `one.vn.info` replies (4.x leases directly under VNET with `VID`).
//! - `<HOOK_MESSAGE>`: hook_message_state.xsd and src/hm/HookStateVM.cc `format_message`
//!   (HOOK_TYPE, HOOK_OBJECT, STATE/LCM_STATE names, RESOURCE_ID, REMOTE_HOST, the VM), and
//!   src/hem/onehem-server.rb, which base64-encodes `//VM` as a hook's `$TEMPLATE`.
//! - log lines: src/log/Log.cc (file mode `ctime [Z0][MOD][L]: `, syslog mode with the
//!   `[VM 42]` label) and the request lines of src/rm/Request.cc (`Req:… UID:… IP:… one.… invoked`,
//!   `result SUCCESS, …`).

use base64::Engine;
use decode::framing::{Framer, framing};
use model::envelope::RecordEnvelope;
use model::{DecodeHints, EventClass, Format, Observer, Origin, Received, fields};

fn env(format: Format, raw: &[u8], path: &str) -> RecordEnvelope {
    RecordEnvelope {
        received: Received::from_stored(1_800_000_000_000_000_000),
        observer: Observer::Cloud,
        format,
        hints: DecodeHints::default(),
        origin: Origin::File {
            path: path.into(),
            line: 1,
        },
        raw: raw.to_vec(),
    }
}

fn xml(raw: &str) -> model::Event {
    decode::decode(&env(Format::OpennebulaXml, raw.as_bytes(), "onevm.xml"))
}

/// A VM as `onevm show -x` prints it (trimmed to the parts pugmark reads, plus some it skips).
const VM42: &str = r#"<VM>
  <ID>42</ID><UID>5</UID><GID>100</GID><UNAME>alice</UNAME><GNAME>atlas</GNAME>
  <NAME>pilot-42</NAME>
  <PERMISSIONS><OWNER_U>1</OWNER_U><OWNER_M>1</OWNER_M></PERMISSIONS>
  <LAST_POLL>1791968000</LAST_POLL>
  <STATE>3</STATE><LCM_STATE>3</LCM_STATE><PREV_STATE>3</PREV_STATE><PREV_LCM_STATE>3</PREV_LCM_STATE>
  <RESCHED>0</RESCHED><STIME>1791964800</STIME><ETIME>0</ETIME><DEPLOY_ID>one-42</DEPLOY_ID>
  <MONITORING/>
  <TEMPLATE>
    <CONTEXT><NETWORK><![CDATA[YES]]></NETWORK><SET_HOSTNAME><![CDATA[Pilot-42]]></SET_HOSTNAME></CONTEXT>
    <DISK><DISK_ID><![CDATA[0]]></DISK_ID><IMAGE><![CDATA[alma9-wn]]></IMAGE></DISK>
    <NIC><BRIDGE><![CDATA[br0]]></BRIDGE><IP><![CDATA[10.10.0.42]]></IP><IP6_GLOBAL><![CDATA[2001:db8:10::42]]></IP6_GLOBAL><MAC><![CDATA[02:00:0A:0A:00:2A]]></MAC><NETWORK><![CDATA[private]]></NETWORK><NETWORK_ID><![CDATA[3]]></NETWORK_ID><NIC_ID><![CDATA[0]]></NIC_ID><TARGET><![CDATA[one-42-0]]></TARGET></NIC>
    <NIC><IP><![CDATA[10.20.0.7]]></IP><MAC><![CDATA[02:00:0a:14:00:07]]></MAC><NETWORK><![CDATA[storage]]></NETWORK><NIC_ID><![CDATA[1]]></NIC_ID></NIC>
    <VMID><![CDATA[42]]></VMID>
  </TEMPLATE>
  <USER_TEMPLATE/>
  <HISTORY_RECORDS>
    <HISTORY><OID>42</OID><SEQ>0</SEQ><HOSTNAME>hv-01</HOSTNAME><HID>1</HID><CID>0</CID><STIME>1791964830</STIME><ETIME>1791966600</ETIME><VM_MAD><![CDATA[kvm]]></VM_MAD><TM_MAD><![CDATA[ceph]]></TM_MAD><DS_ID>0</DS_ID><PSTIME>1791964830</PSTIME><PETIME>1791964840</PETIME><RSTIME>1791964840</RSTIME><RETIME>1791966600</RETIME><ESTIME>0</ESTIME><EETIME>0</EETIME><ACTION>23</ACTION><UID>5</UID><GID>100</GID><REQUEST_ID>77</REQUEST_ID></HISTORY>
    <HISTORY><OID>42</OID><SEQ>1</SEQ><HOSTNAME>HV-02</HOSTNAME><HID>2</HID><CID>0</CID><STIME>1791966600</STIME><ETIME>0</ETIME><PSTIME>0</PSTIME><PETIME>0</PETIME><RSTIME>1791966600</RSTIME><RETIME>0</RETIME><ESTIME>0</ESTIME><EETIME>0</EETIME><ACTION>0</ACTION></HISTORY>
  </HISTORY_RECORDS>
</VM>"#;

#[test]
fn a_vm_document_fills_the_cloud_fields_nova_fills() {
    let ev = xml(VM42);
    assert!(ev.issues.is_empty(), "{:?}", ev.issues);
    assert_eq!(ev.class, EventClass::VmLifecycle);
    assert_eq!(ev.observer, Observer::Cloud);
    let f = |k: &str| ev.field(k).unwrap_or("<none>").to_string();
    assert_eq!(f(fields::VM_UUID), "one-42");
    assert_eq!(f(fields::ONE_VM_ID), "42");
    assert_eq!(f(fields::USER_ID), "5");
    assert_eq!(f(fields::USER_NAME), "alice");
    assert_eq!(f(fields::PROJECT_ID), "100");
    assert_eq!(f(fields::PROJECT_NAME), "atlas");
    assert_eq!(f(fields::VM_NAME), "pilot-42");
    assert_eq!(f(fields::VM_HOSTNAME), "pilot-42");
    assert_eq!(f(fields::IMAGE), "alma9-wn");
    assert_eq!(f(fields::STATE), "active");
    assert_eq!(f(fields::ONE_LCM_STATE), "RUNNING");
    assert_eq!(
        f(fields::HYPERVISOR),
        "hv-02",
        "the open history record, lower-case"
    );
    assert_eq!(f(fields::VM_IPS), "10.10.0.42,2001:db8:10::42,10.20.0.7");
    assert_eq!(f(fields::VM_MACS), "02:00:0a:0a:00:2a,02:00:0a:14:00:07");
    assert_eq!(
        f(fields::VM_DEVICES),
        "one-42-0,one-42-1",
        "TARGET, else one-<vm>-<nic>"
    );
    assert_eq!(
        f(fields::ONE_HISTORY),
        "0=hv-01/1791964830/1791966600/23,1=hv-02/1791966600/0/0"
    );
    assert_eq!(
        f(fields::ONE_NICS),
        "0=10.10.0.42/2001:db8:10::42/02:00:0a:0a:00:2a,1=10.20.0.7/02:00:0a:14:00:07"
    );
    // As of the latest moment the document records: the migration at 1791966600.
    assert_eq!(ev.reported.time.map(|t| t.as_second()), Some(1_791_966_600));
    assert!(ev.ips.iter().any(|i| i.to_string() == "2001:db8:10::42"));
}

#[test]
fn a_done_vm_is_a_deletion_at_its_etime() {
    let done = VM42
        .replace(
            "<STATE>3</STATE><LCM_STATE>3</LCM_STATE>",
            "<STATE>6</STATE><LCM_STATE>0</LCM_STATE>",
        )
        .replace(
            "<ETIME>0</ETIME><DEPLOY_ID>",
            "<ETIME>1791970000</ETIME><DEPLOY_ID>",
        );
    let ev = xml(&done);
    assert_eq!(ev.field(fields::STATE), Some("deleted"));
    assert_eq!(ev.field(fields::ONE_STATE), Some("DONE"));
    assert_eq!(ev.field(fields::HYPERVISOR), None, "a DONE VM runs nowhere");
    assert_eq!(ev.reported.time.map(|t| t.as_second()), Some(1_791_970_000));
}

#[test]
fn a_vm_pool_is_cut_into_one_record_per_vm() {
    // `onevm list -x`: one line, as oned answers one.vmpool.info.
    let one_line = VM42.replace('\n', "");
    let pool = format!(
        "<VM_POOL>{one_line}{}</VM_POOL>\n",
        one_line.replace("<ID>42</ID>", "<ID>43</ID>")
    );
    let mut f = Framer::new(framing(Format::OpennebulaXml));
    let mut out = Vec::new();
    f.push(pool.as_bytes(), &mut out);
    f.finish(&mut out);
    let ids: Vec<String> = out
        .iter()
        .map(|fr| {
            decode::decode(&env(Format::OpennebulaXml, &fr.raw, "pool.xml"))
                .field(fields::VM_UUID)
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(ids, ["one-42", "one-43"]);
    let sample: Vec<&[u8]> = pool.lines().map(str::as_bytes).collect();
    assert_eq!(decode::detect(&sample), Format::OpennebulaXml);
}

#[test]
fn the_state_hook_message_plain_and_in_base64() {
    let msg = format!(
        "<HOOK_MESSAGE><HOOK_TYPE>STATE</HOOK_TYPE><HOOK_OBJECT>VM</HOOK_OBJECT><STATE>ACTIVE</STATE><LCM_STATE>RUNNING</LCM_STATE><RESOURCE_ID>42</RESOURCE_ID><REMOTE_HOST>hv-02</REMOTE_HOST>{VM42}</HOOK_MESSAGE>"
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    for raw in [msg.clone(), b64.encode(&msg)] {
        let ev = xml(&raw);
        assert!(ev.issues.is_empty(), "{:?}", ev.issues);
        assert_eq!(ev.source_kind, "opennebula-hook");
        assert_eq!(ev.field(fields::VM_UUID), Some("one-42"));
        assert_eq!(ev.field(fields::HYPERVISOR), Some("hv-02"));
        assert_eq!(ev.field("remote_host"), Some("hv-02"));
        assert_eq!(ev.class, EventClass::VmLifecycle);
    }
    // The hook's `$TEMPLATE` (only the VM, base64), as onehem-server.rb passes it.
    let ev = xml(&b64.encode(VM42));
    assert_eq!(ev.field(fields::VM_UUID), Some("one-42"));
    assert_eq!(ev.field("encoding"), Some("base64"));
    // A message without the VM template: searchable under the VM, no fact, explained.
    let bare = "<HOOK_MESSAGE><HOOK_TYPE>STATE</HOOK_TYPE><HOOK_OBJECT>VM</HOOK_OBJECT><STATE>DONE</STATE><LCM_STATE>LCM_INIT</LCM_STATE><RESOURCE_ID>42</RESOURCE_ID><REMOTE_HOST/></HOOK_MESSAGE>";
    let ev = xml(bare);
    assert_eq!(ev.field(fields::VM_UUID), Some("one-42"));
    assert_ne!(ev.class, EventClass::VmLifecycle);
    assert_eq!(ev.issues[0].kind, "missing_field");
}

#[test]
fn vnet_leases_are_searchable_with_their_holders() {
    let vnet = r#"<VNET><ID>3</ID><UID>0</UID><GID>0</GID><UNAME>oneadmin</UNAME><GNAME>oneadmin</GNAME><NAME>private</NAME><BRIDGE>br0</BRIDGE>
<AR_POOL><AR><AR_ID><![CDATA[0]]></AR_ID><IP><![CDATA[10.10.0.2]]></IP><SIZE><![CDATA[250]]></SIZE><TYPE><![CDATA[IP4_6]]></TYPE>
<LEASES>
<LEASE><IP><![CDATA[10.10.0.42]]></IP><IP6_GLOBAL><![CDATA[2001:db8:10::42]]></IP6_GLOBAL><MAC><![CDATA[02:00:0a:0a:00:2a]]></MAC><VM><![CDATA[42]]></VM></LEASE>
<LEASE><IP><![CDATA[10.10.0.9]]></IP><MAC><![CDATA[02:00:0a:0a:00:09]]></MAC><VM><![CDATA[-1]]></VM></LEASE>
<LEASE><IP><![CDATA[fe80::1%eth0]]></IP><VM><![CDATA[7]]></VM></LEASE>
<LEASE><IP><![CDATA[10.10.0.10]]></IP><VM><![CDATA[seven]]></VM></LEASE>
</LEASES></AR></AR_POOL></VNET>"#;
    let ev = xml(vnet);
    assert_eq!(ev.source_kind, "opennebula-vnet");
    assert_eq!(
        ev.field("one_leases"),
        Some(
            "10.10.0.42/2001:db8:10::42/02:00:0a:0a:00:2a=one-42,10.10.0.9/02:00:0a:0a:00:09=hold"
        )
    );
    let kinds: Vec<&str> = ev.issues.iter().map(|i| i.kind.as_str()).collect();
    // The zone id is refused (never trimmed into a site address), the lease then has no
    // address; the non-numeric VM is a bad lease.
    assert_eq!(kinds, ["bad_address", "missing_field", "bad_lease"]);
    assert_ne!(
        ev.class,
        EventClass::VmLifecycle,
        "a snapshot without a moment"
    );
    // quattor's 4.x shape: leases under the VNET, the VM in VID.
    let old = "<VNET><ID>68</ID><NAME>altaria.os</NAME><LEASES><LEASE><MAC>02:00:0a:8d:08:1e</MAC><IP>10.141.8.30</IP><IP6_LINK>fe80::400:aff:fe8d:81e</IP6_LINK><USED>1</USED><VID>55</VID></LEASE></LEASES></VNET>";
    assert_eq!(
        xml(old).field("one_leases"),
        Some("10.141.8.30/02:00:0a:8d:08:1e=one-55")
    );
}

#[test]
fn bad_xml_is_kept_and_explained() {
    let cases: [(&str, &str); 7] = [
        ("<html><body>hi</body></html>", "not_opennebula"),
        ("<VM><ID>1</ID>", "bad_xml"),
        ("<VM><NAME>x</NAME><STATE>3</STATE></VM>", "missing_field"),
        (
            "<VM><ID>1</ID><STIME>1791964800</STIME></VM>",
            "missing_field",
        ),
        ("just text", "not_opennebula"),
        (
            "<!DOCTYPE VM [<!ENTITY a \"aaaa\">]><VM><ID>&a;</ID></VM>",
            "bad_xml",
        ),
        (
            "<VM><ID>1</ID><STATE>3</STATE><STIME>-5</STIME></VM>",
            "bad_time",
        ),
    ];
    for (raw, kind) in cases {
        let ev = xml(raw);
        assert!(
            ev.issues.iter().any(|i| i.kind == kind),
            "{raw}: {:?}",
            ev.issues
        );
        assert_eq!(ev.raw, raw.as_bytes(), "stored raw");
        assert_ne!(ev.class, EventClass::VmLifecycle, "{raw}: not a fact");
    }
    // Deep: refused before parsing, no stack spent on it.
    let deep = format!("{}{}", "<A>".repeat(100_000), "</A>".repeat(100_000));
    assert_eq!(xml(&deep).issues[0].kind, "too_deep");
    // Huge but flat: parsed, the bad NICs explained one by one.
    let mut big = String::from("<VM><ID>9</ID><STATE>3</STATE><STIME>1791964800</STIME><TEMPLATE>");
    for i in 0..20_000 {
        big.push_str(&format!(
            "<NIC><IP>10.{}.{}.1x</IP><NIC_ID>{i}</NIC_ID></NIC>",
            i / 256,
            i % 256
        ));
    }
    big.push_str("</TEMPLATE></VM>");
    let ev = xml(&big);
    assert_eq!(ev.issues.len(), 100, "listed up to a cap…");
    assert_eq!(
        ev.field("issues_not_listed"),
        Some("19900"),
        "…and counted past it"
    );
    assert!(ev.issues.iter().all(|i| i.kind == "bad_address"));
    assert_eq!(ev.field(fields::VM_IPS), None);
    // Not UTF-8.
    assert_eq!(xml_bytes(b"<VM>\xff</VM>").issues[0].kind, "invalid_utf8");
}

fn xml_bytes(raw: &[u8]) -> model::Event {
    decode::decode(&env(Format::OpennebulaXml, raw, "x.xml"))
}

#[test]
fn per_vm_log_lines_take_the_vm_from_the_file_name() {
    let lines = [
        (
            "Wed Oct 14 08:00:05 2026 [Z0][VM][I]: New state is ACTIVE",
            Some("ACTIVE"),
            None,
        ),
        (
            "Wed Oct 14 08:00:05 2026 [Z0][VM][I]: New LCM state is PROLOG",
            None,
            Some("PROLOG"),
        ),
        (
            "Wed Oct 14 08:00:40 2026 [Z0][VMM][I]: Successfully execute virtualization driver operation: deploy.",
            None,
            None,
        ),
        (
            "Wed Oct 14 08:00:40 2026 [Z0][VM][I]: New LCM state is RUNNING",
            None,
            Some("RUNNING"),
        ),
        (
            "Wed Oct 14 11:00:00 2026 [Z0][VM][I]: New state is DONE",
            Some("DONE"),
            None,
        ),
    ];
    for (line, state, lcm) in lines {
        let ev = decode::decode(&env(
            Format::OpennebulaLog,
            line.as_bytes(),
            "/var/log/one/42.log",
        ));
        assert!(ev.issues.is_empty(), "{line}: {:?}", ev.issues);
        assert_eq!(ev.field(fields::VM_UUID), Some("one-42"), "{line}");
        assert_eq!(ev.field(fields::ONE_STATE), state, "{line}");
        assert_eq!(ev.field(fields::ONE_LCM_STATE), lcm, "{line}");
        assert_eq!(
            ev.class == EventClass::VmLifecycle,
            state.is_some() || lcm.is_some(),
            "{line}"
        );
    }
    let done = decode::decode(&env(
        Format::OpennebulaLog,
        lines[4].0.as_bytes(),
        "/var/log/one/42.log",
    ));
    assert_eq!(done.field(fields::STATE), Some("deleted"));
    assert_eq!(
        done.reported.time.map(|t| t.to_string()).as_deref(),
        Some("2026-10-14T11:00:00Z")
    );
    // ctime pads one-digit days with a space; the zone comes from the hints.
    let mut e = env(
        Format::OpennebulaLog,
        b"Mon Oct  5 10:00:00 2026 [Z0][VM][I]: New state is ACTIVE",
        "/var/log/one/7.log",
    );
    e.hints.tz = Some("Europe/Zurich".into());
    let ev = decode::decode(&e);
    assert_eq!(
        ev.reported.time.map(|t| t.to_string()).as_deref(),
        Some("2026-10-05T08:00:00Z")
    );
    let sample: Vec<&[u8]> = lines.iter().map(|l| l.0.as_bytes()).collect();
    assert_eq!(decode::detect(&sample), Format::OpennebulaLog);
}

#[test]
fn oned_request_lines_name_the_call_the_requester_and_the_vm() {
    let dec = |l: &str| {
        decode::decode(&env(
            Format::OpennebulaLog,
            l.as_bytes(),
            "/var/log/one/oned.log",
        ))
    };
    let ev = dec(
        "Wed Oct 14 08:00:30 2026 [Z0][ReM][D]: Req:4416 UID:0 IP:127.0.0.1 one.vm.deploy invoked , 42, 1, false, 0, \"\"",
    );
    assert_eq!(ev.field(fields::ONE_CALL), Some("one.vm.deploy"));
    assert_eq!(ev.field(fields::REQUESTER_UID), Some("0"));
    assert_eq!(ev.field(fields::SRC_IP), Some("127.0.0.1"));
    assert_eq!(ev.field(fields::VM_UUID), Some("one-42"));
    assert_eq!(
        ev.field(fields::USER_ID),
        None,
        "the requester is not the owner"
    );
    assert_ne!(ev.class, EventClass::VmLifecycle);
    let ev = dec(
        "Wed Oct 14 10:59:00 2026 [Z0][ReM][D]: Req:5120 UID:5 IP:10.1.0.4 one.vm.action invoked , \"terminate-hard\", 42",
    );
    assert_eq!(ev.field("one_action"), Some("terminate-hard"));
    assert_eq!(ev.field(fields::VM_UUID), Some("one-42"));
    let ev = dec(
        "Wed Oct 14 08:00:01 2026 [Z0][ReM][D]: Req:4400 UID:5 one.vm.allocate result SUCCESS, 42",
    );
    assert_eq!(
        ev.field(fields::VM_UUID),
        Some("one-42"),
        "allocate's result is the new VM"
    );
    assert_eq!(ev.field(fields::OUTCOME), Some("success"));
    let ev = dec(
        "Wed Oct 14 08:00:02 2026 [Z0][ReM][E]: Req:4401 UID:5 one.vm.deploy result FAILURE [one.vm.deploy] Error getting virtual machine [999].",
    );
    assert_eq!(ev.field(fields::OUTCOME), Some("failure"));
    assert_eq!(ev.severity, Some(3));
    // Not OpenNebula's: kept, explained.
    let ev = dec("this is not a log line");
    assert_eq!(ev.issues[0].kind, "no_header");
    assert_eq!(ev.message, "this is not a log line");
}

#[test]
fn oned_in_syslog_mode_is_a_fact_only_from_the_cloud() {
    let line =
        b"<30>Oct 14 08:00:40 one-fe oned[2211]: [VM 42][Z0][LCM][I]: New LCM state is RUNNING";
    let mut e = env(Format::Syslog, line, "syslog");
    let ev = decode::decode(&e);
    assert_eq!(ev.field(fields::VM_UUID), Some("one-42"));
    assert_eq!(ev.class, EventClass::VmLifecycle);
    e.observer = Observer::Vm;
    let ev = decode::decode(&e);
    assert_eq!(ev.field(fields::VM_UUID), Some("one-42"), "searchable");
    assert_ne!(
        ev.class,
        EventClass::VmLifecycle,
        "a VM can send anything as oned"
    );
}
