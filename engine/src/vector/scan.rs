//! The search itself, against one `ReadView` (a seq, a segment table, a clock):
//!
//! 1. the index (hot and warm versions) is walked once over the queries' key range: every
//!    live record with an embedding is scored from its in-place `&[f32]`, and every key it
//!    holds — tombstones included — marks the cold row of that key as *shadowed* in a
//!    per-segment bitmap (one filter-and-search per index key, none per hit);
//! 2. the cold tier is scanned straight from the mapped embedding matrix, split into row
//!    ranges (restricted to each query's key-prefix range through the sorted key column)
//!    and shared by `threads` workers, each keeping a bounded top-k per query; a tile of
//!    `TILE_ROWS` rows is scored against every query before the next tile, so a batch of
//!    queries reads the matrix once;
//! 3. the per-thread selections are merged; a hit scored from a cold row has that row's
//!    checksum verified (with `Options::verify_checksums`, the default) before it is
//!    returned — the row it came from, not one looked up again by key.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::kernels;
use super::topk::TopK;
use crate::cold::segment::ColdFile;
use crate::cold::set::ColdRow;
use crate::db::Shared;
use crate::index::{Direction, ScanChunk};
use crate::iter::{prefix_successor, KeyRange};
use crate::read::ReadView;
use crate::{Error, Hit, Metric, Record, Result, Search};

/// Rows of a cold segment per unit of work handed to a thread.
const CHUNK_ROWS: usize = 8192;
/// Rows scored against every query before moving on (the batch tile).
const TILE_ROWS: usize = 32;
/// Index keys per walk of the index.
const INDEX_CHUNK_KEYS: usize = 1024;

/// One validated query.
struct Query<'s> {
    vector: &'s [f32],
    /// ‖vector‖, for cosine.
    norm: f32,
    metric: Metric,
    k: usize,
    min_score: Option<f32>,
    prefix: Option<&'s [u8]>,
    filter: Option<&'s (dyn Fn(&Record) -> bool + Send + Sync)>,
}

impl Query<'_> {
    /// The distance (lower is closer) of a vector with norm `other_norm`.
    #[inline]
    fn distance(&self, other: &[f32], other_norm: f32) -> f32 {
        match self.metric {
            Metric::Dot => -kernels::dot(self.vector, other),
            Metric::L2 => kernels::l2_squared(self.vector, other),
            Metric::Cosine => {
                let denominator = self.norm * other_norm;
                if denominator == 0.0 {
                    0.0 // a stored zero vector: similarity 0
                } else {
                    -(kernels::dot(self.vector, other) / denominator)
                }
            }
        }
    }

    fn score(&self, distance: f32) -> f32 {
        if self.metric == Metric::L2 {
            distance
        } else {
            -distance
        }
    }

    fn passes_min_score(&self, distance: f32) -> bool {
        match (self.min_score, self.metric) {
            (None, _) => true,
            (Some(min), Metric::L2) => distance <= min,
            (Some(min), _) => -distance >= min,
        }
    }

    fn covers(&self, key: &[u8]) -> bool {
        self.prefix.is_none_or(|p| key.starts_with(p))
    }
}

fn validate<'s>(search: &'s Search<'_>, dim: usize, default_metric: Metric) -> Result<Query<'s>> {
    if dim == 0 {
        return Err(Error::invalid("query", "the database stores no embeddings (it was created without embedding_dim)"));
    }
    if search.query.len() != dim {
        return Err(Error::invalid("query", format!("has {} values, the database's embedding dimension is {dim}", search.query.len())));
    }
    if let Some(i) = search.query.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid("query", format!("value {i} is not finite ({})", search.query[i])));
    }
    if search.min_score.is_some_and(f32::is_nan) {
        return Err(Error::invalid("min_score", "is NaN"));
    }
    let metric = search.metric.unwrap_or(default_metric);
    let norm = kernels::norm(search.query);
    if metric == Metric::Cosine && (norm == 0.0 || !norm.is_finite()) {
        return Err(Error::invalid("query", format!("cosine needs a query with a finite, non-zero norm (got {norm})")));
    }
    Ok(Query {
        vector: search.query,
        norm,
        metric,
        k: search.k,
        min_score: search.min_score,
        prefix: search.prefix.as_deref(),
        filter: search.filter.as_deref(),
    })
}

/// Runs `searches` against `view` on up to `threads` threads; one hit list per search.
pub(crate) fn search(shared: &Shared, view: &ReadView, searches: &[&Search<'_>], threads: usize) -> Result<Vec<Vec<Hit>>> {
    let queries: Vec<Query<'_>> =
        searches.iter().map(|s| validate(s, shared.embedding_dim, shared.options.metric)).collect::<Result<_>>()?;
    let mut selections: Vec<TopK> = queries.iter().map(|q| TopK::new(q.k)).collect();
    if queries.iter().all(|q| q.k == 0) {
        return Ok(vec![Vec::new(); queries.len()]);
    }
    // The key range every query lies in: one prefix shared by all, or everything.
    let common_prefix = match queries.first().and_then(|q| q.prefix) {
        Some(p) if queries.iter().all(|q| q.prefix == Some(p)) => Some(p),
        _ => None,
    };
    let range = common_prefix.map_or(KeyRange { lower: std::ops::Bound::Unbounded, upper: std::ops::Bound::Unbounded }, KeyRange::prefix);

    let cold = &view.table.cold;
    let mut shadowed: Vec<Vec<u64>> = cold.segments.iter().map(|s| vec![0u64; s.rows().div_ceil(64)]).collect();
    scan_index(shared, view, &queries, &range, &mut shadowed, &mut selections)?;

    if queries.iter().any(|q| q.metric == Metric::Cosine) {
        for segment in &cold.segments {
            segment.norms();
        }
    }
    // Work: row chunks of every segment, within the union of the queries' row ranges.
    let mut work: Vec<(usize, usize, usize)> = Vec::new();
    let mut ranges: Vec<Vec<(usize, usize)>> = Vec::with_capacity(cold.segments.len());
    for (s, segment) in cold.segments.iter().enumerate() {
        let per_query: Vec<(usize, usize)> = queries.iter().map(|q| prefix_rows(segment, q.prefix)).collect();
        let lo = per_query.iter().map(|r| r.0).min().unwrap_or(0);
        let hi = per_query.iter().map(|r| r.1).max().unwrap_or(0);
        let mut start = lo;
        while start < hi {
            let end = (start + CHUNK_ROWS).min(hi);
            work.push((s, start, end));
            start = end;
        }
        ranges.push(per_query);
    }
    let scan = ColdScan { view, queries: &queries, shadowed: &shadowed, ranges: &ranges, work: &work, next: AtomicUsize::new(0) };
    let workers = threads.clamp(1, work.len().max(1));
    let results: Vec<Vec<TopK>> = if workers == 1 {
        vec![scan.run()]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers).map(|_| scope.spawn(|| scan.run())).collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
        })
    };
    for per_thread in results {
        for (selection, other) in selections.iter_mut().zip(per_thread) {
            selection.merge(other);
        }
    }

    let mut hits = Vec::with_capacity(queries.len());
    for (query, selection) in queries.iter().zip(selections) {
        let mut list = Vec::with_capacity(query.k.min(1024));
        for candidate in selection.into_sorted() {
            if shared.options.verify_checksums {
                if let Some(row) = candidate.cold {
                    cold.segment(row).check_row_once(row.row as usize)?;
                }
            }
            list.push(Hit { score: query.score(candidate.distance), key: candidate.key });
        }
        hits.push(list);
    }
    Ok(hits)
}

/// Rows `[first, end)` of `segment` whose keys start with `prefix`.
fn prefix_rows(segment: &ColdFile, prefix: Option<&[u8]>) -> (usize, usize) {
    match prefix {
        None => (0, segment.rows()),
        Some(p) => {
            let first = segment.lower_bound(p);
            let end = prefix_successor(p).map_or(segment.rows(), |s| segment.lower_bound(&s));
            (first, end.max(first))
        }
    }
}

/// Walks the index once: scores live hot/warm records, marks the cold rows they shadow.
fn scan_index(
    shared: &Shared,
    view: &ReadView,
    queries: &[Query<'_>],
    range: &KeyRange,
    shadowed: &mut [Vec<u64>],
    selections: &mut [TopK],
) -> Result<()> {
    let cold = &view.table.cold;
    let mut lower = range.lower.clone();
    loop {
        let mut chunk = ScanChunk::default();
        let upper = range.upper.as_ref().map(Vec::as_slice);
        let stop = shared.index.scan(lower.as_ref().map(Vec::as_slice), upper, view.seq, Direction::Forward, INDEX_CHUNK_KEYS, &mut chunk);
        for item in &chunk.items {
            let key = &chunk.keys[item.key.clone()];
            if let Some(row) = cold.find(key) {
                shadowed[row.segment as usize][row.row as usize / 64] |= 1 << (row.row % 64);
            }
            if !item.version.is_live(view.now_ms) || !queries.iter().any(|q| q.covers(key)) {
                continue;
            }
            let record = view.resolve_keyed(shared, key, item.seq, &item.version)?;
            let Some(embedding) = record.embedding() else { continue };
            let norm = if queries.iter().any(|q| q.metric == Metric::Cosine) { kernels::norm(embedding) } else { 0.0 };
            for (query, selection) in queries.iter().zip(selections.iter_mut()) {
                if !query.covers(key) {
                    continue;
                }
                let distance = query.distance(embedding, norm);
                if !query.passes_min_score(distance) || !selection.admits(super::topk::sanitize(distance)) {
                    continue;
                }
                if query.filter.is_none_or(|f| f(&record)) {
                    selection.offer(distance, || key.to_vec(), None);
                }
            }
        }
        match stop {
            Some(key) => lower = std::ops::Bound::Excluded(key),
            None => return Ok(()),
        }
    }
}

/// The shared state of the cold scan's workers.
struct ColdScan<'a> {
    view: &'a ReadView,
    queries: &'a [Query<'a>],
    shadowed: &'a [Vec<u64>],
    /// Per segment, per query: the query's row range.
    ranges: &'a [Vec<(usize, usize)>],
    /// (segment, first row, end row) units of work.
    work: &'a [(usize, usize, usize)],
    next: AtomicUsize,
}

impl ColdScan<'_> {
    /// One worker: takes chunks until none is left; returns its top-k per query.
    fn run(&self) -> Vec<TopK> {
        let mut selections: Vec<TopK> = self.queries.iter().map(|q| TopK::new(q.k)).collect();
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(&(s, start, end)) = self.work.get(i) else { return selections };
            self.scan_chunk(s, start, end, &mut selections);
        }
    }

    fn scan_chunk(&self, s: usize, start: usize, end: usize, selections: &mut [TopK]) {
        let segment: &Arc<ColdFile> = &self.view.table.cold.segments[s];
        let dim = segment.dim;
        let matrix = segment.embedding_values();
        let validity = segment.buffer(crate::cold::layout::Column::EmbeddingValidity);
        let shadowed = &self.shadowed[s];
        let (seq, now) = (self.view.seq, self.view.now_ms);
        let seqs = segment.u64s(crate::cold::layout::Column::Seq);
        let expiries = segment.u64s(crate::cold::layout::Column::ExpiresAt);
        let norms = self.queries.iter().any(|q| q.metric == Metric::Cosine).then(|| segment.norms());
        // Rows that can be hits at all (embedding present, not shadowed, visible, live).
        let mut candidates: Vec<usize> = Vec::with_capacity(TILE_ROWS);
        let mut tile_start = start;
        while tile_start < end {
            let tile_end = (tile_start + TILE_ROWS).min(end);
            candidates.clear();
            candidates.extend((tile_start..tile_end).filter(|&r| {
                validity[r / 8] & (1 << (r % 8)) != 0
                    && shadowed[r / 64] & (1 << (r % 64)) == 0
                    && seqs[r] <= seq
                    && (expiries[r] == 0 || expiries[r] > now)
            }));
            for ((query, selection), &(lo, hi)) in self.queries.iter().zip(selections.iter_mut()).zip(&self.ranges[s]) {
                if query.k == 0 {
                    continue;
                }
                for &r in candidates.iter().filter(|&&r| r >= lo && r < hi) {
                    let vector = &matrix[r * dim..(r + 1) * dim];
                    let distance = query.distance(vector, norms.map_or(0.0, |n| n[r]));
                    if !query.passes_min_score(distance) || !selection.admits(super::topk::sanitize(distance)) {
                        continue;
                    }
                    if query.filter.is_none_or(|f| f(&Record::from_cold(segment, r))) {
                        selection.offer(distance, || segment.key(r).to_vec(), Some(ColdRow { segment: s as u32, row: r as u32 }));
                    }
                }
            }
            tile_start = tile_end;
        }
    }
}
