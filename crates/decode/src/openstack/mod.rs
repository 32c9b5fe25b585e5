//! OpenStack sources: notifications (versioned and legacy, bare or in the oslo envelope),
//! service logs in oslo.log layout, Keystone directory dumps. Observer: the cloud.

pub mod keystone;
pub mod notification;
pub mod oslo_log;

/// Which OpenStack format, if any, a file's first lines look like.
pub fn looks_like(_sample_lines: &[&[u8]]) -> Option<model::Format> {
    None
}
