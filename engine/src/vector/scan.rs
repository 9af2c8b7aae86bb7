//! The search itself, against one `ReadView` (a seq, a segment table, a clock):
//!
//! 1. the index (hot and warm versions) is walked once over the queries' key range: every
//!    live record with an embedding is scored from its in-place `&[f32]` (in tiles of
//!    `TILE_ROWS` records × the queries, as below), and every key it
//!    holds — tombstones included — marks the cold row of that key as *shadowed* in a
//!    per-segment bitmap (one filter-and-search per index key, none per hit);
//! 2. the cold tier is scanned straight from the mapped embedding matrix, split into row
//!    ranges (restricted to each query's key-prefix range through the sorted key column)
//!    and shared by `threads` workers, each keeping a bounded top-k per query; a tile of
//!    `TILE_ROWS` rows is scored against every query before the next tile (in register
//!    blocks of queries × rows, `kernels::score_tile`), so a batch of queries reads the
//!    matrix once; cosine norms come from the segment's cache, or are computed from the
//!    tile while it is in cache (and cached when the worker scans a whole chunk); every
//!    query of a tile is scored with the Dot kernel — for L2 that gives a proven lower
//!    bound of the distance (`kernels::l2_lower_bound`, from the norms), and the exact
//!    distance is computed only for the rows whose bound the query's top-k could keep;
//! 3. the per-thread selections are merged; each hit has the checksum of the record or row
//!    it was scored from verified (with `Options::verify_checksums`, the default) before it
//!    is returned — scoring itself reads embeddings (and the filter reads records) without
//!    checking them, so a damaged record that is not a hit goes unreported (as a cold row
//!    does; `Db::verify` finds both).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use super::kernels::{self, Kernel};
use super::topk::{Origin, TopK};
use crate::cold::segment::{ColdFile, NORM_CHUNK_ROWS};
use crate::cold::set::{ColdCursor, ColdRow};
use crate::db::Shared;
use crate::index::{Direction, ScanChunk};
use crate::iter::{prefix_successor, KeyRange};
use crate::read::{Located, ReadView};
use crate::{Error, Hit, Metric, Record, Result, Search};

/// Rows scored against every query before moving on (the batch tile).
/// A multiple of the kernel's row block (3); 48 rows of 768 values are 144 KiB, in L2 with a
/// block of queries in L1.
const TILE_ROWS: usize = 48;
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
    fn kernel(&self) -> Kernel {
        if self.metric == Metric::L2 {
            Kernel::L2Squared
        } else {
            Kernel::Dot
        }
    }

    /// The distance (lower is closer) of a vector with norm `other_norm` whose kernel value
    /// against this query is `raw`.
    #[inline]
    fn distance(&self, raw: f32, other_norm: f32) -> f32 {
        match self.metric {
            Metric::Dot => -raw,
            Metric::L2 => raw,
            Metric::Cosine => {
                let denominator = self.norm * other_norm;
                if denominator == 0.0 {
                    0.0 // a stored zero vector: similarity 0
                } else {
                    -(raw / denominator)
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

    /// For the cold scan's tile (Dot kernel values `raw`, the rows' norms `norms`, read for
    /// Cosine and L2 only): `distances[j]` = the distance (NaN as +∞, ranked last) for Dot
    /// and Cosine, a lower bound of it for L2 (`kernels::l2_lower_bound`). The metric is
    /// matched once per tile.
    fn cold_distances(&self, raw: &[f32], norms: &[f32], dim: usize, distances: &mut Vec<f32>) {
        distances.clear();
        match self.metric {
            Metric::Dot => distances.extend(raw.iter().map(|&v| super::topk::sanitize(-v))),
            Metric::L2 => distances.extend(raw.iter().zip(norms).map(|(&v, &n)| kernels::l2_lower_bound(v, self.norm, n, dim))),
            Metric::Cosine => distances.extend(raw.iter().zip(norms).map(|(&v, &n)| super::topk::sanitize(self.distance(v, n)))),
        }
    }

    /// No distance above this can be kept by `selection` or pass `min_score` (a necessary
    /// condition only: ties and the exact checks are settled by the caller).
    fn bound(&self, selection: &TopK) -> f32 {
        let min_score = match (self.min_score, self.metric) {
            (None, _) => f32::INFINITY,
            (Some(min), Metric::L2) => min,
            (Some(min), _) => -min,
        };
        selection.threshold().min(min_score)
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

/// `vector` is the query's values, copied to an aligned buffer.
fn validate<'s>(search: &'s Search<'_>, vector: &'s [f32], dim: usize, default_metric: Metric) -> Result<Query<'s>> {
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
        vector,
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
    let aligned: Vec<kernels::Aligned> = searches.iter().map(|s| kernels::Aligned::new(s.query)).collect();
    let queries: Vec<Query<'_>> = searches
        .iter()
        .zip(&aligned)
        .map(|(s, v)| validate(s, v.as_slice(), shared.embedding_dim, shared.options.metric))
        .collect::<Result<_>>()?;
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
    let shadowed: Vec<Vec<AtomicU64>> =
        cold.segments.iter().map(|s| (0..s.rows().div_ceil(64)).map(|_| AtomicU64::new(0)).collect()).collect();
    let parts = index_parts(shared, view, &range, threads);
    let index_workers = threads.clamp(1, parts.len());
    if index_workers == 1 {
        for part in &parts {
            scan_index(shared, view, &queries, part, &shadowed, &mut selections)?;
        }
    } else {
        // Each worker walks whole parts (disjoint key ranges, so every key is decided by
        // exactly one of them) into its own selections.
        let next = AtomicUsize::new(0);
        let worker = || -> Result<Vec<TopK>> {
            let mut own: Vec<TopK> = queries.iter().map(|q| TopK::new(q.k)).collect();
            while let Some(part) = parts.get(next.fetch_add(1, Ordering::Relaxed)) {
                scan_index(shared, view, &queries, part, &shadowed, &mut own)?;
            }
            Ok(own)
        };
        let results: Vec<Result<Vec<TopK>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..index_workers).map(|_| scope.spawn(worker)).collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
        });
        for per_thread in results {
            for (selection, other) in selections.iter_mut().zip(per_thread?) {
                selection.merge(other);
            }
        }
    }

    // Work: row chunks of every segment (aligned to the norms cache's chunks), within the
    // union of the queries' row ranges.
    let mut work: Vec<(usize, usize, usize)> = Vec::new();
    let mut ranges: Vec<Vec<(usize, usize)>> = Vec::with_capacity(cold.segments.len());
    for (s, segment) in cold.segments.iter().enumerate() {
        let per_query: Vec<(usize, usize)> = queries.iter().map(|q| prefix_rows(segment, q.prefix)).collect();
        // The union of the ranges of the queries that keep anything (k > 0).
        let wanted = || per_query.iter().zip(&queries).filter(|(_, q)| q.k > 0).map(|(r, _)| r);
        let lo = wanted().map(|r| r.0).min().unwrap_or(0);
        let hi = wanted().map(|r| r.1).max().unwrap_or(0);
        let mut start = lo;
        while start < hi {
            let end = ((start / NORM_CHUNK_ROWS + 1) * NORM_CHUNK_ROWS).min(hi);
            work.push((s, start, end));
            start = end;
        }
        ranges.push(per_query);
    }
    let norms = queries.iter().any(|q| q.metric != Metric::Dot);
    let scan = ColdScan { view, queries: &queries, norms, shadowed: &shadowed, ranges: &ranges, work: &work, next: AtomicUsize::new(0) };
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
                match candidate.origin {
                    Origin::Cold(row) => cold.segment(row).check_row_once(row.row as usize)?,
                    Origin::Sealed { segment_id, offset } => view.check_sealed(segment_id, offset)?,
                    Origin::Hot => {}
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

/// Index entries below which the walk is not split among threads (one part).
const INDEX_SPLIT_ENTRIES_MIN: usize = 16 * 1024;
/// Parts per search thread, so that threads that finish early take more.
const INDEX_PARTS_PER_THREAD: usize = 4;

/// `range` cut into disjoint, ascending key ranges whose union is `range`, about equal in
/// index keys, for `threads` workers: the cuts are quantiles of the warm segments' key
/// samples (`SealedSegment::key_samples`) inside `range`. Hot keys are not sampled (the
/// active segment is bounded by `segment_bytes_max`); a small index, one thread or no
/// samples give `range` whole.
fn index_parts(shared: &Shared, view: &ReadView, range: &KeyRange, threads: usize) -> Vec<KeyRange> {
    let whole = || vec![range.clone()];
    if threads <= 1 || shared.index.entries_count() < INDEX_SPLIT_ENTRIES_MIN {
        return whole();
    }
    let inside = |key: &[u8]| range_contains_strictly(range, key);
    let mut samples: Vec<&[u8]> = view.table.warm().flat_map(|s| s.key_samples().iter().map(|k| &k[..])).filter(|k| inside(k)).collect();
    samples.sort_unstable();
    samples.dedup();
    cut_range(range, &samples, threads * INDEX_PARTS_PER_THREAD)
}

/// Is `key` inside `range` and equal to neither bound?
fn range_contains_strictly(range: &KeyRange, key: &[u8]) -> bool {
    let above = match &range.lower {
        std::ops::Bound::Included(l) | std::ops::Bound::Excluded(l) => key > l.as_slice(),
        std::ops::Bound::Unbounded => true,
    };
    let below = match &range.upper {
        std::ops::Bound::Included(u) | std::ops::Bound::Excluded(u) => key < u.as_slice(),
        std::ops::Bound::Unbounded => true,
    };
    above && below
}

/// `range` cut into at most `parts` ranges at quantiles of `samples` (sorted, distinct,
/// each strictly inside `range`): ascending, disjoint, their union exactly `range`.
fn cut_range(range: &KeyRange, samples: &[&[u8]], parts: usize) -> Vec<KeyRange> {
    debug_assert!(samples.windows(2).all(|w| w[0] < w[1]) && samples.iter().all(|k| range_contains_strictly(range, k)));
    let parts = parts.min(samples.len() + 1);
    // Cut i (1..parts) at the (i * len / parts)-th sample, equal picks merged.
    let mut cuts: Vec<&[u8]> = (1..parts).map(|i| samples[i * samples.len() / parts]).collect();
    cuts.dedup();
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let mut lower = range.lower.clone();
    for cut in cuts {
        out.push(KeyRange { lower, upper: std::ops::Bound::Excluded(cut.to_vec()) });
        lower = std::ops::Bound::Included(cut.to_vec());
    }
    out.push(KeyRange { lower, upper: range.upper.clone() });
    out
}

/// Walks the index over `range` once: scores live hot/warm records, marks the cold rows
/// they shadow (in `shadowed`, shared by the walk's threads).
fn scan_index(
    shared: &Shared,
    view: &ReadView,
    queries: &[Query<'_>],
    range: &KeyRange,
    shadowed: &[Vec<AtomicU64>],
    selections: &mut [TopK],
) -> Result<()> {
    let cold = &view.table.cold;
    // Index keys come in ascending order: their cold rows are found in one forward pass.
    let mut cursor = ColdCursor::new(cold, range.lower.as_ref().map(Vec::as_slice));
    let mut scores = Scores::default();
    // Live records with an embedding, scored a tile at a time (rows × all queries, as the
    // cold scan does), flushed when full and at the end of each index chunk.
    let mut tile: Vec<IndexRow> = Vec::with_capacity(TILE_ROWS);
    // Live versions found by the walk, read and scored in file order (`flush_located`)
    // once `LOCATED_MAX` have gathered, and when the walk ends; their keys in `keys`.
    let mut located: Vec<Located> = Vec::new();
    let mut keys: Vec<u8> = Vec::new();
    let mut lower = range.lower.clone();
    loop {
        let mut chunk = ScanChunk::default();
        let upper = range.upper.as_ref().map(Vec::as_slice);
        let stop = shared.index.scan(lower.as_ref().map(Vec::as_slice), upper, view.seq, Direction::Forward, INDEX_CHUNK_KEYS, &mut chunk);
        for item in &chunk.items {
            if view.table.retired.contains(&item.version.segment_id) {
                continue; // compacted: the cold set holds its successor, or dropped it (`ReadView::get`)
            }
            let key = &chunk.keys[item.key.clone()];
            if let Some(row) = cursor.find(key) {
                shadowed[row.segment as usize][row.row as usize / 64].fetch_or(1 << (row.row % 64), Ordering::Relaxed);
            }
            if !item.version.is_live(view.now_ms) || !queries.iter().any(|q| q.covers(key)) {
                continue;
            }
            let key_at = keys.len();
            keys.extend_from_slice(key);
            located.push(Located {
                segment_id: item.version.segment_id,
                offset: item.version.offset,
                seq: item.seq,
                logical_bytes: item.version.logical_bytes,
                key: key_at..keys.len(),
            });
        }
        if stop.is_none() || located.len() >= LOCATED_MAX {
            flush_located(shared, view, queries, &mut located, &mut keys, &mut tile, &mut scores, selections)?;
        }
        match stop {
            Some(key) => lower = std::ops::Bound::Excluded(key),
            None => return Ok(()),
        }
    }
}

/// Live versions an index walk gathers before it reads them (sorted by file position):
/// at most about 1.5 MiB of `Located` entries and their keys per walking thread.
const LOCATED_MAX: usize = 32 * 1024;

/// Reads the records of `located` in file order (sorted here; sealed segments in map
/// order, the hot segment by a forward cursor), scores those with an embedding in tiles,
/// and empties `located` and `keys`.
#[allow(clippy::too_many_arguments)]
fn flush_located<'q>(
    shared: &Shared,
    view: &ReadView,
    queries: &[Query<'q>],
    located: &mut Vec<Located>,
    keys: &mut Vec<u8>,
    tile: &mut Vec<IndexRow>,
    scores: &mut Scores<'q>,
    selections: &mut [TopK],
) -> Result<()> {
    located.sort_unstable_by_key(|l| (u64::from(l.segment_id) << 32) | u64::from(l.offset));
    view.resolve_in_file_order(shared, located, keys, |item, record| {
        let origin = match view.table.get(item.segment_id) {
            Some(crate::segments::SegmentRef::Sealed(_)) => Origin::Sealed { segment_id: item.segment_id, offset: item.offset },
            _ => Origin::Hot,
        };
        if record.embedding().is_none() {
            // The index's logical size counts the embedding its hint entry recorded. A
            // sealed record that reads as having none while that size says it has one
            // has a damaged flags byte: skipping it would drop a hit without a word
            // (tests/corruption_sweep.rs), so its checksum decides, as for a hit.
            let logical = record.key().len() + record.content().len();
            if let Origin::Sealed { segment_id, offset } = origin {
                if shared.options.verify_checksums && logical != item.logical_bytes as usize {
                    view.check_sealed(segment_id, offset)?;
                }
            }
            return Ok(());
        }
        tile.push(IndexRow { record, key: item.key.clone(), origin });
        if tile.len() == TILE_ROWS {
            score_index_tile(queries, keys, tile, scores, selections);
        }
        Ok(())
    })?;
    score_index_tile(queries, keys, tile, scores, selections);
    located.clear();
    keys.clear();
    Ok(())
}

/// A live hot or warm record waiting in the index walk's tile.
struct IndexRow {
    record: Record,
    /// Its key's range in the walk's key buffer.
    key: std::ops::Range<usize>,
    origin: Origin,
}

/// Scores the index walk's tile against every query covering one of its keys, offers the
/// results, and empties the tile.
fn score_index_tile<'q>(queries: &[Query<'q>], keys: &[u8], tile: &mut Vec<IndexRow>, scores: &mut Scores<'q>, selections: &mut [TopK]) {
    if tile.is_empty() {
        return;
    }
    let vectors: Vec<&[f32]> = tile.iter().filter_map(|row| row.record.embedding()).collect();
    debug_assert_eq!(vectors.len(), tile.len(), "only records with an embedding enter the tile");
    // Hot and warm norms are not cached: one more sum over vectors already in cache.
    let mut norms = vec![0.0; vectors.len()];
    if queries.iter().any(|q| q.metric == Metric::Cosine) {
        kernels::norms(&vectors, &mut norms);
    }
    let covers = |i: usize, row: &IndexRow| queries[i].covers(&keys[row.key.clone()]);
    scores.compute(queries, |i| queries[i].k > 0 && tile.iter().any(|row| covers(i, row)), &vectors, false);
    for (qi, raw) in scores.rows() {
        let (query, selection) = (&queries[qi], &mut selections[qi]);
        for ((row, &value), &norm) in tile.iter().zip(raw).zip(&norms) {
            if !covers(qi, row) {
                continue;
            }
            let distance = query.distance(value, norm);
            if !query.passes_min_score(distance) || !selection.admits(super::topk::sanitize(distance)) {
                continue;
            }
            if query.filter.is_none_or(|f| f(&row.record)) {
                selection.offer(distance, || keys[row.key.clone()].to_vec(), row.origin);
            }
        }
    }
    tile.clear();
}

/// The kernel values of one tile of vectors against the queries that want it, the queries
/// grouped by kernel so each group is one `score_tile`. Reused from tile to tile.
#[derive(Default)]
struct Scores<'q> {
    /// Indices of the scored queries: Dot-kernel ones first, then L2.
    active: Vec<usize>,
    /// How many of `active` use the Dot kernel.
    dots: usize,
    /// The scored queries' vectors, in `active` order.
    vectors: Vec<&'q [f32]>,
    /// `raw[a * width + j]`: query `active[a]` against vector `j`.
    raw: Vec<f32>,
    width: usize,
}

impl<'q> Scores<'q> {
    /// Scores `rows` against the queries `i` with `wanted(i)`; with `l2_by_dot`, L2 queries
    /// get the Dot kernel too (for `kernels::l2_lower_bound`).
    fn compute(&mut self, queries: &[Query<'q>], wanted: impl Fn(usize) -> bool, rows: &[&[f32]], l2_by_dot: bool) {
        let kernel = |i: usize| if l2_by_dot { Kernel::Dot } else { queries[i].kernel() };
        self.active.clear();
        self.active.extend((0..queries.len()).filter(|&i| kernel(i) == Kernel::Dot && wanted(i)));
        self.dots = self.active.len();
        self.active.extend((0..queries.len()).filter(|&i| kernel(i) == Kernel::L2Squared && wanted(i)));
        self.vectors.clear();
        self.vectors.extend(self.active.iter().map(|&i| queries[i].vector));
        self.width = rows.len();
        self.raw.clear();
        self.raw.resize(self.active.len() * self.width, 0.0);
        let (dot_raw, l2_raw) = self.raw.split_at_mut(self.dots * self.width);
        let (dot_vectors, l2_vectors) = self.vectors.split_at(self.dots);
        if !dot_vectors.is_empty() {
            kernels::score_tile(Kernel::Dot, dot_vectors, rows, dot_raw);
        }
        if !l2_vectors.is_empty() {
            kernels::score_tile(Kernel::L2Squared, l2_vectors, rows, l2_raw);
        }
    }

    /// `(query index, its kernel values against the tile's vectors)`.
    fn rows(&self) -> impl Iterator<Item = (usize, &[f32])> {
        self.active.iter().copied().zip(self.raw.chunks_exact(self.width.max(1)))
    }
}

/// The shared state of the cold scan's workers.
struct ColdScan<'a> {
    view: &'a ReadView,
    queries: &'a [Query<'a>],
    /// Some query is Cosine or L2: the rows' norms are needed.
    norms: bool,
    /// Cold rows shadowed by index keys (written by the index walk, which has ended).
    shadowed: &'a [Vec<AtomicU64>],
    /// Per segment, per query: the query's row range.
    ranges: &'a [Vec<(usize, usize)>],
    /// (segment, first row, end row) units of work.
    work: &'a [(usize, usize, usize)],
    next: AtomicUsize,
}

impl<'a> ColdScan<'a> {
    /// One worker: takes chunks until none is left; returns its top-k per query.
    fn run(&self) -> Vec<TopK> {
        let mut selections: Vec<TopK> = self.queries.iter().map(|q| TopK::new(q.k)).collect();
        let mut scores = Scores::default();
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(&(s, start, end)) = self.work.get(i) else { return selections };
            self.scan_chunk(s, start, end, &mut selections, &mut scores);
        }
    }

    /// Scores rows `[start, end)` of segment `s`, all within one norms chunk.
    fn scan_chunk(&self, s: usize, start: usize, end: usize, selections: &mut [TopK], scores: &mut Scores<'a>) {
        let segment: &Arc<ColdFile> = &self.view.table.cold.segments[s];
        let dim = segment.dim;
        let matrix = segment.embedding_values();
        let validity = segment.buffer(crate::cold::layout::Column::EmbeddingValidity);
        let has_embedding = |r: usize| validity[r / 8] & (1 << (r % 8)) != 0;
        let row_vector = |r: usize| &matrix[r * dim..(r + 1) * dim];
        let shadowed = &self.shadowed[s];
        let (seq, now) = (self.view.seq, self.view.now_ms);
        let seqs = segment.u64s(crate::cold::layout::Column::Seq);
        let expiries = segment.u64s(crate::cold::layout::Column::ExpiresAt);
        let chunk = start / NORM_CHUNK_ROWS;
        let chunk_rows = segment.chunk_rows(chunk);
        debug_assert!(chunk_rows.start <= start && end <= chunk_rows.end);
        let cached_norms = if self.norms { segment.cached_norms(chunk) } else { None };
        // A worker that scans a whole chunk with no cached norms computes every row's norm
        // (candidate or not: the cache serves later views) and caches them at the end.
        let mut filling: Option<Vec<f32>> =
            (self.norms && cached_norms.is_none() && (start..end) == chunk_rows).then(|| vec![0.0; chunk_rows.len()]);
        // Rows that can be hits at all (embedding present, not shadowed, visible, live).
        let mut candidates: Vec<usize> = Vec::with_capacity(TILE_ROWS);
        let mut vectors: Vec<&[f32]> = Vec::with_capacity(TILE_ROWS);
        let mut norms: Vec<f32> = Vec::with_capacity(TILE_ROWS);
        let mut distances: Vec<f32> = Vec::with_capacity(TILE_ROWS);
        let mut tile_start = start;
        while tile_start < end {
            let tile_end = (tile_start + TILE_ROWS).min(end);
            candidates.clear();
            candidates.extend((tile_start..tile_end).filter(|&r| {
                has_embedding(r)
                    && shadowed[r / 64].load(Ordering::Relaxed) & (1 << (r % 64)) == 0
                    && seqs[r] <= seq
                    && (expiries[r] == 0 || expiries[r] > now)
            }));
            norms.clear();
            if let Some(fill) = filling.as_mut() {
                vectors.clear();
                vectors.extend((tile_start..tile_end).filter(|&r| has_embedding(r)).map(row_vector));
                norms.resize(vectors.len(), 0.0);
                kernels::norms(&vectors, &mut norms);
                for (r, &n) in (tile_start..tile_end).filter(|&r| has_embedding(r)).zip(&norms) {
                    fill[r - chunk_rows.start] = n;
                }
                norms.clear();
                norms.extend(candidates.iter().map(|&r| fill[r - chunk_rows.start]));
            } else if let Some(cached) = cached_norms {
                norms.extend(candidates.iter().map(|&r| cached[r - chunk_rows.start]));
            } else if self.norms {
                vectors.clear();
                vectors.extend(candidates.iter().map(|&r| row_vector(r)));
                norms.resize(vectors.len(), 0.0);
                kernels::norms(&vectors, &mut norms);
            }
            tile_start = tile_end;
            let (Some(&first), Some(&last)) = (candidates.first(), candidates.last()) else { continue };
            vectors.clear();
            vectors.extend(candidates.iter().map(|&r| row_vector(r)));
            let ranges = &self.ranges[s];
            // The queries whose row range meets the tile's candidates.
            scores.compute(self.queries, |i| self.queries[i].k > 0 && ranges[i].0 <= last && first < ranges[i].1, &vectors, true);
            for (qi, raw) in scores.rows() {
                let (query, selection, (lo, hi)) = (&self.queries[qi], &mut selections[qi], ranges[qi]);
                let js = candidates.partition_point(|&r| r < lo)..candidates.partition_point(|&r| r < hi);
                let tile_norms = if self.norms { &norms[js.clone()] } else { &[][..] };
                // Distances, or for L2 lower bounds of them (the exact one is computed below
                // for the rows that pass): only a value within the bound can be kept, so the
                // exact checks (and the key, and the filter) run for those alone.
                query.cold_distances(&raw[js.clone()], tile_norms, dim, &mut distances);
                let mut bound = query.bound(selection);
                for (&r, &distance) in candidates[js].iter().zip(&distances) {
                    if distance > bound {
                        continue;
                    }
                    let distance = if query.metric == Metric::L2 { kernels::l2_squared(query.vector, row_vector(r)) } else { distance };
                    if !query.passes_min_score(distance) || !selection.admits(super::topk::sanitize(distance)) {
                        continue;
                    }
                    if query.filter.is_none_or(|f| f(&Record::from_cold(segment, r))) {
                        selection.offer(distance, || segment.key(r).to_vec(), Origin::Cold(ColdRow { segment: s as u32, row: r as u32 }));
                        bound = query.bound(selection);
                    }
                }
            }
        }
        if let Some(fill) = filling {
            segment.cache_norms(chunk, fill.into_boxed_slice());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Bound;

    use super::*;

    fn contains(range: &KeyRange, key: &[u8]) -> bool {
        let above = match &range.lower {
            Bound::Included(l) => key >= l.as_slice(),
            Bound::Excluded(l) => key > l.as_slice(),
            Bound::Unbounded => true,
        };
        let below = match &range.upper {
            Bound::Included(u) => key <= u.as_slice(),
            Bound::Excluded(u) => key < u.as_slice(),
            Bound::Unbounded => true,
        };
        above && below
    }

    /// Every key of a dense set of probes lies in exactly one part when it lies in the
    /// range, in none otherwise, and the parts ascend: for every kind of bound, sample set
    /// and part count.
    #[test]
    fn cut_range_partitions_the_range_exactly() {
        let probes: Vec<Vec<u8>> = (0u8..=40).map(|b| vec![b]).chain((0u8..=40).map(|b| vec![b, 0])).chain([vec![]]).collect();
        let bounds = |v: u8| [Bound::Included(vec![v]), Bound::Excluded(vec![v]), Bound::Unbounded];
        for lower in bounds(5) {
            for upper in bounds(30) {
                let range = KeyRange { lower: lower.clone(), upper };
                for stride in 1..6usize {
                    let sampled: Vec<Vec<u8>> = (0u8..=40).step_by(stride).map(|b| vec![b]).collect();
                    let samples: Vec<&[u8]> = sampled.iter().map(Vec::as_slice).filter(|k| range_contains_strictly(&range, k)).collect();
                    for parts in 0..12 {
                        let cut = cut_range(&range, &samples, parts);
                        assert!(!cut.is_empty() && cut.len() <= parts.max(1), "{parts} parts asked, {} given", cut.len());
                        for probe in &probes {
                            let holders = cut.iter().filter(|p| contains(p, probe)).count();
                            assert_eq!(holders, usize::from(contains(&range, probe)), "probe {probe:?}, range {range:?}, cut {cut:?}");
                        }
                        for pair in cut.windows(2) {
                            let (Bound::Excluded(end), Bound::Included(start)) = (&pair[0].upper, &pair[1].lower) else {
                                panic!("parts meet at a cut: {cut:?}")
                            };
                            assert_eq!(end, start);
                        }
                    }
                }
            }
        }
    }
}
