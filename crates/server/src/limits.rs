//! Limits that keep one caller from taking the server: body size, time per query, and queries
//! at once per principal (anonymous callers per client address).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tverr_policy::Principal;

use crate::{Caller, Problem};

/// The server's limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The largest JSON request body, in bytes.
    pub body_bytes: usize,
    /// The largest uploaded file, in bytes.
    pub upload_bytes: u64,
    /// How long one query may run, to its last row.
    pub query_time: Duration,
    /// Queries one principal may run at the same time.
    pub queries_per_principal: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { body_bytes: 1 << 20, upload_bytes: 1 << 30, query_time: Duration::from_secs(60), queries_per_principal: 4 }
    }
}

/// Counts the queries each principal is running.
#[derive(Debug, Clone, Default)]
pub struct Gate(Arc<Mutex<HashMap<String, Arc<Semaphore>>>>);

/// The key a caller's queries are counted under.
fn key(caller: &Caller) -> String {
    match &caller.principal {
        Principal::Anonymous => format!("anonymous:{}", caller.client.map(|a| a.ip().to_string()).unwrap_or_default()),
        Principal::Operator => "operator".into(),
        Principal::User(u) => format!("user:{}", u.username),
        Principal::Citizen { pid } => format!("citizen:{pid}"),
        Principal::System { org, .. } => format!("system:{org}"),
    }
}

impl Gate {
    /// A permit to run one query, held until its result stream is dropped; a 429 problem when
    /// the caller already runs as many as allowed.
    pub fn admit(&self, caller: &Caller, limits: &Limits) -> Result<OwnedSemaphorePermit, Problem> {
        let max = limits.queries_per_principal.max(1);
        let semaphore = {
            let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if map.len() > 10_000 {
                map.retain(|_, s| s.available_permits() < max);
            }
            map.entry(key(caller)).or_insert_with(|| Arc::new(Semaphore::new(max))).clone()
        };
        semaphore.try_acquire_owned().map_err(|_| {
            Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-queries",
                "For mange samtidige spørringer / Too many queries at once",
                format!("you are already running {max} queries; wait for one to finish"),
            )
        })
    }
}
