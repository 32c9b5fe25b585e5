//! pugmark's questions over the views, each answer citing ledger positions.
//!
//! What is here: [`lang`], the search query language (parser, help text, and the exact
//! meaning of a query on one event), and [`search`], which runs a query on the search index,
//! checks candidates on their events where the index alone cannot decide, orders hits by
//! time and renders them for the CLI (text lines and JSON). [`flows`] answers the `net.flow`
//! part of every query from the flow store the index has attached (flows are not index
//! documents).
//!
//! What is not here: storage. The index is `views::SearchIndex`; events come from the ledger
//! through the caller's [`search::Fetch`], so this crate depends on neither the ledger nor
//! tantivy.

pub mod attrib;
pub mod check;
pub mod cite;
pub mod contain;
pub mod egi;
pub mod export;
pub mod flows;
pub mod hunt;
pub mod lang;
pub mod misp;
pub mod nat;
pub mod natrows;
pub mod report;
pub mod search;
pub mod timeline;
pub mod who;
