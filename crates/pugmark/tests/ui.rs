//! The web UI (issue 14) in a real browser: Debian's `chromium`, headless, driven by npm's
//! `playwright-core` (locked in `tests/ui/npm`, installed by scripts/test into
//! `$PUGMARK_NPM/playwright`) through `tests/ui/browser.mjs`, against the real binary
//! (`pugmark ui`) on a generated challenge day. The script only acts and reports what the
//! pages show; the assertions are here.
//!
//! - log in with a local API token (the form) and with the real OpenID Provider's login form
//!   (npm oidc-provider, authorization code + PKCE); unauthenticated pages go to the login;
//! - every page: the who card names the challenge's expected owner, search facets filter
//!   when clicked, hits are marked by observer and trust, surrounding records open, the timeline
//!   draws one lane per observer, check findings and hunt hits link on;
//! - a VO user sees nothing of another VO's VM on any page; page views are audited.
//!
//! Screenshots: `$PUGMARK_ARTEFACTS/ui/` when set, else `CARGO_TARGET_TMPDIR/ui-screenshots/`
//! (under the target directory), one PNG per step that names a `shot`.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod common;
#[path = "common/day.rs"]
mod day;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::{free_port, ok, which};
use day::{Day, docs_config, enc};
use serde_json::{Value, json};

fn npm_base() -> PathBuf {
    std::env::var_os("PUGMARK_NPM")
        .map_or_else(|| PathBuf::from("/var/cache/pugmark-npm"), PathBuf::from)
}

/// Chromium and playwright-core, or None (skipped outside CI; in CI missing is a failure).
fn browser() -> Option<(PathBuf, PathBuf)> {
    let pw = npm_base().join("playwright");
    let chromium = which("chromium");
    if let (Some(c), true, Some(_)) = (
        chromium,
        pw.join("node_modules/playwright-core/package.json")
            .is_file(),
        which("node"),
    ) {
        return Some((c, pw));
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "chromium, node or playwright-core missing in CI: scripts/test installs them"
    );
    eprintln!("SKIPPED: chromium / playwright-core not installed (scripts/test installs them)");
    None
}

fn artefacts() -> PathBuf {
    let d = std::env::var_os("PUGMARK_ARTEFACTS").map_or_else(
        || PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots"),
        |a| PathBuf::from(a).join("ui"),
    );
    fs::create_dir_all(&d).unwrap();
    d
}

/// The real OpenID Provider of crates/authn's tests, with our callback allowed.
struct Provider {
    child: Child,
    issuer: String,
    _dir: tempfile::TempDir,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn provider(redirect: &str) -> Option<Provider> {
    let npm = npm_base().join("oidc-provider");
    if !npm
        .join("node_modules/oidc-provider/package.json")
        .is_file()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "oidc-provider missing in CI"
        );
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("oidc-provider.mjs");
    fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../authn/tests/oidc-provider.mjs"),
        &script,
    )
    .unwrap();
    std::os::unix::fs::symlink(npm.join("node_modules"), dir.path().join("node_modules")).unwrap();
    let mut child = Command::new("node")
        .arg(&script)
        .args(["0", "k1:RS256"])
        .env("PUGMARK_OIDC_REDIRECT", redirect)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let line = common::first_line(&mut child, "oidc-provider", 120);
    let mut it = line.split_whitespace();
    assert_eq!(it.next(), Some("ready"), "provider: {line:?}");
    let _port = it.next();
    let issuer = it.next().unwrap().to_string();
    Some(Provider {
        child,
        issuer,
        _dir: dir,
    })
}

struct Ui(Child);

impl Drop for Ui {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

/// A `who` question of the challenge whose VM is in `project` (by name).
struct Asked {
    ip: String,
    at: String,
    uuid: String,
    owner: String,
}

fn question(ch: &Path, project: &str) -> Asked {
    let projects: Value =
        serde_json::from_slice(&fs::read(ch.join("keystone_projects.json")).unwrap()).unwrap();
    let pid = projects
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["Name"] == project)
        .unwrap()["ID"]
        .as_str()
        .unwrap()
        .to_string();
    let answers: Value =
        serde_json::from_slice(&fs::read(ch.join("answers.json")).unwrap()).unwrap();
    let q = answers
        .as_array()
        .unwrap()
        .iter()
        .find(|q| {
            q["kind"] == "who"
                && q["expect"]["ambiguous"] == false
                && q["expect"]["matches"].as_array().map(Vec::len) == Some(1)
                && q["expect"]["matches"][0]["project_id"] == pid.as_str()
                && q["expect"]["matches"][0]["user_name"].is_string()
        })
        .unwrap_or_else(|| panic!("no who question for {project}"));
    let m = &q["expect"]["matches"][0];
    Asked {
        ip: q["ip"].as_str().unwrap().to_string(),
        at: q["at"].as_str().unwrap().to_string(),
        uuid: m["vm_uuid"].as_str().unwrap().to_string(),
        owner: m["user_name"].as_str().unwrap().to_string(),
    }
}

fn run_browser(chromium: &Path, pw: &Path, plan: &Value) -> Value {
    // ESM resolves packages beside the script: copy it next to a node_modules link.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("browser.mjs");
    fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/browser.mjs"),
        &script,
    )
    .unwrap();
    std::os::unix::fs::symlink(pw.join("node_modules"), dir.path().join("node_modules")).unwrap();
    let mut plan = plan.clone();
    plan["chromium"] = json!(chromium);
    let mut child = Command::new("node")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(plan.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "browser driver failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn texts(o: &Value, k: &str) -> Vec<String> {
    o["read"][k]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn text(o: &Value, k: &str) -> String {
    texts(o, k).join(" ")
}

#[test]
fn the_web_ui_in_a_real_browser_on_a_challenge_day() {
    let Some((chromium, pw)) = browser() else {
        return;
    };
    let mut d = Day::generate(
        14,
        &[
            ("site", "site"),
            ("atlas", "vo:atlas"),
            ("cms", "vo:cms"),
            ("dave", "vo:atlas"),
        ],
    );
    let (ch, tokens) = (d.ch.clone(), d.tokens.clone());
    let dir = d.dir.path().to_path_buf();
    let port = free_port();
    let callback = format!("http://127.0.0.1:{port}/ui/callback");
    let op = provider(&callback);
    // The docs' roles and VOs; the provider's alice (groups /atlas, /atlas/pilots) is an ATLAS
    // partner here, and the provider is the UI's OIDC login.
    let mut config = docs_config();
    if let Some(p) = &op {
        let secret = dir.join("web-secret");
        fs::write(&secret, "web-secret\n").unwrap();
        config.push_str(&format!(
            "\n[[api.roles]]\ngroup = \"/atlas/pilots\"\nrole = \"vo:atlas\"\n\n[[auth.oidc]]\nissuer = \"{}\"\naudience = \"https://pugmark.example.org\"\nclient_id = \"pugmark-web\"\nclient_secret_file = \"{}\"\nredirect_uri = \"{callback}\"\n",
            p.issuer,
            secret.display()
        ));
    }
    fs::write(&d.config, &config).unwrap();
    d.start_ui_at(&format!("127.0.0.1:{port}"));
    let base = d.base.clone();

    let atlas = question(&ch, "atlas-1");
    let cms = question(&ch, "cms-1");
    let who_atlas = format!("/ui/who?ip={}&at={}", enc(&atlas.ip), enc(&atlas.at));
    let who_cms = format!("/ui/who?ip={}&at={}", enc(&cms.ip), enc(&cms.at));
    // A VM that migrated (the placement fact "moves from hypervisor A to B"), asked of the API.
    let migrated = {
        let answers: Value =
            serde_json::from_slice(&fs::read(ch.join("answers.json")).unwrap()).unwrap();
        let mut vms: Vec<String> = answers
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|q| {
                q["expect"]["matches"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|m| m["vm_uuid"].as_str().map(str::to_string))
            .collect();
        vms.sort();
        vms.dedup();
        vms.into_iter().find(|vm| {
            let mut resp = ureq::get(&format!("{base}/api/v1/timeline?vm={vm}"))
                .header("Authorization", &format!("Bearer {}", tokens["site"]))
                .call()
                .unwrap();
            let t: Value =
                serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
            t["entries"].as_array().unwrap().iter().any(|e| {
                e["source"] == "placement"
                    && e["summary"].as_str().unwrap_or("").contains(" moves from ")
            })
        })
    };
    let migrated = migrated.expect("the challenge day has a migrated VM");
    let shots = artefacts();
    // What a page answers (not the form echoing the question).
    let body = json!({"body": "main > :not(form), footer"});
    let mut sessions = vec![
        json!({"name": "anonymous", "steps": [
            {"op": "goto", "url": who_atlas, "shot": "redirected", "read": {"h1": "h1"}},
            {"op": "login_token", "token": "pmk_not-a-token", "shot": "bad-token", "read": {"error": ".error"}},
        ]}),
        json!({"name": "site", "steps": [
            {"op": "login_token", "token": tokens["site"], "next": who_atlas, "shot": "who",
             "read": {"owner": ".who-card .owner", "vo": ".who-card .vo", "hypervisor": ".who-card .hypervisor",
                      "lease": ".who-card .lease", "evidence": ".who-card .evidence li", "role": ".whoami .role"}},
            {"op": "goto", "url": format!("/ui/search?q={}", enc(&atlas.ip)), "shot": "search",
             "read": {"count": "#hit-count", "bars": ".histogram .bar", "facets": ".facet h3",
                      "observers": ".facet[data-field=observer] li a", "hits": "li.hit",
                      "forgeable": "li.hit.trust-forgeable", "badges": "li.hit .obs"}},
            {"op": "click", "selector": ".facet[data-field=observer] a[data-value=hypervisor]", "shot": "search-facet",
             "read": {"active": ".facet li.active a", "badges": "li.hit .obs", "count": "#hit-count"}},
            {"op": "click", "selector": "li.hit a.around", "wait": ".around-box ol.hits", "shot": "search-around",
             "read": {"around": ".around-box li.hit", "here": ".around-box li.hit.here",
                      "clicked": "ol.hits > li.hit:first-child > .meta .seq"}},
            {"op": "goto", "url": format!("/ui/timeline?vm={}", atlas.uuid), "shot": "timeline",
             "read": {"lanes": ".lane .lane-name", "dots": ".lane rect.dot", "marks": ".lane-cloud line.mark",
                      "rows": "table.entries tbody tr", "reported": "table.entries .reported"}},
            {"op": "goto", "url": format!("/ui/timeline?vm={migrated}"), "shot": "timeline-migration",
             "read": {"migrations": ".lane-cloud line.mark-migration", "rows": "table.entries tr.mark-migration"}},
            {"op": "goto", "url": "/ui/check", "wait": "p.summary", "shot": "check",
             "read": {"kinds": ".finding .kind", "entities": ".finding .entities a"}},
            {"op": "click", "selector": ".finding .entities a", "shot": "check-entity", "read": {"h1": "h1", "error": ".error"}},
            {"op": "goto", "url": format!("/ui/hunt?indicators={}", enc(&atlas.ip)), "shot": "hunt",
             "read": {"hits": "ol.hits li.hit", "links": "ol.hits li.hit a"}},
            {"op": "goto", "url": who_atlas},
            {"op": "click", "selector": ".who-card a.report", "shot": "report", "read": {"body": "body"}},
            {"op": "goto", "url": "/ui/"},
            {"op": "logout", "read": {"h1": "h1"}},
            {"op": "goto", "url": "/ui/check", "read": {"h1": "h1"}},
        ]}),
        json!({"name": "atlas", "steps": [
            {"op": "login_token", "token": tokens["atlas"], "read": {"role": ".whoami .role"}},
            {"op": "goto", "url": who_atlas, "read": {"owner": ".who-card .owner"}},
            {"op": "goto", "url": who_cms, "shot": "who-other-vo", "read": {"error": ".error", "body": "main > :not(form)"}},
            {"op": "goto", "url": format!("/ui/search?q={}", enc(&cms.ip)), "shot": "search-other-vo", "read": body},
            {"op": "goto", "url": format!("/ui/search?q={}", cms.uuid), "read": body},
            {"op": "goto", "url": format!("/ui/timeline?vm={}", cms.uuid), "read": body},
            {"op": "goto", "url": format!("/ui/timeline?ip={}", enc(&cms.ip)), "read": body},
            {"op": "goto", "url": "/ui/check", "wait": "p.summary", "shot": "check-vo", "read": body},
            {"op": "goto", "url": format!("/ui/hunt?indicators={}%0A{}", enc(&cms.ip), cms.uuid), "read": body},
            {"op": "goto", "url": format!("/ui/search?q={}", enc(&atlas.ip)), "read": {"hits": "li.hit"}},
        ]}),
    ];
    if op.is_some() {
        sessions.push(json!({"name": "oidc", "steps": [
            {"op": "login_oidc", "user": "alice", "password": "alice-pw", "shot": "oidc-home",
             "read": {"user": ".whoami .user", "role": ".whoami .role", "error": ".error"}},
            {"op": "goto", "url": who_atlas, "shot": "oidc-who", "read": {"owner": ".who-card .owner"}},
            {"op": "goto", "url": who_cms, "read": {"body": "main > :not(form)"}},
        ]}));
    }
    let plan = json!({"base": base, "artefacts": shots, "sessions": sessions});
    let r = run_browser(&chromium, &pw, &plan);
    let s = |name: &str| r["sessions"][name].as_array().cloned().unwrap();
    for (name, steps) in r["sessions"].as_object().unwrap() {
        for st in steps.as_array().unwrap() {
            assert!(st["error"].is_null(), "{name}: step failed: {st}");
        }
    }
    // Script errors and CSP refusals; a refused page (403 "not yours") is logged by the
    // browser as a failed load, which is what it should be.
    let console: Vec<&Value> = r["console_errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| !e.as_str().unwrap_or("").contains("Failed to load resource"))
        .collect();
    assert!(console.is_empty(), "no script or CSP errors: {console:?}");

    // Unauthenticated: the login page.
    let anon = s("anonymous");
    assert!(
        anon[0]["url"]
            .as_str()
            .unwrap()
            .starts_with("/ui/login?next="),
        "{}",
        anon[0]
    );
    assert_eq!(text(&anon[0], "h1"), "Log in to pugmark");
    assert!(anon[1]["url"].as_str().unwrap().starts_with("/ui/login"));
    assert!(text(&anon[1], "error").contains("not valid"), "{}", anon[1]);

    // The site: every page.
    let site = s("site");
    assert_eq!(site[0]["url"], json!(who_atlas), "login went on to next");
    assert_eq!(
        text(&site[0], "owner").split(' ').next().unwrap(),
        atlas.owner,
        "the who card names the expected owner"
    );
    assert_eq!(text(&site[0], "role"), "site");
    assert_eq!(text(&site[0], "vo"), "atlas");
    assert!(!texts(&site[0], "evidence").is_empty());
    let search = &site[1];
    assert!(text(search, "count").contains("match"), "{search}");
    assert_eq!(texts(search, "bars").len(), 48, "histogram bars");
    assert_eq!(
        texts(search, "facets"),
        ["observer", "class", "host", "app"]
    );
    let observers = texts(search, "observers");
    assert!(observers.len() >= 2, "several observers hit: {observers:?}");
    assert!(!texts(search, "hits").is_empty());
    // VM lines visibly apart: every badge of a vm hit says forgeable, none other does.
    let badges = texts(search, "badges");
    let forgeable = texts(search, "forgeable").len();
    assert_eq!(
        forgeable,
        badges.iter().filter(|b| b.starts_with("vm")).count()
    );
    assert!(
        badges
            .iter()
            .filter(|b| b.contains("forgeable"))
            .all(|b| b.starts_with("vm"))
    );
    // A facet click filters.
    let faceted = &site[2];
    assert_eq!(texts(faceted, "active"), ["hypervisor"]);
    let fb = texts(faceted, "badges");
    assert!(
        !fb.is_empty() && fb.iter().all(|b| b == "hypervisor"),
        "{fb:?}"
    );
    // Surrounding records open in place, the clicked one marked.
    assert!(!texts(&site[3], "around").is_empty(), "{}", site[3]);
    assert_eq!(texts(&site[3], "here").len(), 1);
    // The timeline: one lane per observer, lease hand-overs drawn.
    let tl = &site[4];
    let lanes: Vec<String> = texts(tl, "lanes")
        .iter()
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(
        lanes,
        ["cloud", "hypervisor", "network", "vm", "vo", "collector"]
    );
    assert!(texts(tl, "dots").len() > 10);
    assert!(!texts(tl, "marks").is_empty(), "a lease drawn");
    assert!(!texts(tl, "rows").is_empty());
    // A migration drawn across the lanes and marked in the list.
    assert!(!texts(&site[5], "migrations").is_empty(), "{}", site[5]);
    assert!(!texts(&site[5], "rows").is_empty());
    // check: findings with links that lead somewhere answered.
    assert!(!texts(&site[6], "kinds").is_empty());
    assert!(!texts(&site[6], "entities").is_empty());
    assert!(texts(&site[7], "error").is_empty(), "{}", site[7]);
    // hunt: hits linking on.
    assert!(!texts(&site[8], "hits").is_empty());
    assert!(texts(&site[8], "links").iter().any(|l| l == "who"));
    // The incident report from the who card: the CLI's html, naming the owner.
    assert!(
        site[10]["url"].as_str().unwrap().starts_with("/ui/report?"),
        "{}",
        site[10]
    );
    assert!(
        text(&site[10], "body").contains(&atlas.owner),
        "{}",
        site[10]
    );
    // logout: back to the login; pages need a login again.
    assert!(site[12]["url"].as_str().unwrap().starts_with("/ui/login"));
    assert!(site[13]["url"].as_str().unwrap().starts_with("/ui/login"));

    // A VO partner: its own VM, and nothing of the other VO's on any page.
    let a = s("atlas");
    assert_eq!(text(&a[0], "role"), "vo:atlas");
    assert_eq!(text(&a[1], "owner").split(' ').next().unwrap(), atlas.owner);
    assert!(text(&a[2], "error").contains("not yours"), "{}", a[2]);
    for st in &a[2..9] {
        let b = text(st, "body");
        assert!(!b.contains(&cms.uuid), "cms VM shown to atlas: {st}");
        assert!(
            !b.contains(&cms.owner) || cms.owner == atlas.owner,
            "cms owner shown to atlas: {st}"
        );
    }
    assert!(!texts(&a[9], "hits").is_empty(), "atlas searches its own");
    // The check page reused the site's answer (the ledger grew since only by the pages' own
    // audit records, which check does not read) — scoped for atlas all the same (asserted
    // above: nothing of cms) — and says when it was computed and up to where it holds.
    let b = text(&a[7], "body");
    assert!(b.contains("as computed at"), "{}", a[7]);
    assert!(b.contains("holding for the ledger up to #"), "{}", a[7]);
    assert!(!b.contains("newer records not checked yet"), "{}", a[7]);

    if op.is_some() {
        let o = s("oidc");
        assert!(texts(&o[0], "error").is_empty(), "{}", o[0]);
        assert_eq!(
            text(&o[0], "user"),
            "alice",
            "the id_token's preferred_username"
        );
        assert_eq!(text(&o[0], "role"), "vo:atlas");
        assert_eq!(text(&o[1], "owner").split(' ').next().unwrap(), atlas.owner);
        assert!(!text(&o[2], "body").contains(&cms.uuid));
    }

    let case_id = cases_in_the_browser(&chromium, &pw, &base, &shots, &tokens, &atlas, &cms);

    // Page views are audited like API queries (the API's audit, as the site).
    let mut resp = ureq::get(&format!("{base}/api/v1/audit"))
        .header("Authorization", &format!("Bearer {}", tokens["site"]))
        .call()
        .unwrap();
    let audit: Value = serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    let audits = audit["audits"].as_array().unwrap();
    let page_views: Vec<&Value> = audits
        .iter()
        .filter(|a| a["params"]["ui"].is_string())
        .collect();
    assert!(
        page_views
            .iter()
            .any(|a| a["user"] == "atlas" && a["verb"] == "who" && a["status"] == 403),
        "the refused cross-VO page view is audited: {page_views:?}"
    );
    assert!(
        page_views
            .iter()
            .any(|a| a["user"] == "site" && a["verb"] == "timeline")
    );
    // Opening a hit's surrounding records in place is an audited search: who, the page, the
    // record it is around, and how many records it showed.
    let around_seq = site[3]["read"]["clicked"][0]
        .as_str()
        .unwrap()
        .trim_start_matches('#')
        .to_string();
    let around = page_views
        .iter()
        .find(|a| a["verb"] == "search" && a["params"]["ui_around"] == around_seq.as_str())
        .unwrap_or_else(|| panic!("no audit of the surrounding records of #{around_seq}"));
    assert_eq!(around["user"], "site", "{around}");
    assert_eq!(around["role"], "site", "{around}");
    assert_eq!(around["via"], "api-token", "{around}");
    assert_eq!(around["params"]["ui"], "search", "{around}");
    assert_eq!(around["status"], 200, "{around}");
    assert!(
        around["params"]["host"].is_string()
            && around["params"]["from"].is_string()
            && around["params"]["to"].is_string(),
        "{around}"
    );
    assert!(
        around["count"].as_u64().unwrap() as usize >= texts(&site[3], "around").len(),
        "{around}"
    );
    assert!(
        around["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{around}"
    );
    // Case changes from the pages are audited records with their change.
    let changes: Vec<&Value> = audits
        .iter()
        .filter(|a| a["params"]["ui"] == "cases" && a["change"].is_object())
        .collect();
    let note = changes
        .iter()
        .find(|a| a["verb"] == "case.annotate" && a["user"] == "atlas")
        .unwrap_or_else(|| panic!("the annotation is an audited record: {changes:?}"));
    assert_eq!(note["change"]["case"], case_id.as_str());
    assert_eq!(note["change"]["text"], "the decisive connection");
    for verb in ["case.create", "case.query", "case.star", "case.share"] {
        assert!(
            changes
                .iter()
                .any(|a| a["verb"] == verb && a["user"] == "atlas"),
            "{verb} audited"
        );
    }
    assert!(
        audits
            .iter()
            .any(|a| a["user"] == "cms" && a["verb"] == "case.star" && a["status"] == 404),
        "the refused cross-VO star is audited"
    );
    drop(d);
    eprintln!("screenshots in {}", shots.display());
}

/// The case pages in the browser: atlas (vo:atlas) opens a case, saves a search, stars and
/// annotates a hit from the search page, sees them on the case page, exports the report and
/// shares the case with dave (vo:atlas, not a member otherwise); dave then sees it, the site
/// sees it, and cms (vo:cms) sees neither the case nor can star into it or cite an ATLAS
/// record in a case of its own. Returns the case's id.
#[allow(clippy::too_many_arguments)]
fn cases_in_the_browser(
    chromium: &Path,
    pw: &Path,
    base: &str,
    shots: &Path,
    tokens: &BTreeMap<&str, String>,
    atlas: &Asked,
    cms: &Asked,
) -> String {
    let search = format!("/ui/search?q={}", enc(&atlas.ip));
    let plan = json!({"base": base, "artefacts": shots, "sessions": [
        {"name": "case-owner", "steps": [
            {"op": "login_token", "token": tokens["atlas"], "next": "/ui/cases"},
            {"op": "fill", "fields": {"form.new-case input[name=title]": "C2 beacon from an ATLAS VM",
                                      "form.new-case input[name=tags]": "c2, atlas"}},
            {"op": "click", "selector": "form.new-case button", "shot": "case-new",
             "read": {"title": "h1.case-title", "tags": ".case-meta .tags"}},
            {"op": "goto", "url": search, "read": {"cases": "#to-case select option", "seqs": "li.hit .seq"}},
            {"op": "click", "selector": "#to-case button.save-query", "read": {"count": "#hit-count"}},
            {"op": "fill", "fields": {"#to-case input[name=text]": "the decisive connection"}},
            {"op": "click", "selector": "li.hit button.star", "shot": "case-starred"},
            {"op": "goto", "url": "/ui/cases", "shot": "cases", "read": {"rows": "tr.case", "relation": "tr.case .relation"}},
            {"op": "click", "selector": "tr.case a", "shot": "case",
             "read": {"queries": "ol.queries li.query", "query_links": "ol.queries li.query a",
                      "records": "ol.case-records li.hit", "stars": "ol.case-records li.starred .seq",
                      "notes": "ol.case-records li.note", "members": ".case-meta .members"}},
            {"op": "click", "selector": "ol.queries li.query a", "read": {"hits": "li.hit"}},
            {"op": "click", "selector": "a[href='/ui/cases']"},
            {"op": "click", "selector": "tr.case a"},
            {"op": "fill", "fields": {"form.share input[name=users]": "dave"}},
            {"op": "click", "selector": "form.share button", "shot": "case-shared",
             "read": {"members": ".case-meta .members"}},
        ]},
    ]});
    let r = run_browser(chromium, pw, &plan);
    let o = r["sessions"]["case-owner"].as_array().cloned().unwrap();
    for st in &o {
        assert!(st["error"].is_null(), "case-owner: step failed: {st}");
    }
    // Created: the case page, its title and tags.
    let case_url = o[2]["url"].as_str().unwrap().to_string();
    assert!(case_url.starts_with("/ui/cases/case-"), "{}", o[2]);
    let case_id = case_url.trim_start_matches("/ui/cases/").to_string();
    assert_eq!(text(&o[2], "title"), "C2 beacon from an ATLAS VM");
    assert_eq!(text(&o[2], "tags"), "atlas, c2");
    // The search page offers the case; saving the question came back to the search.
    assert_eq!(texts(&o[3], "cases"), ["C2 beacon from an ATLAS VM"]);
    let starred = texts(&o[3], "seqs")[0].clone();
    assert!(
        o[4]["url"].as_str().unwrap().starts_with("/ui/search?"),
        "{}",
        o[4]
    );
    assert!(
        o[6]["url"]
            .as_str()
            .unwrap()
            .contains(&format!("#seq-{}", starred.trim_start_matches('#'))),
        "{}",
        o[6]
    );
    // The list: atlas's own case.
    assert_eq!(texts(&o[7], "relation"), ["yours"]);
    // The case page: the saved search (a link to the search page), the starred hit with its
    // annotation.
    let cp = &o[8];
    assert_eq!(texts(cp, "queries").len(), 1, "{cp}");
    assert!(text(cp, "queries").contains(&atlas.ip), "{cp}");
    assert_eq!(texts(cp, "stars"), std::slice::from_ref(&starred), "{cp}");
    assert!(
        text(cp, "notes").starts_with("the decisive connection"),
        "{cp}"
    );
    assert_eq!(text(cp, "members"), "nobody");
    // The saved question runs on the search page.
    assert!(
        o[9]["url"].as_str().unwrap().starts_with("/ui/search?"),
        "{}",
        o[9]
    );
    assert!(!texts(&o[9], "hits").is_empty());
    assert_eq!(text(&o[13], "members"), "dave", "{}", o[13]);

    // Second pass: exports, the shared user, the site, the other VO.
    let atlas_seq = starred.trim_start_matches('#').to_string();
    let plan = json!({"base": base, "artefacts": shots, "sessions": [
        {"name": "case-exports", "steps": [
            {"op": "login_token", "token": tokens["atlas"], "next": case_url},
            {"op": "fetch", "url": format!("{case_url}/report?format=md")},
            {"op": "fetch", "url": format!("{case_url}/report?format=json")},
            {"op": "click", "selector": "a.export-html", "shot": "case-report", "read": {"body": "body"}},
        ]},
        {"name": "case-member", "steps": [
            {"op": "login_token", "token": tokens["dave"], "next": "/ui/cases"},
            {"op": "goto", "url": "/ui/cases", "read": {"rows": "tr.case", "relation": "tr.case .relation"}},
            {"op": "goto", "url": case_url, "shot": "case-member",
             "read": {"title": "h1.case-title", "stars": "ol.case-records li.starred .seq", "notes": "ol.case-records li.note",
                      "share": "form.share"}},
        ]},
        {"name": "case-site", "steps": [
            {"op": "login_token", "token": tokens["site"], "next": "/ui/cases"},
            {"op": "goto", "url": "/ui/cases", "read": {"rows": "tr.case", "relation": "tr.case .relation"}},
        ]},
        {"name": "case-other-vo", "steps": [
            {"op": "login_token", "token": tokens["cms"], "next": "/ui/cases"},
            {"op": "goto", "url": "/ui/cases", "shot": "cases-other-vo", "read": {"rows": "tr.case", "body": "main"}},
            {"op": "goto", "url": case_url, "shot": "case-other-vo", "read": {"error": ".error", "body": "main"}},
            {"op": "fetch", "url": format!("{case_url}/report?format=json")},
            {"op": "goto", "url": "/ui/cases"},
            {"op": "fetch", "url": "/ui/case/star", "form": {"case": case_id, "seq": atlas_seq}},
            {"op": "fetch", "url": "/ui/case/annotate", "form": {"case": case_id, "text": "cms was here"}},
            {"op": "fill", "fields": {"form.new-case input[name=title]": "cms own case"}},
            {"op": "click", "selector": "form.new-case button"},
            {"op": "fetch", "url": "/ui/case/star", "form": {"case": "@input[name=case]", "seq": atlas_seq}},
            {"op": "goto", "url": format!("/ui/search?q={}", enc(&cms.ip)), "read": {"cases": "#to-case select option"}},
            {"op": "fetch", "url": "/ui/case/star", "form": {"case": case_id, "seq": atlas_seq, "csrf": "forged"}},
        ]},
    ]});
    let r = run_browser(chromium, pw, &plan);
    let ss = |n: &str| r["sessions"][n].as_array().cloned().unwrap();
    let ex = ss("case-exports");
    for st in &ex {
        assert!(st["error"].is_null(), "case-exports: step failed: {st}");
    }
    let md = &ex[1]["fetched"];
    assert_eq!(md["status"], 200, "{md}");
    assert!(
        md["type"].as_str().unwrap().starts_with("text/markdown"),
        "{md}"
    );
    assert!(
        md["text"]
            .as_str()
            .unwrap()
            .contains("the decisive connection"),
        "{md}"
    );
    let js: Value = serde_json::from_str(ex[2]["fetched"]["text"].as_str().unwrap()).unwrap();
    assert_eq!(js["id"], case_id.as_str());
    assert_eq!(js["stars"][0]["record"]["seq"].to_string(), atlas_seq);
    assert!(
        text(&ex[3], "body").contains("C2 beacon from an ATLAS VM"),
        "{}",
        ex[3]
    );
    // dave sees the case shared with him (and may not share it on).
    let m = ss("case-member");
    assert_eq!(texts(&m[1], "relation"), ["shared with you"], "{}", m[1]);
    assert_eq!(text(&m[2], "title"), "C2 beacon from an ATLAS VM");
    assert_eq!(texts(&m[2], "stars"), std::slice::from_ref(&starred));
    assert!(text(&m[2], "notes").starts_with("the decisive connection"));
    assert!(texts(&m[2], "share").is_empty(), "only the owner shares");
    // The site sees every case.
    let st = ss("case-site");
    assert_eq!(texts(&st[1], "relation"), ["as the site / CSIRT"]);
    // cms: not in its list, the page and the export refused like an unknown case, and no
    // star or note into it; in its own case, no ATLAS record.
    let c = ss("case-other-vo");
    assert!(texts(&c[1], "rows").is_empty(), "{}", c[1]);
    assert!(!text(&c[1], "body").contains("C2 beacon"));
    assert!(text(&c[2], "error").contains("no case"), "{}", c[2]);
    for st in &c[1..3] {
        let b = text(st, "body");
        assert!(
            !b.contains("C2 beacon") && !b.contains("decisive") && !b.contains(&atlas.uuid),
            "{st}"
        );
    }
    assert_eq!(c[3]["fetched"]["status"], 404, "{}", c[3]);
    assert!(
        !c[3]["fetched"]["text"]
            .as_str()
            .unwrap()
            .contains("decisive")
    );
    assert_eq!(c[5]["fetched"]["status"], 404, "{}", c[5]);
    assert_eq!(c[6]["fetched"]["status"], 404, "{}", c[6]);
    assert!(
        c[8]["url"].as_str().unwrap().starts_with("/ui/cases/case-"),
        "{}",
        c[8]
    );
    assert_eq!(
        c[9]["fetched"]["status"], 404,
        "an ATLAS record cited in a cms case: {}",
        c[9]
    );
    assert!(
        c[9]["fetched"]["text"]
            .as_str()
            .unwrap()
            .contains("not yours"),
        "{}",
        c[9]
    );
    assert_eq!(
        texts(&c[10], "cases"),
        ["cms own case"],
        "cms may star only into its own case"
    );
    assert_eq!(
        c[11]["fetched"]["status"], 403,
        "a form without the session's CSRF token: {}",
        c[11]
    );
    case_id
}

/// base64url without padding (the test's own JWTs: only their shape matters).
fn b64url(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..=c.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// A JWT claiming `sub` at an issuer, wrongly signed: it fails, and names whom it claims.
fn claiming(sub: &str) -> String {
    format!(
        "{}.{}.{}",
        b64url(br#"{"alg":"RS256","typ":"JWT","kid":"k"}"#),
        b64url(
            json!({"iss": "https://idp.example", "sub": sub, "exp": 4_000_000_000u64})
                .to_string()
                .as_bytes()
        ),
        b64url(b"not a signature")
    )
}

/// One HTTP exchange by curl from a chosen loopback source address: status, headers
/// (lower-case names), body.
fn curl_from(src: &str, args: &[&str]) -> (u16, Vec<(String, String)>, String) {
    let out = Command::new("curl")
        .args(["-s", "-i", "--max-time", "20", "--interface", src])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

/// A login through the form, as a browser makes it.
struct Login {
    status: u16,
    retry_after: Option<u64>,
    /// The login form's CSRF cookie, as set (attributes included).
    form_cookie: String,
    /// The session cookie, as set, when the login made one.
    session: Option<String>,
}

/// The login form fetched and posted from loopback address `src` with `token`, `headers`
/// (`-H` values) on both requests.
fn login_from(base: &str, src: &str, token: &str, headers: &[&str]) -> Login {
    let mut get: Vec<String> = Vec::new();
    for h in headers {
        get.extend(["-H".to_string(), (*h).to_string()]);
    }
    get.push(format!("{base}/ui/login"));
    let get: Vec<&str> = get.iter().map(String::as_str).collect();
    let (_, h, body) = curl_from(src, &get);
    let form_cookie = h
        .iter()
        .find(|(k, v)| k == "set-cookie" && v.starts_with("pugmark_login="))
        .map(|(_, v)| v.clone())
        .unwrap();
    let csrf = body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string();
    let form = format!("csrf={csrf}&next=%2Fui%2F&token={}", enc(token));
    let cookie = format!("Cookie: {}", form_cookie.split(';').next().unwrap());
    let mut post: Vec<&str> = Vec::new();
    for h in headers {
        post.extend(["-H", h]);
    }
    let url = format!("{base}/ui/login");
    post.extend(["-H", &cookie, "--data", &form, &url]);
    let (status, h, _) = curl_from(src, &post);
    Login {
        status,
        retry_after: h
            .iter()
            .find(|(k, _)| k == "retry-after")
            .and_then(|(_, v)| v.parse().ok()),
        form_cookie,
        session: h
            .iter()
            .find(|(k, v)| {
                k == "set-cookie"
                    && v.starts_with("pugmark_session=")
                    && !v.starts_with("pugmark_session=;")
            })
            .map(|(_, v)| v.clone()),
    }
}

#[test]
fn failed_logins_are_limited_per_address_and_per_user() {
    if common::require("curl", which("curl")).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("one.log");
    fs::write(&log, "<13>Oct 14 10:00:00 host1 app: hello\n").unwrap();
    ok(&data, &["ingest", log.to_str().unwrap()]);
    let v: Value = serde_json::from_str(&ok(
        &data,
        &[
            "api-token",
            "create",
            "--name",
            "site",
            "--role",
            "site",
            "--json",
        ],
    ))
    .unwrap();
    let good = v["token"].as_str().unwrap().to_string();
    let cfg = dir.path().join("serve.toml");
    fs::write(&cfg, docs_config()).unwrap();
    let (child, base) = day::start_ui(&data, &cfg, "127.0.0.1:0");
    let ui = Ui(child);
    let (a, b, c) = ("127.0.0.1", "127.0.0.2", "127.0.0.3");
    // Ten failures from one address, all claiming to be mallory: each a plain refusal.
    for i in 0..10 {
        let l = login_from(&base, a, &claiming("mallory"), &[]);
        assert_eq!(
            (l.status, l.retry_after, l.session),
            (401, None, None),
            "failure {i}"
        );
    }
    // The eleventh: 429 with Retry-After, also for a good token from that address.
    let l = login_from(&base, a, &claiming("mallory"), &[]);
    assert_eq!(l.status, 429);
    let retry = l.retry_after.expect("Retry-After");
    assert!((1..=300).contains(&retry), "{retry}");
    let l = login_from(&base, a, &good, &[]);
    assert_eq!(l.status, 429, "the address waits, whatever the token");
    assert!(l.retry_after.is_some() && l.session.is_none());
    // Another address: mallory still waits (per user), eve does not, the good token logs in.
    let l = login_from(&base, b, &claiming("mallory"), &[]);
    assert_eq!(l.status, 429, "the claimed user waits from any address");
    assert!(l.retry_after.is_some());
    assert_eq!(login_from(&base, b, &claiming("eve"), &[]).status, 401);
    let l = login_from(&base, b, &good, &[]);
    assert_eq!(l.status, 303, "a good login from a clean address");
    assert!(l.session.is_some());
    // OIDC callbacks that do not end in a session count too.
    for i in 0..10 {
        let (s, h, _) = curl_from(c, &[&format!("{base}/ui/callback?code=x&state=y")]);
        assert_eq!(s, 401, "callback failure {i}");
        assert!(!h.iter().any(|(k, _)| k == "retry-after"));
    }
    let (s, h, body) = curl_from(c, &[&format!("{base}/ui/callback?code=x&state=y")]);
    assert_eq!(s, 429, "{body}");
    assert!(h.iter().any(|(k, _)| k == "retry-after"));
    // Refused attempts are audited: who (the address), why, 429.
    let (_, _, body) = curl_from(
        a,
        &[
            "-H",
            &format!("Authorization: Bearer {good}"),
            &format!("{base}/api/v1/audit"),
        ],
    );
    let audit: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let limited: Vec<&Value> = audit["audits"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["verb"] == "login" && x["status"] == 429)
        .collect();
    let peers: BTreeSet<String> = limited
        .iter()
        .filter_map(|x| x["peer"].as_str())
        .filter_map(|p| p.rsplit_once(':').map(|(ip, _)| ip.to_string()))
        .collect();
    assert_eq!(
        peers,
        [a, b, c].map(str::to_string).into_iter().collect(),
        "{limited:?}"
    );
    assert!(
        limited.iter().all(|x| x["reason"]
            .as_str()
            .unwrap()
            .contains("too many failed logins")),
        "{limited:?}"
    );
    assert!(
        limited
            .iter()
            .any(|x| x["reason"].as_str().unwrap().contains("mallory")),
        "the per-user refusal names the user: {limited:?}"
    );
    assert!(
        limited.iter().any(|x| x["via"] == "oidc"),
        "the refused callback is audited as an OIDC login"
    );
    drop(ui);
}

#[test]
fn the_pages_work_under_serve_http() {
    // serve's HTTP listener is plain HTTP (TLS is terminated by a proxy in front, which says
    // so with X-Forwarded-Proto: docs/UI.md): the pages, a login, a case change through
    // serve's writer, and the cookie marked Secure behind such a proxy.
    let Some((chromium, pw)) = browser() else {
        return;
    };
    if common::require("curl", which("curl")).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ok(
        &data,
        &["ingest", common::corpus_auth_log().to_str().unwrap()],
    );
    let token = day::token(&data, "admin", "site");
    let cfg = dir.path().join("serve.toml");
    fs::write(&cfg, docs_config()).unwrap();
    let port = free_port();
    let child = day::start_serve_http(&data, &cfg, port);
    let serve = Ui(child);
    common::wait_for_port(port, "serve http");
    let base = format!("http://127.0.0.1:{port}");
    // `/` leads to the pages, the pages to the login.
    let (s, h, _) = curl_from("127.0.0.1", &[&format!("{base}/")]);
    assert!((300..400).contains(&s), "{s}");
    assert!(h.iter().any(|(k, v)| k == "location" && v == "/ui/"));
    let plan = json!({"base": base, "artefacts": artefacts(), "sessions": [
        {"name": "serve", "steps": [
            {"op": "login_token", "token": token, "next": "/ui/search?q=sshd", "shot": "search",
             "read": {"hits": "li.hit", "count": "#hit-count"}},
            {"op": "goto", "url": "/ui/cases"},
            {"op": "fill", "fields": {"form.new-case input[name=title]": "under serve"}},
            {"op": "click", "selector": "form.new-case button", "read": {"title": "h1.case-title"}},
            {"op": "goto", "url": "/ui/search?q=sshd"},
            {"op": "click", "selector": "li.hit button.star"},
            {"op": "click", "selector": "a[href='/ui/cases']"},
            {"op": "click", "selector": "tr.case a", "read": {"stars": "ol.case-records li.starred"}},
        ]},
    ]});
    let r = run_browser(&chromium, &pw, &plan);
    let o = r["sessions"]["serve"].as_array().cloned().unwrap();
    for st in &o {
        assert!(st["error"].is_null(), "serve: step failed: {st}");
    }
    assert!(
        o[0]["url"].as_str().unwrap().starts_with("/ui/search"),
        "{}",
        o[0]
    );
    assert!(!texts(&o[0], "hits").is_empty(), "{}", o[0]);
    assert_eq!(text(&o[3], "title"), "under serve");
    assert_eq!(texts(&o[7], "stars").len(), 1, "{}", o[7]);
    // The page views and the case change are in serve's ledger, audited.
    let (_, _, body) = curl_from(
        "127.0.0.1",
        &[
            "-H",
            &format!("Authorization: Bearer {token}"),
            &format!("{base}/api/v1/audit"),
        ],
    );
    let audit: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let audits = audit["audits"].as_array().unwrap();
    assert!(
        audits.iter().any(|a| a["verb"] == "search"
            && a["params"]["ui"] == "search"
            && a["user"] == "admin")
    );
    assert!(
        audits
            .iter()
            .any(|a| a["verb"] == "case.star" && a["status"] == 200 && a["change"]["op"] == "star")
    );
    // Behind a TLS-terminating proxy the session cookie is Secure.
    let l = login_from(&base, "127.0.0.1", &token, &["X-Forwarded-Proto: https"]);
    assert!(l.form_cookie.contains("; Secure"), "{}", l.form_cookie);
    assert_eq!(l.status, 303);
    let session = l.session.unwrap();
    for attr in ["; Secure", "; HttpOnly", "; SameSite=Lax"] {
        assert!(session.contains(attr), "{session}");
    }
    drop(serve);
}

/// Two flows of one NetFlow datagram in the browser (issue 16): they share the datagram's
/// seq, so the search page tells them apart by their place (`#D/F.R`, element id
/// `seq-D/F.R`); surrounding records around one flow mark that flow alone, and its ☆ stars
/// that flow: the star returns to its anchor and the case page lists `#D/F.R`.
#[test]
fn a_flow_of_a_datagram_is_marked_and_starred_in_the_browser() {
    let Some((chromium, pw)) = browser() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let f = common::two_flow_datagram(dir.path());
    ok(&data, &["ingest", f.to_str().unwrap()]);
    let v: Value = serde_json::from_str(&ok(&data, &["search", "198.51.100.9", "--json"])).unwrap();
    let hit = &v["hits"][0];
    assert_eq!(hit["flow"], json!({"flowset": 0, "record": 1}), "{v}");
    let place = format!("{}/0.1", hit["seq"]);
    let token = day::token(&data, "admin", "site");
    let cfg = dir.path().join("serve.toml");
    fs::write(&cfg, docs_config()).unwrap();
    let port = free_port();
    let serve = Ui(day::start_serve_http(&data, &cfg, port));
    common::wait_for_port(port, "serve http");
    let base = format!("http://127.0.0.1:{port}");
    let search = format!("/ui/search?q=*&around={}", enc(&place));
    let plan = json!({"base": base, "artefacts": artefacts(), "sessions": [
        {"name": "flows", "steps": [
            {"op": "login_token", "token": token, "next": "/ui/cases"},
            {"op": "fill", "fields": {"form.new-case input[name=title]": "a flow"}},
            {"op": "click", "selector": "form.new-case button", "read": {"title": "h1.case-title"}},
            {"op": "goto", "url": search, "shot": "flow-around",
             "read": {"seqs": "li.hit .seq", "here": "li.hit.here .seq"}},
            {"op": "click", "selector": format!("li.hit[id=\"seq-{place}\"] button.star"), "shot": "flow-starred"},
            {"op": "goto", "url": "/ui/cases"},
            {"op": "click", "selector": "tr.case a", "read": {"stars": "ol.case-records li.starred .seq"}},
        ]},
    ]});
    let r = run_browser(&chromium, &pw, &plan);
    let o = r["sessions"]["flows"].as_array().cloned().unwrap();
    for st in &o {
        assert!(st["error"].is_null(), "flows: step failed: {st}");
    }
    assert_eq!(text(&o[2], "title"), "a flow");
    let d = hit["seq"].to_string();
    // The datagram's two flows (beside the datagram itself and pugmark's own records).
    let mut flows: Vec<String> = texts(&o[3], "seqs")
        .into_iter()
        .filter(|s| s.starts_with(&format!("#{d}/")))
        .collect();
    flows.sort();
    assert_eq!(
        flows,
        [format!("#{d}/0.0"), format!("#{d}/0.1")],
        "{}",
        o[3]
    );
    assert_eq!(texts(&o[3], "here"), [format!("#{place}")], "{}", o[3]);
    let back = o[4]["url"].as_str().unwrap();
    assert!(back.ends_with(&format!("#seq-{place}")), "{back}");
    assert_eq!(texts(&o[6], "stars"), [format!("#{place}")], "{}", o[6]);
    drop(serve);
}
