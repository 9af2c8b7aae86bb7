//! The compaction planner: which cold segments a compaction rewrites and which it keeps. A
//! pure function of the cold segments' key ranges and the warm keys, testable alone.
//!
//! Policy (this round): every warm (sealed, not yet compacted) segment moves to the cold
//! tier; a cold segment is rewritten only if a warm key falls into its key range or it holds
//! an expired row; the others are kept as they are (appends of ever-growing keys, the common
//! case for time-ordered ids, never rewrite the cold tier). Key ranges of the output stay
//! disjoint: the merge cuts its output where a kept segment's range begins.

use std::sync::Arc;

use crate::cold::segment::ColdFile;
use crate::log::record::RecordKind;
use crate::log::segment::SealedSegment;
use crate::Result;

/// A warm version: (key, seq) order decides which one survives.
pub(crate) struct WarmVersion<'a> {
    pub(crate) key: &'a [u8],
    pub(crate) seq: u64,
    /// Index into `Plan::warm`.
    pub(crate) segment: u32,
    pub(crate) offset: u32,
    pub(crate) kind: RecordKind,
    pub(crate) expires_at_ms: u64,
}

/// Splits the cold tier into the segments a compaction of `versions` (the newest warm
/// version of every key, ascending) rewrites and those it keeps, each ascending by key range.
pub(crate) fn choose(cold: &[Arc<ColdFile>], versions: &[WarmVersion<'_>], now_ms: u64) -> (Vec<Arc<ColdFile>>, Vec<Arc<ColdFile>>) {
    let keys: Vec<&[u8]> = versions.iter().map(|v| v.key).collect();
    choose_cold(cold, &keys, now_ms, |s, now| s.has_expired_rows(now))
}

/// Splits `cold` (ascending, disjoint key ranges) into the segments to rewrite — a key of
/// `warm_keys` (sorted) falls into its range, or it holds a row expired at `now_ms` — and
/// those to keep, each in the order given.
fn choose_cold<S: ColdRange + Clone>(
    cold: &[S],
    warm_keys: &[&[u8]],
    now_ms: u64,
    has_expired: impl Fn(&S, u64) -> bool,
) -> (Vec<S>, Vec<S>) {
    cold.iter().cloned().partition(|s| {
        let first = warm_keys.partition_point(|k| *k < s.min_key());
        let touched = warm_keys.get(first).is_some_and(|k| *k <= s.max_key());
        touched || has_expired(s, now_ms)
    })
}

/// The key range of a cold segment, as the planner sees it.
trait ColdRange {
    fn min_key(&self) -> &[u8];
    fn max_key(&self) -> &[u8];
}

impl ColdRange for Arc<ColdFile> {
    fn min_key(&self) -> &[u8] {
        &self.footer.min_key
    }
    fn max_key(&self) -> &[u8] {
        &self.footer.max_key
    }
}

/// The newest version of every key in `warm`, ascending by key.
pub(crate) fn newest_warm_versions(warm: &[Arc<SealedSegment>]) -> Result<Vec<WarmVersion<'_>>> {
    let mut versions: Vec<WarmVersion<'_>> = Vec::new();
    for (i, segment) in warm.iter().enumerate() {
        for entry in segment.hint_entries()? {
            versions.push(WarmVersion {
                key: entry.key,
                seq: entry.seq,
                segment: i as u32,
                offset: entry.offset,
                kind: entry.kind,
                expires_at_ms: entry.expires_at_ms,
            });
        }
    }
    versions.sort_unstable_by(|a, b| a.key.cmp(b.key).then(b.seq.cmp(&a.seq)));
    versions.dedup_by(|later, first| later.key == first.key); // keeps the newest of each key
    Ok(versions)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cold segment as the planner sees it: a key range and whether a row has expired by 100.
    #[derive(Clone, Debug, PartialEq)]
    struct Range(&'static [u8], &'static [u8], bool);

    impl ColdRange for Range {
        fn min_key(&self) -> &[u8] {
            self.0
        }
        fn max_key(&self) -> &[u8] {
            self.1
        }
    }

    fn choose(cold: &[Range], warm: &[&[u8]]) -> (Vec<Range>, Vec<Range>) {
        choose_cold(cold, warm, 100, |s, now| s.2 && now >= 100)
    }

    const A: Range = Range(b"a", b"c", false);
    const D: Range = Range(b"d", b"f", false);
    const G: Range = Range(b"g", b"i", false);

    #[test]
    fn a_cold_segment_no_warm_key_falls_into_is_kept() {
        assert_eq!(choose(&[A, D, G], &[b"e"]), (vec![D], vec![A, G]));
        // Keys between two ranges touch neither.
        assert_eq!(choose(&[A, D, G], &[b"cz", b"ff"]), (vec![], vec![A, D, G]));
    }

    #[test]
    fn range_ends_are_inclusive() {
        assert_eq!(choose(&[A, D, G], &[b"a", b"i"]), (vec![A, G], vec![D]));
    }

    #[test]
    fn appended_keys_past_the_cold_tier_rewrite_nothing() {
        assert_eq!(choose(&[A, D, G], &[b"j", b"k", b"z"]), (vec![], vec![A, D, G]));
    }

    #[test]
    fn a_segment_with_an_expired_row_is_rewritten_even_untouched() {
        let expiring = Range(b"d", b"f", true);
        assert_eq!(choose(&[A, expiring.clone(), G], &[]), (vec![expiring], vec![A, G]));
    }

    #[test]
    fn random_keys_touch_every_segment() {
        // The policy's known cost (ARCHITECTURE.md): spread keys rewrite the whole cold tier.
        assert_eq!(choose(&[A, D, G], &[b"b", b"e", b"h"]), (vec![A, D, G], vec![]));
    }
}
