//! Vector search requests and results. The search itself: `vector/`.

use crate::{Metric, Record};

/// One search request: built with chained setters from [`Search::new`].
pub struct Search<'a> {
    pub(crate) query: &'a [f32],
    pub(crate) k: usize,
    pub(crate) metric: Option<Metric>,
    pub(crate) min_score: Option<f32>,
    pub(crate) prefix: Option<Vec<u8>>,
    #[allow(clippy::type_complexity)]
    pub(crate) filter: Option<Box<dyn Fn(&Record) -> bool + Send + Sync + 'a>>,
}

impl<'a> Search<'a> {
    /// A search for the records closest to `query`; `k` defaults to 10.
    pub fn new(query: &'a [f32]) -> Self {
        Search { query, k: 10, metric: None, min_score: None, prefix: None, filter: None }
    }
    /// Number of hits to return.
    pub fn k(mut self, k: usize) -> Self {
        self.k = k;
        self
    }
    /// Metric for this search (default: the database's).
    pub fn metric(mut self, metric: Metric) -> Self {
        self.metric = Some(metric);
        self
    }
    /// Keep only hits at least this close (>= for Cosine/Dot, <= for L2).
    pub fn min_score(mut self, min_score: f32) -> Self {
        self.min_score = Some(min_score);
        self
    }
    /// Search only keys starting with `prefix`.
    pub fn prefix(mut self, prefix: &[u8]) -> Self {
        self.prefix = Some(prefix.to_vec());
        self
    }
    /// Keep only records for which `filter` returns true.
    pub fn filter(mut self, filter: impl Fn(&Record) -> bool + Send + Sync + 'a) -> Self {
        self.filter = Some(Box::new(filter));
        self
    }
}

/// One search result: the key and its score (see [`Metric`] for what a score means).
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    pub key: Vec<u8>,
    pub score: f32,
}
