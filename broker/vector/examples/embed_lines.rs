//! Embeds a text file, one text per line, with the local model and writes the vectors as
//! little-endian f32 rows (384 per text for all-MiniLM-L6-v2), in input order.
//!
//! `cargo run --release -p chronik-vector --example embed_lines -- <model dir> <texts.txt>
//! <out.f32>`. broker/bench/vector_compare.py uses it for its `embedded` data set, so that the
//! index is measured on vectors the broker itself would store, not only synthetic ones.

use std::io::Write;
use std::time::Instant;

use chronik_vector::{EmbeddingProvider, LocalProvider};

/// What the indexer hands the provider at once.
const BATCH: usize = 256;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, model, texts, out] = args.as_slice() else {
        panic!("usage: embed_lines <model dir> <texts.txt> <out.f32>")
    };
    let provider = LocalProvider::load(model).unwrap_or_else(|e| panic!("{e}"));
    let text = std::fs::read_to_string(texts).unwrap_or_else(|e| panic!("{texts}: {e}"));
    let lines: Vec<&str> = text.lines().collect();
    // Written to a temporary name and renamed at the end, so an interrupted run never leaves a
    // short file that a caller caching by name would take for a finished one.
    let partial = format!("{out}.partial");
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(&partial).unwrap_or_else(|e| panic!("{partial}: {e}")),
    );
    let started = Instant::now();
    for (i, batch) in lines.chunks(BATCH).enumerate() {
        for vector in provider.embed(batch).expect("embed") {
            for x in vector {
                file.write_all(&x.to_le_bytes()).expect("write vectors");
            }
        }
        let done = (i + 1) * BATCH;
        if i % 40 == 39 {
            let rate = done as f64 / started.elapsed().as_secs_f64();
            eprintln!("embedded {done} of {} ({rate:.0} texts/s)", lines.len());
        }
    }
    file.into_inner()
        .expect("flush vectors")
        .sync_all()
        .expect("sync vectors");
    std::fs::rename(&partial, out).unwrap_or_else(|e| panic!("{out}: {e}"));
    eprintln!(
        "embedded {} texts in {:.0} s",
        lines.len(),
        started.elapsed().as_secs_f64()
    );
}
