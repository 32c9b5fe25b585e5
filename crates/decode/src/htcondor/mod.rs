//! HTCondor sources: `condor_history -json` and `-l` job ClassAds, job event logs (userlog).
//! Observer: the VO.

pub mod classad;
pub mod history_json;
pub mod userlog;

/// Which HTCondor format, if any, a file's first lines look like.
pub fn looks_like(_sample_lines: &[&[u8]]) -> Option<model::Format> {
    None
}
