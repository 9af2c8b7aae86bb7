//! Reads: `get_latest` (`Db::get`, the newest version, without a pin when it can), and
//! `ReadView` (seq + segment table + clock), which resolves index versions into `Record`s at
//! one seq; `Snapshot` is the public, frozen form of it. Iterators (`iter.rs`) and searches
//! (`vector/`) read through a `ReadView` too.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::cold::set::ColdRow;
use crate::db::Shared;
use crate::index::{self, Version};
use crate::iter::{Iter, KeyRange};
use crate::log::record::RecordKind;
use crate::point_cache::{self, Location};
use crate::record::{Backing, Record};
use crate::segments::{SegmentRef, SegmentTable};
use crate::snapshots::Pin;
use crate::{Error, Hit, Result, Search};

/// Everything a read needs to be consistent: the seq it reads at, the segments it may
/// resolve in, and the wall time TTLs are judged against.
#[derive(Clone)]
pub(crate) struct ReadView {
    pub(crate) seq: u64,
    pub(crate) table: Arc<SegmentTable>,
    pub(crate) now_ms: u64,
}

impl ReadView {
    /// The index first (hot and warm versions, tombstones included), then the cold tier. A
    /// version in a segment this view's table lists as retired is superseded by the table's
    /// cold set, which holds that compaction's output: the cold row, or nothing if the
    /// compaction dropped the key (a tombstone, an expiry, the compaction filter).
    pub(crate) fn get(&self, shared: &Shared, key: &[u8]) -> Result<Option<Record>> {
        match shared.index.newest_at(key, self.seq) {
            Some((seq, version)) if !self.table.retired.contains(&version.segment_id) => self.resolve_live(shared, key, seq, &version),
            _ => get_cold(shared, &self.table, key, Some(self.seq), Some(self.now_ms)),
        }
    }

    /// The record of a cold row found by a scan of this view's cold set.
    pub(crate) fn resolve_cold(&self, shared: &Shared, row: ColdRow) -> Result<Record> {
        let segment = self.table.cold.segment(row);
        if shared.options.verify_checksums {
            segment.check_row_once(row.row as usize)?;
        }
        Ok(Record::from_cold(segment, row.row as usize))
    }

    /// The record for `version` of `key` if it is live at this view's time.
    pub(crate) fn resolve_live(&self, shared: &Shared, key: &[u8], seq: u64, version: &Version) -> Result<Option<Record>> {
        if !version.is_live(self.now_ms) {
            return Ok(None);
        }
        resolve_keyed(shared, &self.table, key, seq, version).map(Some)
    }

    pub(crate) fn resolve_keyed(&self, shared: &Shared, key: &[u8], seq: u64, version: &Version) -> Result<Record> {
        resolve_keyed(shared, &self.table, key, seq, version)
    }

    /// `resolve_keyed` without a sealed record's checksum: a search's candidates, whose
    /// checksums are checked once they are hits (`vector::scan`).
    pub(crate) fn resolve_for_scoring(&self, shared: &Shared, key: &[u8], seq: u64, version: &Version) -> Result<Record> {
        resolve_keyed_with(shared, &self.table, key, seq, version, false)
    }

    /// Checks the checksum of the record at `offset` of sealed segment `segment_id`.
    pub(crate) fn check_sealed(&self, segment_id: u32, offset: u32) -> Result<()> {
        match self.table.get(segment_id) {
            Some(SegmentRef::Sealed(segment)) => segment.record_checked_once(offset).map(drop),
            _ => Ok(()),
        }
    }
}

/// How many times an unpinned `get` retries when pruning raced with it before it pins.
const GET_RETRIES_UNPINNED: usize = 8;

/// `Db::get`: the newest live version of `key`, read without a pin. The point cache first
/// (`get_cached`); on a miss the index, whose answer, when it is the key's newest version,
/// is written back to the cache (`PointCache::fill`). The visible seq, the segment table and
/// the index are published separately (a commit moves the seq after its index insert,
/// pruning and retirement change the index in place), so the index's answer is taken only
/// when those three agree; after `GET_RETRIES_UNPINNED` races it pins a view instead.
pub(crate) fn get_latest(shared: &Shared, key: &[u8]) -> Result<Option<Record>> {
    let mut seq = shared.visible_seq.load(Ordering::Acquire);
    let cache = shared.index.point_cache();
    let hash = point_cache::key_hash(key);
    // The ticket is taken before the index is read below: what that read finds may be filled.
    let (cached, ticket) = cache.get(hash);
    if let Some(at) = cached {
        if let Some(answer) = get_cached(shared, key, seq, at)? {
            return Ok(answer);
        }
    }
    for _ in 0..GET_RETRIES_UNPINNED {
        // Usually the newest version in the index is visible: one lookup decides. A key
        // with no version at all (one that lives cold, or none) costs that lookup alone.
        let newest = shared.index.newest_at(key, u64::MAX);
        let only_newer_versions = newest.is_some_and(|(newest_seq, _)| newest_seq > seq);
        let found = match newest {
            Some((newest_seq, version)) if newest_seq <= seq => Some((newest_seq, version)),
            Some(_) => {
                // A newer version exists. The version `seq` reads may have been pruned
                // since (no pin holds it once the visible seq moved on), leaving one kept
                // for an old snapshot: only trust the answer if the visible seq did not move.
                let at_seq = shared.index.newest_at(key, seq);
                let now = shared.visible_seq.load(Ordering::Acquire);
                if now != seq {
                    seq = now;
                    continue;
                }
                at_seq
            }
            None => None,
        };
        if let Some((found_seq, version)) = found {
            let table = shared.segments.load();
            if table.get(version.segment_id).is_none() {
                // Its segment was compacted and retired since the lookup: the entry is
                // gone from the index too, and the record is in the cold tier. Look again.
                continue;
            }
            if table.retired.contains(&version.segment_id) {
                // Compacted: this table's cold set supersedes the entry (`ReadView::get`).
                return get_cold(shared, &table, key, None, None);
            }
            if !only_newer_versions {
                cache.fill(hash, ticket, index::location_of(&version));
            }
            // The clock is read only for a record with a TTL.
            let now_ms = if version.expires_at_ms == 0 { 0 } else { shared.now_ms() };
            if !version.is_live(now_ms) {
                return Ok(None);
            }
            return resolve_keyed(shared, &table, key, found_seq, &version).map(Some);
        }
        if only_newer_versions {
            // Only newer versions exist: either the key is new since `seq`, or pruning
            // removed the version `seq` saw because the visible seq moved on. Re-read it.
            let now = shared.visible_seq.load(Ordering::Acquire);
            if now != seq {
                seq = now;
                continue;
            }
        }
        // No version in the index at `seq`: the cold tier of a table loaded after the
        // lookup (a retirement removes index entries only after publishing their cold set).
        let table = shared.segments.load();
        let row = table.cold.find(key);
        if let (None, Some(row)) = (newest, row) {
            // No version of any seq in the index: the cold row is the key's newest.
            cache.fill(hash, ticket, Location::Cold { segment: row.segment, row: row.row });
        }
        return cold_record(shared, &table, row, None, None);
    }
    let (_pin, view) = shared.pinned_view();
    view.get(shared, key)
}

/// `Db::get` through the index's point cache: `Some(answer)` when the cache's location `at`
/// holds a cold row of `key`, or a log record of `key` with a seq <= `seq` (the visible seq,
/// read before the cache) in a segment this table lists as live; `None` to look in the index
/// instead.
///
/// Why a hit is the answer: the record found has `key`, so the cache entry names `key`'s
/// newest version (`point_cache`'s invariant), and every insert with a seq <= `seq` was
/// written to the cache before `seq` became visible. A record of a later seq, a segment
/// retired or gone (retirement clears most such entries; a growth may copy one back), a cold
/// position a compaction has given to another segment since, or a record of another key (a
/// tag collision) is a miss.
fn get_cached(shared: &Shared, key: &[u8], seq: u64, at: Location) -> Result<Option<Option<Record>>> {
    let table = shared.segments.load();
    let (segment_id, offset) = match at {
        Location::Log { segment_id, offset } => (segment_id, offset),
        Location::Cold { segment, row } => return cold_cached(shared, &table, key, segment as usize, row as usize),
    };
    if table.retired.contains(&segment_id) {
        return Ok(None);
    }
    // Unchecked first: a collision's record is not this get's to report.
    let (backing, view) = match table.get(segment_id) {
        Some(SegmentRef::Hot(hot)) => match hot.record(offset) {
            Some((buffer, view)) => (Backing::Hot(buffer), view),
            None => return Ok(None),
        },
        Some(SegmentRef::Sealed(segment)) => match segment.record(offset, false) {
            Ok(view) => (Backing::Sealed(segment.clone()), view),
            Err(_) => return Ok(None),
        },
        None => return Ok(None),
    };
    if backing.bytes().get(view.key.clone()) != Some(key) {
        return Ok(None);
    }
    // This key's record: a sealed one's checksum is checked (once per handle) whatever
    // `verify_checksums` says, as the cache holds no kind or seq to cross-check the record
    // against, as the index's entry is (`check_identity`).
    let view = match &backing {
        Backing::Sealed(segment) => segment.record_checked_once(offset)?,
        _ => view,
    };
    if view.seq > seq || !matches!(view.kind, RecordKind::Put | RecordKind::Delete) {
        return Ok(None);
    }
    if view.kind == RecordKind::Delete || (view.expires_at_ms != 0 && view.expires_at_ms <= shared.now_ms()) {
        return Ok(Some(None));
    }
    Ok(Some(Some(Record::new(backing, &view))))
}

/// `get_cached` for a cold location: row `row` of the `segment`th cold segment of `table`,
/// if that row has `key`. A cold set holds one row per key, so that row is the one
/// `ColdSet::find` would find, and it is taken as `get_latest` takes that one: checked as
/// `get_cold` checks it, whatever its seq (compaction moves only visible versions).
fn cold_cached(shared: &Shared, table: &SegmentTable, key: &[u8], segment: usize, row: usize) -> Result<Option<Option<Record>>> {
    let Some(file) = table.cold.segments.get(segment) else { return Ok(None) };
    if row >= file.rows() || file.key(row) != key {
        return Ok(None);
    }
    let row = ColdRow { segment: segment as u32, row: row as u32 };
    cold_record(shared, table, Some(row), None, None).map(Some)
}

/// The live cold row of `key` in `table`'s cold set, if any. `at_seq`: a pinned reader
/// does not see a row newer than its seq (a compaction published after it pinned); an
/// unpinned `get` passes `None` and takes the row, which was committed before it looked.
pub(crate) fn get_cold(
    shared: &Shared,
    table: &SegmentTable,
    key: &[u8],
    at_seq: Option<u64>,
    now_ms: Option<u64>,
) -> Result<Option<Record>> {
    cold_record(shared, table, table.cold.find(key), at_seq, now_ms)
}

/// The record of cold row `row` of `table` (`get_cold`, which found it), if it is live.
fn cold_record(
    shared: &Shared,
    table: &SegmentTable,
    row: Option<ColdRow>,
    at_seq: Option<u64>,
    now_ms: Option<u64>,
) -> Result<Option<Record>> {
    let Some(row) = row else { return Ok(None) };
    let segment = table.cold.segment(row);
    let r = row.row as usize;
    if at_seq.is_some_and(|seq| segment.seq(r) > seq) {
        return Ok(None);
    }
    let expires = segment.expires_at_ms(r);
    if expires != 0 && expires <= now_ms.unwrap_or_else(|| shared.now_ms()) {
        return Ok(None);
    }
    if shared.options.verify_checksums {
        segment.check_row_once(r)?;
    }
    Ok(Some(Record::from_cold(segment, r)))
}

/// Reads the record a version of `key` points at in `table`, checking it is the record the
/// index says: same key, same seq, a put. A mismatch (a damaged hint, a bug) is corruption,
/// never served.
pub(crate) fn resolve_keyed(shared: &Shared, table: &SegmentTable, key: &[u8], seq: u64, version: &Version) -> Result<Record> {
    resolve_keyed_with(shared, table, key, seq, version, shared.options.verify_checksums)
}

/// `resolve_keyed`, checking a sealed record's checksum only with `verify_checksum`.
fn resolve_keyed_with(
    shared: &Shared,
    table: &SegmentTable,
    key: &[u8],
    seq: u64,
    version: &Version,
    verify_checksum: bool,
) -> Result<Record> {
    let offset = version.offset;
    let path_of = || shared.dir.join(crate::io::fs::segment_file_name(version.segment_id));
    let (record, view_seq, kind) = match table.get(version.segment_id) {
        Some(SegmentRef::Hot(hot)) => {
            let (buffer, view) = hot
                .record(offset)
                .ok_or_else(|| Error::corruption(path_of(), u64::from(offset), "hot record missing from the active segment's mirror"))?;
            (Record::new(Backing::Hot(buffer), &view), view.seq, view.kind)
        }
        Some(SegmentRef::Sealed(segment)) => {
            let view = if verify_checksum { segment.record_checked_once(offset)? } else { segment.record(offset, false)? };
            (Record::new(Backing::Sealed(segment.clone()), &view), view.seq, view.kind)
        }
        None => return Err(Error::corruption(path_of(), u64::from(offset), "the index points into a segment that is not open")),
    };
    check_identity(shared, version.segment_id, offset, (seq, key), (view_seq, kind, record.key()))?;
    Ok(record)
}

/// The record found at `offset` of log segment `segment_id` — its seq, kind and key — must
/// be the put the index expected (`expected`: seq and key). A mismatch (a damaged hint, a
/// bug) is corruption, never served.
fn check_identity(shared: &Shared, segment_id: u32, offset: u32, expected: (u64, &[u8]), found: (u64, RecordKind, &[u8])) -> Result<()> {
    let ((seq, key), (view_seq, kind, record_key)) = (expected, found);
    let path_of = || shared.dir.join(crate::io::fs::segment_file_name(segment_id));
    if view_seq != seq || kind != RecordKind::Put {
        let detail = format!("record at this offset is a {kind:?} of seq {view_seq}, the index expected a Put of seq {seq}");
        return Err(Error::corruption(path_of(), u64::from(offset), detail));
    }
    if record_key != key {
        return Err(Error::corruption(path_of(), u64::from(offset), "record key differs from the index entry"));
    }
    Ok(())
}

/// A consistent view frozen at the moment it was taken: later writes, seals and
/// compactions do not change what it reads. `Send + Sync`; cheap to hold.
pub struct Snapshot {
    shared: Arc<Shared>,
    pin: Arc<Pin>,
    view: ReadView,
}

impl Snapshot {
    pub(crate) fn new(shared: Arc<Shared>) -> Snapshot {
        let (pin, view) = shared.pinned_view();
        Snapshot { shared, pin, view }
    }

    /// The commit seq this snapshot reads at: it sees every commit with a seq <= this.
    pub fn seq(&self) -> u64 {
        self.view.seq
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Record>> {
        self.view.get(&self.shared, key)
    }

    pub fn iter(&self) -> Iter {
        self.iter_in(KeyRange::from_bounds(..))
    }

    pub fn range<'k>(&self, range: impl std::ops::RangeBounds<&'k [u8]>) -> Iter {
        self.iter_in(KeyRange::from_bounds(range))
    }

    pub fn prefix(&self, prefix: &[u8]) -> Iter {
        self.iter_in(KeyRange::prefix(prefix))
    }

    fn iter_in(&self, range: KeyRange) -> Iter {
        Iter::new(self.shared.clone(), self.pin.clone(), self.view.clone(), range, None)
    }

    /// The cold segments this snapshot reads (see `Db::cold_segments`).
    pub fn cold_segments(&self) -> Vec<crate::ColdSegment> {
        self.view.table.cold.segments.iter().map(|f| crate::ColdSegment::new(f.clone())).collect()
    }

    /// As `Db::nearest`, at this snapshot.
    pub fn nearest(&self, query: &[f32], k: usize) -> Result<Vec<Hit>> {
        self.search(&Search::new(query).k(k))
    }

    /// As `Db::search`, at this snapshot.
    pub fn search(&self, search: &Search<'_>) -> Result<Vec<Hit>> {
        let hits = crate::vector::scan::search(&self.shared, &self.view, &[search], self.shared.options.search_threads())?;
        Ok(hits.into_iter().next().unwrap_or_default())
    }

    /// As `Db::search_batch`, at this snapshot.
    pub fn search_batch(&self, searches: &[Search<'_>]) -> Result<Vec<Vec<Hit>>> {
        let refs: Vec<&Search<'_>> = searches.iter().collect();
        crate::vector::scan::search(&self.shared, &self.view, &refs, self.shared.options.search_threads())
    }
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").field("seq", &self.view.seq).finish_non_exhaustive()
    }
}
