//! Limits that keep one caller from taking the server: body size, time per query, and queries
//! at once per principal (anonymous callers per client address).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tverr_policy::Principal;

use crate::{Caller, Problem, ProblemKind};

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
    /// Connections one client (an IPv4 address or an IPv6 /64) may hold open at the same time;
    /// more are closed as they are accepted (a client that opens connections and never finishes
    /// a request cannot take every file descriptor).
    pub connections_per_client: usize,
    /// Connections the server holds open at the same time, from all clients.
    pub connections: usize,
    /// How long the server waits for a request head (counted from the connection's start or the
    /// previous response), and for each part of a request body, before it closes the connection.
    pub client_time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            body_bytes: 1 << 20,
            upload_bytes: 1 << 30,
            query_time: Duration::from_secs(60),
            queries_per_principal: 4,
            connections_per_client: 1024,
            connections: 8192,
            client_time: Duration::from_secs(20),
        }
    }
}

/// Counts the queries each principal is running.
#[derive(Debug, Clone, Default)]
pub struct Gate(Arc<Mutex<HashMap<String, Arc<Semaphore>>>>);

/// The key a caller's queries are counted under.
fn key(caller: &Caller) -> String {
    match &caller.principal {
        Principal::Anonymous => format!("anonymous:{}", caller.client.map(|a| client_of(a.ip()).to_string()).unwrap_or_default()),
        Principal::Operator(_) => "operator".into(),
        Principal::User(u) => format!("user:{}", u.username),
        Principal::Citizen(c) => format!("citizen:{}", c.pid()),
        Principal::System(s) => format!("system:{}", s.org()),
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
            Problem::new(ProblemKind::TooManyQueries, format!("you are already running {max} queries; wait for one to finish"))
        })
    }
}

/// Failed log-ins allowed per user name within [`LOGIN_WINDOW`].
pub const LOGIN_FAILURES_PER_USER: u32 = 5;
/// Failed log-ins allowed per client address within [`LOGIN_WINDOW`].
pub const LOGIN_FAILURES_PER_CLIENT: u32 = 20;
/// The window log-in failures are counted in.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(300);

/// Counts log-in attempts per user name and per client address, in the catalogue (so every
/// node counts the same attempts); past the limit, further attempts are refused without checking
/// the password until the window has passed.
///
/// An attempt is counted when it starts, in the same statement as the check, so concurrent
/// attempts on any nodes cannot all pass the check before any of them is counted; a successful
/// one is taken back.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoginThrottle;

impl LoginThrottle {
    fn user_key(username: &str) -> String {
        format!("user:{}", username.trim().to_lowercase())
    }

    fn client_key(client: Option<std::net::SocketAddr>) -> String {
        format!("client:{}", client.map(|a| client_of(a.ip()).to_string()).unwrap_or_default())
    }

    /// Counts an attempt for this user name and client: `Err(seconds to wait)` when either has
    /// used its attempts lately (the password is then not checked), or a 503 problem when the
    /// catalogue does not answer (no password is checked uncounted).
    pub async fn attempt(
        &self,
        policy: &tverr_policy::Policy,
        username: &str,
        client: Option<std::net::SocketAddr>,
    ) -> Result<(), Refused> {
        let (user, client) = (Self::user_key(username), Self::client_key(client));
        let keys = [(user.as_str(), LOGIN_FAILURES_PER_USER), (client.as_str(), LOGIN_FAILURES_PER_CLIENT)];
        match policy.count_login_attempt(&keys, LOGIN_WINDOW).await {
            Ok(None) => Ok(()),
            Ok(Some(wait)) => Err(Refused::Throttled(wait)),
            Err(e) => Err(Refused::Unavailable(Problem::from_policy(e))),
        }
    }

    /// A successful log-in clears the user name's count and takes its attempt back from the
    /// client's.
    pub async fn succeeded(&self, policy: &tverr_policy::Policy, username: &str, client: Option<std::net::SocketAddr>) {
        if let Err(e) = policy.login_attempt_succeeded(&Self::user_key(username), &Self::client_key(client)).await {
            tracing::warn!(error = %e, "a successful log-in could not clear its failed attempts");
        }
    }
}

/// Why a log-in attempt is not let through to the password check.
#[derive(Debug)]
pub enum Refused {
    /// Too many attempts: the seconds to wait.
    Throttled(u64),
    /// The count could not be kept.
    Unavailable(Problem),
}

impl Refused {
    /// The API's problem: 429 with the wait, or the catalogue's.
    pub fn problem(self) -> Problem {
        match self {
            Refused::Throttled(wait) => login_throttled(wait),
            Refused::Unavailable(p) => p,
        }
    }
}

/// The 429 problem of a throttled log-in.
pub fn login_throttled(wait: u64) -> Problem {
    Problem::new(ProblemKind::TooManyLogins, format!("too many failed log-ins for this user name or address; try again in {wait} s"))
}

/// The address a client is counted under: an IPv4 address, or the /64 prefix of an IPv6 one
/// (one household or host is usually given a whole /64, so its addresses are one client). An
/// IPv4 address mapped into IPv6 is counted as IPv4.
pub fn client_of(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V4(_) => ip,
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => std::net::IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                std::net::IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Counts open connections, per client (see [`client_of`]) and in all, and admits a new one
/// within both limits. When the server holds as many as it may, a new connection takes the
/// place of the one that has waited longest for its next request (idle, or still sending a
/// request head): many slow clients cannot keep a quick one out.
#[derive(Debug)]
pub(crate) struct Admission {
    per_client: usize,
    total: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    /// Connections asked to close to make room, not yet closed.
    evicting: usize,
    by_client: HashMap<std::net::IpAddr, usize>,
    next: u64,
    connections: HashMap<u64, Arc<Activity>>,
}

/// What the server knows of one connection's requests.
#[derive(Debug)]
pub(crate) struct Activity {
    /// Requests being answered (their responses not yet sent in full).
    busy: std::sync::atomic::AtomicUsize,
    /// Since when no request has been answered.
    idle_since: Mutex<std::time::Instant>,
    /// Set when the connection must close to make room for another.
    evicted: std::sync::atomic::AtomicBool,
    /// Wakes the connection's task to close.
    pub(crate) close: tokio::sync::Notify,
}

impl Activity {
    /// Whether a request is being answered.
    pub(crate) fn is_busy(&self) -> bool {
        self.busy.load(std::sync::atomic::Ordering::SeqCst) > 0
    }

    /// Marks a request as being answered until the returned guard is dropped.
    pub(crate) fn begin(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Busy(self.clone())
    }
}

/// A request being answered; dropped when its response has been sent (or abandoned).
#[derive(Debug)]
pub(crate) struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.idle_since.lock().unwrap_or_else(|p| p.into_inner()) = std::time::Instant::now();
        self.0.busy.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Admission {
    pub(crate) fn new(per_client: usize, total: usize) -> Arc<Self> {
        Arc::new(Self { per_client: per_client.max(1), total: total.max(1), open: Mutex::default() })
    }

    /// A ticket for one more connection from `ip`, or `None` when the client holds as many
    /// connections as it may, or the server does and every one of them is answering a request
    /// (the connection is then closed at once).
    pub(crate) fn admit(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<Ticket> {
        let client = client_of(ip);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.by_client.get(&client).copied().unwrap_or(0) >= self.per_client {
            return None;
        }
        if open.total - open.evicting >= self.total {
            let victim = open
                .connections
                .values()
                .filter(|a| a.busy.load(std::sync::atomic::Ordering::SeqCst) == 0 && !a.evicted.load(std::sync::atomic::Ordering::SeqCst))
                .min_by_key(|a| *a.idle_since.lock().unwrap_or_else(|p| p.into_inner()))
                .cloned()?;
            victim.evicted.store(true, std::sync::atomic::Ordering::SeqCst);
            victim.close.notify_one();
            open.evicting += 1;
        }
        *open.by_client.entry(client).or_default() += 1;
        open.total += 1;
        open.next += 1;
        let id = open.next;
        let activity = Arc::new(Activity {
            busy: std::sync::atomic::AtomicUsize::new(0),
            idle_since: Mutex::new(std::time::Instant::now()),
            evicted: std::sync::atomic::AtomicBool::new(false),
            close: tokio::sync::Notify::new(),
        });
        open.connections.insert(id, activity.clone());
        Some(Ticket { admission: self.clone(), client, id, activity })
    }
}

/// One admitted connection, counted until it is dropped.
#[derive(Debug)]
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    client: std::net::IpAddr,
    id: u64,
    activity: Arc<Activity>,
}

impl Ticket {
    /// The connection's activity, which its requests mark and its task watches.
    pub(crate) fn activity(&self) -> Arc<Activity> {
        self.activity.clone()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut open = self.admission.open.lock().unwrap_or_else(|p| p.into_inner());
        open.total = open.total.saturating_sub(1);
        if self.activity.evicted.load(std::sync::atomic::Ordering::SeqCst) {
            open.evicting = open.evicting.saturating_sub(1);
        }
        open.connections.remove(&self.id);
        if let Some(held) = open.by_client.get_mut(&self.client) {
            *held -= 1;
            if *held == 0 {
                open.by_client.remove(&self.client);
            }
        }
    }
}

/// A response body that keeps its request marked as being answered until it is sent in full
/// or dropped.
pub(crate) struct Answering {
    inner: axum::body::Body,
    _busy: Busy,
}

impl Answering {
    pub(crate) fn new(inner: axum::body::Body, busy: Busy) -> Self {
        Self { inner, _busy: busy }
    }
}

impl http_body::Body for Answering {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The slowest a request body may arrive on average, once the first [`Limits::client_time`] has
/// passed: a client that sends one byte every few seconds cannot hold a connection for days.
pub const MIN_BODY_BYTES_PER_SECOND: u64 = 8 * 1024;

/// The error of a request body whose client sent it too slowly.
#[derive(Debug, thiserror::Error)]
#[error("the client sent the request body too slowly (nothing for {0} s, or less than {MIN_BODY_BYTES_PER_SECOND} bytes a second)")]
pub(crate) struct SlowClient(u64);

/// A request body that fails when its client sends nothing for `limit`, or sends it slower than
/// [`MIN_BODY_BYTES_PER_SECOND`] on average after the first `limit` (both counted from the
/// handler's first read).
pub(crate) struct Patient {
    inner: hyper::body::Incoming,
    limit: Duration,
    /// When the handler first read, and the bytes received since.
    started: Option<(tokio::time::Instant, u64)>,
    /// When the last part arrived.
    last: tokio::time::Instant,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl Patient {
    pub(crate) fn new(inner: hyper::body::Incoming, limit: Duration) -> Self {
        let now = tokio::time::Instant::now();
        Self { inner, limit, started: None, last: now, deadline: Box::pin(tokio::time::sleep_until(now + limit)) }
    }

    /// The earlier of the silence and the rate deadlines.
    fn next_deadline(&self) -> tokio::time::Instant {
        let (start, received) = self.started.unwrap_or((self.last, 0));
        let owed = Duration::from_secs_f64(received as f64 / MIN_BODY_BYTES_PER_SECOND as f64);
        (self.last + self.limit).min(start + self.limit + owed)
    }
}

impl http_body::Body for Patient {
    type Data = axum::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::future::Future;
        use std::task::Poll;
        let this = &mut *self;
        if this.started.is_none() {
            let now = tokio::time::Instant::now();
            this.started = Some((now, 0));
            this.last = now;
            let at = this.next_deadline();
            this.deadline.as_mut().reset(at);
        }
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if let (Some(Ok(f)), Some((_, received))) = (&frame, this.started.as_mut()) {
                    *received += f.data_ref().map_or(0, |d| d.len() as u64);
                }
                this.last = tokio::time::Instant::now();
                let at = this.next_deadline();
                this.deadline.as_mut().reset(at);
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(SlowClient(this.limit.as_secs()).into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A connection whose writes fail once the client has taken nothing for `limit`: a client that
/// stops reading a response cannot keep its connection, and the query behind the response,
/// for longer than that.
pub(crate) struct Stalling {
    io: tokio::net::TcpStream,
    limit: Duration,
    /// Since when writes have waited on the client, if they do.
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl Stalling {
    pub(crate) fn new(io: tokio::net::TcpStream, limit: Duration) -> Self {
        Self { io, limit, stalled: None }
    }

    /// Passes a write's outcome on; a write that has waited `limit` fails instead.
    fn watch<T>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        polled: std::task::Poll<std::io::Result<T>>,
    ) -> std::task::Poll<std::io::Result<T>> {
        use std::future::Future;
        use std::task::Poll;
        match polled {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let limit = self.limit;
                let timer = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err({
                        // Reset rather than close: the kernel would otherwise keep the unsent
                        // answer (megabytes) for a client that takes nothing.
                        let _ = self.io.set_zero_linger();
                        std::io::Error::new(std::io::ErrorKind::TimedOut, format!("the client took no data for {} s", limit.as_secs()))
                    })),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl tokio::io::AsyncRead for Stalling {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Stalling {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.io).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        let polled = std::pin::Pin::new(&mut self.io).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        let polled = std::pin::Pin::new(&mut self.io).poll_shutdown(cx);
        self.watch(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_addresses_of_one_ipv6_64_are_one_client() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("address");
        assert_eq!(client_of(ip("2001:db8:1:2::1")), client_of(ip("2001:db8:1:2:ffff:1:2:3")));
        assert_ne!(client_of(ip("2001:db8:1:2::1")), client_of(ip("2001:db8:1:3::1")));
        assert_eq!(client_of(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
        assert_ne!(client_of(ip("10.0.0.1")), client_of(ip("10.0.0.2")));
    }

    #[test]
    fn connections_are_admitted_within_the_client_and_the_server_limit() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("address");
        let admission = Admission::new(3, 5);
        // Many addresses of one /64 are one client.
        let mut held: Vec<Ticket> = (1..=3).map(|i| admission.admit(ip(&format!("2001:db8::{i}"))).expect("admitted")).collect();
        assert!(admission.admit(ip("2001:db8::ffff")).is_none(), "a fourth from the same /64");
        held.push(admission.admit(ip("10.0.0.1")).expect("another client"));
        held.push(admission.admit(ip("10.0.0.2")).expect("another client"));
        // Full, and every connection answering a request: the next is turned away.
        let mut busy: Vec<Busy> = held.iter().map(|t| t.activity().begin()).collect();
        assert!(admission.admit(ip("10.0.0.3")).is_none(), "the server holds as many as it may");
        // Full, but one connection waits for its next request: it makes room.
        drop(busy.remove(1));
        let newcomer = admission.admit(ip("10.0.0.3")).expect("room made");
        assert!(held[1].activity().evicted.load(std::sync::atomic::Ordering::SeqCst), "the waiting one is asked to close");
        assert!(!held[0].activity().evicted.load(std::sync::atomic::Ordering::SeqCst), "a busy one is not");
        busy.push(newcomer.activity().begin());
        assert!(admission.admit(ip("10.0.0.4")).is_none(), "no more room until another waits");
        drop(busy);
        drop(newcomer);
        held.truncate(1);
        assert!(admission.admit(ip("2001:db8::9")).is_some(), "a closed connection frees its place");
        drop(held);
        let open = admission.open.lock().expect("lock");
        assert!(
            open.by_client.is_empty() && open.connections.is_empty() && open.total == 0 && open.evicting == 0,
            "nothing is counted once all are closed"
        );
    }
}
