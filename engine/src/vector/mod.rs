//! Exact vector search over every tier of one consistent view: `kernels` (the inner
//! loops), `topk` (bounded best-k selection with deterministic ties), `scan` (which rows
//! are candidates, scored how, on how many threads).

pub(crate) mod kernels;
pub(crate) mod scan;
pub(crate) mod topk;
