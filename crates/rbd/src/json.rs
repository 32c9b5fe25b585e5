//! The JSON the CLIs print with `--format json`, as Ceph 16.2 (Pacific) prints it, and the
//! few text fields inside it that need parsing (ctime-style timestamps, the trash status).
//!
//! Only the fields pugmark uses are declared; unknown fields are ignored so a newer Ceph that
//! adds fields still parses. Pure functions over bytes: the `rbd_json` fuzz target feeds them
//! arbitrary input (they return errors, never panic). Times: every child process runs with
//! `TZ=UTC`, so the ctime strings the CLIs print ("Sun Dec  6 06:45:03 2026") are UTC.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// `rbd info --format json`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct ImageInfo {
    /// Image name.
    pub name: String,
    /// Image id (stays the same across trash moves and renames; the trash is keyed by it).
    pub id: String,
    /// Provisioned size in bytes.
    pub size: u64,
    /// Image format (2 for every image trash/clone work on).
    #[serde(default)]
    pub format: u32,
    /// Number of snapshots.
    #[serde(default)]
    pub snapshot_count: u64,
    /// Enabled features (`layering`, `exclusive-lock`, …).
    #[serde(default)]
    pub features: Vec<String>,
    /// ctime-style creation time (UTC).
    #[serde(default)]
    pub create_timestamp: Option<String>,
    /// The parent, for a clone.
    #[serde(default)]
    pub parent: Option<Parent>,
}

/// A clone's parent as `rbd info` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct Parent {
    /// Parent pool.
    pub pool: String,
    /// Parent namespace ("" for none).
    #[serde(default)]
    pub pool_namespace: String,
    /// Parent image name.
    pub image: String,
    /// Parent image id.
    pub id: String,
    /// Parent snapshot name.
    pub snapshot: String,
    /// Whether the parent is in the trash.
    #[serde(default)]
    pub trash: bool,
}

/// One row of `rbd ls -l --format json` (images and, with `snapshot` set, their snapshots).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct ListEntry {
    /// Image name.
    pub image: String,
    /// Image id.
    #[serde(default)]
    pub id: String,
    /// Size in bytes.
    pub size: u64,
    /// The snapshot this row describes, if it is a snapshot row.
    #[serde(default)]
    pub snapshot: Option<String>,
}

/// One row of `rbd snap ls --format json`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct SnapEntry {
    /// Snapshot id.
    pub id: u64,
    /// Snapshot name.
    pub name: String,
    /// Size of the image at the snapshot.
    pub size: u64,
    /// `"true"` / `"false"` as rbd prints it.
    #[serde(default)]
    pub protected: Option<String>,
}

impl SnapEntry {
    /// Whether the snapshot is protected (clone v1 parents are).
    pub fn is_protected(&self) -> bool {
        self.protected.as_deref() == Some("true")
    }
}

/// One row of `rbd trash ls --long --format json`, with its times parsed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TrashEntry {
    /// Image id: what `trash restore` / `trash rm` take.
    pub id: String,
    /// The image's name when it was moved.
    pub name: String,
    /// `USER` (rbd trash mv, rbd rm with rbd_move_to_trash_on_remove), `MIRRORING`,
    /// `MIGRATION`, `REMOVING`.
    pub source: String,
    /// When it was moved, if the CLI's time parsed.
    pub deleted_at: Option<Timestamp>,
    /// End of the deferment ("protected until …"); None when expired or not parsed.
    pub protected_until: Option<Timestamp>,
    /// The CLI's status text, kept as printed.
    pub status: String,
}

#[derive(Deserialize)]
struct RawTrash {
    id: String,
    name: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    deleted_at: String,
    #[serde(default)]
    status: String,
}

/// `ceph health --format json`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct Health {
    /// `HEALTH_OK`, `HEALTH_WARN`, `HEALTH_ERR`.
    pub status: String,
    /// Check names (`POOL_NEARFULL`, …) with their one-line message.
    #[serde(default, deserialize_with = "checks")]
    pub checks: Vec<(String, String)>,
}

fn checks<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
    #[derive(Deserialize)]
    struct Summary {
        #[serde(default)]
        message: String,
    }
    #[derive(Deserialize)]
    struct Check {
        summary: Option<Summary>,
    }
    let map = std::collections::BTreeMap::<String, Check>::deserialize(d)?;
    Ok(map
        .into_iter()
        .map(|(k, c)| (k, c.summary.map(|s| s.message).unwrap_or_default()))
        .collect())
}

/// Parse `rbd info --format json`.
pub fn parse_info(bytes: &[u8]) -> Result<ImageInfo, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

/// Parse `rbd ls -l --format json`.
pub fn parse_list(bytes: &[u8]) -> Result<Vec<ListEntry>, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

/// Parse `rbd snap ls --format json`.
pub fn parse_snaps(bytes: &[u8]) -> Result<Vec<SnapEntry>, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

/// Parse `ceph health --format json`.
pub fn parse_health(bytes: &[u8]) -> Result<Health, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

/// Parse `rbd trash ls --long --format json`.
pub fn parse_trash(bytes: &[u8]) -> Result<Vec<TrashEntry>, String> {
    let raw: Vec<RawTrash> = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    Ok(raw
        .into_iter()
        .map(|r| {
            let protected_until = r
                .status
                .strip_prefix("protected until ")
                .and_then(parse_ctime);
            TrashEntry {
                deleted_at: parse_ctime(&r.deleted_at),
                protected_until,
                id: r.id,
                name: r.name,
                source: r.source,
                status: r.status,
            }
        })
        .collect())
}

/// `ceph df --format json`: the pool's `max_avail` (bytes that can still be written to it),
/// or None when the cluster does not know (no mgr reports statistics: zero OSDs counted).
pub fn parse_pool_free(bytes: &[u8], pool: &str) -> Result<Option<u64>, String> {
    #[derive(Deserialize)]
    struct Df {
        #[serde(default)]
        stats: Option<Totals>,
        #[serde(default)]
        pools: Vec<DfPool>,
    }
    #[derive(Deserialize)]
    struct Totals {
        #[serde(default)]
        total_bytes: u64,
    }
    #[derive(Deserialize)]
    struct DfPool {
        name: String,
        stats: PoolStats,
    }
    #[derive(Deserialize)]
    struct PoolStats {
        max_avail: u64,
    }
    let df: Df = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if df.stats.is_none_or(|s| s.total_bytes == 0) {
        return Ok(None);
    }
    Ok(df
        .pools
        .into_iter()
        .find(|p| p.name == pool)
        .map(|p| p.stats.max_avail))
}

/// A ctime(3) string as the CLIs print it under `TZ=UTC` ("Sun Dec  6 06:45:03 2026").
pub fn parse_ctime(s: &str) -> Option<Timestamp> {
    let words: Vec<&str> = s.split_whitespace().collect();
    // weekday month day hh:mm:ss year
    let [_, month, day, hms, year] = words.as_slice() else {
        return None;
    };
    let text = format!("{month} {day} {hms} {year}");
    let civil = jiff::civil::DateTime::strptime("%b %d %H:%M:%S %Y", &text).ok()?;
    jiff::tz::TimeZone::UTC.to_timestamp(civil).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Output of rbd 16.2.15 against tests' single-node cluster.
    const INFO_CLONE: &str = r#"{"name":"c1","id":"1040a7018090","size":104857600,"objects":25,"order":22,"object_size":4194304,"snapshot_count":0,"block_name_prefix":"rbd_data.1040a7018090","format":2,"features":["layering","exclusive-lock","object-map","fast-diff","deep-flatten"],"op_features":[],"flags":[],"create_timestamp":"Sun Dec  6 06:46:58 2026","access_timestamp":"Sun Dec  6 06:46:58 2026","modify_timestamp":"Sun Dec  6 06:46:58 2026","parent":{"pool":"rbd","pool_namespace":"","image":"a","id":"103a4f9c4cfd","snapshot":"s1","trash":true,"overlap":104857600}}"#;
    const TRASH: &str = r#"[{"id":"1013c99c8bf1","name":"vm1-disk","source":"USER","deleted_at":"Sun Dec  6 06:45:03 2026","status":"protected until Sun Dec  6 23:59:59 2026"},{"id":"10279e55dc73","name":"nova-disk","source":"USER","deleted_at":"Sun Dec  6 06:45:11 2026","status":"expired at Sun Dec  6 07:45:11 2026"}]"#;

    #[test]
    fn pacific_info_of_a_clone_whose_parent_is_in_the_trash() {
        let info = parse_info(INFO_CLONE.as_bytes()).expect("parses");
        assert_eq!(info.size, 104_857_600);
        let parent = info.parent.expect("a clone has a parent");
        assert_eq!((parent.id.as_str(), parent.trash), ("103a4f9c4cfd", true));
    }

    #[test]
    fn pacific_trash_ls_long() {
        let t = parse_trash(TRASH.as_bytes()).expect("parses");
        assert_eq!(t.len(), 2);
        assert_eq!(
            t[0].protected_until.map(|t| t.to_string()),
            Some("2026-12-06T23:59:59Z".into())
        );
        assert_eq!(
            t[0].deleted_at.map(|t| t.to_string()),
            Some("2026-12-06T06:45:03Z".into())
        );
        assert_eq!(
            t[1].protected_until, None,
            "expired entries are not protected"
        );
    }

    #[test]
    fn ctime_with_two_digit_days_and_garbage() {
        assert_eq!(
            parse_ctime("Mon Dec 14 01:02:03 2026").map(|t| t.to_string()),
            Some("2026-12-14T01:02:03Z".into())
        );
        for bad in [
            "",
            "Sun",
            "Sun Foo  6 06:45:03 2026",
            "a b c d e f",
            "Sun Dec 32 00:00:00 2026",
        ] {
            assert_eq!(parse_ctime(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn df_without_a_mgr_knows_no_free_space() {
        let no_mgr = br#"{"stats":{"total_bytes":0,"total_avail_bytes":0,"num_osds":0},"stats_by_class":{},"pools":[]}"#;
        assert_eq!(parse_pool_free(no_mgr, "evidence"), Ok(None));
        let with = br#"{"stats":{"total_bytes":100},"pools":[{"name":"evidence","id":2,"stats":{"stored":0,"max_avail":42}}]}"#;
        assert_eq!(parse_pool_free(with, "evidence"), Ok(Some(42)));
    }
}
