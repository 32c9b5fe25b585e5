//! HTCondor sources: `condor_history -json` and `-l` job ClassAds, job event logs (userlog).
//! Observer: the VO.
//!
//! Modules: [`classad`] (the ClassAd literal language and `-l` ads), [`history_json`] (the
//! JSON form of the same ads), [`job`] (job attributes → `job.run` fields, shared by both),
//! [`sinful`] (daemon addresses `<ip:port?addrs=…&alias=…>`), [`userlog`] (job event logs,
//! one `...`-terminated event per record). [`looks_like`] tells the three file shapes apart
//! from a file's first lines.

pub mod classad;
pub mod history_json;
pub mod job;
pub mod sinful;
pub mod userlog;

use model::Format;

/// Attributes nearly every job ad has; two of them on `Attr = value` lines make a `-l` ad.
const TYPICAL_ATTRS: [&str; 12] = [
    "ClusterId",
    "ProcId",
    "GlobalJobId",
    "Owner",
    "User",
    "JobStatus",
    "Cmd",
    "QDate",
    "MyType",
    "JobUniverse",
    "Iwd",
    "EnteredCurrentStatus",
];

/// Which HTCondor format, if any, a file's first lines look like.
pub fn looks_like(sample_lines: &[&[u8]]) -> Option<Format> {
    let lines: Vec<&[u8]> = sample_lines
        .iter()
        .map(|l| crate::text::strip_terminators(l))
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .collect();
    let first = lines.first()?;
    // userlog: the first line is an event header `0NN (`.
    if userlog::header_code(first).is_some() {
        return Some(Format::CondorUserlog);
    }
    // -json: `[` then objects with job attributes.
    let trimmed = first.trim_ascii_start();
    if trimmed.first() == Some(&b'[') {
        let has_job_attr = lines.iter().take(200).any(|l| {
            memchr::memmem::find(l, b"\"ClusterId\"").is_some()
                || memchr::memmem::find(l, b"\"GlobalJobId\"").is_some()
        });
        return has_job_attr.then_some(Format::CondorHistoryJson);
    }
    // -l: most lines are `Attr = value`, some of them typical job attributes.
    let mut attr_lines = 0usize;
    let mut typical = 0usize;
    for l in &lines {
        let text = String::from_utf8_lossy(l);
        if let Some((name, _)) = classad::attr_line(&text) {
            attr_lines += 1;
            if TYPICAL_ATTRS.iter().any(|t| t.eq_ignore_ascii_case(name)) {
                typical += 1;
            }
        }
    }
    (attr_lines * 10 >= lines.len() * 8 && typical >= 2).then_some(Format::CondorClassAd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Option<Format>) {
        let lines: Vec<&[u8]> = text.lines().map(str::as_bytes).collect();
        assert_eq!(looks_like(&lines), expected, "{text}");
    }

    #[test]
    fn shapes() {
        check(
            "000 (2758.000.000) 03/20 21:04:58 Job submitted from host: <1.2.3.4:1027>\n...",
            Some(Format::CondorUserlog),
        );
        check(
            "001 (1.0.0) 2024-01-02 03:04:05 Job executing on host: <1.2.3.4:9618>",
            Some(Format::CondorUserlog),
        );
        check(
            "[\n{\n  \"ClusterId\": 1,\n  \"Owner\": \"a\"\n}\n]",
            Some(Format::CondorHistoryJson),
        );
        check("[{\"id\": \"x\", \"name\": \"y\"}]", None);
        check(
            "MyType = \"Job\"\nOwner = \"a\"\nClusterId = 1\nCmd = \"x\"\n",
            Some(Format::CondorClassAd),
        );
        check("a = 1\nb = 2\n", None);
        check(
            "Jun  8 14:34:33 host kernel: IN=eth0 OUT= SRC=1.2.3.4",
            None,
        );
        check(
            "<13>Oct 11 22:14:15 host app: Owner = x, ClusterId = 1",
            None,
        );
        check("", None);
    }
}
