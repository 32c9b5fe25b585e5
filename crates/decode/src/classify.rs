//! Auth classification: sets `Event.class` and normalised fields for sshd, su, sudo and PAM.
//!
//! Input is an event the syslog parser filled (app and message); output is the class and
//! fields named in [`model::fields`]. Rules are plain prefix/separator matching on the message
//! (no regex, nothing per line that is not linear), chosen by program name: `sshd` (also
//! `sshd-session`, `sshd-auth`), `su`, `sudo`, and PAM lines from any program
//! (`pam_unix(svc:type): …` or the old `svc(pam_unix)[pid]: …`). A class other than `other` is
//! given only to auth events (a login, a failed authentication, an identity change, a session
//! opened or closed); lines that merely mention a user or address (`Connection closed by …`,
//! `Received disconnect from …`) stay `other` but get `user` / `src_ip` fields for search.
//! Every rule sets `action`, the short name of the rule that matched.

use std::net::IpAddr;

use model::fields as f;
use model::{Event, EventClass};

/// What a rule found.
struct Out {
    class: EventClass,
    fields: Vec<(&'static str, String)>,
}

impl Out {
    fn new(class: EventClass, action: &str) -> Out {
        Out {
            class,
            fields: vec![(f::ACTION, action.to_string())],
        }
    }

    /// Add a field; empty values are not recorded.
    fn set(&mut self, name: &'static str, value: &str) {
        let value = value.trim();
        if value.is_empty() {
            return;
        }
        self.fields.retain(|(n, _)| *n != name);
        self.fields.push((name, value.to_string()));
    }

    fn has(&self, name: &str) -> bool {
        self.fields.iter().any(|(n, _)| *n == name)
    }

    /// `src_ip` (and `src_port`) when `ip` is an address.
    fn endpoint(&mut self, ip: Option<&str>, port: Option<&str>) {
        if let Some(ip) = ip.and_then(ip_text) {
            self.set(f::SRC_IP, &ip);
            if let Some(port) = port.filter(|p| p.bytes().all(|c| c.is_ascii_digit())) {
                self.set(f::SRC_PORT, port);
            }
        }
    }
}

/// Normalised text of an address (IPv4-mapped `::ffff:1.2.3.4` becomes `1.2.3.4`), or None.
fn ip_text(s: &str) -> Option<String> {
    let s = s.trim_matches(|c| matches!(c, '[' | ']' | '(' | ')' | ','));
    let s = s
        .strip_suffix(':')
        .filter(|t| t.parse::<IpAddr>().is_ok())
        .unwrap_or(s);
    s.parse::<IpAddr>()
        .ok()
        .map(|ip| ip.to_canonical().to_string())
}

/// Set class and fields of a syslog event from its program and message.
pub fn classify(ev: &mut Event) {
    let Some(app) = ev.app.as_deref() else {
        return;
    };
    let Some(out) = rules(app, &ev.message) else {
        return;
    };
    ev.class = out.class;
    for (name, value) in out.fields {
        ev.fields.insert(name.to_string(), value);
    }
}

fn rules(app: &str, msg: &str) -> Option<Out> {
    let (base, inner) = match app.split_once('(') {
        Some((b, rest)) => (b, rest.strip_suffix(')')),
        None => (app, None),
    };
    let msg = msg.trim();
    if let Some((module, service, rest)) = pam_prefix(msg) {
        return pam(service, module, rest);
    }
    if inner == Some("pam_unix") {
        return pam(base, "pam_unix", msg);
    }
    match base {
        "sshd" | "sshd-session" | "sshd-auth" => Some(sshd(msg)),
        "su" => su(msg),
        "sudo" => sudo(msg),
        _ => None,
    }
}

/// `pam_xxx(service:type): rest` → (module, service, rest).
fn pam_prefix(msg: &str) -> Option<(&str, &str, &str)> {
    if !msg.starts_with("pam_") {
        return None;
    }
    let (head, rest) = msg.split_once("): ")?;
    let (module, inside) = head.split_once('(')?;
    if module.contains(' ') {
        return None;
    }
    let service = inside.split_once(':').map_or(inside, |(s, _)| s);
    Some((module, service, rest))
}

/// `k=v` pairs of a PAM line (`logname= uid=0 … rhost=1.2.3.4  user=root`).
fn kv<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.split(' ')
        .filter_map(|t| t.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// `U by X(uid=N)` / `U(uid=N) by (uid=N)` → (user, from user).
fn opened_for(rest: &str) -> (&str, &str) {
    let (user, by) = rest.split_once(" by ").unwrap_or((rest, ""));
    let user = user.split_once('(').map_or(user, |(u, _)| u);
    let by = by.split_once('(').map_or(by, |(b, _)| b);
    (user, by)
}

fn pam(service: &str, module: &str, msg: &str) -> Option<Out> {
    let identity = matches!(service, "su" | "su-l");
    if let Some(rest) = msg.strip_prefix("session opened for user ") {
        let (user, by) = opened_for(rest);
        let mut out = if identity {
            let mut o = Out::new(EventClass::AuthIdentityChange, "su.session_opened");
            o.set(f::TO_USER, user);
            o.set(f::OUTCOME, "success");
            o
        } else {
            Out::new(EventClass::AuthSession, "pam.session_opened")
        };
        out.set(f::USER, user);
        out.set(f::FROM_USER, by);
        out.set(f::SESSION, "opened");
        out.set(f::SERVICE, service);
        return Some(out);
    }
    if let Some(rest) = msg.strip_prefix("session closed for user ") {
        let mut out = Out::new(EventClass::AuthSession, "pam.session_closed");
        out.set(f::USER, rest.split_once('(').map_or(rest, |(u, _)| u));
        out.set(f::SESSION, "closed");
        out.set(f::SERVICE, service);
        return Some(out);
    }
    let failure = msg.starts_with("authentication failure;");
    let more = msg.contains(" more authentication failure");
    if failure || more {
        let mut out = if failure {
            let mut o = Out::new(EventClass::AuthFailure, "pam.auth_failure");
            o.set(f::OUTCOME, "failure");
            o
        } else {
            // A summary of failures already logged one by one: searchable, not counted again.
            Out::new(EventClass::Other, "pam.more_failures")
        };
        let rhost = kv(msg, "rhost").unwrap_or("");
        out.set(f::USER, kv(msg, "user").unwrap_or(""));
        out.set(f::RHOST, rhost);
        out.endpoint(Some(rhost), None);
        out.set(f::SERVICE, service);
        let tty = kv(msg, "tty").unwrap_or("");
        out.set(f::TTY, tty);
        if identity || service == "sudo" {
            out.set(f::FROM_USER, kv(msg, "ruser").unwrap_or(""));
            out.set(f::TO_USER, kv(msg, "user").unwrap_or(""));
        }
        return Some(out);
    }
    if module == "pam_tally2" || module == "pam_faillock" {
        // `user zbadguy (4001) tally 6, deny 5`
        let mut out = Out::new(EventClass::Other, "pam.tally");
        if let Some(rest) = msg.strip_prefix("user ") {
            out.set(f::USER, rest.split(' ').next().unwrap_or(""));
        }
        out.set(f::SERVICE, service);
        return Some(out);
    }
    None
}

/// Trailing `[… user] USER IP port N [preauth]` of sshd connection lines.
fn tail_user_ip_port(s: &str) -> (Option<&str>, Option<&str>, Option<&str>) {
    let s = s.trim_end();
    let s = s.strip_suffix("[preauth]").unwrap_or(s).trim_end();
    let toks: Vec<&str> = s.split(' ').filter(|t| !t.is_empty()).collect();
    let mut n = toks.len();
    let mut port = None;
    if n >= 2 && toks[n - 2] == "port" {
        port = Some(toks[n - 1].trim_end_matches(':'));
        n -= 2;
    }
    let mut ip = None;
    if n >= 1 && ip_text(toks[n - 1]).is_some() {
        ip = Some(toks[n - 1]);
        n -= 1;
    }
    let mut user = None;
    if n >= 2 && toks[n - 2] == "user" {
        user = Some(toks[n - 1]);
    }
    (user, ip, port)
}

/// `IP port N …` → (ip, port).
fn ip_port(s: &str) -> (Option<&str>, Option<&str>) {
    let mut it = s.split(' ');
    let ip = it.next();
    let port = match it.next() {
        Some("port") => it.next().map(|p| p.trim_end_matches([':', ','])),
        _ => None,
    };
    (ip, port)
}

fn sshd(msg: &str) -> Out {
    let mut out = sshd_rule(msg).unwrap_or_else(|| Out::new(EventClass::Other, "sshd.other"));
    if !out.has(f::SRC_IP) {
        // Any other sshd line that names an address: `Unable to negotiate with IP port N`,
        // `Timeout before authentication for IP port N`, `refused connect from x (IP)`.
        if let Some(ip) = crate::ips::extract_ips(msg).first() {
            out.set(f::SRC_IP, &ip.to_canonical().to_string());
            let after = msg.split_once(" port ").map(|(_, p)| p);
            if let Some(p) = after.and_then(|p| p.split([' ', ':', ',']).next())
                && !p.is_empty()
                && p.bytes().all(|c| c.is_ascii_digit())
            {
                out.set(f::SRC_PORT, p);
            }
        }
    }
    if out.fields.len() == 1 && out.class == EventClass::Other {
        // Only `action=sshd.other`: not worth a field.
        out.fields.clear();
    }
    out
}

fn sshd_rule(msg: &str) -> Option<Out> {
    if let Some(rest) = msg.strip_prefix("message repeated ") {
        let (_, inner) = rest.split_once(": [ ")?;
        return sshd_rule(inner.trim_end().trim_end_matches(']').trim_end());
    }
    if let Some(rest) = msg.strip_prefix("Accepted ") {
        let mut out = Out::new(EventClass::AuthLogin, "sshd.accepted");
        out.set(f::OUTCOME, "success");
        login_fields(&mut out, rest);
        return Some(out);
    }
    if let Some(rest) = msg.strip_prefix("Failed ") {
        let mut out = Out::new(EventClass::AuthFailure, "sshd.failed");
        out.set(f::OUTCOME, "failure");
        login_fields(&mut out, rest);
        return Some(out);
    }
    if let Some(rest) = msg.strip_prefix("Invalid user ") {
        let mut out = Out::new(EventClass::AuthFailure, "sshd.invalid_user");
        out.set(f::OUTCOME, "failure");
        let (user, from) = rest.rsplit_once(" from ").unwrap_or((rest, ""));
        out.set(f::USER, user);
        let (ip, port) = ip_port(from);
        out.endpoint(ip, port);
        return Some(out);
    }
    if let Some(rest) = msg
        .strip_prefix("error: maximum authentication attempts exceeded for ")
        .or_else(|| msg.strip_prefix("maximum authentication attempts exceeded for "))
    {
        let mut out = Out::new(EventClass::AuthFailure, "sshd.max_attempts");
        out.set(f::OUTCOME, "failure");
        login_fields(&mut out, &format!("x for {rest}"));
        out.fields.retain(|(n, _)| *n != f::METHOD);
        return Some(out);
    }
    if let Some(rest) = msg.strip_prefix("User ")
        && let Some((head, _)) = rest.split_once(" not allowed because ")
    {
        let mut out = Out::new(EventClass::AuthFailure, "sshd.not_allowed");
        out.set(f::OUTCOME, "failure");
        let (user, from) = head.rsplit_once(" from ").unwrap_or((head, ""));
        out.set(f::USER, user);
        out.endpoint(Some(from), None);
        return Some(out);
    }
    if let Some(rest) = msg.strip_prefix("input_userauth_request: invalid user ") {
        let mut out = Out::new(EventClass::Other, "sshd.invalid_user_preauth");
        out.set(f::USER, rest.strip_suffix("[preauth]").unwrap_or(rest));
        return Some(out);
    }
    if let Some(rest) = msg.strip_prefix("PAM ") {
        let mut out = pam("sshd", "pam_unix", rest)?;
        out.set(f::SERVICE, "sshd");
        return Some(out);
    }
    if let Some(rest) = msg.strip_prefix("reverse mapping checking getaddrinfo for ") {
        let mut out = Out::new(EventClass::Other, "sshd.reverse_mapping");
        let (name, after) = rest.split_once(" [")?;
        out.set(f::RHOST, name);
        out.endpoint(after.split_once(']').map(|(ip, _)| ip), None);
        return Some(out);
    }
    if let Some(rest) = msg.strip_prefix("Did not receive identification string from ") {
        let mut out = Out::new(EventClass::Other, "sshd.no_identification");
        let (ip, port) = ip_port(rest);
        out.endpoint(ip, port);
        return Some(out);
    }
    if let Some(rest) = msg
        .strip_prefix("Received disconnect from ")
        .or_else(|| msg.strip_prefix("error: Received disconnect from "))
    {
        let mut out = Out::new(EventClass::Other, "sshd.received_disconnect");
        let (ip, port) = ip_port(rest);
        out.endpoint(ip.map(|i| i.trim_end_matches(':')), port);
        return Some(out);
    }
    if let Some(rest) = msg.strip_prefix("Disconnecting: Too many authentication failures for ") {
        let mut out = Out::new(EventClass::Other, "sshd.too_many_failures");
        out.set(f::USER, rest.strip_suffix("[preauth]").unwrap_or(rest));
        return Some(out);
    }
    for (prefix, action) in [
        ("Connection closed by ", "sshd.connection_closed"),
        ("Connection reset by ", "sshd.connection_reset"),
        ("Disconnected from ", "sshd.disconnected"),
        ("Disconnecting ", "sshd.disconnecting"),
    ] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            let rest = rest.split_once(": ").map_or(rest, |(head, _)| head);
            let mut out = Out::new(EventClass::Other, action);
            let (user, ip, port) = tail_user_ip_port(rest);
            out.set(f::USER, user.unwrap_or(""));
            out.endpoint(ip, port);
            return Some(out);
        }
    }
    None
}

/// `METHOD for [invalid user ]USER from IP port N PROTO[: KEYTYPE FINGERPRINT]`.
fn login_fields(out: &mut Out, rest: &str) {
    let Some((method, rest)) = rest.split_once(" for ") else {
        return;
    };
    out.set(f::METHOD, method);
    let Some((user, from)) = rest.rsplit_once(" from ") else {
        return;
    };
    let user = user.strip_prefix("invalid user ").unwrap_or(user);
    out.set(f::USER, user);
    let (endpoint, key) = from.split_once(": ").unwrap_or((from, ""));
    let (ip, port) = ip_port(endpoint);
    out.endpoint(ip, port);
    if let Some((key_type, fingerprint)) = key.split_once(' ') {
        out.set(f::KEY_TYPE, key_type);
        out.set(
            f::KEY_FINGERPRINT,
            fingerprint.split(' ').next().unwrap_or(""),
        );
    }
}

fn identity(action: &str, ok: bool, from: &str, to: &str, tty: &str) -> Out {
    let mut out = Out::new(EventClass::AuthIdentityChange, action);
    out.set(f::FROM_USER, from);
    out.set(f::TO_USER, to);
    out.set(f::TTY, tty);
    out.set(f::OUTCOME, if ok { "success" } else { "failure" });
    out
}

fn su(msg: &str) -> Option<Out> {
    if let Some(rest) = msg.strip_prefix("Successful su for ") {
        let (to, from) = rest.split_once(" by ")?;
        return Some(identity("su.success", true, from, to, ""));
    }
    if let Some(rest) = msg.strip_prefix("BAD SU ") {
        let (from, rest) = rest.split_once(" to ")?;
        let (to, tty) = rest.split_once(" on ").unwrap_or((rest, ""));
        return Some(identity("su.failure", false, from, to, tty));
    }
    if let Some(rest) = msg.strip_prefix("FAILED SU (to ") {
        let (to, rest) = rest.split_once(") ")?;
        let (from, tty) = rest.split_once(" on ").unwrap_or((rest, ""));
        return Some(identity("su.failure", false, from, to, tty));
    }
    if let Some(rest) = msg.strip_prefix("(to ") {
        let (to, rest) = rest.split_once(") ")?;
        let (from, tty) = rest.split_once(" on ").unwrap_or((rest, ""));
        return Some(identity("su.success", true, from, to, tty));
    }
    if let Some(rest) = msg.strip_prefix("failed: ") {
        // `failed: ttyq4 changing from ldap to root`
        let (tty, rest) = rest.split_once(" changing from ")?;
        let (from, to) = rest.split_once(" to ")?;
        return Some(identity("su.failure", false, from, to, tty));
    }
    if let Some(rest) = msg.strip_prefix("'su ") {
        // RFC 3164's example: `'su root' failed for lonvick on /dev/pts/8`
        let (to, rest) = rest.split_once("' failed for ")?;
        let (from, tty) = rest.split_once(" on ").unwrap_or((rest, ""));
        return Some(identity("su.failure", false, from, to, tty));
    }
    for (sign, ok) in [("+ ", true), ("- ", false)] {
        if let Some(rest) = msg.strip_prefix(sign) {
            let (tty, users) = rest.split_once(' ')?;
            let (from, to) = users.split_once(':')?;
            let action = if ok { "su.success" } else { "su.failure" };
            return Some(identity(action, ok, from, to, tty));
        }
    }
    // `dcid to root on /dev/ttyp1`
    let (from, rest) = msg.split_once(" to ")?;
    let (to, tty) = rest.split_once(" on ")?;
    if from.contains(' ') || to.contains(' ') {
        return None;
    }
    Some(identity("su.success", true, from, to, tty))
}

fn sudo(msg: &str) -> Option<Out> {
    let (from, rest) = msg.split_once(" : ")?;
    let from = from.trim();
    if from.contains(' ') {
        return None;
    }
    let (head, command) = match rest.split_once("COMMAND=") {
        Some((h, c)) => (h, c),
        None => (rest, ""),
    };
    let mut out = Out::new(EventClass::AuthIdentityChange, "sudo.command");
    let mut denied = false;
    let mut any_key = !command.is_empty();
    for item in head.split(';').map(str::trim).filter(|i| !i.is_empty()) {
        match item.split_once('=') {
            Some(("TTY", v)) => {
                any_key = true;
                out.set(f::TTY, v);
            }
            Some(("PWD", v)) => {
                any_key = true;
                out.set(f::PWD, v);
            }
            Some(("USER", v)) => {
                any_key = true;
                out.set(f::TO_USER, v);
            }
            Some(_) => any_key = true,
            // `3 incorrect password attempts`, `user NOT in sudoers`, `command not allowed`
            None => denied = true,
        }
    }
    if !any_key {
        return None;
    }
    out.set(f::FROM_USER, from);
    out.set(f::COMMAND, command);
    out.set(f::OUTCOME, if denied { "failure" } else { "success" });
    if denied {
        out.set(f::ACTION, "sudo.denied");
    }
    Some(out)
}
