//! The inner loops of vector search, written so the compiler vectorises them: 16
//! independent accumulators over `chunks_exact(16)` (four SSE registers' worth of lanes, so
//! the adds do not wait on each other), then the 16 partial sums and the tail added in
//! order. (This shape compiles to a clean packed loop; an `as_chunks` + pairwise-reduce
//! version measured 0.59 of memory bandwidth against 0.74–0.85 for this one, BENCHMARKS.md
//! "Vector search".)
//!
//! **Accumulation error:** each result is a sum of `n` f32 products accumulated in 16
//! interleaved partial sums of about `n / 16` terms, then summed in order: the error is at
//! most about `(n / 16 + 16) · ε · Σ|aᵢbᵢ|` with `ε = 2⁻²⁴` — for n = 768, about 64 ulps of
//! the sum of magnitudes, against 768 ulps for a naive running sum. Scores are therefore
//! exact to ~1e-5 relative; two records whose true scores differ by less may be ordered
//! either way, but always the same way for the same data (the loops are deterministic).

const LANES: usize = 16;

/// Σ aᵢ·bᵢ. `a` and `b` have the same length.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    let mut acc = [0f32; LANES];
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Σ (aᵢ − bᵢ)²: the squared euclidean distance.
#[inline]
pub(crate) fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| (x - y) * (x - y)).sum();
    let mut acc = [0f32; LANES];
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            let d = x[i] - y[i];
            acc[i] += d * d;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// √(Σ aᵢ²).
#[inline]
pub(crate) fn norm(a: &[f32]) -> f32 {
    dot(a, a).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_f64(a: &[f32], b: &[f32], f: impl Fn(f64, f64) -> f64) -> f64 {
        a.iter().zip(b).map(|(&x, &y)| f(f64::from(x), f64::from(y))).sum()
    }

    #[test]
    fn kernels_agree_with_f64_sums_at_every_length() {
        for n in [0usize, 1, 3, 15, 16, 17, 31, 64, 100, 768, 1023] {
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
}
