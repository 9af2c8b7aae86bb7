//! The search itself, against one `ReadView` (a seq, a segment table, a clock):
//!
//! 1. the work is cut into units — row ranges of every cold segment (restricted to each
//!    query's key-prefix range through the sorted key column, aligned to the norms cache's
//!    chunks), ranges of every warm segment's embedded puts, ranges of the hot segment's
//!    commits — and shared by `threads` workers, each keeping a bounded top-k per query;
//! 2. a unit's rows are scored in tiles of `TILE_ROWS` rows against every query before the
//!    next tile (in register blocks of queries × rows, `kernels::score_tile`), so a batch of
//!    queries reads the data once. Cold rows come straight from the mapped embedding matrix,
//!    hot and warm ones from their records in place, in file order, superseded versions
//!    included (`log_rows`); cosine norms of cold rows come from the segment's cache, or are
//!    computed from the tile while it is in cache (and cached when the worker scans a whole
//!    chunk); every query of a cold tile is scored with the Dot kernel — for L2 that gives a
//!    proven lower bound of the distance (`kernels::l2_lower_bound`, from the norms), and the
//!    exact distance is computed only for the rows whose bound the query's top-k could keep;
//! 3. only a row whose distance the top-k would keep is asked whether the view reads it
//!    (`log_rows::Liveness`: for a hot or warm row, is it the newest version of its key at
//!    the view's seq; for a cold row, does the index hold a newer version that shadows it)
//!    and then the filter, once per row whatever the number of queries;
//! 4. the per-thread selections are merged; each hit has the checksum of the record or row
//!    it was scored from verified (with `Options::verify_checksums`, the default) before it
//!    is returned — scoring itself reads embeddings (and the filter reads records) without
//!    checking them, so a damaged record that is not a hit goes unreported (as a cold row
//!    does; `Db::verify` finds both).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::kernels::{self, Kernel};
use super::log_rows::{self, Liveness, LogRow};
use super::topk::{Origin, TopK};
use crate::cold::segment::{ColdFile, NORM_CHUNK_ROWS};
use crate::cold::set::ColdRow;
use crate::db::Shared;
use crate::iter::prefix_successor;
use crate::log::hot::HotSegment;
use crate::log::segment::{EmbeddedPut, SealedSegment};
use crate::read::ReadView;
use crate::segments::SegmentRef;
use crate::{Error, Hit, Metric, Record, Result, Search};

/// Rows scored against every query before moving on (the batch tile).
/// A multiple of the kernel's row block (3); 48 rows of 768 values are 144 KiB, in L2 with a
/// block of queries in L1.
const TILE_ROWS: usize = 48;
/// A warm segment's embedded puts per unit of work.
const WARM_CHUNK_ROWS: usize = 2048;
/// The hot segment's commits per unit of work.
const HOT_CHUNK_COMMITS: usize = 512;

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
    // Work: the hot segment's commits, then the warm segments' embedded puts, newest first
    // (the data most likely live fills the top-k first: see `log_rows`), then row chunks of
    // every cold segment (aligned to the norms cache's chunks) within the union of the
    // queries' row ranges.
    let mut work: Vec<Work> = Vec::new();
    let hot: Vec<(u32, &Arc<HotSegment>, usize)> = view
        .table
        .segments
        .iter()
        .filter_map(|(&id, s)| match s {
            SegmentRef::Hot(hot) => Some((id, hot, hot.published())),
            SegmentRef::Sealed(_) => None,
        })
        .collect();
    for (h, &(_, _, published)) in hot.iter().enumerate() {
        work.extend(chunks(published, HOT_CHUNK_COMMITS).map(|(start, end)| Work::Hot { segment: h, start, end }));
    }
    let warm: Vec<(&Arc<SealedSegment>, &[EmbeddedPut])> =
        view.table.warm().rev().map(|segment| Ok((segment, segment.embedded_puts()?))).collect::<Result<_>>()?;
    for (w, (_, positions)) in warm.iter().enumerate() {
        work.extend(chunks(positions.len(), WARM_CHUNK_ROWS).map(|(start, end)| Work::Warm { segment: w, start, end }));
    }
    let cold = &view.table.cold;
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
            work.push(Work::Cold { segment: s, start, end });
            start = end;
        }
        ranges.push(per_query);
    }

    let norms = queries.iter().any(|q| q.metric != Metric::Dot);
    let scan = Scan {
        view,
        liveness: Liveness { shared, view },
        queries: &queries,
        norms,
        ranges: &ranges,
        warm: &warm,
        hot: &hot,
        work: &work,
        next: AtomicUsize::new(0),
    };
    let workers = threads.clamp(1, work.len().max(1));
    let results: Vec<Result<Vec<TopK>>> = if workers == 1 {
        vec![scan.run()]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers).map(|_| scope.spawn(|| scan.run())).collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
        })
    };
    for per_thread in results {
        for (selection, other) in selections.iter_mut().zip(per_thread?) {
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

/// `[start, end)` pieces of `0..len` of at most `size` each.
fn chunks(len: usize, size: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..len).step_by(size).map(move |start| (start, (start + size).min(len)))
}

/// A unit of the scan's work, taken by one worker.
#[derive(Clone, Copy, Debug)]
enum Work {
    /// Rows `[start, end)` of cold segment `segment`, within one norms chunk.
    Cold { segment: usize, start: usize, end: usize },
    /// Embedded puts `[start, end)` (of `SealedSegment::embedded_puts`) of `Scan::warm[segment]`.
    Warm { segment: usize, start: usize, end: usize },
    /// Commits `[start, end)` of `Scan::hot[segment]`.
    Hot { segment: usize, start: usize, end: usize },
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
    /// `ahead`: the next tile's rows, prefetched while this one is scored
    /// (`kernels::score_tile_ahead`).
    fn compute(&mut self, queries: &[Query<'q>], wanted: impl Fn(usize) -> bool, rows: &[&[f32]], ahead: &[&[f32]], l2_by_dot: bool) {
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
        let l2_ahead = if dot_vectors.is_empty() { ahead } else { &[] };
        if !dot_vectors.is_empty() {
            kernels::score_tile_ahead(Kernel::Dot, dot_vectors, rows, ahead, dot_raw);
        }
        if !l2_vectors.is_empty() {
            kernels::score_tile_ahead(Kernel::L2Squared, l2_vectors, rows, l2_ahead, l2_raw);
        }
    }

    /// Whether the last `compute` scored anything (and so asked for its `ahead`).
    fn any(&self) -> bool {
        !self.active.is_empty() && self.width > 0
    }

    /// `(query index, its kernel values against the tile's vectors)`.
    fn rows(&self) -> impl Iterator<Item = (usize, &[f32])> {
        self.active.iter().copied().zip(self.raw.chunks_exact(self.width.max(1)))
    }
}

/// The shared state of the scan's workers.
struct Scan<'a> {
    view: &'a ReadView,
    liveness: Liveness<'a>,
    queries: &'a [Query<'a>],
    /// Some query is Cosine or L2: the cold rows' norms are needed.
    norms: bool,
    /// Per cold segment, per query: the query's row range.
    ranges: &'a [Vec<(usize, usize)>],
    /// The warm segments and their embedded puts.
    warm: &'a [(&'a Arc<SealedSegment>, &'a [EmbeddedPut])],
    /// The hot segments (id, mirror, commits published when the search began).
    hot: &'a [(u32, &'a Arc<HotSegment>, usize)],
    work: &'a [Work],
    next: AtomicUsize,
}

impl<'a> Scan<'a> {
    /// One worker: takes units until none is left; returns its top-k per query.
    fn run(&self) -> Result<Vec<TopK>> {
        let mut selections: Vec<TopK> = self.queries.iter().map(|q| TopK::new(q.k)).collect();
        let mut scores = Scores::default();
        let mut rows: Vec<LogRow<'_>> = Vec::new();
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let wanted = |key: &[u8]| self.queries.iter().any(|q| q.k > 0 && q.covers(key));
            match self.work.get(i) {
                None => return Ok(selections),
                Some(&Work::Cold { segment, start, end }) => self.scan_chunk(segment, start, end, &mut selections, &mut scores),
                Some(&Work::Warm { segment, start, end }) => {
                    let (sealed, positions) = self.warm[segment];
                    rows.clear();
                    log_rows::warm_rows(self.view, sealed, &positions[start..end], wanted, &mut rows)?;
                    for tile in rows.chunks(TILE_ROWS) {
                        self.score_log_tile(tile, &mut selections, &mut scores)?;
                    }
                }
                Some(&Work::Hot { segment, start, end }) => {
                    let (id, hot, published) = self.hot[segment];
                    let commits = log_rows::hot_commits(hot, (start, end), published);
                    // Rows of their own: they borrow from `commits`, which may hold buffers.
                    let mut hot_rows = Vec::new();
                    log_rows::hot_rows(self.liveness.shared, self.view, (id, &hot.dead), &commits, wanted, &mut hot_rows)?;
                    for tile in hot_rows.chunks(TILE_ROWS) {
                        self.score_log_tile(tile, &mut selections, &mut scores)?;
                    }
                }
            }
        }
    }

    /// Scores a tile of hot or warm rows against every query covering one of its keys and
    /// offers those the view reads (asked of the index only for rows a top-k would keep).
    /// Not prefetched as cold tiles are: for 100K warm records that changed nothing
    /// measurable (their cost is the hint entries and the liveness checks, not the loads).
    fn score_log_tile(&self, tile: &[LogRow<'_>], selections: &mut [TopK], scores: &mut Scores<'a>) -> Result<()> {
        let queries = self.queries;
        let vectors: Vec<&[f32]> = tile.iter().map(|row| row.vector).collect();
        // The rows lie apart (each in its record): touch a value per cache line of every row
        // first, so that their misses overlap instead of stalling the kernel row by row.
        std::hint::black_box(vectors.iter().flat_map(|v| v.iter().step_by(16)).fold(0u32, |touched, &x| touched ^ x.to_bits()));
        // Hot and warm norms are not cached: one more sum over vectors already in cache.
        let mut norms = vec![0.0; vectors.len()];
        if queries.iter().any(|q| q.metric == Metric::Cosine) {
            kernels::norms(&vectors, &mut norms);
        }
        let covers = |i: usize, row: &LogRow<'_>| queries[i].covers(row.key);
        scores.compute(queries, |i| queries[i].k > 0 && tile.iter().any(|row| covers(i, row)), &vectors, &[], false);
        // What the index said of each row, asked once whatever the number of queries: the
        // record the view reads there, or `None` (superseded, deleted, expired).
        let mut said: Vec<Option<Option<Record>>> = tile.iter().map(|_| None).collect();
        for (qi, raw) in scores.rows() {
            let (query, selection) = (&queries[qi], &mut selections[qi]);
            for (j, ((row, &value), &norm)) in tile.iter().zip(raw).zip(&norms).enumerate() {
                if !covers(qi, row) {
                    continue;
                }
                let distance = query.distance(value, norm);
                if !query.passes_min_score(distance) || !selection.admits(super::topk::sanitize(distance)) {
                    continue;
                }
                if said[j].is_none() {
                    said[j] = Some(self.liveness.live_record(row)?);
                }
                let Some(Some(record)) = &said[j] else { continue };
                if query.filter.is_none_or(|f| f(record)) {
                    selection.offer(distance, || row.key.to_vec(), row.origin);
                }
            }
        }
        Ok(())
    }

    /// Scores rows `[start, end)` of segment `s`, all within one norms chunk.
    fn scan_chunk(&self, s: usize, start: usize, end: usize, selections: &mut [TopK], scores: &mut Scores<'a>) {
        let segment: &Arc<ColdFile> = &self.view.table.cold.segments[s];
        let dim = segment.dim;
        let matrix = segment.embedding_values();
        let validity = segment.buffer(crate::cold::layout::Column::EmbeddingValidity);
        let has_embedding = |r: usize| validity[r / 8] & (1 << (r % 8)) != 0;
        let row_vector = |r: usize| &matrix[r * dim..(r + 1) * dim];
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
        // Rows that can be hits at all (embedding present, visible, live); whether a newer
        // hot or warm version shadows one is asked of the index once it would be kept.
        let mut candidates: Vec<usize> = Vec::with_capacity(TILE_ROWS);
        let mut vectors: Vec<&[f32]> = Vec::with_capacity(TILE_ROWS);
        let mut norms: Vec<f32> = Vec::with_capacity(TILE_ROWS);
        let mut distances: Vec<f32> = Vec::with_capacity(TILE_ROWS);
        // Per candidate of the tile: whether the index shadows it (asked once, when some
        // query would keep the row).
        let mut shadowed: Vec<Option<bool>> = Vec::with_capacity(TILE_ROWS);
        let mut tile_start = start;
        // Rows below this were prefetched by the scoring of the tile before theirs.
        let mut prefetched_to = start;
        while tile_start < end {
            let tile_end = (tile_start + TILE_ROWS).min(end);
            candidates.clear();
            candidates
                .extend((tile_start..tile_end).filter(|&r| has_embedding(r) && seqs[r] <= seq && (expiries[r] == 0 || expiries[r] > now)));
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
            // One load per cache line of the tile's rows first, in one sequential stream:
            // the kernel then reads them from L2. Scored straight from memory, three rows at
            // a time (three interleaved streams, restarted every 3 KB), one query ran at
            // 0.5 of a plain loop's bandwidth; with this pass, 0.8 (BENCHMARKS.md, search).
            // After the first tile, the previous tile's scoring has asked for this one's lines
            // already (`prefetched_to`), overlapped with its arithmetic, and the pass is left
            // out: one query at 100K took 1.11–1.37 × the loop's time with the pass alone,
            // 1.00–1.22 × with the prefetch (BENCHMARKS.md, search, figure 2).
            if prefetched_to < tile_end {
                std::hint::black_box(matrix[first * dim..(last + 1) * dim].iter().step_by(16).fold(0u32, |t, &x| t ^ x.to_bits()));
            }
            shadowed.clear();
            shadowed.resize(candidates.len(), None);
            let ranges = &self.ranges[s];
            // The queries whose row range meets the tile's candidates.
            // The next tile's rows load while this one is scored.
            let next = tile_end..(tile_end + TILE_ROWS).min(end);
            scores.compute(
                self.queries,
                |i| self.queries[i].k > 0 && ranges[i].0 <= last && first < ranges[i].1,
                &vectors,
                &[&matrix[next.start * dim..next.end * dim]],
                true,
            );
            if scores.any() {
                prefetched_to = next.end;
            }
            for (qi, raw) in scores.rows() {
                let (query, selection, (lo, hi)) = (&self.queries[qi], &mut selections[qi], ranges[qi]);
                let js = candidates.partition_point(|&r| r < lo)..candidates.partition_point(|&r| r < hi);
                let tile_norms = if self.norms { &norms[js.clone()] } else { &[][..] };
                // Distances, or for L2 lower bounds of them (the exact one is computed below
                // for the rows that pass): only a value within the bound can be kept, so the
                // exact checks (and the key, and the filter) run for those alone.
                query.cold_distances(&raw[js.clone()], tile_norms, dim, &mut distances);
                let mut bound = query.bound(selection);
                for ((j, &r), &distance) in js.clone().zip(&candidates[js]).zip(&distances) {
                    if distance > bound {
                        continue;
                    }
                    let distance = if query.metric == Metric::L2 { kernels::l2_squared(query.vector, row_vector(r)) } else { distance };
                    if !query.passes_min_score(distance) || !selection.admits(super::topk::sanitize(distance)) {
                        continue;
                    }
                    if *shadowed[j].get_or_insert_with(|| self.liveness.shadows_cold(segment.key(r))) {
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
