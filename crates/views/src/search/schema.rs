//! The index schema, its tokenizers and the normalisation of terms, in one place so the writer,
//! the lookups and crate `query`'s exact check all agree on what a token or a term is.
//!
//! Fields:
//! - `seq`: u64, fast. The ledger position; read back from every hit.
//! - `placed`: date (ns), fast. `Event::placed()`: the collector's time where one exists (live
//!   receipt, an archive's `relay_received`), else `Event::time()`, so a VM whose clock was set
//!   back stays in the windows of its real time. Ordering and `[from, to)` ranges run on the
//!   fast column, so it is not in the inverted index (a term per distinct instant would cost
//!   space and be slower for ranges than the column). Called `time` (holding `Event::time()`)
//!   before: an index of that schema is refused with "run `pugmark reindex`".
//! - `received`: date (ns), fast. The collector clock, for later trust checks.
//! - `host`, `app`, `class`, `observer`, `source`: one exact lower-cased term each.
//! - `kv`: `name=value` per normalised field, lower-cased, except the high-cardinality fields
//!   in [`TEXT_ONLY_FIELDS`] (found through `text` and `ip` instead).
//! - `ip`: IP terms (v4 as mapped v6), every `Event::ips` entry plus the host when it is an
//!   address. Indexed, not fast: a CIDR is then a term range (few distinct addresses), instead
//!   of a scan of a fast column over every document.
//! - `text`: the message as word tokens ([`text_tokens`]: parts of addresses are not words);
//!   doc ids only. Host and app names are words of the record too, but an ASCII name (no
//!   longer than [`KEYWORD_MAX_BYTES`]) is not indexed again as words: a word query finds it
//!   through the `host` / `app` terms whose words hold it (`lookup.rs`); any other name is.
//! - `src`: the event's `src_ip` field (v4 as mapped v6), a fast column only (not indexed):
//!   `check` reads every flow's and connection's source address from it instead of fetching
//!   and decoding tens of millions of records from the ledger.
//!
//! Nothing is stored: the ledger holds the events.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv6Addr};

use tantivy::Index;
use tantivy::schema::{
    DateOptions, DateTimePrecision, Field, IndexRecordOption, IpAddrOptions, NumericOptions,
    Schema, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::{RawTokenizer, TextAnalyzer, Token, TokenStream, Tokenizer};

/// Tokens longer than this (bytes) are not indexed; a query word that long cannot be answered
/// by the index alone and is checked on the fetched events instead.
pub const TOKEN_MAX_BYTES: usize = 64;

/// Exact terms (`host`, `kv`, …) are cut to this many bytes (at a char boundary); a query
/// value that long matches a superset that is checked on the fetched events.
pub const KEYWORD_MAX_BYTES: usize = 256;

/// Normalised fields that get no `kv` term: high-cardinality values the decoders copy from the
/// message (so its `text` tokens hold them) or addresses (which are also in `Event::ips`, so in
/// `ip`). A query on one of them is answered by candidates from `ip` (when the value is an
/// address) or from `text` (the value as a phrase), checked on the events by crate `query`.
/// Together they were about half of the `kv` terms and postings.
///
/// Every other field keeps exact `kv` terms: the low-cardinality vocabulary (`user`,
/// `from_user`, `to_user`, `method`, `outcome`, `action`, `service`, `session`, `proto`,
/// `key_type`, `tty`), values that are not in the message (`sd.*`, `file_prefix`), ports (a
/// bare number next to a `:` or `.` is not a `text` token, so text could not narrow
/// `src_port:2509` when the line says `port 2509:11:`), and names this list does not know.
/// A decoder that adds a field here must copy its value verbatim from the message.
pub const TEXT_ONLY_FIELDS: &[&str] = &[
    "src_ip",
    "dst_ip",
    "rhost",
    "key_fingerprint",
    "command",
    "pwd",
];

/// Whether field `name` has exact `kv` terms (see [`TEXT_ONLY_FIELDS`]).
pub fn has_kv_term(name: &str) -> bool {
    !TEXT_ONLY_FIELDS
        .iter()
        .any(|f| f.eq_ignore_ascii_case(name))
}

/// Named after the tokenizer's rules: an index written with other rules has another schema
/// and is refused ([`super::SearchIndex::open_or_create`]) until `pugmark reindex`.
pub(crate) const TEXT_TOKENIZER: &str = "pm_text_v2";
pub(crate) const KEYWORD_TOKENIZER: &str = "pm_keyword";

/// The fast column records are placed and ordered by (`Event::placed()`).
pub(crate) const PLACED: &str = "placed";

#[derive(Clone, Copy, Debug)]
pub(crate) struct Fields {
    pub seq: Field,
    pub placed: Field,
    pub received: Field,
    pub host: Field,
    pub app: Field,
    pub class: Field,
    pub observer: Field,
    pub source: Field,
    pub kv: Field,
    pub ip: Field,
    pub text: Field,
    pub src: Field,
}

pub(crate) fn build() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let date = DateOptions::default()
        .set_fast()
        .set_precision(DateTimePrecision::Nanoseconds);
    let keyword = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(KEYWORD_TOKENIZER)
            .set_index_option(IndexRecordOption::Basic)
            .set_fieldnorms(false),
    );
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(TEXT_TOKENIZER)
            .set_index_option(IndexRecordOption::Basic)
            .set_fieldnorms(false),
    );
    let fields = Fields {
        seq: b.add_u64_field("seq", NumericOptions::default().set_fast()),
        placed: b.add_date_field(PLACED, date.clone()),
        received: b.add_date_field("received", date),
        host: b.add_text_field("host", keyword.clone()),
        app: b.add_text_field("app", keyword.clone()),
        class: b.add_text_field("class", keyword.clone()),
        observer: b.add_text_field("observer", keyword.clone()),
        source: b.add_text_field("source", keyword.clone()),
        kv: b.add_text_field("kv", keyword),
        ip: b.add_ip_addr_field("ip", IpAddrOptions::default().set_indexed()),
        text: b.add_text_field("text", text),
        src: b.add_ip_addr_field("src", IpAddrOptions::default().set_fast()),
    };
    (b.build(), fields)
}

fn text_analyzer() -> TextAnalyzer {
    TextAnalyzer::from(WordTokenizer::default())
}

pub(crate) fn register_tokenizers(index: &Index) {
    index.tokenizers().register(TEXT_TOKENIZER, text_analyzer());
    // Keyword values are normalised by `keyword_term` before they reach the index; the raw
    // tokenizer then indexes them as one term.
    index.tokenizers().register(
        KEYWORD_TOKENIZER,
        TextAnalyzer::from(RawTokenizer::default()),
    );
}

/// Whether the word `tok` (as written, not lower-cased) with `left` / `right` the characters
/// directly around it (`None`: unknown, which counts as "could be anything") is a part of an
/// address rather than a word: all decimal digits next to a `.` (IPv4 octets, and also decimal
/// fractions, versions, kernel uptime stamps), or at most 4 hex digits next to a `:` (IPv6
/// groups, MAC octets, clock times). Such tokens are not indexed: addresses are found through
/// the `ip` field, and the rest is high-cardinality noise.
fn address_part(tok: &str, left: Option<char>, right: Option<char>) -> bool {
    let touches = |c: char| left.is_none_or(|l| l == c) || right.is_none_or(|r| r == c);
    (touches('.') && tok.bytes().all(|b| b.is_ascii_digit()))
        || (touches(':') && tok.len() <= 4 && tok.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The next maximal run of alphanumeric characters at or after byte `pos`: `(start, end)`.
fn next_word(text: &str, pos: usize) -> Option<(usize, usize)> {
    let rest = text.get(pos..)?;
    let (s, _) = rest.char_indices().find(|(_, c)| c.is_alphanumeric())?;
    let start = pos + s;
    let end = text[start..]
        .char_indices()
        .find(|(_, c)| !c.is_alphanumeric())
        .map_or(text.len(), |(i, _)| start + i);
    Some((start, end))
}

/// Whether the word at `start..end` of `text` is left out of the index: too long, or a part
/// of an address ([`address_part`]).
fn skipped(text: &str, start: usize, end: usize) -> bool {
    let tok = &text[start..end];
    tok.len() > TOKEN_MAX_BYTES
        || address_part(
            tok,
            Some(text[..start].chars().next_back().unwrap_or(' ')),
            Some(text[end..].chars().next().unwrap_or(' ')),
        )
}

/// Lower-cases like tantivy's `LowerCaser` (per character, ASCII fast path).
fn lowercase_into(word: &str, out: &mut String) {
    out.clear();
    if word.is_ascii() {
        out.push_str(word);
        out.make_ascii_lowercase();
    } else {
        for c in word.chars() {
            out.extend(c.to_lowercase());
        }
    }
}

/// The `text` tokenizer: words as [`text_tokens`] describes them, in one pass.
#[derive(Clone, Default)]
struct WordTokenizer {
    token: Token,
}

struct WordStream<'a> {
    text: &'a str,
    pos: usize,
    token: &'a mut Token,
}

impl Tokenizer for WordTokenizer {
    type TokenStream<'a> = WordStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> WordStream<'a> {
        self.token.reset();
        // `reset` leaves position at usize::MAX so the first token gets 0.
        WordStream {
            text,
            pos: 0,
            token: &mut self.token,
        }
    }
}

impl TokenStream for WordStream<'_> {
    fn advance(&mut self) -> bool {
        while let Some((start, end)) = next_word(self.text, self.pos) {
            self.pos = end;
            if skipped(self.text, start, end) {
                continue;
            }
            let t = &mut *self.token;
            t.offset_from = start;
            t.offset_to = end;
            t.position = t.position.wrapping_add(1);
            lowercase_into(&self.text[start..end], &mut t.text);
            return true;
        }
        false
    }

    fn token(&self) -> &Token {
        self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        self.token
    }
}

thread_local! {
    static ANALYZER: RefCell<TextAnalyzer> = RefCell::new(text_analyzer());
}

/// The word tokens the `text` field holds for `text`: maximal runs of alphanumeric
/// characters, lower-cased, except those longer than [`TOKEN_MAX_BYTES`] and parts of
/// addresses: a run of decimal digits directly next to a `.` (`10.0.0.1`, `50.98`,
/// `2.6.32`) and a run of at most 4 hex digits directly next to a `:` (`fe80::1`,
/// `fa:16:3e:00:00:01`, `06:55:46`).
pub fn text_tokens(text: &str) -> Vec<String> {
    ANALYZER.with(|a| {
        let mut a = a.borrow_mut();
        let mut stream = a.token_stream(text);
        let mut out = Vec::new();
        while stream.advance() {
            out.push(stream.token().text.clone());
        }
        out
    })
}

/// Whether `token` (lower-cased) is one of [`text_tokens`]`(text)`: the same tokenizer, no
/// token copied (a word search judges every NAT row's message this way).
pub fn has_text_token(text: &str, token: &str) -> bool {
    ANALYZER.with(|a| {
        let mut a = a.borrow_mut();
        let mut stream = a.token_stream(text);
        while stream.advance() {
            if stream.token().text == token {
                return true;
            }
        }
        false
    })
}

/// Index terms every text holding `phrase` (case-insensitively, at a word start) must have:
/// whole tokens, and the last word of the phrase as a token prefix when the phrase ends inside
/// a word. Words at the edges of the phrase are left out when, depending on what surrounds
/// the phrase in the text, they might not be indexed ([`text_tokens`]): the result is a
/// superset of the phrase's matches, never a subset.
pub(crate) fn phrase_terms(phrase: &str) -> (Vec<String>, Option<String>) {
    let mut whole = Vec::new();
    let mut prefix = None;
    let mut pos = 0;
    while let Some((start, end)) = next_word(phrase, pos) {
        pos = end;
        let word = &phrase[start..end];
        if word.len() > TOKEN_MAX_BYTES {
            continue;
        }
        let left = phrase[..start].chars().next_back();
        let right = phrase[end..].chars().next();
        let mut lower = String::new();
        lowercase_into(word, &mut lower);
        if right.is_none() {
            // The text's word may go on: any continuation must keep it indexable.
            let may_skip = word.bytes().all(|b| b.is_ascii_digit())
                || (word.len() <= 4 && word.bytes().all(|b| b.is_ascii_hexdigit()));
            if !may_skip {
                prefix = Some(lower);
            }
        } else if !address_part(word, left, right) {
            whole.push(lower);
        }
    }
    (whole, prefix)
}

/// The exact term stored for a keyword value: lower-cased, cut to [`KEYWORD_MAX_BYTES`].
pub fn keyword_term(value: &str) -> String {
    let mut v = value.to_lowercase();
    truncate_at_char(&mut v, KEYWORD_MAX_BYTES);
    v
}

/// The exact term stored in `kv` for one normalised field.
pub fn kv_term(name: &str, value: &str) -> String {
    let mut t = String::with_capacity(name.len() + 1 + value.len());
    t.push_str(name);
    t.push('=');
    t.push_str(value);
    keyword_term(&t)
}

fn truncate_at_char(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

/// IPv4 addresses live in the index as IPv4-mapped IPv6, so one field holds both families.
pub(crate) fn ip_key(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_split_on_punctuation_and_lowercase() {
        assert_eq!(
            text_tokens("Failed password for ZQX-7781-NEEDLE from 10.0.0.1 port 22"),
            [
                "failed", "password", "for", "zqx", "7781", "needle", "from", "port", "22"
            ]
        );
        let long = "a".repeat(TOKEN_MAX_BYTES + 1);
        assert_eq!(text_tokens(&format!("x {long} y")), ["x", "y"]);
        assert_eq!(text_tokens("Straße ÉTÉ"), ["straße", "été"]);
    }

    /// `has_text_token` answers what `text_tokens(..).contains(..)` answers, for tokens and
    /// for the words the index leaves out (address parts, over-long words, other cases).
    #[test]
    fn has_text_token_is_text_tokens_contains() {
        let long = "b".repeat(TOKEN_MAX_BYTES + 1);
        let texts = [
            "Failed password for ZQX-7781-NEEDLE from 10.0.0.1 port 22".to_string(),
            "[NEW] tcp 6 120 SYN_SENT src=10.42.0.15 dst=fe80::1 sport=40001 dport=443".to_string(),
            format!("x {long} y Straße ÉTÉ fa:16:3e:00:00:01 2.6.32"),
            String::new(),
        ];
        let probes = [
            "failed", "zqx", "7781", "10", "0", "1", "tcp", "syn_sent", "syn", "sent", "fe80",
            "40001", "sport", "x", "y", "straße", "été", "ÉTÉ", "fa", "16", "2", "6", "32", "",
            "nothing", &long,
        ];
        for text in &texts {
            let toks = text_tokens(text);
            for p in probes
                .iter()
                .map(|p| p.to_string())
                .chain(toks.iter().cloned())
            {
                assert_eq!(
                    has_text_token(text, &p),
                    toks.contains(&p),
                    "{text:?} {p:?}"
                );
            }
        }
    }

    #[test]
    fn parts_of_addresses_are_not_words() {
        let t = |s: &str| text_tokens(s).join(" ");
        assert_eq!(
            t("SRC=100.8.36.82 DST=10.1.75.234 LEN=1363"),
            "src dst len 1363"
        );
        assert_eq!(t("MAC=fa:16:3e:46:aa:be:fa:16:3e:00:00:01:08:00"), "mac");
        assert_eq!(t("from fe80::dead:beef%eth0 at 06:55:46"), "from eth0 at");
        assert_eq!(t("[4617274.407830] Took 50.98 seconds"), "took seconds");
        // Words stay words: letters next to '.', long hex next to ':', numbers elsewhere.
        assert_eq!(
            t("INFO nova.compute.manager db.example.org v2.6 port 12509:11: ssh2"),
            "info nova compute manager db example org v2 port 12509 ssh2"
        );
        assert_eq!(
            t("RSA SHA256:8069e5e4070d9fb87e9e9a073c6e2e45"),
            "rsa sha256 8069e5e4070d9fb87e9e9a073c6e2e45"
        );
        assert_eq!(
            t("tap3ac5ea86 req-ca17cb8a-177d"),
            "tap3ac5ea86 req ca17cb8a 177d"
        );
    }

    /// Case-insensitive substring at a word start, as crate `query` defines a phrase.
    fn holds_phrase(hay: &str, needle: &str) -> bool {
        let (hay, needle) = (hay.to_lowercase(), needle.to_lowercase());
        hay.match_indices(&needle).any(|(at, _)| {
            !needle.starts_with(char::is_alphanumeric)
                || hay[..at]
                    .chars()
                    .next_back()
                    .is_none_or(|c| !c.is_alphanumeric())
        })
    }

    #[test]
    fn phrase_terms_never_miss_a_text_holding_the_phrase() {
        let hays = [
            "Received disconnect from 28.94.163.94 port 2509:11: Bye Bye",
            "MAC=fa:16:3e:46:aa:be SRC=10.0.0.22 DST=1.2.3.4 LEN=60",
            "Took 50.98 seconds; bad: dead.beef cafe:1 v1.2.3 abc.def",
            "[4617274.407830] x 22 y:22 22.5 fe80::1 ZQX-7781-NEEDLE",
        ];
        let mut checked = 0;
        for hay in hays {
            let tokens = text_tokens(hay);
            let starts: Vec<usize> = hay.char_indices().map(|(i, _)| i).collect();
            for (k, &a) in starts.iter().enumerate() {
                for &b in starts[k + 1..].iter().chain([&hay.len()]) {
                    let needle = &hay[a..b];
                    if !holds_phrase(hay, needle) {
                        continue;
                    }
                    checked += 1;
                    let (whole, prefix) = phrase_terms(needle);
                    for w in &whole {
                        assert!(tokens.contains(w), "{needle:?} in {hay:?}: {w:?}");
                    }
                    if let Some(p) = prefix {
                        assert!(
                            tokens.iter().any(|t| t.starts_with(&p)),
                            "{needle:?} in {hay:?}: prefix {p:?}"
                        );
                    }
                }
            }
        }
        assert!(checked > 1000, "{checked}");
        // Inner words keep narrowing; edge numbers are left to the check on the events.
        let p = |s: &str| {
            let (whole, prefix) = phrase_terms(s);
            format!("{} | {}", whole.join(" "), prefix.unwrap_or_default())
        };
        assert_eq!(p("port 22"), "port | ");
        assert_eq!(p("Failed password fo"), "failed password | fo");
        assert_eq!(p("from 10.0.0.1 port 22 ssh2"), "from port 22 | ssh2");
        assert_eq!(p("bad: x"), " | x");
        assert_eq!(p("session opened"), "session | opened");
    }

    #[test]
    fn keyword_terms_are_lowercased_and_cut_at_a_char_boundary() {
        assert_eq!(kv_term("User", "Alice"), "user=alice");
        let long = "é".repeat(KEYWORD_MAX_BYTES);
        let t = keyword_term(&long);
        assert!(t.len() <= KEYWORD_MAX_BYTES && t.len() >= KEYWORD_MAX_BYTES - 1);
    }
}
