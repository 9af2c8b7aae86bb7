//! Exact vector search over every tier of one consistent view: `kernels` (the inner
//! loops), `topk` (bounded best-k selection with deterministic ties), `scan` (which rows
//! are candidates, scored how, on how many threads), `log_rows` (hot and warm rows read in
//! file order, and the index's word on which of them a view reads).

pub(crate) mod kernels;
pub(crate) mod log_rows;
pub(crate) mod scan;
pub(crate) mod topk;
