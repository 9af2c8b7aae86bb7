//! `Batch` (many writes committed atomically) and the validation and encoding every write
//! goes through.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::io::aligned::BufferPool;
use crate::limits;
use crate::log::commit::EncodedCommit;
use crate::log::record::{self, RecordFields, RecordKind};
use crate::{Error, Result};

/// One write, borrowed from the caller or from a `Batch`.
pub(crate) struct WriteOp<'a> {
    pub(crate) key: &'a [u8],
    /// `None` = delete.
    pub(crate) put: Option<PutFields<'a>>,
}

pub(crate) struct PutFields<'a> {
    pub(crate) content: &'a [u8],
    pub(crate) embedding: Option<&'a [f32]>,
    pub(crate) ttl: Option<Expiry>,
}

/// When a put expires: a time to live counted from the commit, or a fixed time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expiry {
    After(Duration),
    /// Milliseconds since the Unix epoch; never 0.
    AtMs(u64),
}

enum OwnedOp {
    Put { key: Vec<u8>, content: Vec<u8>, embedding: Option<Vec<f32>>, ttl: Option<Expiry> },
    Delete { key: Vec<u8> },
}

/// Writes applied together by `Db::write`: all or nothing, also across a crash. Within a
/// batch, the later operation on a key wins.
#[derive(Default)]
pub struct Batch {
    ops: Vec<OwnedOp>,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a put (no TTL).
    pub fn put(&mut self, key: &[u8], content: &[u8], embedding: Option<&[f32]>) -> &mut Self {
        self.ops.push(OwnedOp::Put { key: key.to_vec(), content: content.to_vec(), embedding: embedding.map(<[f32]>::to_vec), ttl: None });
        self
    }

    /// Adds a put that expires `ttl` after the batch is written.
    pub fn put_with_ttl(&mut self, key: &[u8], content: &[u8], embedding: Option<&[f32]>, ttl: Duration) -> &mut Self {
        self.ops.push(OwnedOp::Put {
            key: key.to_vec(),
            content: content.to_vec(),
            embedding: embedding.map(<[f32]>::to_vec),
            ttl: Some(Expiry::After(ttl)),
        });
        self
    }

    /// Adds a put that expires at `expires_at_ms` (milliseconds since the Unix epoch, as
    /// [`Record::expires_at_ms`](crate::Record::expires_at_ms) reports it; 0 = never).
    /// For copying records with their expiry exactly (an import); a time already past
    /// stores a record that no read returns and compaction drops.
    pub fn put_expiring_at(&mut self, key: &[u8], content: &[u8], embedding: Option<&[f32]>, expires_at_ms: u64) -> &mut Self {
        self.ops.push(OwnedOp::Put {
            key: key.to_vec(),
            content: content.to_vec(),
            embedding: embedding.map(<[f32]>::to_vec),
            ttl: (expires_at_ms != 0).then_some(Expiry::AtMs(expires_at_ms)),
        });
        self
    }

    /// Adds a delete; deleting a missing key is fine.
    pub fn delete(&mut self, key: &[u8]) -> &mut Self {
        self.ops.push(OwnedOp::Delete { key: key.to_vec() });
        self
    }

    /// Number of operations added.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub(crate) fn ops(&self) -> impl Iterator<Item = WriteOp<'_>> {
        self.ops.iter().map(|op| match op {
            OwnedOp::Put { key, content, embedding, ttl } => {
                WriteOp { key, put: Some(PutFields { content, embedding: embedding.as_deref(), ttl: *ttl }) }
            }
            OwnedOp::Delete { key } => WriteOp { key, put: None },
        })
    }
}

/// Checks one operation against the limits and the database's dimension (0 = none).
pub(crate) fn validate(op: &WriteOp<'_>, embedding_dim: usize) -> Result<()> {
    if op.key.is_empty() {
        return Err(Error::invalid("key", "keys must not be empty"));
    }
    if op.key.len() > limits::MAX_KEY_LEN {
        return Err(Error::invalid("key", format!("{} bytes exceeds MAX_KEY_LEN = {}", op.key.len(), limits::MAX_KEY_LEN)));
    }
    let Some(put) = &op.put else { return Ok(()) };
    if put.content.len() > limits::MAX_CONTENT_LEN {
        return Err(Error::invalid(
            "content",
            format!("{} bytes exceeds MAX_CONTENT_LEN = {}", put.content.len(), limits::MAX_CONTENT_LEN),
        ));
    }
    if let Some(embedding) = put.embedding {
        if embedding_dim == 0 {
            return Err(Error::invalid("embedding", "this database was created without an embedding dimension"));
        }
        if embedding.len() != embedding_dim {
            return Err(Error::invalid(
                "embedding",
                format!("dimension {} does not match the database's {embedding_dim}", embedding.len()),
            ));
        }
        // A branch-free pass (it vectorises); the position is looked up only on failure.
        if !embedding.iter().fold(true, |all, v| all & v.is_finite()) {
            let i = embedding.iter().position(|v| !v.is_finite()).unwrap_or(0);
            return Err(Error::invalid("embedding", format!("value {} at index {i} is not finite", embedding[i])));
        }
    }
    Ok(())
}

/// Encodes validated operations into one commit. Earlier operations on a key that a later
/// one overwrites are dropped (later wins). `now_ms` turns TTLs into expiry times.
pub(crate) fn encode(ops: &[WriteOp<'_>], embedding_dim: usize, now_ms: u64, buffers: &Arc<BufferPool>) -> Result<EncodedCommit> {
    let mut superseded = vec![false; ops.len()];
    if ops.len() > 1 {
        let mut seen: HashSet<&[u8]> = HashSet::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate().rev() {
            superseded[i] = !seen.insert(op.key);
        }
    }
    let size: usize = ops
        .iter()
        .map(|op| {
            let (content, dim) = op.put.as_ref().map_or((0, 0), |p| (p.content.len(), p.embedding.map_or(0, |_| embedding_dim)));
            record::encoded_len(op.key.len(), dim, content)
        })
        .sum();
    if size > limits::MAX_COMMIT_BYTES {
        return Err(Error::invalid("batch", format!("{size} encoded bytes exceeds MAX_COMMIT_BYTES = {}", limits::MAX_COMMIT_BYTES)));
    }
    let mut buffer = buffers.buffer(size);
    let mut records = Vec::with_capacity(ops.len());
    let mut logical_bytes = 0u64;
    for (op, _) in ops.iter().zip(&superseded).filter(|(_, &s)| !s) {
        let fields = match &op.put {
            Some(put) => RecordFields {
                kind: RecordKind::Put,
                key: op.key,
                content: put.content,
                embedding: put.embedding,
                expires_at_ms: match put.ttl {
                    None => 0,
                    Some(Expiry::After(ttl)) => expiry(now_ms, ttl),
                    Some(Expiry::AtMs(at)) => at,
                },
            },
            None => RecordFields { kind: RecordKind::Delete, key: op.key, content: &[], embedding: None, expires_at_ms: 0 },
        };
        let (view, body) = record::append(&mut buffer, &fields);
        logical_bytes += view.logical_bytes() as u64;
        records.push((view, body));
    }
    debug_assert_eq!(buffer.len(), records.iter().map(|(v, _)| v.len).sum::<usize>());
    Ok(EncodedCommit { buffer, records, logical_bytes })
}

/// Expiry time of a record written at `now_ms` with `ttl`; never 0 (0 means "no TTL").
fn expiry(now_ms: u64, ttl: Duration) -> u64 {
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    now_ms.saturating_add(ttl_ms).max(1)
}
