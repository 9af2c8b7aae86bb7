//! Bounded best-k selection. Candidates are ranked by a *distance* (lower is closer:
//! `-score` for Cosine and Dot, the score itself for L2), ties by key ascending, so the
//! result is deterministic whatever order rows are visited in or how work is split
//! across threads. NaN ranks after every number.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::cold::set::ColdRow;

/// One kept candidate.
#[derive(Clone, Debug)]
pub(crate) struct Candidate {
    pub(crate) distance: f32,
    pub(crate) key: Vec<u8>,
    /// Where it was scored from, for the checksum check of the hits. Not part of the ranking.
    pub(crate) origin: Origin,
}

/// Where a candidate's embedding was read, unchecked: scoring reads every record, the
/// checksum check is paid for the hits only.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Origin {
    /// A cold row.
    Cold(ColdRow),
    /// A record of a sealed (warm) log segment.
    Sealed { segment_id: u32, offset: u32 },
    /// Nothing to check (a hot record: the in-memory mirror of the active segment).
    Hot,
}

impl Candidate {
    fn rank(&self, other: &Candidate) -> Ordering {
        self.distance.total_cmp(&other.distance).then_with(|| self.key.cmp(&other.key))
    }
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.rank(other) == Ordering::Equal
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    /// Greater = farther: the heap's top is the worst kept candidate.
    fn cmp(&self, other: &Self) -> Ordering {
        self.rank(other)
    }
}

/// Turns NaN into +∞ so that it ranks last under `total_cmp` whatever its sign bit.
#[inline]
pub(crate) fn sanitize(distance: f32) -> f32 {
    if distance.is_nan() {
        f32::INFINITY
    } else {
        distance
    }
}

/// The `k` closest candidates offered so far.
pub(crate) struct TopK {
    k: usize,
    heap: BinaryHeap<Candidate>,
}

impl TopK {
    pub(crate) fn new(k: usize) -> TopK {
        TopK { k, heap: BinaryHeap::with_capacity(k.min(4096) + 1) }
    }

    /// Would a candidate at `distance` be kept (ignoring the key tie-break, which the
    /// caller settles by calling `offer`)? The fast path that avoids touching keys.
    #[inline]
    pub(crate) fn admits(&self, distance: f32) -> bool {
        self.k > 0 && (self.heap.len() < self.k || self.heap.peek().is_some_and(|worst| distance <= worst.distance))
    }

    /// The largest distance `admits` may accept: the worst kept one when `k` are kept,
    /// +∞ before (and −∞ for k = 0).
    #[inline]
    pub(crate) fn threshold(&self) -> f32 {
        match self.heap.peek() {
            _ if self.k == 0 => f32::NEG_INFINITY,
            Some(worst) if self.heap.len() >= self.k => worst.distance,
            _ => f32::INFINITY,
        }
    }

    /// Offers a candidate; `key` is called only when it may be kept.
    pub(crate) fn offer(&mut self, distance: f32, key: impl FnOnce() -> Vec<u8>, origin: Origin) {
        let distance = sanitize(distance);
        if !self.admits(distance) {
            return;
        }
        let candidate = Candidate { distance, key: key(), origin };
        if self.heap.len() < self.k {
            self.heap.push(candidate);
        } else if self.heap.peek().is_some_and(|worst| candidate < *worst) {
            self.heap.pop();
            self.heap.push(candidate);
        }
        debug_assert!(self.heap.len() <= self.k);
    }

    /// Folds another selection (from another thread) into this one.
    pub(crate) fn merge(&mut self, other: TopK) {
        for candidate in other.heap {
            let Candidate { distance, key, origin } = candidate;
            self.offer(distance, || key, origin);
        }
    }

    /// Closest first, ties by key ascending.
    pub(crate) fn into_sorted(self) -> Vec<Candidate> {
        self.heap.into_sorted_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_k_closest_with_key_ties_whatever_the_order() {
        let items: Vec<(f32, Vec<u8>)> = (0..200u32).map(|i| (((i * 37) % 11) as f32, i.to_be_bytes().to_vec())).collect();
        let mut expected = items.clone();
        expected.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        expected.truncate(7);
        for rotation in [0, 13, 101] {
            let mut split = [TopK::new(7), TopK::new(7)];
            for (i, (d, key)) in items.iter().cycle().skip(rotation).take(items.len()).enumerate() {
                split[i % 2].offer(*d, || key.clone(), Origin::Hot);
            }
            let [mut a, b] = split;
            a.merge(b);
            let got: Vec<(f32, Vec<u8>)> = a.into_sorted().into_iter().map(|c| (c.distance, c.key)).collect();
            assert_eq!(got, expected, "rotation {rotation}");
        }
        let mut filling = TopK::new(2);
        assert_eq!(filling.threshold(), f32::INFINITY, "anything is admitted before k are kept");
        filling.offer(3.0, || b"a".to_vec(), Origin::Hot);
        assert_eq!(filling.threshold(), f32::INFINITY);
        filling.offer(1.0, || b"b".to_vec(), Origin::Hot);
        assert_eq!(filling.threshold(), 3.0, "then the worst kept distance");
        assert!(filling.admits(3.0) && !filling.admits(3.5));
        let mut none = TopK::new(0);
        assert_eq!(none.threshold(), f32::NEG_INFINITY);
        none.offer(1.0, || unreachable!("k = 0 keeps nothing and never asks for a key"), Origin::Hot);
        assert!(none.into_sorted().is_empty());
        let mut nan = TopK::new(1);
        nan.offer(f32::NAN, || b"nan".to_vec(), Origin::Hot);
        nan.offer(5.0, || b"five".to_vec(), Origin::Hot);
        assert_eq!(nan.into_sorted()[0].key, b"five", "NaN ranks after every number");
    }
}
