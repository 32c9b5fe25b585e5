//! `hunt --misp-url`: the hunt's hits sent to a MISP instance as sightings (issue 14). The
//! requests are `query::misp`'s; this module only sends them, with the key from a file in
//! MISP's `Authorization` header, and reads each answer.

use std::time::Duration;

use anyhow::{Context as _, bail};
use query::misp::{SIGHTINGS_ADD, Sighting, request_body};

/// What one sighting's POST gave.
#[derive(Debug)]
pub struct Sent {
    pub value: String,
    /// The error (transport, or the body of a non-200 answer), if any.
    pub error: Option<String>,
}

/// Reads the API key from `path`: the first line, trimmed; refused when empty.
pub fn read_key(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the MISP key file {}", path.display()))?;
    let key = text.lines().next().unwrap_or_default().trim().to_string();
    if key.is_empty() {
        bail!("the MISP key file {} is empty", path.display());
    }
    Ok(key)
}

/// POSTs one sighting per entry of `sightings` to `base_url` + `/sightings/add`.
pub fn send(base_url: &str, key: &str, sightings: &[Sighting], sighting_type: u8) -> Vec<Sent> {
    // ureq, as the witness client uses it (blocking, rustls): a handful of requests after a
    // hunt need no async runtime.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("{}{SIGHTINGS_ADD}", base_url.trim_end_matches('/'));
    sightings
        .iter()
        .map(|s| {
            let body = request_body(s, sighting_type).to_string();
            let res = agent
                .post(&url)
                .header("Authorization", key)
                .header("Accept", "application/json")
                .content_type("application/json")
                .send(body.as_bytes());
            match res {
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    let text = resp
                        .body_mut()
                        .with_config()
                        .limit(1 << 20)
                        .read_to_string()
                        .unwrap_or_default();
                    Sent {
                        value: s.value.clone(),
                        error: (status != 200).then(|| {
                            format!(
                                "HTTP {status}: {}",
                                text.trim().chars().take(300).collect::<String>()
                            )
                        }),
                    }
                }
                Err(e) => Sent {
                    value: s.value.clone(),
                    error: Some(e.to_string()),
                },
            }
        })
        .collect()
}
