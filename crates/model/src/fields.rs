//! Names of normalised event fields. One vocabulary for every decoder, so a query for
//! `user=alice` finds sshd logins, sudo commands and (later) Keystone users alike.

/// The account a record is about (the one logging in, failing, or having a session).
pub const USER: &str = "user";
/// Source address of a connection or login (`sshd … from IP`, netfilter `SRC=`).
pub const SRC_IP: &str = "src_ip";
pub const SRC_PORT: &str = "src_port";
pub const DST_IP: &str = "dst_ip";
pub const DST_PORT: &str = "dst_port";
/// Transport protocol (`tcp`, `udp`, `icmp`, …), lower case.
pub const PROTO: &str = "proto";
/// sshd authentication method (`password`, `publickey`, `keyboard-interactive/pam`, …).
pub const METHOD: &str = "method";
/// Key type and fingerprint as sshd prints them (`RSA SHA256:…`).
pub const KEY_TYPE: &str = "key_type";
pub const KEY_FINGERPRINT: &str = "key_fingerprint";
/// Identity change (su, sudo): who acted and who they became.
pub const FROM_USER: &str = "from_user";
pub const TO_USER: &str = "to_user";
pub const TTY: &str = "tty";
pub const PWD: &str = "pwd";
pub const COMMAND: &str = "command";
/// `success` or `failure`.
pub const OUTCOME: &str = "outcome";
/// For sessions: `opened` / `closed`.
pub const SESSION: &str = "session";
/// The PAM service (`sshd`, `su`, `sudo`, `login`, …) of a pam_unix line.
pub const SERVICE: &str = "service";
/// The short name of the rule that classified the record (`sshd.accepted`, `sudo.command`, …).
pub const ACTION: &str = "action";
/// Remote host as PAM reports it (`rhost=`), may be a name or an address.
pub const RHOST: &str = "rhost";
/// A file-name prefix found in front of the syslog line (loghub style).
pub const FILE_PREFIX: &str = "file_prefix";
/// A central logger's archive line (`RECEIVED SENDER-IP <PRI>…`, the rsyslog template in
/// docs/SITES.md): when that logger received the message (RFC 3339, its clock, not the sender's)…
pub const RELAY_RECEIVED: &str = "relay_received";
/// …and the address it came from (the socket's peer, which the sender cannot choose freely).
pub const RELAY_FROM: &str = "relay_from";
/// The instance UUID a VM's own record claims, from the site kit's RFC 5424 structured data
/// `[pugmark@32473 vm_uuid="…"]` (lower-case hyphenated; set only when the value is a UUID).
/// A claim: attribution holds it against the lease of the sender's address.
pub const CLAIMED_VM_UUID: &str = "claimed_vm_uuid";
/// The SD-ID and parameter of that claim (32473 is the IANA example enterprise number).
pub const PUGMARK_SD_ID: &str = "pugmark@32473";
pub const PUGMARK_SD_VM_UUID: &str = "vm_uuid";

// Cloud (OpenStack notifications, nova logs, Keystone).

/// Instance UUID (`payload.uuid`, `[instance: UUID]`, legacy `instance_id`).
pub const VM_UUID: &str = "vm_uuid";
/// Instance display name (`display_name`).
pub const VM_NAME: &str = "vm_name";
/// Guest hostname as the cloud assigned it (`host_name`, legacy `hostname`).
pub const VM_HOSTNAME: &str = "vm_hostname";
/// The compute host the instance runs on, as the cloud names it (`host`): the hypervisor.
pub const HYPERVISOR: &str = "hypervisor";
/// The compute node (`node`).
pub const NODE: &str = "node";
/// Image the instance was booted from (`image_uuid`, legacy `image_ref_url`).
pub const IMAGE: &str = "image";
/// Keystone user id (`user_id`, request context USER).
pub const USER_ID: &str = "user_id";
/// Keystone user name (directory dumps).
pub const USER_NAME: &str = "user_name";
/// Keystone project id (`tenant_id`, `project_id`, request context PROJECT).
pub const PROJECT_ID: &str = "project_id";
/// Keystone project name (directory dumps).
pub const PROJECT_NAME: &str = "project_name";
pub const EMAIL: &str = "email";
/// Notification event type (`instance.create.end`, `compute.instance.delete.end`).
pub const EVENT_TYPE: &str = "event_type";
/// Instance state after the event (`active`, `deleted`, …).
pub const STATE: &str = "state";
/// Addresses of the instance, comma-separated, in the order the source gives them.
pub const VM_IPS: &str = "vm_ips";
/// MAC addresses of the instance, comma-separated, aligned with `vm_ips` where the source
/// pairs them.
pub const VM_MACS: &str = "vm_macs";
/// Neutron port ids and tap devices, aligned with `vm_ips`.
pub const VM_PORTS: &str = "vm_ports";
pub const VM_DEVICES: &str = "vm_devices";
/// Floating (public, NATed) addresses of the instance (legacy notifications' `fixed_ips[].
/// floating_ips`), comma-separated. They are leases of the VM like its fixed addresses.
pub const VM_FLOATING_IPS: &str = "vm_floating_ips";
/// oslo request id (`req-…`).
pub const REQUEST_ID: &str = "request_id";
/// Notification message id (oslo envelope `message_id`).
pub const MESSAGE_ID: &str = "message_id";

// OpenNebula (crates/decode/src/opennebula): a VM's record also fills the cloud fields above
// (`vm_uuid` is `one-<ID>`, see [`opennebula_vm`]; `user_id`/`user_name` are UID/UNAME,
// `project_id`/`project_name` GID/GNAME; `vm_devices` the NICs' tap devices).

/// The VM's numeric id in its oned (`ID`, `RESOURCE_ID`, a per-VM log's file name).
pub const ONE_VM_ID: &str = "one_vm_id";
/// OpenNebula's own state names (`ACTIVE`, `DONE`, …) and LCM state (`RUNNING`, …).
pub const ONE_STATE: &str = "one_state";
pub const ONE_LCM_STATE: &str = "one_lcm_state";
/// The VM's creation (`STIME`) as RFC 3339.
pub const ONE_STIME: &str = "one_stime";
/// The VM's NICs, `NIC_ID=addr/addr/…/mac` entries separated by `,` (addresses first, the MAC
/// last), for the fact store to tell NICs present at creation from those attached later.
pub const ONE_NICS: &str = "one_nics";
/// Placement history: `SEQ=HOSTNAME/STIME/ETIME/ACTION` entries separated by `,` (Unix
/// seconds, `0` = still open; ACTION is OpenNebula's numeric `VMActions` code).
pub const ONE_HISTORY: &str = "one_history";
/// The OpenNebula API call of an `oned.log` request line (`one.vm.deploy`).
pub const ONE_CALL: &str = "one_call";
/// The user id that made an API request (`UID:` of `oned.log`): the requester, not the owner.
pub const REQUESTER_UID: &str = "requester_uid";

/// The VM identity pugmark gives OpenNebula VM `id`: `one-<id>`, the libvirt domain name
/// OpenNebula deploys it as (`DEPLOY_ID`, what `virsh list` shows on the host and what its
/// tap devices `one-<id>-<nic>` are named after). One pugmark data directory per oned (zone):
/// ids are unique only within one.
pub fn opennebula_vm(id: u64) -> String {
    format!("one-{id}")
}

/// What an operator may type for an OpenNebula VM (`one-42`, `ONE-42`): the identity
/// [`opennebula_vm`] gives it. None for anything else (a UUID stays as typed).
pub fn parse_opennebula_vm(text: &str) -> Option<String> {
    let t = text.trim();
    let digits = t
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case("one-"))
        .map(|_| &t[4..])?;
    if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok().map(opennebula_vm)
}

// VO workload (HTCondor).

/// `GlobalJobId`, or `ClusterId.ProcId` when that is all there is.
pub const JOB_ID: &str = "job_id";
/// The local account that owns the job (`Owner`).
pub const JOB_OWNER: &str = "job_owner";
/// The grid identity behind the payload (`x509userproxysubject`).
pub const DN: &str = "dn";
/// The VO (`x509UserProxyVOName`).
pub const VO: &str = "vo";
/// Where the job ran: the startd's address (`StartdIpAddr`) and slot host (`RemoteHost`).
pub const EXEC_IP: &str = "exec_ip";
pub const EXEC_HOST: &str = "exec_host";
/// Job start and end as Unix-second instants rendered RFC 3339.
pub const JOB_START: &str = "job_start";
pub const JOB_END: &str = "job_end";
/// WLCG / SciTokens token behind the payload (job ad `AuthTokenIssuer`, `AuthTokenSubject`,
/// `AuthTokenId`, `AuthTokenScopes`, `AuthTokenGroups`; an HTCondor-CE audit log's
/// `AuthMethod=SCITOKENS, AuthId=ISSUER,SUBJECT`): the person is issuer + subject.
pub const TOKEN_ISSUER: &str = "token_issuer";
pub const TOKEN_SUBJECT: &str = "token_subject";
pub const TOKEN_ID: &str = "token_id";
pub const TOKEN_SCOPES: &str = "token_scopes";
pub const TOKEN_GROUPS: &str = "token_groups";
/// Where a payload observation comes from when not an HTCondor job ad or userlog: `glexec`,
/// `arc` (A-REX job log), `ce-audit` (HTCondor-CE audit log).
pub const PAYLOAD_SOURCE: &str = "payload_source";
/// `start` or `end` of a payload (glexec `Started`/`Terminated`, ARC `Started`/`Finished`).
pub const PAYLOAD_PHASE: &str = "payload_phase";
/// The local account a payload was mapped to (glexec target uid, ARC `unix user` uid:gid).
pub const TARGET_UID: &str = "target_uid";
/// VOMS FQAN the payload used (glexec `Used FQAN`, a proxy's first FQAN).
pub const FQAN: &str = "fqan";
/// A process id a multi-line source's lines share (glexec's pid), or the connection id an
/// HTCondor audit log's lines share (`cid`).
pub const CORRELATION: &str = "correlation";

// Identity directory (SCIM: INDIGO IAM and any SCIM 2.0 server).

/// `scim` for SCIM resources (Keystone entries have none: `directory` says user/project).
pub const DIRECTORY_SOURCE: &str = "directory_source";
/// A SCIM resource's `id` (for IAM, the `sub` of the person's tokens).
pub const SCIM_ID: &str = "scim_id";
/// The person's display name (`name.formatted`, else given + family, else `displayName`).
pub const PERSON_NAME: &str = "person_name";
/// `scheme://host` of a SCIM resource's `meta.location`: the IAM's address, which its
/// tokens' issuer shares (the IAM's own tokens name the person by the SCIM id).
pub const ISSUER_ORIGIN: &str = "issuer_origin";
/// OIDC identities linked to the account, `issuer subject` pairs separated by `|`.
pub const OIDC_IDS: &str = "oidc_ids";
/// Certificate subjects linked to the account, separated by `|`.
pub const CERT_DNS: &str = "cert_dns";
/// Group names (`groups[].display`), comma-separated; for a Group, its members' ids.
pub const GROUPS: &str = "groups";
pub const MEMBERS: &str = "members";
/// SSH key fingerprints linked to the account, comma-separated.
pub const SSH_KEYS: &str = "ssh_keys";
/// `true` / `false` (SCIM `active`).
pub const ACTIVE: &str = "active";
/// Keystone federated identities of a user (`federated[].protocols[].unique_id`, `idp unique`
/// pairs separated by `|`).
pub const FEDERATED_IDS: &str = "federated_ids";

/// Userlog event code (`000`, `001`, `005`, …).
pub const CONDOR_EVENT: &str = "condor_event";
/// Host name the startd gives itself (`alias=` of its sinful string).
pub const EXEC_ALIAS: &str = "exec_alias";
/// Every address of the startd (`addrs=`), comma-separated, when there are several.
pub const EXEC_ADDRS: &str = "exec_addrs";
/// The slot the job ran in (`slot1_1`), from `RemoteHost`.
pub const EXEC_SLOT: &str = "exec_slot";
/// `JobStatus` by name: idle, running, removed, completed, held, transferring_output,
/// suspended.
pub const JOB_STATUS: &str = "job_status";
/// The submit side: schedd name from `GlobalJobId`, and the submit host's address.
pub const SCHEDD: &str = "schedd";
pub const SUBMIT_IP: &str = "submit_ip";
/// The DAG node a job belongs to (userlog `DAG Node: A` body line).
pub const DAG_NODE: &str = "dag_node";
/// Job exit: return value of a normal termination, or the signal of an abnormal one.
pub const EXIT_CODE: &str = "exit_code";
pub const EXIT_SIGNAL: &str = "exit_signal";

// Network (netfilter LOG lines).

/// Input / output interface and bridge ports (`IN=`, `OUT=`, `PHYSIN=`, `PHYSOUT=`).
pub const IN_IF: &str = "in_if";
pub const OUT_IF: &str = "out_if";
pub const PHYS_IN: &str = "phys_in";
pub const PHYS_OUT: &str = "phys_out";
/// netfilter log prefix (`IPTABLES-DROP:`, `[UFW BLOCK]`), trimmed.
pub const LOG_PREFIX: &str = "log_prefix";
/// TCP flags seen (`SYN`, `ACK`, …), space-separated.
pub const TCP_FLAGS: &str = "tcp_flags";
/// MAC header as netfilter prints it (`MAC=dst:src:type`).
pub const MAC_HEADER: &str = "mac_header";
/// ICMP type and code (`TYPE=8 CODE=0`).
pub const ICMP_TYPE: &str = "icmp_type";
pub const ICMP_CODE: &str = "icmp_code";
/// Proxmox: the VM id the rule belongs to (`0` for the host) and the firewall chain.
pub const VMID: &str = "vmid";
pub const FW_CHAIN: &str = "fw_chain";

// Network flows (NetFlow / IPFIX; SRC_IP … PROTO, TCP_FLAGS, IN_IF and OUT_IF as above, the
// interfaces as SNMP indexes).

/// Packets and bytes of a flow with the sampling rate applied.
pub const PACKETS: &str = "packets";
pub const BYTES: &str = "bytes";
/// 1 in N packets sampled (present only when N > 1).
pub const SAMPLING_RATE: &str = "sampling_rate";
/// First and last packet of a flow, RFC 3339.
pub const FLOW_START: &str = "flow_start";
pub const FLOW_END: &str = "flow_end";
/// The exporting router / probe (`ip:port`), and its source id / observation domain.
pub const EXPORTER: &str = "exporter";
pub const OBSERVATION_DOMAIN: &str = "observation_domain";
/// NetFlow version of the export (`5`, `9`, `10` for IPFIX).
pub const FLOW_VERSION: &str = "flow_version";
/// Ledger seq of the export datagram a flow record was derived from, and the record's place
/// in it (`flowset.record`).
pub const DATAGRAM_SEQ: &str = "datagram_seq";
pub const DATAGRAM_RECORD: &str = "datagram_record";

// Neutron notifications (`port.*`, `floatingip.*`, `router.*`, issue 12).
/// Which Neutron resource a notification is about: `port`, `floatingip` or `router`.
pub const NEUTRON_RESOURCE: &str = "neutron_resource";
/// The resource's id (port, floating IP or router uuid).
pub const NEUTRON_ID: &str = "neutron_id";
/// A port's `device_owner` (`compute:nova`, `network:router_gateway`, …).
pub const DEVICE_OWNER: &str = "device_owner";
/// A port's `binding:host_id` (the compute host it is bound on).
pub const BINDING_HOST: &str = "binding_host";
/// A port's addresses (`fixed_ips[].ip_address`, comma-separated) and its MAC.
pub const PORT_IPS: &str = "port_ips";
pub const PORT_MAC: &str = "port_mac";
/// A floating IP's public address.
pub const FLOATING_IP: &str = "floating_ip";
/// The port a floating IP is associated to; `-` when the payload says null (disassociated).
pub const FIP_PORT: &str = "fip_port";
/// The private address a floating IP is NATed to.
pub const FIP_FIXED_IP: &str = "fip_fixed_ip";
/// A floating IP's or a router's router id.
pub const ROUTER_ID: &str = "router_id";
/// A router's external gateway (SNAT) addresses, comma-separated.
pub const GATEWAY_IPS: &str = "gateway_ips";
/// The subnets of a port's fixed addresses (`fixed_ips[].subnet_id`), or of a router
/// interface (`router.interface.create`), comma-separated.
pub const PORT_SUBNETS: &str = "port_subnets";

// NAT translations (conntrack events, ulogd2 NFCT, IPFIX NAT fields; issue 12). The original
// tuple is SRC_IP/DST_IP/SRC_PORT/DST_PORT/PROTO as for any connection.

/// A conntrack event: `new`, `update` or `destroy` (`flow` for a NetFlow/IPFIX NAT record).
pub const NAT_EVENT: &str = "nat_event";
/// conntrack's entry id (`id=`, ulogd2's `ct.id`).
pub const CT_ID: &str = "ct_id";
/// Seconds the entry had left when the event was printed (conntrack's timeout column).
pub const CT_TIMEOUT: &str = "ct_timeout";
/// The TCP state conntrack printed (`SYN_SENT`, `ESTABLISHED`, `TIME_WAIT`, …).
pub const CT_STATE: &str = "ct_state";
/// A DESTROY's `delta-time=`: the entry's life in whole seconds.
pub const CT_LIFETIME: &str = "ct_lifetime";
/// The reply tuple as conntrack prints it (for SNAT its dst/dport are the public side).
pub const REPLY_SRC_IP: &str = "reply_src_ip";
pub const REPLY_DST_IP: &str = "reply_dst_ip";
pub const REPLY_SRC_PORT: &str = "reply_src_port";
pub const REPLY_DST_PORT: &str = "reply_dst_port";
/// The translation a record proves: `snat` (an inside source rewritten to a public one) or
/// `dnat` (a public destination rewritten to an inside one); absent when nothing was rewritten.
pub const NAT_KIND: &str = "nat_kind";
/// The public (translated) address and port.
pub const NAT_IP: &str = "nat_ip";
pub const NAT_PORT: &str = "nat_port";
/// The inside (private) address and port behind it.
pub const NAT_INSIDE_IP: &str = "nat_inside_ip";
pub const NAT_INSIDE_PORT: &str = "nat_inside_port";
/// The outside peer as it saw the connection.
pub const NAT_PEER_IP: &str = "nat_peer_ip";
pub const NAT_PEER_PORT: &str = "nat_peer_port";
