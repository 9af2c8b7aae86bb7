//! Exact top-10 search: strata's (one query at a time and a batch of 64) beside a plain
//! in-RAM loop over the same matrix — the baseline the issue asks for. Both use cosine
//! similarity; the loop's norms are computed before it is timed, as strata's cold norms
//! cache holds them after its first search.

use std::time::Instant;

use crate::data;
use crate::Result;

/// Queries timed one at a time, and the batch size.
pub const QUERIES: usize = 10;
pub const BATCH: usize = 64;
const K: usize = 10;

pub fn queries(count: usize, dim: usize) -> Vec<Vec<f32>> {
    (0..count).map(|q| data::embedding_of(1_000_000 + q, dim)).collect()
}

/// The loop's figure: queries/s, and the top-10 record indices of each query, best first
/// (ties to the lower index, as strata breaks them by key and keys sort like indices).
pub struct LoopResult {
    pub qps: f64,
    pub top: Vec<Vec<usize>>,
}

pub fn in_ram_loop(records: usize, dim: usize) -> LoopResult {
    let matrix: Vec<f32> = (0..records).flat_map(|i| data::embedding_of(i, dim)).collect();
    let norms: Vec<f32> = matrix.chunks_exact(dim).map(|row| dot(row, row).sqrt()).collect();
    let queries = queries(QUERIES, dim);
    let start = Instant::now();
    let top = queries
        .iter()
        .map(|q| {
            let q_norm = dot(q, q).sqrt();
            let mut best: Vec<(f32, usize)> = Vec::with_capacity(K + 1);
            for (i, row) in matrix.chunks_exact(dim).enumerate() {
                let score = dot(q, row) / (q_norm * norms[i]);
                if best.len() < K || score > best[K - 1].0 {
                    let at = best.partition_point(|&(s, _)| s >= score);
                    best.insert(at, (score, i));
                    best.truncate(K);
                }
            }
            best.into_iter().map(|(_, i)| i).collect()
        })
        .collect();
    LoopResult { qps: QUERIES as f64 / start.elapsed().as_secs_f64(), top }
}

/// Eight accumulators, so the compiler vectorizes it: what a plain loop gets.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let tail: f32 = a.chunks_exact(8).remainder().iter().zip(b.chunks_exact(8).remainder()).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// strata's figures on `db` as it stands: single queries/s, batch-of-64 queries/s, and the
/// single queries' hits as record indices.
pub fn strata(db: &strata::Db, dim: usize) -> Result<(f64, f64, Vec<Vec<usize>>)> {
    let queries = queries(BATCH, dim);
    db.search(&cosine(&queries[0]))?; // untimed: maps warmed, norms cached
    let start = Instant::now();
    let mut top = Vec::with_capacity(QUERIES);
    for q in &queries[..QUERIES] {
        let hits = db.search(&cosine(q))?;
        if hits.len() != K {
            return Err("a search found fewer than 10 hits".into());
        }
        top.push(hits.iter().map(|h| index_of(&h.key)).collect::<Result<Vec<_>>>()?);
    }
    let single = QUERIES as f64 / start.elapsed().as_secs_f64();
    let batch: Vec<strata::Search<'_>> = queries.iter().map(|q| cosine(q)).collect();
    let start = Instant::now();
    let results = db.search_batch(&batch)?;
    let batched = BATCH as f64 / start.elapsed().as_secs_f64();
    if results.len() != BATCH || results.iter().any(|hits| hits.len() != K) {
        return Err("a batched search found fewer than 10 hits".into());
    }
    Ok((single, batched, top))
}

fn cosine(query: &[f32]) -> strata::Search<'_> {
    strata::Search::new(query).k(K).metric(strata::Metric::Cosine)
}

fn index_of(key: &[u8]) -> Result<usize> {
    let text = std::str::from_utf8(key)?;
    Ok(text.strip_prefix("doc/").ok_or("not a doc/ key")?.parse()?)
}
