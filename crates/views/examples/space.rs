//! Print the on-disk size of a search index per field (tantivy's space usage), to see where
//! index bytes go. Usage: cargo run --release -p views --example space -- DATA/index
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: space INDEX_DIR")?;
    let index = tantivy::Index::open_in_dir(&dir)?;
    let searcher = index.reader()?.searcher();
    let usage = searcher.space_usage()?;
    let mut per_field: std::collections::BTreeMap<String, [u64; 5]> = Default::default();
    for seg in usage.segments() {
        for (i, part) in [
            seg.termdict(),
            seg.postings(),
            seg.positions(),
            seg.fast_fields(),
            seg.fieldnorms(),
        ]
        .iter()
        .enumerate()
        {
            for fu in part.fields() {
                let name = fu.field_name().to_string();
                per_field.entry(name).or_default()[i] += fu.total().get_bytes();
            }
        }
    }
    println!(
        "total {} bytes, {} docs",
        usage.total().get_bytes(),
        searcher.num_docs()
    );
    println!(
        "{:<12} {:>12} {:>12} {:>10} {:>10} {:>10}",
        "field", "termdict", "postings", "positions", "fast", "norms"
    );
    for (f, v) in per_field {
        println!(
            "{f:<12} {:>12} {:>12} {:>10} {:>10} {:>10}",
            v[0], v[1], v[2], v[3], v[4]
        );
    }
    Ok(())
}
