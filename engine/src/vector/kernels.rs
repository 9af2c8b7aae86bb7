//! The inner loops of vector search, written with explicit SIMD vectors from `pulp`, which
//! picks the widest instruction set the CPU has at run time (AVX2 + FMA on x86-64, 8 lanes;
//! NEON on AArch64; a scalar fallback elsewhere) without any `unsafe` here.
//!
//! **One pair, one sequence.** Every score is computed the same way whatever the tile it
//! is computed in: lane `l` accumulates `aᵢ·bᵢ` (or `(aᵢ − bᵢ)²`) for `i ≡ l` modulo the
//! lane count, in order, with a fused multiply-add where the CPU has one; the tail shorter
//! than a vector is added as one zero-padded vector; the lanes are then summed in a fixed
//! order. So `search`, `search_batch` and the hot/warm path give bit-identical scores for
//! the same pair on one machine (tested below). Another CPU class (no AVX2, another
//! architecture) may round differently and order near-ties differently.
//!
//! **Accumulation error:** with `L` lanes a score is `L` partial sums of `⌈n / L⌉` terms
//! summed pairwise: the error is at most about `(n / L + log₂ L) · ε · Σ|aᵢbᵢ|` with
//! `ε = 2⁻²⁴` — for n = 768 on AVX2 (L = 8), about 99 ulps of the sum of magnitudes, and
//! `n · ε · Σ|aᵢbᵢ|` on the scalar fallback. Scores are exact to ~1e-5 relative; two
//! records whose true scores differ by less may be ordered either way, always the same way
//! on one machine (the loops are deterministic).
//!
//! **Tiles.** A batch is scored as a tile of queries × rows: `QUERY_BLOCK` queries ×
//! `ROW_BLOCK` rows per step keeps 12 accumulators, 3 row vectors and 1 query vector in
//! the 16 vector registers of AVX2, so each loaded vector feeds 3 or 4 multiply-adds
//! instead of 1 (benches/HISTORY.md, "Vector search with tiled SIMD kernels": a batch sustains
//! 24–31 G multiply-adds/s per thread, against 8–9 G for one pair at a time before).
//!
//! **Prefetch.** `score_tile_ahead` spreads prefetches of the next tile's cache lines over
//! this tile's loads (into L2), so a scan's memory traffic overlaps its arithmetic; the
//! only `unsafe`-free way to the instruction is pulp's `Sse` wrapper, x86-64 only.

use pulp::{Arch, Simd, WithSimd};

/// What a tile computes for each (query, row) pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// Σ aᵢ·bᵢ (Dot, and Cosine before dividing by the norms).
    Dot,
    /// Σ (aᵢ − bᵢ)².
    L2Squared,
}

/// Queries per register tile.
const QUERY_BLOCK: usize = 4;
/// Rows per register tile.
const ROW_BLOCK: usize = 3;

/// `out[i * rows.len() + j] = kernel(queries[i], rows[j])`. Every vector has the same length.
pub(crate) fn score_tile(kernel: Kernel, queries: &[&[f32]], rows: &[&[f32]], out: &mut [f32]) {
    score_tile_ahead(kernel, queries, rows, &[], out);
}

/// `score_tile`, asking the CPU to load `ahead` (the next tile's rows: one contiguous run of
/// cold rows, or the vectors of log rows that lie apart) into L2 while it scores this one:
/// the row blocks of the first query block share `ahead`'s cache lines evenly and spread
/// their share over their own reads, so that the next tile's memory traffic overlaps this
/// tile's arithmetic instead of following it. A hint only: results do not depend on it.
pub(crate) fn score_tile_ahead(kernel: Kernel, queries: &[&[f32]], rows: &[&[f32]], ahead: &[&[f32]], out: &mut [f32]) {
    debug_assert_eq!(out.len(), queries.len() * rows.len());
    debug_assert!(queries.first().is_none_or(|q| queries.iter().chain(rows).all(|v| v.len() == q.len())));
    match kernel {
        Kernel::Dot => Arch::new().dispatch(Tile::<false> { queries, rows, ahead, prefetcher: Prefetcher::new(), out }),
        Kernel::L2Squared => Arch::new().dispatch(Tile::<true> { queries, rows, ahead, prefetcher: Prefetcher::new(), out }),
    }
}

/// f32s per cache line (64 bytes).
const LINE_F32S: usize = 16;

/// Issues cache-line prefetches. pulp's `Sse` wrapper makes the instruction a safe call (a
/// prefetch never faults: an address not mapped is ignored); elsewhere it does nothing.
#[derive(Clone, Copy)]
struct Prefetcher {
    #[cfg(target_arch = "x86_64")]
    sse: Option<pulp::core_arch::x86::Sse>,
}

impl Prefetcher {
    fn new() -> Prefetcher {
        Prefetcher {
            #[cfg(target_arch = "x86_64")]
            sse: pulp::core_arch::x86::Sse::try_new(),
        }
    }

    /// Asks for the cache line `line` starts in, into L2 (`T1`: with `T0`, into L1 as well,
    /// the scan ran slower than with no prefetch at all — BENCHMARKS.md, search).
    #[inline(always)]
    fn line(self, line: &[f32]) {
        #[cfg(target_arch = "x86_64")]
        if let Some(sse) = self.sse {
            sse._mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T1 }>(line.as_ptr().cast());
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = line;
    }
}

/// Σ aᵢ·bᵢ. `a` and `b` have the same length.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut out = [0.0];
    score_tile(Kernel::Dot, &[a], &[b], &mut out);
    out[0]
}

/// Σ (aᵢ − bᵢ)²: the squared euclidean distance.
pub(crate) fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    let mut out = [0.0];
    score_tile(Kernel::L2Squared, &[a], &[b], &mut out);
    out[0]
}

/// √(Σ aᵢ²) — the same sum as `dot(a, a)`.
pub(crate) fn norm(a: &[f32]) -> f32 {
    dot(a, a).sqrt()
}

/// A lower bound of `l2_squared(q, r)` from `dot = dot(q, r)`, `q_norm = norm(q)`,
/// `r_norm = norm(r)` and the dimension `n`: lets a batch score L2 queries with the Dot
/// tile (one multiply-add per value instead of a subtraction and a multiply-add) and
/// compute the exact distance only for rows whose bound could still be kept. NaN or an
/// overflow gives −∞ (never rejects).
///
/// Why it holds: with `γ = (n + 4)·2⁻²⁴`, every kernel sum of `n` products is within
/// `γ·Σ|xᵢyᵢ|` of the exact sum whatever its order (lanes, tail, reduction), so
/// `|dot − q·r| ≤ γ‖q‖‖r‖` and `|norm² − ‖·‖²| ≤ 2γ‖·‖²` (a square root and a square add
/// three roundings); the estimate `E = q_norm² + r_norm² − 2·dot` is then within
/// `3γ(‖q‖ + ‖r‖)²` of `‖q − r‖²`, and the exact kernel's `l2_squared` (each difference
/// rounded once, then summed) within `2γ‖q − r‖² ≤ 2γ(‖q‖ + ‖r‖)²`. So `E − 5γ(‖q‖ + ‖r‖)²`
/// is below `l2_squared`; the bound subtracts `8γ(…)²` (slack for its own roundings and the
/// norms' error) plus `4n` times the smallest normal f32 (products that underflow).
#[inline]
pub(crate) fn l2_lower_bound(dot: f32, q_norm: f32, r_norm: f32, n: usize) -> f32 {
    let gamma = (n as f32 + 4.0) * f32::EPSILON / 2.0;
    let reach = (q_norm + r_norm) * (q_norm + r_norm);
    let estimate = q_norm * q_norm + r_norm * r_norm - 2.0 * dot;
    let bound = estimate - 8.0 * gamma * reach - 4.0 * n as f32 * f32::MIN_POSITIVE;
    if bound.is_nan() {
        f32::NEG_INFINITY
    } else {
        bound
    }
}

/// `out[j] = norm(rows[j])`, several rows at a time (independent accumulators).
pub(crate) fn norms(rows: &[&[f32]], out: &mut [f32]) {
    debug_assert_eq!(rows.len(), out.len());
    Arch::new().dispatch(Norms { rows, out });
}

/// A copy of a vector starting on a 64-byte boundary, so that none of its vector loads
/// crosses a cache line (cold rows are 64-byte aligned by the format; a caller's query is
/// wherever its allocator put it, and with 16-byte alignment every other 32-byte load of
/// it would be split across two lines, in the loop that reads each query 16 times per tile).
pub(crate) struct Aligned {
    blocks: Vec<Line>,
    len: usize,
}

/// One cache line of f32s.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(64))]
struct Line([f32; 16]);

impl Aligned {
    pub(crate) fn new(values: &[f32]) -> Aligned {
        let mut blocks = vec![Line([0.0; 16]); values.len().div_ceil(16)];
        bytemuck::cast_slice_mut::<Line, f32>(&mut blocks)[..values.len()].copy_from_slice(values);
        Aligned { blocks, len: values.len() }
    }

    pub(crate) fn as_slice(&self) -> &[f32] {
        &bytemuck::cast_slice::<Line, f32>(&self.blocks)[..self.len]
    }
}

/// One dispatch of `score_tile`: walks the tile in register blocks.
struct Tile<'a, const L2: bool> {
    queries: &'a [&'a [f32]],
    rows: &'a [&'a [f32]],
    /// Prefetched by the first query block's row blocks (`score_tile_ahead`).
    ahead: &'a [&'a [f32]],
    prefetcher: Prefetcher,
    out: &'a mut [f32],
}

impl<const L2: bool> WithSimd for Tile<'_, L2> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Tile { queries, rows, ahead, prefetcher, out } = self;
        let width = rows.len();
        // Each row block of the first query block prefetches `share` lines of `ahead`.
        let ahead_lines: usize = ahead.iter().map(|v| v.len().div_ceil(LINE_F32S)).sum();
        let share = ahead_lines.div_ceil(rows.len().div_ceil(ROW_BLOCK).max(1));
        let mut lines = ahead.iter().flat_map(|v| v.chunks(LINE_F32S));
        // Query blocks outside, row blocks inside: a block of queries stays in L1 while the
        // rows of the tile stream past it.
        for (qb, query_block) in queries.chunks(QUERY_BLOCK).enumerate() {
            for (rb, row_block) in rows.chunks(ROW_BLOCK).enumerate() {
                let (q0, r0) = (qb * QUERY_BLOCK, rb * ROW_BLOCK);
                let share = if qb == 0 { share } else { 0 };
                macro_rules! block {
                    ($q:literal, $r:literal) => {{
                        let sums = block::<S, $q, $r, L2>(simd, query_block, row_block, (&mut lines, share), prefetcher);
                        for (i, row_sums) in sums.iter().enumerate() {
                            out[(q0 + i) * width + r0..][..$r].copy_from_slice(row_sums);
                        }
                    }};
                }
                match (query_block.len(), row_block.len()) {
                    (4, 3) => block!(4, 3),
                    (4, 2) => block!(4, 2),
                    (4, _) => block!(4, 1),
                    (3, 3) => block!(3, 3),
                    (3, 2) => block!(3, 2),
                    (3, _) => block!(3, 1),
                    (2, 3) => block!(2, 3),
                    (2, 2) => block!(2, 2),
                    (2, _) => block!(2, 1),
                    (_, 3) => block!(1, 3),
                    (_, 2) => block!(1, 2),
                    (_, _) => block!(1, 1),
                }
            }
        }
    }
}

/// One accumulation step for one (query, row) vector pair.
#[inline(always)]
fn step<S: Simd, const L2: bool>(simd: S, a: S::f32s, b: S::f32s, acc: S::f32s) -> S::f32s {
    if L2 {
        let d = simd.sub_f32s(a, b);
        simd.mul_add_e_f32s(d, d, acc)
    } else {
        simd.mul_add_e_f32s(a, b, acc)
    }
}

/// Each of the `N` vectors `vs` as `n` whole SIMD vectors (every one cut to the same `n`,
/// so the loops over them carry no bounds checks) and the tail shorter than one.
#[inline(always)]
fn split<'v, S: Simd, const N: usize>(vs: &[&'v [f32]], n: usize) -> ([&'v [S::f32s]; N], [&'v [f32]; N]) {
    debug_assert_eq!(vs.len(), N);
    let (mut body, mut tail): ([&[S::f32s]; N], [&[f32]; N]) = ([&[]; N], [&[]; N]);
    for i in 0..N {
        let (whole, rest) = S::as_simd_f32s(vs[i]);
        (body[i], tail[i]) = (&whole[..n], rest);
    }
    (body, tail)
}

/// The `Q × R` sums of one register block (`qs.len() == Q`, `rs.len() == R`); `ahead.1` lines
/// of `ahead.0` are prefetched a few at a time, spread over the block's reads
/// (`score_tile_ahead`).
#[inline(always)]
fn block<'a, S: Simd, const Q: usize, const R: usize, const L2: bool>(
    simd: S,
    qs: &[&[f32]],
    rs: &[&[f32]],
    ahead: (&mut impl Iterator<Item = &'a [f32]>, usize),
    prefetcher: Prefetcher,
) -> [[f32; R]; Q] {
    debug_assert!(qs.len() == Q && rs.len() == R);
    let n = qs[0].len() / S::F32_LANES;
    let (q_body, q_tail) = split::<S, Q>(qs, n);
    let (r_body, r_tail) = split::<S, R>(rs, n);
    let zero = simd.splat_f32s(0.0);
    let mut acc = [[zero; R]; Q];
    // One look at `ahead` per cache line of a row, `per_look` lines each time.
    let (lines, mut left) = ahead;
    let per_line = (LINE_F32S / S::F32_LANES).max(1);
    let per_look = left.div_ceil(n.div_ceil(per_line).max(1));
    for c in 0..n {
        if c % per_line == 0 && left > 0 {
            for line in lines.by_ref().take(per_look.min(left)) {
                prefetcher.line(line);
            }
            left = left.saturating_sub(per_look);
        }
        let mut r = [zero; R];
        for j in 0..R {
            r[j] = r_body[j][c];
        }
        for i in 0..Q {
            let q = q_body[i][c];
            for j in 0..R {
                acc[i][j] = step::<S, L2>(simd, q, r[j], acc[i][j]);
            }
        }
    }
    let mut sums = [[0f32; R]; Q];
    for i in 0..Q {
        let q = simd.partial_load_f32s(q_tail[i]);
        for j in 0..R {
            let a = if q_tail[i].is_empty() { acc[i][j] } else { step::<S, L2>(simd, q, simd.partial_load_f32s(r_tail[j]), acc[i][j]) };
            sums[i][j] = simd.reduce_sum_f32s(a);
        }
    }
    sums
}

/// One dispatch of `norms`.
struct Norms<'a> {
    rows: &'a [&'a [f32]],
    out: &'a mut [f32],
}

impl WithSimd for Norms<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        for (rows, out) in self.rows.chunks(ROW_BLOCK).zip(self.out.chunks_mut(ROW_BLOCK)) {
            match rows.len() {
                3 => out.copy_from_slice(&squares::<S, 3>(simd, rows)),
                2 => out.copy_from_slice(&squares::<S, 2>(simd, rows)),
                _ => out.copy_from_slice(&squares::<S, 1>(simd, rows)),
            }
        }
    }
}

/// `‖rs[j]‖` for `R` rows at once: the steps of `block` for each row as its own query
/// (so the same bits as `norm`), with the rows' accumulators interleaved.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // one index over R streams, as in `block`
fn squares<S: Simd, const R: usize>(simd: S, rs: &[&[f32]]) -> [f32; R] {
    debug_assert_eq!(rs.len(), R);
    let n = rs[0].len() / S::F32_LANES;
    let (body, tail) = split::<S, R>(rs, n);
    let mut acc = [simd.splat_f32s(0.0); R];
    for c in 0..n {
        for j in 0..R {
            acc[j] = step::<S, false>(simd, body[j][c], body[j][c], acc[j]);
        }
    }
    let mut out = [0f32; R];
    for j in 0..R {
        let a = if tail[j].is_empty() {
            acc[j]
        } else {
            let t = simd.partial_load_f32s(tail[j]);
            step::<S, false>(simd, t, t, acc[j])
        };
        out[j] = simd.reduce_sum_f32s(a).sqrt();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_f64(a: &[f32], b: &[f32], f: impl Fn(f64, f64) -> f64) -> f64 {
        a.iter().zip(b).map(|(&x, &y)| f(f64::from(x), f64::from(y))).sum()
    }

    fn vector(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 7919 + seed * 104_729) % 113) as f32 / 17.0 - 3.3).collect()
    }

    #[test]
    fn kernels_agree_with_f64_sums_at_every_length() {
        for n in [0usize, 1, 3, 7, 8, 9, 15, 16, 17, 31, 64, 100, 768, 1023] {
            let a: Vec<f32> = (0..n).map(|i| ((i * 7919 % 113) as f32 - 56.0) / 17.0).collect();
            let b: Vec<f32> = (0..n).map(|i| ((i * 104_729 % 97) as f32 - 48.0) / 13.0).collect();
            let magnitude: f64 = naive_f64(&a, &b, |x, y| (x * y).abs()).max(1e-30);
            let want_dot = naive_f64(&a, &b, |x, y| x * y);
            assert!((f64::from(dot(&a, &b)) - want_dot).abs() <= 1e-5 * magnitude, "dot n={n}");
            let want_l2 = naive_f64(&a, &b, |x, y| (x - y) * (x - y));
            assert!((f64::from(l2_squared(&a, &b)) - want_l2).abs() <= 1e-5 * want_l2.max(1e-30), "l2 n={n}");
            let want_norm = naive_f64(&a, &a, |x, y| x * y).sqrt();
            assert!((f64::from(norm(&a)) - want_norm).abs() <= 1e-5 * want_norm.max(1e-30), "norm n={n}");
        }
    }

    /// The bound must hold however close the vectors are (cancellation: `‖q − r‖²` tiny
    /// against `‖q‖² + ‖r‖²`) and at every magnitude.
    #[test]
    fn l2_lower_bound_is_below_the_exact_kernel() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        };
        let mut tight = 0usize;
        for case in 0..3000 {
            let n = [1usize, 3, 8, 19, 64, 768, 1536][case % 7];
            let scale = [1.0f32, 1e-3, 1e3, 1e-19, 1e18, 3e-23][case % 6];
            let q: Vec<f32> = (0..n).map(|_| next() * scale).collect();
            // Every third row is a near-copy of the query: the cancellation case.
            let r: Vec<f32> = if case % 3 == 0 {
                q.iter().map(|&v| v + next() * scale * [1e-3f32, 1e-6, 0.0][(case / 3) % 3]).collect()
            } else {
                (0..n).map(|_| next() * scale).collect()
            };
            let exact = l2_squared(&q, &r);
            let bound = l2_lower_bound(dot(&q, &r), norm(&q), norm(&r), n);
            assert!(bound <= exact || exact.is_nan(), "case {case}: n={n} scale={scale}: bound {bound} > exact {exact}");
            if exact.is_normal() && bound > exact * 0.99 {
                tight += 1;
            }
        }
        assert!(tight > 1000, "the bound should be close for well-separated vectors ({tight} of 3000 within 1 %)");
    }

    /// The prefetch is a hint: any `ahead` (none, shorter or longer than the tile, not a whole
    /// number of lines) leaves every score's bits as they are.
    #[test]
    fn prefetching_ahead_changes_no_score() {
        let pool: Vec<f32> = vector(4000, 99);
        for n in [1usize, 7, 16, 37, 768] {
            let vectors: Vec<Vec<f32>> = (0..12).map(|s| vector(n, s)).collect();
            for (nq, nr) in [(1usize, 1usize), (1, 7), (4, 3), (5, 8), (9, 2)] {
                let queries: Vec<&[f32]> = vectors[..nq].iter().map(Vec::as_slice).collect();
                let rows: Vec<&[f32]> = vectors[nq.min(4)..nq.min(4) + nr].iter().map(Vec::as_slice).collect();
                for kernel in [Kernel::Dot, Kernel::L2Squared] {
                    let mut want = vec![f32::NAN; nq * nr];
                    score_tile(kernel, &queries, &rows, &mut want);
                    for ahead in [0usize, 1, 15, 16, 17, 250, 4000] {
                        let mut got = vec![f32::NAN; nq * nr];
                        score_tile_ahead(kernel, &queries, &rows, &[&pool[..ahead], &pool[ahead / 3..ahead / 2]], &mut got);
                        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                        assert_eq!(bits(&got), bits(&want), "{kernel:?} n={n} tile {nq}x{nr} ahead {ahead}");
                    }
                }
            }
        }
    }

    /// The property `search` == `search_batch` rests on: a pair's score does not depend on
    /// the tile it was computed in, nor on its place in the tile.
    #[test]
    fn every_tile_shape_gives_each_pair_the_bits_of_a_single_pair() {
        for n in [1usize, 5, 8, 13, 24, 37] {
            let vectors: Vec<Vec<f32>> = (0..16).map(|s| vector(n, s)).collect();
            for nq in 0..=9 {
                for nr in 0..=7 {
                    let queries: Vec<&[f32]> = vectors[..nq].iter().map(Vec::as_slice).collect();
                    let rows: Vec<&[f32]> = vectors[9..9 + nr].iter().map(Vec::as_slice).collect();
                    for kernel in [Kernel::Dot, Kernel::L2Squared] {
                        let mut out = vec![f32::NAN; nq * nr];
                        score_tile(kernel, &queries, &rows, &mut out);
                        for (i, q) in queries.iter().enumerate() {
                            for (j, r) in rows.iter().enumerate() {
                                let single = if kernel == Kernel::Dot { dot(q, r) } else { l2_squared(q, r) };
                                assert_eq!(out[i * nr + j].to_bits(), single.to_bits(), "{kernel:?} n={n} tile {nq}x{nr} pair ({i},{j})");
                            }
                        }
                    }
                    let mut got = vec![f32::NAN; nr];
                    norms(&rows, &mut got);
                    for (j, r) in rows.iter().enumerate() {
                        assert_eq!(got[j].to_bits(), norm(r).to_bits(), "norm n={n} row {j} of {nr}");
                    }
                }
            }
        }
    }
}
