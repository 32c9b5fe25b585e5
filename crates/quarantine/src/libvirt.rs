//! What a hypervisor hook hands us, turned into the images to capture.
//!
//! - **libvirt** (`/etc/libvirt/hooks/qemu DOMAIN release end -`, the domain XML on stdin,
//!   libvirt.org/hooks.html): [`domain_disks`] reads `<uuid>`, nova's `<nova:project>` and
//!   every `<disk device='disk'>` — `type='file'` → a path, `type='network' protocol='rbd'` →
//!   pool/image; block devices, cdroms and floppies are listed as skipped.
//! - **OpenNebula** (a state hook with `ARGUMENTS = "$TEMPLATE"`, `ARGUMENTS_STDIN = "yes"`:
//!   the VM's XML, base64, on stdin): [`one_vm_disks`] reads the VM id, its system datastore
//!   and each non-persistent disk (file datastores: `DS/VMID/disk.N`; Ceph: pool
//!   `POOL_NAME`, image `SOURCE-VMID-N`).
//! - **qcow2 backing chains**: [`backing_chain`] asks the real `qemu-img info --backing-chain
//!   --output=json` for the chain, after checking that the file's probed format is the one the
//!   XML declares (a raw disk declared raw whose bytes look like a qcow2 header naming a
//!   backing file is the classic lie: its "backing file" is whatever the VM's user wrote).
//!
//! Both XMLs are input from outside: roxmltree (no DTD, no entity expansion), sizes bounded,
//! never a panic. Paths are only *named* here; the file backend checks them against the
//! roots before touching anything.

use std::path::PathBuf;
use std::process::Command;

use serde::Deserialize;

use crate::backend::Source;

/// Largest XML accepted from a hook (a domain XML is a few KiB).
pub const MAX_XML: usize = 4 << 20;

/// A VM's disks as a hook described them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmDisks {
    /// The VM's UUID (lowercase), or OpenNebula's `one-ID` when it has none.
    pub vm_uuid: String,
    /// Its name.
    pub name: Option<String>,
    /// Project / VO when the XML says (nova metadata, OpenNebula group).
    pub project: Option<String>,
    /// Disks to capture, with the format the XML declares (`qcow2`, `raw`) when it does.
    pub disks: Vec<(Source, Option<String>)>,
    /// Disks not captured, with why (cdrom, block device, persistent image, …).
    pub skipped: Vec<String>,
}

fn child<'a>(n: roxmltree::Node<'a, 'a>, name: &str) -> Option<roxmltree::Node<'a, 'a>> {
    n.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

fn text_of(n: roxmltree::Node<'_, '_>, name: &str) -> Option<String> {
    child(n, name)
        .and_then(|c| c.text())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// Whether `s` is a UUID (8-4-4-4-12 hex).
pub fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Parse a libvirt domain XML.
pub fn domain_disks(xml: &str) -> Result<VmDisks, String> {
    if xml.len() > MAX_XML {
        return Err(format!("domain XML of {} bytes is too large", xml.len()));
    }
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("domain XML: {e}"))?;
    let dom = doc.root_element();
    if dom.tag_name().name() != "domain" {
        return Err(format!(
            "domain XML: root element is <{}>, not <domain>",
            dom.tag_name().name()
        ));
    }
    let uuid = text_of(dom, "uuid").ok_or("domain XML has no <uuid>")?;
    if !is_uuid(&uuid) {
        return Err(format!("domain XML: <uuid> {uuid:?} is not a UUID"));
    }
    let mut out = VmDisks {
        vm_uuid: uuid.to_ascii_lowercase(),
        name: text_of(dom, "name"),
        ..VmDisks::default()
    };
    // nova's metadata: <nova:instance><nova:owner><nova:project uuid="…">name</nova:project>.
    out.project = dom
        .descendants()
        .find(|n| n.is_element() && n.tag_name().name() == "project")
        .and_then(|p| p.attribute("uuid").map(str::to_string));
    let Some(devices) = child(dom, "devices") else {
        return Ok(out);
    };
    for disk in devices
        .children()
        .filter(|c| c.is_element() && c.tag_name().name() == "disk")
    {
        let device = disk.attribute("device").unwrap_or("disk");
        let kind = disk.attribute("type").unwrap_or("file");
        let target = child(disk, "target")
            .and_then(|t| t.attribute("dev"))
            .unwrap_or("?")
            .to_string();
        if device != "disk" {
            out.skipped.push(format!("{target}: device {device}"));
            continue;
        }
        let format = child(disk, "driver")
            .and_then(|d| d.attribute("type"))
            .map(str::to_string);
        let source = child(disk, "source");
        match (kind, source) {
            ("file", Some(s)) => match s.attribute("file") {
                Some(f) if !f.is_empty() => {
                    let src = Source::Path {
                        path: PathBuf::from(f),
                    };
                    if out.disks.iter().any(|(d, _)| *d == src) {
                        out.skipped.push(format!("{target}: {f} listed twice"));
                    } else {
                        out.disks.push((src, format));
                    }
                }
                _ => out
                    .skipped
                    .push(format!("{target}: file disk without a path")),
            },
            ("network", Some(s)) if s.attribute("protocol") == Some("rbd") => {
                match s.attribute("name").and_then(rbd_spec) {
                    Some(src) => out.disks.push((src, format)),
                    None => out
                        .skipped
                        .push(format!("{target}: rbd disk without pool/image")),
                }
            }
            (k, _) => out
                .skipped
                .push(format!("{target}: disk type {k} not captured")),
        }
    }
    Ok(out)
}

/// `pool/image` or `pool/namespace/image` (libvirt's rbd `name`).
fn rbd_spec(name: &str) -> Option<Source> {
    let parts: Vec<&str> = name.split('/').collect();
    let ok = |s: &&str| !s.is_empty();
    match parts.as_slice() {
        [pool, image] if ok(pool) && ok(image) => Some(Source::Rbd {
            pool: (*pool).into(),
            namespace: None,
            image: (*image).into(),
            snapshot: None,
        }),
        [pool, ns, image] if ok(pool) && ok(ns) && ok(image) => Some(Source::Rbd {
            pool: (*pool).into(),
            namespace: Some((*ns).into()),
            image: (*image).into(),
            snapshot: None,
        }),
        _ => None,
    }
}

/// Parse an OpenNebula VM XML (decoded from the hook's base64 `$TEMPLATE`). File-datastore
/// disks live under `datastores` (`/var/lib/one/datastores` by default).
pub fn one_vm_disks(xml: &str, datastores: &std::path::Path) -> Result<VmDisks, String> {
    if xml.len() > MAX_XML {
        return Err(format!("VM XML of {} bytes is too large", xml.len()));
    }
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("VM XML: {e}"))?;
    let vm = doc.root_element();
    if vm.tag_name().name() != "VM" {
        return Err(format!(
            "VM XML: root element is <{}>, not <VM>",
            vm.tag_name().name()
        ));
    }
    let id = text_of(vm, "ID").ok_or("VM XML has no <ID>")?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("VM XML: <ID> {id:?} is not a number"));
    }
    let vm_uuid = text_of(vm, "UUID")
        .filter(|u| is_uuid(u))
        .map(|u| u.to_ascii_lowercase())
        .unwrap_or_else(|| format!("one-{id}"));
    // The system datastore of the last history record (where the VM ran).
    let sys_ds = child(vm, "HISTORY_RECORDS")
        .and_then(|h| {
            h.children()
                .rfind(|c| c.is_element() && c.tag_name().name() == "HISTORY")
        })
        .and_then(|h| text_of(h, "DS_ID"))
        .filter(|d| d.bytes().all(|b| b.is_ascii_digit()));
    let mut out = VmDisks {
        vm_uuid,
        name: text_of(vm, "NAME"),
        project: text_of(vm, "GNAME"),
        ..VmDisks::default()
    };
    let Some(template) = child(vm, "TEMPLATE") else {
        return Ok(out);
    };
    for disk in template
        .children()
        .filter(|c| c.is_element() && c.tag_name().name() == "DISK")
    {
        let disk_id = text_of(disk, "DISK_ID").unwrap_or_default();
        if disk_id.is_empty() || !disk_id.bytes().all(|b| b.is_ascii_digit()) {
            out.skipped.push("disk without a numeric DISK_ID".into());
            continue;
        }
        if text_of(disk, "PERSISTENT").as_deref() == Some("YES") {
            out.skipped
                .push(format!("disk {disk_id}: persistent image, not deleted"));
            continue;
        }
        let tm = text_of(disk, "TM_MAD").unwrap_or_default();
        let format = text_of(disk, "DRIVER");
        if tm == "ceph" {
            let pool = text_of(disk, "POOL_NAME");
            let source = text_of(disk, "SOURCE");
            match (pool, source) {
                (Some(pool), Some(src)) => {
                    // SOURCE is `pool/one-IMAGE`; the VM's clone is `one-IMAGE-VMID-DISK`.
                    let base = src.rsplit('/').next().unwrap_or(&src).to_string();
                    out.disks.push((
                        Source::Rbd {
                            pool,
                            namespace: None,
                            image: format!("{base}-{id}-{disk_id}"),
                            snapshot: None,
                        },
                        format,
                    ));
                }
                _ => out.skipped.push(format!(
                    "disk {disk_id}: ceph disk without POOL_NAME/SOURCE"
                )),
            }
            continue;
        }
        match &sys_ds {
            Some(ds) => out.disks.push((
                Source::Path {
                    path: datastores
                        .join(ds)
                        .join(&id)
                        .join(format!("disk.{disk_id}")),
                },
                format,
            )),
            None => out.skipped.push(format!(
                "disk {disk_id}: no system datastore in the history"
            )),
        }
    }
    Ok(out)
}

/// One member of a backing chain as `qemu-img info --output=json` describes it.
#[derive(Clone, Debug, Deserialize)]
pub struct ChainMember {
    /// The file.
    pub filename: String,
    /// Its format.
    pub format: String,
    /// Virtual size.
    #[serde(rename = "virtual-size", default)]
    pub virtual_size: u64,
    /// The backing file, absolute, if any.
    #[serde(rename = "full-backing-filename", default)]
    pub full_backing_filename: Option<String>,
}

fn qemu_img_info(args: &[&str]) -> Result<String, String> {
    let out = Command::new("qemu-img")
        .arg("info")
        .args(args)
        .output()
        .map_err(|e| format!("qemu-img: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "qemu-img info {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8(out.stdout).map_err(|_| "qemu-img printed non-UTF-8".into())
}

/// The backing chain of a disk file, the disk first, after checking the file's format is
/// what `declared` says (when the XML declares one). `--force-share` reads a disk a stopping
/// qemu may still hold open, without taking its lock.
pub fn backing_chain(path: &str, declared: Option<&str>) -> Result<Vec<ChainMember>, String> {
    let probed: ChainMember = serde_json::from_str(&qemu_img_info(&[
        "--output=json",
        "--force-share",
        "--",
        path,
    ])?)
    .map_err(|e| format!("qemu-img info {path}: {e}"))?;
    if let Some(d) = declared
        && d != probed.format
    {
        return Err(format!(
            "the domain XML declares {path} as {d} but it is {}: refused (an XML that lies \
             about its disks, or a guest-written header)",
            probed.format
        ));
    }
    let format = declared.unwrap_or(&probed.format);
    let chain: Vec<ChainMember> = serde_json::from_str(&qemu_img_info(&[
        "--output=json",
        "--backing-chain",
        "--force-share",
        "-f",
        format,
        "--",
        path,
    ])?)
    .map_err(|e| format!("qemu-img info --backing-chain {path}: {e}"))?;
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nova_domain_xml() -> Result<(), String> {
        let xml = r#"<domain type='kvm'>
  <name>instance-0000002a</name>
  <uuid>0F6C2E8A-1B2C-4D3E-8F90-A1B2C3D4E5F6</uuid>
  <metadata><nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1">
    <nova:owner><nova:user uuid="u1">alice</nova:user><nova:project uuid="p1">atlas</nova:project></nova:owner>
  </nova:instance></metadata>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='/var/lib/nova/instances/x/disk'/><target dev='vda'/></disk>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='/var/lib/nova/instances/x/disk'/><target dev='vdc'/></disk>
    <disk type='network' device='disk'><driver name='qemu' type='raw'/>
      <source protocol='rbd' name='vms/x_disk.eph0'/><target dev='vdb'/></disk>
    <disk type='file' device='cdrom'><source file='/x/disk.config'/><target dev='hda'/></disk>
    <disk type='block' device='disk'><source dev='/dev/sdb'/><target dev='vdd'/></disk>
  </devices></domain>"#;
        let d = domain_disks(xml)?;
        assert_eq!(d.vm_uuid, "0f6c2e8a-1b2c-4d3e-8f90-a1b2c3d4e5f6");
        assert_eq!(d.project.as_deref(), Some("p1"));
        assert_eq!(d.disks.len(), 2);
        assert_eq!(d.disks[1].0.to_string(), "vms/x_disk.eph0");
        assert_eq!(d.skipped.len(), 3, "{:?}", d.skipped);
        Ok(())
    }

    #[test]
    fn bad_domain_xml_is_an_error_not_a_panic() {
        for x in [
            "",
            "<domain/>",
            "<domain><uuid>nope</uuid></domain>",
            "<x><uuid>0f6c2e8a-1b2c-4d3e-8f90-a1b2c3d4e5f6</uuid></x>",
            "<!DOCTYPE d [<!ENTITY a 'aaaa'>]><domain><uuid>&a;</uuid></domain>",
        ] {
            assert!(domain_disks(x).is_err(), "{x}");
        }
    }

    #[test]
    fn opennebula_vm_xml() -> Result<(), String> {
        let xml = "<VM><ID>42</ID><NAME>web</NAME><GNAME>vo-lhcb</GNAME>\
            <HISTORY_RECORDS><HISTORY><DS_ID>0</DS_ID></HISTORY></HISTORY_RECORDS>\
            <TEMPLATE><DISK><DISK_ID>0</DISK_ID><TM_MAD>qcow2</TM_MAD></DISK>\
            <DISK><DISK_ID>1</DISK_ID><TM_MAD>ceph</TM_MAD><POOL_NAME>one</POOL_NAME>\
            <SOURCE>one/one-7</SOURCE></DISK>\
            <DISK><DISK_ID>2</DISK_ID><PERSISTENT>YES</PERSISTENT></DISK></TEMPLATE></VM>";
        let d = one_vm_disks(xml, std::path::Path::new("/var/lib/one/datastores"))?;
        assert_eq!(d.vm_uuid, "one-42");
        assert_eq!(d.project.as_deref(), Some("vo-lhcb"));
        assert_eq!(
            d.disks[0].0.to_string(),
            "/var/lib/one/datastores/0/42/disk.0"
        );
        assert_eq!(d.disks[1].0.to_string(), "one/one-7-42-1");
        assert_eq!(d.skipped.len(), 1);
        Ok(())
    }
}
