//! OpenNebula sources (a second cloud framework beside OpenStack): the XML of `onevm show -x`
//! / `onevm list -x`, `onevnet show -x` and the state hook ([`xml`]), and the lines of
//! `oned.log` and the per-VM logs ([`log`]). Observer: the cloud.
//!
//! A VM is named `one-<ID>` ([`model::fields::opennebula_vm`]) and fills the same fields as a
//! nova notification (`vm_uuid`, `user_id`, `project_id`, `hypervisor`, `vm_ips`, `vm_macs`,
//! `vm_devices`, `state`), so the fact store, `who`, `timeline`, `report`, `check` and the
//! attribution rule treat an OpenNebula site like an OpenStack one.

pub mod log;
pub mod xml;

use model::Format;

use crate::text::strip_terminators;

/// Which OpenNebula format, if any, a file's first lines look like.
///
/// - XML: the first non-blank line starts with `<` and the sample names one of OpenNebula's
///   document elements (`<VM>`, `<VM_POOL>`, `<VNET>`, `<VNET_POOL>`, `<HOOK_MESSAGE>`);
/// - logs: most non-empty lines have the `ctime [Z0][MOD][L]: ` header.
pub fn looks_like(sample_lines: &[&[u8]]) -> Option<Format> {
    let lines: Vec<&[u8]> = sample_lines
        .iter()
        .map(|l| trim_start(strip_terminators(l)))
        .filter(|l| !l.is_empty())
        .collect();
    let first = lines.first()?;
    if first.starts_with(b"<") {
        let named = lines.iter().any(|l| {
            [
                &b"<VM>"[..],
                b"<VM_POOL>",
                b"<VNET>",
                b"<VNET_POOL>",
                b"<HOOK_MESSAGE>",
            ]
            .iter()
            .any(|k| memchr::memmem::find(l, k).is_some())
        });
        return named.then_some(Format::OpennebulaXml);
    }
    let logs = lines.iter().filter(|l| log::has_header(l)).count();
    (logs * 2 > lines.len()).then_some(Format::OpennebulaLog)
}

fn trim_start(b: &[u8]) -> &[u8] {
    let s = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    &b[s..]
}
