//! How answers cite records (docs/design/flow-derivation.md §1.2–1.4).
//!
//! Inside a process every reader keys a record by one `u64`: a ledger position, or for a flow
//! derived from a stored datagram its *flow position* (`model::flow::flow_pos`: the emitting
//! datagram and the flow's index in that decoding). A flow position is not a ledger position:
//! nothing can prove it, JavaScript and older `jq` corrupt integers of its size, and it names
//! an order of decoding, not the evidence. So no answer carries one: every `seq` an answer
//! gives is a ledger position, and a derived flow is cited as the datagram that holds its bytes
//! (`seq`, whose inclusion proof is the flow's) plus its place there (`flow: {flowset,
//! record}`, [`FlowAt`]). [`externalize`] turns an answer's flow positions into such
//! citations in one pass; [`text`] is the same for text answers (`#D/F.R`).

use std::collections::HashMap;

use model::flow::{FlowAt, is_flow_pos};
use model::{Event, fields};
use serde_json::{Map, Value};

/// A record as an answer cites it: its ledger position, and for a derived flow its place in
/// the datagram at that position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cite {
    pub seq: u64,
    pub flow: Option<FlowAt>,
}

impl Cite {
    /// A ledger record cited by its own position.
    pub fn record(seq: u64) -> Cite {
        Cite { seq, flow: None }
    }

    /// `{"flowset": F, "record": R}`, for a derived flow.
    pub fn flow_json(&self) -> Option<Value> {
        self.flow
            .map(|f| serde_json::json!({"flowset": f.flowset, "record": f.record}))
    }
}

/// A derived flow's place in its datagram, as answers give it (`"flow": {"flowset", "record"}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FlowJson {
    pub flowset: u16,
    pub record: u16,
}

impl From<FlowJson> for FlowAt {
    fn from(f: FlowJson) -> FlowAt {
        FlowAt {
            flowset: f.flowset,
            record: f.record,
        }
    }
}

impl From<FlowAt> for FlowJson {
    fn from(f: FlowAt) -> FlowJson {
        FlowJson {
            flowset: f.flowset,
            record: f.record,
        }
    }
}

/// `#D` for a ledger record, `#D/F.R` for a derived flow (the datagram and its place there).
pub fn text(c: &Cite) -> String {
    match c.flow {
        None => format!("#{}", c.seq),
        Some(f) => format!("#{}/{f}", c.seq),
    }
}

/// The citation of `event`, fetched at position `pos`: `pos` itself for a ledger position;
/// for a flow position, the datagram and place the flow's own fields name (every flow event
/// has `datagram_seq` and `datagram_record`). `None` for a flow position whose event lacks
/// them (a bug or damage: never cite a guess).
pub fn of(pos: u64, event: &Event) -> Option<Cite> {
    if !is_flow_pos(pos) {
        return Some(Cite::record(pos));
    }
    let seq = event.field(fields::DATAGRAM_SEQ)?.parse::<u64>().ok()?;
    let at = event
        .field(fields::DATAGRAM_RECORD)?
        .parse::<FlowAt>()
        .ok()?;
    (!is_flow_pos(seq)).then_some(Cite {
        seq,
        flow: Some(at),
    })
}

/// Turns the flow positions of an answer into citations: the flow store's rows, or the events
/// already fetched, say which datagram and place each stands for.
#[derive(Default)]
pub struct Resolver<'a> {
    store: Option<&'a flowstore::FlowStore>,
    memo: HashMap<u64, Cite>,
    cache: flowstore::LocateCache,
}

impl<'a> Resolver<'a> {
    /// A resolver that looks up in `store` what it was not told.
    pub fn new(store: Option<&'a flowstore::FlowStore>) -> Resolver<'a> {
        Resolver {
            store,
            memo: HashMap::new(),
            cache: flowstore::LocateCache::default(),
        }
    }

    /// Remembers the citation of `event`, fetched at `pos` (so the store is not read again).
    pub fn note(&mut self, pos: u64, event: &Event) {
        if is_flow_pos(pos)
            && let Some(c) = of(pos, event)
        {
            self.memo.insert(pos, c);
        }
    }

    /// The citation of position `pos`.
    pub fn cite(&mut self, pos: u64) -> anyhow::Result<Cite> {
        if !is_flow_pos(pos) {
            return Ok(Cite::record(pos));
        }
        if let Some(c) = self.memo.get(&pos) {
            return Ok(*c);
        }
        let row = match self.store {
            Some(s) => s.locate_cached(pos, &mut self.cache)?,
            None => None,
        };
        let Some(row) = row else {
            anyhow::bail!(
                "a derived flow cited by this answer is not in the flow store (run `pugmark reindex`)"
            );
        };
        let c = Cite {
            seq: row.rec.datagram_seq,
            flow: Some(FlowAt::of(&row.rec)),
        };
        self.memo.insert(pos, c);
        Ok(c)
    }
}

/// Rewrites every flow position in `answer` as a citation, in place: an integer under a key
/// `seq` or `*_seq` becomes the datagram's position with a sibling `flow` / `*_flow` (the
/// flow's place); an element of an array under `seqs` becomes the datagram's position, and the
/// object gains `flows: [{seq, flowset, record}]` for those elements. Ledger positions, and
/// everything else, are left as they are.
pub fn externalize(answer: &mut Value, r: &mut Resolver<'_>) -> anyhow::Result<()> {
    match answer {
        Value::Array(items) => {
            for v in items {
                externalize(v, r)?;
            }
        }
        Value::Object(map) => {
            externalize_object(map, r)?;
            for v in map.values_mut() {
                if v.is_object() || v.is_array() {
                    externalize(v, r)?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn flow_position(v: &Value) -> Option<u64> {
    v.as_u64().filter(|&p| is_flow_pos(p))
}

fn externalize_object(map: &mut Map<String, Value>, r: &mut Resolver<'_>) -> anyhow::Result<()> {
    let keys: Vec<String> = map
        .iter()
        .filter(|(k, v)| (k.as_str() == "seq" || k.ends_with("_seq")) && flow_position(v).is_some())
        .map(|(k, _)| k.clone())
        .collect();
    for k in keys {
        let Some(pos) = map.get(&k).and_then(flow_position) else {
            continue;
        };
        let c = r.cite(pos)?;
        map.insert(k.clone(), Value::from(c.seq));
        let sibling = match k.strip_suffix("seq") {
            Some(prefix) => format!("{prefix}flow"),
            None => "flow".to_string(),
        };
        if let Some(f) = c.flow_json() {
            map.insert(sibling, f);
        }
    }
    let mut cited = Vec::new();
    if let Some(Value::Array(seqs)) = map.get_mut("seqs") {
        for v in seqs.iter_mut() {
            if let Some(pos) = flow_position(v) {
                let c = r.cite(pos)?;
                *v = Value::from(c.seq);
                if let Some(f) = c.flow {
                    cited.push(serde_json::json!({
                        "seq": c.seq, "flowset": f.flowset, "record": f.record
                    }));
                }
            }
        }
    }
    if !cited.is_empty() {
        map.insert("flows".to_string(), Value::Array(cited));
    }
    Ok(())
}

/// Whether `answer` cites a flow position anywhere [`externalize`] looks (`seq`, `*_seq`,
/// `seqs`): what must not reach a reader. Cheap, so a printer asks before opening the flow
/// store.
pub fn has_flow_position(answer: &Value) -> bool {
    match answer {
        Value::Array(items) => items.iter().any(has_flow_position),
        Value::Object(map) => map.iter().any(|(k, v)| {
            ((k == "seq" || k.ends_with("_seq")) && flow_position(v).is_some())
                || (k == "seqs"
                    && v.as_array()
                        .is_some_and(|a| a.iter().any(|x| flow_position(x).is_some())))
                || ((v.is_object() || v.is_array()) && has_flow_position(v))
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::flow::flow_pos;
    use serde_json::json;

    fn flow_event(d: u64, f: u16, r: u16) -> Event {
        let mut e = Event::blank(
            model::Received::from_stored(0),
            model::Observer::Network,
            model::Origin::File {
                path: "x".into(),
                line: 0,
            },
            Vec::new(),
        );
        e.fields
            .insert(fields::DATAGRAM_SEQ.to_string(), d.to_string());
        e.fields
            .insert(fields::DATAGRAM_RECORD.to_string(), format!("{f}.{r}"));
        e
    }

    #[test]
    fn a_flow_is_cited_by_its_datagram_and_place() {
        let p = flow_pos(500, 3).unwrap_or(0);
        let c = of(p, &flow_event(498, 1, 7)).unwrap_or(Cite::record(0));
        assert_eq!(
            c,
            Cite {
                seq: 498,
                flow: Some(FlowAt {
                    flowset: 1,
                    record: 7
                })
            }
        );
        assert_eq!(text(&c), "#498/1.7");
        assert_eq!(text(&Cite::record(42)), "#42");
        // A ledger position is cited as itself, whatever its event says.
        assert_eq!(of(42, &flow_event(1, 1, 1)), Some(Cite::record(42)));
        // A flow event without its datagram fields is not cited by a guess.
        let mut bare = flow_event(1, 1, 1);
        bare.fields.clear();
        assert_eq!(of(p, &bare), None);
    }

    #[test]
    fn answers_lose_every_flow_position() {
        let p1 = flow_pos(500, 0).unwrap_or(0);
        let p2 = flow_pos(500, 1).unwrap_or(0);
        let mut r = Resolver::new(None);
        r.note(p1, &flow_event(500, 0, 0));
        r.note(p2, &flow_event(499, 2, 5));
        let mut answer = json!({
            "hits": [{"seq": p1, "text": "x"}, {"seq": 77}],
            "nat": {"seq": p2, "seqs": [12, p1, p2]},
            "destinations": [{"first_seq": p2, "last_seq": 90}],
        });
        assert!(has_flow_position(&answer));
        externalize(&mut answer, &mut r).unwrap_or_else(|e| panic!("{e}"));
        assert!(!has_flow_position(&answer));
        assert_eq!(
            answer,
            json!({
                "hits": [{"seq": 500, "flow": {"flowset": 0, "record": 0}, "text": "x"},
                         {"seq": 77}],
                "nat": {"seq": 499, "flow": {"flowset": 2, "record": 5},
                        "seqs": [12, 500, 499],
                        "flows": [{"seq": 500, "flowset": 0, "record": 0},
                                  {"seq": 499, "flowset": 2, "record": 5}]},
                "destinations": [{"first_seq": 499, "first_flow": {"flowset": 2, "record": 5},
                                  "last_seq": 90}],
            })
        );
        // A position no event and no store explains is an error, not a number left behind.
        let mut unknown = json!({"seq": flow_pos(9, 9).unwrap_or(0)});
        assert!(externalize(&mut unknown, &mut Resolver::new(None)).is_err());
    }
}
