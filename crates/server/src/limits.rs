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
    /// Connections one client address may hold open at the same time; more are closed as they
    /// are accepted (a client that opens connections and never finishes a request cannot take
    /// every file descriptor).
    pub connections_per_client: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            body_bytes: 1 << 20,
            upload_bytes: 1 << 30,
            query_time: Duration::from_secs(60),
            queries_per_principal: 4,
            connections_per_client: 1024,
        }
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

/// Failed log-ins allowed per user name within [`LOGIN_WINDOW`].
pub const LOGIN_FAILURES_PER_USER: u32 = 5;
/// Failed log-ins allowed per client address within [`LOGIN_WINDOW`].
pub const LOGIN_FAILURES_PER_CLIENT: u32 = 20;
/// The window log-in failures are counted in.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(300);

/// Counts log-in attempts per user name and per client address; past the limit, further
/// attempts are refused without checking the password until the window has passed.
///
/// An attempt is counted when it starts, in the same lock as the check, so concurrent attempts
/// cannot all pass the check before any of them is counted; a successful one is taken back.
#[derive(Debug, Clone, Default)]
pub struct LoginThrottle(Arc<Mutex<HashMap<String, (std::time::Instant, u32)>>>);

impl LoginThrottle {
    fn user_key(username: &str) -> String {
        format!("user:{}", username.trim().to_lowercase())
    }

    fn client_key(client: Option<std::net::SocketAddr>) -> String {
        format!("client:{}", client.map(|a| a.ip().to_string()).unwrap_or_default())
    }

    /// Counts an attempt for this user name and client, or `Err(seconds to wait)` when either
    /// has used its attempts lately (then nothing is counted and the password is not checked).
    pub fn attempt(&self, username: &str, client: Option<std::net::SocketAddr>) -> Result<(), u64> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            map.retain(|_, (since, _)| since.elapsed() < LOGIN_WINDOW);
        }
        let keys = [(Self::user_key(username), LOGIN_FAILURES_PER_USER), (Self::client_key(client), LOGIN_FAILURES_PER_CLIENT)];
        for (key, max) in &keys {
            if let Some((since, n)) = map.get(key) {
                let age = since.elapsed();
                if age < LOGIN_WINDOW && n >= max {
                    return Err((LOGIN_WINDOW - age).as_secs().max(1));
                }
            }
        }
        for (key, _) in keys {
            let entry = map.entry(key).or_insert((std::time::Instant::now(), 0));
            if entry.0.elapsed() >= LOGIN_WINDOW {
                *entry = (std::time::Instant::now(), 0);
            }
            entry.1 += 1;
        }
        Ok(())
    }

    /// A successful log-in clears the user name's count and takes its attempt back from the
    /// client's.
    pub fn succeeded(&self, username: &str, client: Option<std::net::SocketAddr>) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&Self::user_key(username));
        if let Some((_, n)) = map.get_mut(&Self::client_key(client)) {
            *n = n.saturating_sub(1);
        }
    }
}

/// The 429 problem of a throttled log-in.
pub fn login_throttled(wait: u64) -> Problem {
    Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too-many-logins",
        "For mange innloggingsforsøk / Too many log-in attempts",
        format!("too many failed log-ins for this user name or address; try again in {wait} s"),
    )
}

/// A listener that lets each client address hold at most `per_client` connections at once.
pub(crate) struct Capped {
    inner: tokio::net::TcpListener,
    per_client: usize,
    open: Arc<Mutex<HashMap<std::net::IpAddr, usize>>>,
}

impl Capped {
    pub(crate) fn new(inner: tokio::net::TcpListener, per_client: usize) -> Self {
        Self { inner, per_client: per_client.max(1), open: Arc::default() }
    }
}

impl axum::serve::Listener for Capped {
    type Io = Counted;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (io, addr) = axum::serve::Listener::accept(&mut self.inner).await;
            let ip = addr.ip();
            {
                let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
                let held = open.entry(ip).or_default();
                if *held >= self.per_client {
                    // Closed at once: the client has as many connections as it may hold.
                    drop(io);
                    continue;
                }
                *held += 1;
            }
            // Without TCP_NODELAY a small response written in several chunks (head, rows,
            // tail) waits for the client's delayed ACK: about 40 ms per request on Linux.
            if let Err(e) = io.set_nodelay(true) {
                tracing::warn!(error = %e, "cannot set TCP_NODELAY");
            }
            return (Counted { io, ip, open: self.open.clone() }, addr);
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection counted against its client address until it is dropped.
pub(crate) struct Counted {
    io: tokio::net::TcpStream,
    ip: std::net::IpAddr,
    open: Arc<Mutex<HashMap<std::net::IpAddr, usize>>>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(held) = open.get_mut(&self.ip) {
            *held -= 1;
            if *held == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

impl tokio::io::AsyncRead for Counted {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Counted {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_name_is_locked_after_its_failures_and_a_success_unlocks_it() {
        let t = LoginThrottle::default();
        let a: std::net::SocketAddr = "10.0.0.1:1".parse().expect("addr");
        for _ in 0..LOGIN_FAILURES_PER_USER {
            assert!(t.attempt("Ola", Some(a)).is_ok());
        }
        assert!(t.attempt("ola", Some(a)).is_err(), "locked after the limit, whatever the case");
        let b: std::net::SocketAddr = "10.0.0.2:1".parse().expect("addr");
        assert!(t.attempt("ola", Some(b)).is_err(), "the user name stays locked from another address");
        assert!(t.attempt("kari", Some(b)).is_ok(), "another user from another address is not");
        t.succeeded("ola", Some(a));
        assert!(t.attempt("ola", Some(b)).is_ok());
    }

    #[test]
    fn one_client_trying_many_user_names_is_locked_too() {
        let t = LoginThrottle::default();
        let a: std::net::SocketAddr = "10.0.0.1:1".parse().expect("addr");
        for i in 0..LOGIN_FAILURES_PER_CLIENT {
            assert!(t.attempt(&format!("u{i}"), Some(a)).is_ok());
        }
        assert!(t.attempt("fresh", Some(a)).is_err());
    }

    #[test]
    fn concurrent_attempts_get_no_more_checks_than_the_limit() {
        let t = LoginThrottle::default();
        let passed = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|s| {
            for i in 0..60u8 {
                let (t, passed) = (&t, &passed);
                s.spawn(move || {
                    let client: std::net::SocketAddr = format!("10.0.1.{i}:1").parse().expect("addr");
                    if t.attempt("ola", Some(client)).is_ok() {
                        passed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(passed.into_inner(), LOGIN_FAILURES_PER_USER, "only the limit's worth of password checks, from any addresses");
    }

    #[test]
    fn successful_log_ins_do_not_lock_an_office_address() {
        let t = LoginThrottle::default();
        let office: std::net::SocketAddr = "10.0.0.9:1".parse().expect("addr");
        for i in 0..(LOGIN_FAILURES_PER_CLIENT * 2) {
            let user = format!("u{i}");
            assert!(t.attempt(&user, Some(office)).is_ok(), "attempt {i}");
            t.succeeded(&user, Some(office));
        }
    }
}
