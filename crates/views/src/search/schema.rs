//! The index schema, its tokenizers and the normalisation of terms, in one place so the writer,
//! the lookups and crate `query`'s exact check all agree on what a token or a term is.
//!
//! Fields:
//! - `seq`: u64, fast. The ledger position; read back from every hit.
//! - `time`: date (ns), fast. `Event::time()`; ordering and `[from, to)` ranges run on the
//!   fast column, so it is not in the inverted index (a term per distinct instant would cost
//!   space and be slower for ranges than the column).
//! - `received`: date (ns), fast. The collector clock, for later trust checks.
//! - `host`, `app`, `class`, `observer`, `source`: one exact lower-cased term each.
//! - `kv`: `name=value` per normalised field, lower-cased.
//! - `ip`: IP terms (v4 as mapped v6), every `Event::ips` entry plus the host when it is an
//!   address. Indexed, not fast: a CIDR is then a term range (few distinct addresses), instead
//!   of a scan of a fast column over every document.
//! - `text`: message, host and app as word tokens ([`text_tokens`]); doc ids only.
//!
//! Nothing is stored: the ledger holds the events.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv6Addr};

use tantivy::Index;
use tantivy::schema::{
    DateOptions, DateTimePrecision, Field, IndexRecordOption, IpAddrOptions, NumericOptions,
    Schema, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::{
    LowerCaser, RawTokenizer, RemoveLongFilter, SimpleTokenizer, TextAnalyzer, TokenStream,
};

/// Tokens longer than this (bytes) are not indexed; a query word that long cannot be answered
/// by the index alone and is checked on the fetched events instead.
pub const TOKEN_MAX_BYTES: usize = 64;

/// Exact terms (`host`, `kv`, …) are cut to this many bytes (at a char boundary); a query
/// value that long matches a superset that is checked on the fetched events.
pub const KEYWORD_MAX_BYTES: usize = 256;

pub(crate) const TEXT_TOKENIZER: &str = "pm_text";
pub(crate) const KEYWORD_TOKENIZER: &str = "pm_keyword";

#[derive(Clone, Copy, Debug)]
pub(crate) struct Fields {
    pub seq: Field,
    pub time: Field,
    pub received: Field,
    pub host: Field,
    pub app: Field,
    pub class: Field,
    pub observer: Field,
    pub source: Field,
    pub kv: Field,
    pub ip: Field,
    pub text: Field,
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
        time: b.add_date_field("time", date.clone()),
        received: b.add_date_field("received", date),
        host: b.add_text_field("host", keyword.clone()),
        app: b.add_text_field("app", keyword.clone()),
        class: b.add_text_field("class", keyword.clone()),
        observer: b.add_text_field("observer", keyword.clone()),
        source: b.add_text_field("source", keyword.clone()),
        kv: b.add_text_field("kv", keyword),
        ip: b.add_ip_addr_field("ip", IpAddrOptions::default().set_indexed()),
        text: b.add_text_field("text", text),
    };
    (b.build(), fields)
}

fn text_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(TOKEN_MAX_BYTES + 1))
        .filter(LowerCaser)
        .build()
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

thread_local! {
    static ANALYZER: RefCell<TextAnalyzer> = RefCell::new(text_analyzer());
}

/// The word tokens the `text` field holds for `text`: maximal runs of alphanumeric
/// characters, lower-cased, those longer than [`TOKEN_MAX_BYTES`] dropped.
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
                "failed", "password", "for", "zqx", "7781", "needle", "from", "10", "0", "0", "1",
                "port", "22"
            ]
        );
        let long = "a".repeat(TOKEN_MAX_BYTES + 1);
        assert_eq!(text_tokens(&format!("x {long} y")), ["x", "y"]);
    }

    #[test]
    fn keyword_terms_are_lowercased_and_cut_at_a_char_boundary() {
        assert_eq!(kv_term("User", "Alice"), "user=alice");
        let long = "é".repeat(KEYWORD_MAX_BYTES);
        let t = keyword_term(&long);
        assert!(t.len() <= KEYWORD_MAX_BYTES && t.len() >= KEYWORD_MAX_BYTES - 1);
    }
}
