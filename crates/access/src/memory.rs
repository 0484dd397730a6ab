//! Memory limits: every query runs under a pool of its own ([`QueryPool`]) that also draws on
//! one pool for the whole server, so one query cannot take more than its share and all queries
//! together cannot take the machine. A query past either limit fails with "the query needs
//! more memory than it may use" (a 400-class problem), never an abort.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::common::{Result as DfResult, resources_datafusion_err};
use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation};

/// The memory one query may use by default (1 GiB).
pub const DEFAULT_QUERY_MEMORY: usize = 1 << 30;
/// The memory all queries together may use by default (4 GiB).
pub const DEFAULT_SERVER_MEMORY: usize = 4 << 30;

/// The limits: per query, and one pool shared by every query of the engine.
#[derive(Debug, Clone)]
pub(crate) struct MemoryLimits {
    per_query: usize,
    server: Arc<dyn MemoryPool>,
}

impl MemoryLimits {
    pub(crate) fn new(per_query: usize, server: usize) -> Self {
        Self { per_query, server: Arc::new(GreedyMemoryPool::new(server)) }
    }

    /// A pool for one query.
    pub(crate) fn query_pool(&self) -> Arc<dyn MemoryPool> {
        Arc::new(QueryPool { server: self.server.clone(), limit: self.per_query, used: AtomicUsize::new(0) })
    }
}

impl Default for MemoryLimits {
    fn default() -> Self {
        Self::new(DEFAULT_QUERY_MEMORY, DEFAULT_SERVER_MEMORY)
    }
}

/// One query's pool: at most `limit` bytes, each also reserved in the server's pool.
#[derive(Debug)]
struct QueryPool {
    server: Arc<dyn MemoryPool>,
    limit: usize,
    used: AtomicUsize,
}

impl std::fmt::Display for QueryPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "query pool: {} of {} bytes reserved", self.used.load(Ordering::Relaxed), self.limit)
    }
}

impl MemoryPool for QueryPool {
    fn name(&self) -> &str {
        "tverr-access"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.server.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.server.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.used.fetch_add(additional, Ordering::Relaxed);
        self.server.grow(reservation, additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.used.fetch_sub(shrink, Ordering::Relaxed);
        self.server.shrink(reservation, shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> DfResult<()> {
        let before = self.used.fetch_add(additional, Ordering::Relaxed);
        if before.saturating_add(additional) > self.limit {
            self.used.fetch_sub(additional, Ordering::Relaxed);
            return Err(resources_datafusion_err!("the query needs more memory than the {} MiB one query may use", self.limit >> 20));
        }
        if let Err(e) = self.server.try_grow(reservation, additional) {
            self.used.fetch_sub(additional, Ordering::Relaxed);
            return Err(e);
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_stops_at_its_own_limit_and_all_queries_at_the_servers() {
        let limits = MemoryLimits::new(100, 150);
        let (a, b) = (limits.query_pool(), limits.query_pool());
        let ra = MemoryConsumer::new("a").register(&a);
        let rb = MemoryConsumer::new("b").register(&b);
        ra.try_grow(100).expect("within the query's limit");
        assert!(ra.try_grow(1).is_err(), "past the query's limit");
        assert!(rb.try_grow(60).is_err(), "past the server's limit");
        rb.try_grow(50).expect("what the server has left");
        ra.shrink(100);
        rb.try_grow(50).expect("freed by the other query");
        assert_eq!(a.reserved(), 0);
        assert_eq!(b.reserved(), 100);
    }
}
