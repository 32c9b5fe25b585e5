//! crates/authn against a real OpenID Provider: panva's `oidc-provider` (npm, installed by
//! scripts/test into `$PUGMARK_NPM/oidc-provider`), started on loopback by each test from
//! tests/oidc-provider.mjs, configured like an INDIGO IAM (JWT access tokens with
//! `wlcg.groups` / `eduperson_entitlement`, id tokens with groups, PKCE required).
//!
//! Each test starts its own provider(s): no shared state, parallel-safe. The tokens are the
//! provider's own; the only hand-made tokens are the attacks (`alg: none`, HS256 with the
//! public key, made-up kids), built from a real token's payload.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use authn::{Error, OidcConfig, Role, RoleMap, Verifier, token::b64_json};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

const AUD: &str = "https://pugmark.example.org";

/// The installed oidc-provider package, or None (skip outside CI).
fn npm_dir() -> Option<PathBuf> {
    let base = std::env::var_os("PUGMARK_NPM")
        .map_or_else(|| PathBuf::from("/var/cache/pugmark-npm"), PathBuf::from);
    let dir = base.join("oidc-provider");
    if dir
        .join("node_modules/oidc-provider/package.json")
        .is_file()
        && which("node")
    {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "oidc-provider or node missing in CI: scripts/test installs them into {}",
        dir.display()
    );
    eprintln!("SKIPPED: npm oidc-provider not installed (scripts/test installs it)");
    None
}

fn which(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
}

/// One running provider; killed on drop.
struct Provider {
    child: Child,
    port: u16,
    issuer: String,
    _dir: tempfile::TempDir,
}

impl Provider {
    /// `keys`: `kid:alg,...`; `port` 0 for any; `issuer` to claim another's issuer.
    fn start(npm: &Path, port: u16, keys: &str, issuer: Option<&str>) -> Provider {
        // ESM resolves packages from the script's own directory: put the script beside a
        // node_modules link to the installed package.
        let dir = tempfile::tempdir().expect("tmp");
        let script = dir.path().join("oidc-provider.mjs");
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc-provider.mjs"),
            &script,
        )
        .expect("copy");
        std::os::unix::fs::symlink(npm.join("node_modules"), dir.path().join("node_modules"))
            .expect("link");
        let mut cmd = Command::new("node");
        cmd.arg(&script).arg(port.to_string()).arg(keys);
        if let Some(i) = issuer {
            cmd.arg(i);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn node");
        // The ready line, waited for at most two minutes: a provider that hangs before it
        // (Node 20 deadlocked once in its key generation) fails the test instead of
        // blocking the suite.
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(out).read_line(&mut line);
            let _ = tx.send(line);
        });
        let Ok(line) = rx.recv_timeout(Duration::from_secs(120)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("oidc-provider printed no ready line within 120 s (killed)");
        };
        let mut it = line.split_whitespace();
        assert_eq!(it.next(), Some("ready"), "provider did not start: {line:?}");
        let port: u16 = it.next().and_then(|p| p.parse().ok()).expect("port");
        let issuer = it.next().expect("issuer").to_owned();
        Provider {
            child,
            port,
            issuer,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A JWT access token from the client credentials grant for `resource` (the audience).
    fn mint(&self, client: &str, resource: &str) -> String {
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("{client}:cli-secret"));
        let mut resp = agent()
            .post(&format!("{}/token", self.url()))
            .header("Authorization", &format!("Basic {basic}"))
            .send_form([("grant_type", "client_credentials"), ("resource", resource)])
            .expect("token request");
        let body: Value = serde_json::from_str(&resp.body_mut().read_to_string().expect("body"))
            .expect("token json");
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token: {body}"))
            .to_owned()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

fn cfg(issuer: &str) -> OidcConfig {
    OidcConfig::new(issuer, AUD)
}

fn payload(token: &str) -> Value {
    let p = token.split('.').nth(1).expect("payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).expect("b64")).expect("json")
}

#[test]
fn a_good_token_gives_claims_with_wlcg_groups_and_entitlements() {
    let Some(npm) = npm_dir() else { return };
    let p = Provider::start(&npm, 0, "k1:RS256,e1:ES256", None);
    let v = Verifier::new(vec![cfg(&p.issuer)]).expect("verifier");
    v.prefetch().expect("discovery and jwks");

    let c = v
        .verify(&p.mint("alice-cli", AUD))
        .expect("alice's token verifies");
    assert_eq!(c.iss, p.issuer);
    assert_eq!(c.sub, "alice-cli");
    assert_eq!(c.aud, [AUD]);
    assert_eq!(c.name.as_deref(), Some("Alice Atlas"));
    assert_eq!(c.preferred_username.as_deref(), Some("alice"));
    assert_eq!(c.email.as_deref(), Some("alice@example.org"));
    assert_eq!(
        c.groups,
        [
            "/atlas",
            "/atlas/pilots",
            "urn:mace:egi.eu:group:atlas:role=vm-operator#aai.egi.eu"
        ]
    );
    assert_eq!(c.raw["client_id"], "alice-cli");

    // ES256 (the provider's P-256 key) and the string form of wlcg.groups.
    let c = v
        .verify(&p.mint("alice-es", AUD))
        .expect("ES256 token verifies");
    assert_eq!(c.sub, "alice-es");
    let bob = v
        .verify(&p.mint("bob-cli", AUD))
        .expect("bob's token verifies");
    assert_eq!(bob.groups, ["/cms", "/cms/pilots", "cms-admins"]);

    let roles: RoleMap = toml::from_str(
        r#""/atlas/pilots" = "vo:atlas"
           "cms-admins" = ["site", "csirt"]
           "/lhcb" = "vo:lhcb""#,
    )
    .expect("roles");
    roles.validate().expect("valid roles");
    assert_eq!(roles.roles_for(&c), [Role::Vo("atlas".into())]);
    assert_eq!(roles.roles_for(&bob), [Role::Site, Role::Csirt]);

    // Cached keys: verification is a signature check, no fetch.
    let t = p.mint("alice-cli", AUD);
    let n = 200;
    let start = Instant::now();
    let mut worst = Duration::ZERO;
    for _ in 0..n {
        let s = Instant::now();
        v.verify(&t).expect("verifies");
        worst = worst.max(s.elapsed());
    }
    let mean = start.elapsed() / n;
    eprintln!("verify RS256 with cached JWKS: mean {mean:?}, worst {worst:?} over {n}");
    assert!(mean < Duration::from_millis(5), "mean {mean:?}");
    assert_eq!(v.stats(&p.issuer).map(|s| s.jwks_fetches), Some(1));
}

#[test]
fn an_expired_token_is_refused_and_the_leeway_is_what_allows_skew() {
    let Some(npm) = npm_dir() else { return };
    let p = Provider::start(&npm, 0, "k1:RS256", None);
    let mut strict = cfg(&p.issuer);
    strict.leeway_seconds = 0;
    let strict = Verifier::new(vec![strict]).expect("verifier");
    let lenient = Verifier::new(vec![cfg(&p.issuer)]).expect("verifier");
    let t = p.mint("alice-short", AUD);
    let claims = payload(&t);
    let lifetime = claims["exp"].as_u64().expect("exp") - claims["iat"].as_u64().expect("iat");
    assert_eq!(lifetime, 1, "the provider's short-lived client");
    // Received at or after iat: past exp (whole seconds) once lifetime + 1 s has gone by.
    std::thread::sleep(Duration::from_millis(lifetime * 1000 + 1100));
    assert_eq!(strict.verify(&t), Err(Error::Expired));
    assert_eq!(Error::Expired.reason(), "expired");
    // Within the default 60 s leeway the same token still passes.
    lenient.verify(&t).expect("within leeway");
}

#[test]
fn tokens_signed_by_a_key_the_issuer_never_published_are_refused() {
    let Some(npm) = npm_dir() else { return };
    let real = Provider::start(&npm, 0, "k1:RS256", None);
    // A second provider claiming the first's issuer: same kid, other key material; and a
    // kid the real issuer does not have.
    let same_kid = Provider::start(&npm, 0, "k1:RS256", Some(&real.issuer));
    let other_kid = Provider::start(&npm, 0, "evil:RS256", Some(&real.issuer));
    let v = Verifier::new(vec![cfg(&real.issuer)]).expect("verifier");
    v.verify(&real.mint("alice-cli", AUD))
        .expect("the real token verifies");

    let forged = same_kid.mint("alice-cli", AUD);
    assert_eq!(payload(&forged)["iss"], real.issuer);
    assert_eq!(v.verify(&forged), Err(Error::Signature));

    let mut c = cfg(&real.issuer);
    c.jwks_refresh_min_seconds = 0;
    let v = Verifier::new(vec![c]).expect("verifier");
    let unknown = other_kid.mint("alice-cli", AUD);
    assert_eq!(
        v.verify(&unknown),
        Err(Error::UnknownKey {
            issuer: real.issuer.clone(),
            kid: Some("evil".into())
        })
    );
    // One fetch for the keys, one refresh for the unknown kid, then refused.
    assert_eq!(v.stats(&real.issuer).map(|s| s.jwks_fetches), Some(2));
}

#[test]
fn wrong_audience_is_refused_and_the_wlcg_any_audience_only_when_configured() {
    let Some(npm) = npm_dir() else { return };
    let p = Provider::start(&npm, 0, "k1:RS256", None);
    let v = Verifier::new(vec![cfg(&p.issuer)]).expect("verifier");
    assert_eq!(
        v.verify(&p.mint("alice-cli", "https://other.example.org")),
        Err(Error::Audience)
    );
    let any = p.mint("alice-cli", authn::WLCG_ANY_AUDIENCE);
    assert_eq!(v.verify(&any), Err(Error::Audience));
    let mut c = cfg(&p.issuer);
    c.audience.push(authn::WLCG_ANY_AUDIENCE.into());
    let v = Verifier::new(vec![c]).expect("verifier");
    let claims = v
        .verify(&any)
        .expect("any audience accepted when configured");
    assert!(authn::is_any_audience(&claims));
}

#[test]
fn a_token_of_an_issuer_not_configured_is_refused_and_several_issuers_work() {
    let Some(npm) = npm_dir() else { return };
    let a = Provider::start(&npm, 0, "k1:RS256", None);
    let b = Provider::start(&npm, 0, "k1:RS256", None);
    let only_a = Verifier::new(vec![cfg(&a.issuer)]).expect("verifier");
    let tb = b.mint("bob-cli", AUD);
    assert_eq!(
        only_a.verify(&tb),
        Err(Error::UnknownIssuer(b.issuer.clone()))
    );
    // Exact match: a trailing slash is another issuer.
    let slash = Verifier::new(vec![cfg(&format!("{}/", a.issuer))]).expect("verifier");
    assert!(matches!(
        slash.verify(&a.mint("alice-cli", AUD)),
        Err(Error::UnknownIssuer(_))
    ));

    let both = Verifier::new(vec![cfg(&a.issuer), cfg(&b.issuer)]).expect("verifier");
    assert_eq!(
        both.verify(&a.mint("alice-cli", AUD)).expect("a").iss,
        a.issuer
    );
    assert_eq!(both.verify(&tb).expect("b").iss, b.issuer);
}

#[test]
fn alg_none_and_hs256_with_the_public_key_are_refused() {
    let Some(npm) = npm_dir() else { return };
    let p = Provider::start(&npm, 0, "k1:RS256", None);
    let v = Verifier::new(vec![cfg(&p.issuer)]).expect("verifier");
    let good = p.mint("alice-cli", AUD);
    v.verify(&good).expect("good");
    let body = good.split('.').nth(1).expect("payload");

    let none = format!(
        "{}.{body}.",
        b64_json(&json!({"alg": "none", "typ": "at+jwt", "kid": "k1"}))
    );
    assert!(matches!(v.verify(&none), Err(Error::Algorithm(_))));

    // HS256 keyed with the issuer's published key: the algorithm-confusion attack.
    let jwks = agent()
        .get(&format!("{}/jwks", p.url()))
        .call()
        .expect("jwks")
        .body_mut()
        .read_to_string()
        .expect("body");
    let head = b64_json(&json!({"alg": "HS256", "typ": "at+jwt", "kid": "k1"}));
    use hmac::Mac;
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(jwks.as_bytes()).expect("hmac");
    mac.update(format!("{head}.{body}").as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    assert!(matches!(
        v.verify(&format!("{head}.{body}.{sig}")),
        Err(Error::Algorithm(_))
    ));

    // The real header on a changed payload: the signature no longer covers it.
    let mut claims = payload(&good);
    claims["wlcg.groups"] = json!(["/site-admins"]);
    let head = good.split('.').next().expect("header");
    let sig = good.split('.').nth(2).expect("sig");
    assert_eq!(
        v.verify(&format!("{head}.{}.{sig}", b64_json(&claims))),
        Err(Error::Signature)
    );
}

#[test]
fn key_rotation_at_the_provider_is_picked_up_and_unknown_kids_are_rate_limited() {
    let Some(npm) = npm_dir() else { return };
    let p = Provider::start(&npm, 0, "k1:RS256", None);
    let (port, issuer) = (p.port, p.issuer.clone());
    let mut c = cfg(&issuer);
    c.jwks_refresh_min_seconds = 0;
    let v = Verifier::new(vec![c]).expect("verifier");
    let mut slow = cfg(&issuer);
    slow.jwks_refresh_min_seconds = 3600;
    let limited = Verifier::new(vec![slow]).expect("verifier");
    let old = p.mint("alice-cli", AUD);
    v.verify(&old).expect("k1 token");
    limited.verify(&old).expect("k1 token");

    // A flood of made-up kids costs no fetch inside the refresh window.
    let body = old.split('.').nth(1).expect("payload");
    for i in 0..20 {
        let t = format!(
            "{}.{body}.AAAA",
            b64_json(&json!({"alg": "RS256", "kid": format!("x{i}")}))
        );
        assert!(matches!(limited.verify(&t), Err(Error::UnknownKey { .. })));
    }
    assert_eq!(limited.stats(&issuer).map(|s| s.jwks_fetches), Some(1));

    // Rotation: the provider restarts on the same address with a new key, k2.
    drop(p);
    let p = Provider::start(&npm, port, "k2:RS256", None);
    assert_eq!(p.issuer, issuer);
    let new = p.mint("alice-cli", AUD);
    assert_eq!(payload(&new)["iss"], issuer);
    // Eight request threads meet the new kid at once: one refetch serves them all.
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8).map(|_| s.spawn(|| v.verify(&new))).collect();
        for h in handles {
            let c = h
                .join()
                .expect("thread")
                .expect("k2 token verifies after a JWKS refetch");
            assert_eq!(c.sub, "alice-cli");
        }
    });
    assert_eq!(v.stats(&issuer).map(|s| s.jwks_fetches), Some(2));
    // The withdrawn key no longer verifies (the refetched set has k2 only).
    assert!(matches!(v.verify(&old), Err(Error::UnknownKey { .. })));
    // The rate-limited verifier refuses k2 until its window passes, without fetching.
    assert!(matches!(
        limited.verify(&new),
        Err(Error::UnknownKey { .. })
    ));
    assert_eq!(limited.stats(&issuer).map(|s| s.jwks_fetches), Some(1));
}

/// A minimal browser: cookies by name, no redirects followed automatically.
struct Browser {
    agent: ureq::Agent,
    cookies: BTreeMap<String, String>,
}

struct Answer {
    status: u16,
    location: Option<String>,
    body: String,
}

impl Browser {
    fn request(&mut self, method: &str, url: &str, form: &[(&str, &str)]) -> Answer {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut resp = if method == "POST" {
            self.agent
                .post(url)
                .header("Cookie", &cookie)
                .send_form(form.iter().copied())
        } else {
            self.agent.get(url).header("Cookie", &cookie).call()
        }
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        for sc in resp.headers().get_all("set-cookie") {
            let sc = sc.to_str().unwrap_or("");
            let Some((name, rest)) = sc.split_once('=') else {
                continue;
            };
            let value = rest.split(';').next().unwrap_or("");
            if value.is_empty() || sc.contains("1970") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let location = resp
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .map(str::to_owned);
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        Answer {
            status,
            location,
            body,
        }
    }
}

fn form_action(html: &str) -> Option<String> {
    let i = html.find("action=\"")? + 8;
    Some(html[i..].split('"').next()?.to_owned())
}

/// Drives the provider's login and consent pages like a user would, until the provider
/// redirects to our callback; returns that URL (or the refusal's status and body).
fn browser_login(
    base: &str,
    start: &str,
    user: &str,
    password: &str,
) -> Result<url::Url, (u16, String)> {
    let mut b = Browser {
        agent: agent(),
        cookies: BTreeMap::new(),
    };
    let mut next = (String::from("GET"), start.to_owned());
    for _ in 0..20 {
        let (method, url) = next.clone();
        let url = if url.starts_with('/') {
            format!("{base}{url}")
        } else {
            url
        };
        if url.starts_with("http://127.0.0.1:9/callback") {
            return Ok(url::Url::parse(&url).expect("callback url"));
        }
        let creds = [("login", user), ("password", password)];
        let a = b.request(
            &method,
            &url,
            if url.ends_with("/login") { &creds } else { &[] },
        );
        match (a.status, a.location, form_action(&a.body)) {
            (300..=399, Some(loc), _) => next = ("GET".into(), loc),
            (200, _, Some(action)) => next = ("POST".into(), action),
            (status, _, _) => return Err((status, a.body)),
        }
    }
    panic!("no callback after 20 steps");
}

#[test]
fn authorization_code_flow_with_pkce_ends_in_verified_claims() {
    let Some(npm) = npm_dir() else { return };
    let p = Provider::start(&npm, 0, "k1:RS256", None);
    let dir = tempfile::tempdir().expect("tmp");
    let secret = dir.path().join("web-secret");
    std::fs::write(&secret, "web-secret\n").expect("secret file");
    let mut c = cfg(&p.issuer);
    c.client_id = Some("pugmark-web".into());
    c.client_secret_file = Some(secret);
    c.redirect_uri = Some("http://127.0.0.1:9/callback".into());
    // EGI Check-in style: entitlements are their own scope.
    c.scopes = Some(
        [
            "openid",
            "profile",
            "email",
            "wlcg.groups",
            "eduperson_entitlement",
        ]
        .map(String::from)
        .to_vec(),
    );
    let v = Verifier::new(vec![c]).expect("verifier");

    let (url, pending) = v.authorization_url(&p.issuer).expect("authorization url");
    let q: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(
        q["code_challenge"],
        authn::pkce_challenge(&pending.code_verifier)
    );
    assert_eq!(q["state"], pending.state);

    // A wrong password stops at the provider's login page.
    let (status, body) =
        browser_login(&p.url(), url.as_str(), "alice", "guess").expect_err("refused");
    assert_eq!((status, body.as_str()), (403, "wrong login or password"));

    let back = browser_login(&p.url(), url.as_str(), "alice", "alice-pw").expect("login");
    let q: BTreeMap<String, String> = back.query_pairs().into_owned().collect();
    let code = q.get("code").unwrap_or_else(|| panic!("no code in {back}"));
    assert_eq!(q["state"], pending.state);

    assert!(matches!(
        v.exchange(&pending, code, "forged-state"),
        Err(Error::Login(_))
    ));
    let t = v.exchange(&pending, code, &q["state"]).expect("exchange");
    assert_eq!(t.claims.sub, "alice");
    assert_eq!(t.claims.iss, p.issuer);
    assert_eq!(t.claims.aud, ["pugmark-web"]);
    assert_eq!(t.claims.name.as_deref(), Some("Alice Atlas"));
    assert_eq!(
        t.claims.groups,
        [
            "/atlas",
            "/atlas/pilots",
            "urn:mace:egi.eu:group:atlas:role=vm-operator#aai.egi.eu"
        ]
    );
    assert_eq!(t.claims.raw["nonce"], pending.nonce);
    assert!(!t.access_token.is_empty());

    // The code is single-use at the provider.
    assert!(matches!(
        v.exchange(&pending, code, &pending.state),
        Err(Error::Login(_))
    ));

    // The session the UI would set, from these claims.
    let key = authn::CookieKey::generate().expect("key");
    let s = authn::Session::from_claims(&t.claims, 3600);
    let back = authn::Session::open(&key, &s.seal(&key).expect("seal")).expect("open");
    assert_eq!(back.groups, t.claims.groups);

    // A login whose PKCE verifier was lost or changed is refused by the provider.
    let (url, mut pending) = v.authorization_url(&p.issuer).expect("authorization url");
    let back = browser_login(&p.url(), url.as_str(), "alice", "alice-pw").expect("login");
    let code = back
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("code");
    pending.code_verifier = "x".repeat(43);
    assert!(matches!(
        v.exchange(&pending, &code, &pending.state.clone()),
        Err(Error::Login(_))
    ));
}
