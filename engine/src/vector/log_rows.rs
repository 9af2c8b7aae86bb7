//! The hot and warm records a search scores, read in file order straight from the log
//! segments — a warm segment's map (its embedded puts located by the hint block), the hot
//! segment's in-memory commits — superseded versions included: no index walk, so these
//! rows cost what cold rows do, memory bandwidth.
//!
//! Records the index pruned (no reader can read them again) are skipped first, by their
//! segment's `DeadRows`. Which of the others the search's view actually reads is decided by
//! the index, and only for the rows whose score the top-k would keep (`Liveness`): a row is the view's record of its key
//! iff the newest version of that key at the view's seq is this very record (segment and
//! offset) and is live. The same probe tells whether a cold row is shadowed: any version of
//! its key at the view's seq in a segment the table does not list as retired is newer
//! (`ReadView::get`'s rule). In a random order only about k·ln(n/k) rows of n enter a top-k,
//! so the probes are few — once the top-k is full. Until it is, every row is asked: rows
//! superseded but not yet pruned (a snapshot holds them) or cold rows shadowed by newer
//! versions cost a probe each while no live row has filled it, which is why the scan takes
//! the newest data (hot, then warm newest first) before the cold tier. A superseded or
//! shadowed row is simply not offered, and the scan goes on.

use super::topk::Origin;
use crate::db::Shared;
use crate::log::dead_rows::DeadRows;
use crate::log::hot::{CommitBytes, HotSegment};
use crate::log::record::{self, RecordKind};
use crate::log::segment::{EmbeddedPut, SealedSegment};
use crate::read::ReadView;
use crate::{Error, Record, Result};

/// One hot or warm put with an embedding, visible at the view's seq and not expired at its
/// time, waiting to be scored.
pub(crate) struct LogRow<'a> {
    pub(crate) vector: &'a [f32],
    pub(crate) key: &'a [u8],
    pub(crate) segment_id: u32,
    /// The record's offset in its segment.
    pub(crate) offset: u32,
    pub(crate) origin: Origin,
}

/// Is a row of this seq and expiry visible and live in `view`?
fn visible(view: &ReadView, seq: u64, expires_at_ms: u64) -> bool {
    seq <= view.seq && (expires_at_ms == 0 || expires_at_ms > view.now_ms)
}

/// Appends to `out` the rows of embedded puts `positions` (a range of
/// `SealedSegment::embedded_puts`) of `segment` that `view` can see and whose key `wanted`.
pub(crate) fn warm_rows<'a>(
    view: &ReadView,
    segment: &'a SealedSegment,
    positions: &[EmbeddedPut],
    wanted: impl Fn(&[u8]) -> bool,
    out: &mut Vec<LogRow<'a>>,
) -> Result<()> {
    let origin_of = |offset: u32| Origin::Sealed { segment_id: segment.segment_id, offset };
    for put in positions {
        if segment.dead.is_dead(put.offset) {
            continue; // superseded and pruned, or skipped at open: no need to decode it
        }
        let (entry, vector) = segment.embedded_put(put.at)?;
        if visible(view, entry.seq, entry.expires_at_ms) && wanted(entry.key) {
            let offset = entry.offset;
            out.push(LogRow { vector, key: entry.key, segment_id: segment.segment_id, offset, origin: origin_of(offset) });
        }
    }
    Ok(())
}

/// The commits among `[start, end)` of `hot` (below `published`, the count
/// `HotSegment::published` gave) that may hold a put with an embedding the search can use. A commit is passed over without touching
/// its buffer when the bytes up to the next commit (its length, or more: group marks sit
/// between commits) are too few for any record with an embedding, or when its first record
/// is dead and the bytes after it too few (a lone overwritten put, the common case).
pub(crate) fn hot_commits(hot: &HotSegment, (start, end): (usize, usize), published: usize) -> Vec<(u32, CommitBytes<'_>)> {
    let smallest = record::encoded_len(1, hot.embedding_dim, 0) as u32;
    let mut commits = Vec::with_capacity(end - start);
    for i in start..end {
        if i + 1 < published {
            let (offset, first_len) = hot.commit_start(i);
            let span = hot.commit_start(i + 1).0.saturating_sub(offset);
            let rest = span.saturating_sub(first_len);
            if span < smallest || (first_len > 0 && rest < smallest && hot.dead.is_dead(offset)) {
                continue;
            }
        }
        if let Some(commit) = hot.commit(i) {
            commits.push(commit);
        }
    }
    commits
}

/// Appends to `out` the puts with an embedding in `commits` (of hot segment `segment_id`)
/// that `view` can see and whose key `wanted`. The buffer at offset 0 is the one recovery
/// rebuilt: it starts with the segment header.
pub(crate) fn hot_rows<'a>(
    shared: &Shared,
    view: &ReadView,
    (segment_id, dead): (u32, &DeadRows),
    commits: &'a [(u32, CommitBytes<'_>)],
    wanted: impl Fn(&[u8]) -> bool,
    out: &mut Vec<LogRow<'a>>,
) -> Result<()> {
    // Commits not yet in a region (`HotSegment::add_region`) are each their own allocation:
    // reading them one after another would wait for one cache miss at a time. A tight pass
    // first touches them all, so that many misses are in flight at once.
    std::hint::black_box(commits.iter().fold(0u8, |touched, (_, bytes)| touched ^ bytes.bytes().first().copied().unwrap_or(0)));
    for (base, bytes) in commits {
        let (base, bytes) = (*base, bytes.bytes());
        let mut at = (crate::log::header::SEGMENT_HEADER_LEN as u32).saturating_sub(base) as usize;
        while at < bytes.len() {
            let offset = base + at as u32;
            let parsed = record::parse_trusted(bytes, at, shared.embedding_dim).map_err(|e| {
                let path = shared.dir.join(crate::io::fs::segment_file_name(segment_id));
                Error::corruption(path, u64::from(offset), format!("hot record in the active segment's mirror: {}", e.detail()))
            })?;
            at += parsed.len;
            let Some(embedding) = parsed.embedding.clone() else { continue };
            if dead.is_dead(offset) {
                continue;
            }
            let key = &bytes[parsed.key.clone()];
            if parsed.kind == RecordKind::Put && visible(view, parsed.seq, parsed.expires_at_ms) && wanted(key) {
                let vector: &[f32] = bytemuck::cast_slice(&bytes[embedding]); // aligned as in `Record::embedding`
                out.push(LogRow { vector, key, segment_id, offset, origin: Origin::Hot });
            }
        }
    }
    Ok(())
}

/// The index's word on the rows of one search view (see the module's doc).
pub(crate) struct Liveness<'v> {
    pub(crate) shared: &'v Shared,
    pub(crate) view: &'v ReadView,
}

impl Liveness<'_> {
    /// The record of `row` if it is the version of its key the view reads (checked against
    /// the index entry: same key, same seq, a put), else `None`.
    pub(crate) fn live_record(&self, row: &LogRow<'_>) -> Result<Option<Record>> {
        match self.shared.index.newest_at(row.key, self.view.seq) {
            Some((seq, version))
                if version.segment_id == row.segment_id && version.offset == row.offset && version.is_live(self.view.now_ms) =>
            {
                self.view.resolve_for_scoring(self.shared, row.key, seq, &version).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Is the cold row of `key` shadowed by a hot or warm version (a put or a tombstone) the
    /// view reads instead?
    pub(crate) fn shadows_cold(&self, key: &[u8]) -> bool {
        self.shared.index.newest_at(key, self.view.seq).is_some_and(|(_, version)| !self.view.table.retired.contains(&version.segment_id))
    }
}
