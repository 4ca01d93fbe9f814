//! Client connections and their limits ([`ConnectionLimits`]): what keeps slow, idle
//! or too many clients from holding a listener.
//!
//! Every connection is in one of three phases, each with its own deadline:
//! - **head**: from accept, or from the first byte after an idle spell, until the request's
//!   headers are read: `header_read_timeout` (a slowloris client is closed then);
//! - **busy**: a request is being served: `stall_timeout` once the client stops reading the
//!   response or stops sending a request body that is being read (waiting for the upstream is
//!   not a stall: routes have their own timeouts);
//! - **idle**: keep-alive, between requests: `idle_timeout`.
//!
//! At most `max_connections` are open (lowered to fit the descriptor limit). A connection over
//! the cap makes room by closing the oldest connection that is not busy, so new clients —
//! `/healthz` probes among them — are served even while slow clients pile up; when every
//! connection is busy, up to [`PROBE_RESERVE`] more are admitted for the probes only (anything
//! else there, and any newcomer beyond, gets a 503 JSON answer and is closed). After
//! `max_requests_per_connection` requests a response carries `Connection: close`.

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use http::header::{CONNECTION, HeaderValue};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::PeerAddr;

/// The limits every client connection of a listener obeys (the gateway reads them from
/// `[gateway.connections]`; other servers use the defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A request's headers must arrive within this (slowloris protection). Default 10 s.
    pub header_read_timeout: Duration,
    /// A keep-alive connection with no request in progress is closed after this. Default 30 s.
    pub idle_timeout: Duration,
    /// A connection serving a request is closed when its client stops reading the response, or
    /// stops sending the request body the upstream is waiting for, for this long. Default 30 s.
    pub stall_timeout: Duration,
    /// Concurrent connections at most (lowered to fit the file-descriptor limit). Default 4096.
    pub max_connections: usize,
    /// Requests served on one connection before it is closed (`Connection: close`). Default
    /// 10 000.
    pub max_requests_per_connection: u64,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            stall_timeout: Duration::from_secs(30),
            max_connections: 4096,
            max_requests_per_connection: 10_000,
        }
    }
}

/// Connections admitted beyond the cap, for `/healthz` and `/readyz` only.
pub const PROBE_RESERVE: usize = 16;

/// The paths a connection of the probe reserve may ask for.
const PROBE_PATHS: [&str; 2] = ["/healthz", "/readyz"];

/// Descriptors kept free for everything but client connections (upstream connections, the
/// database, files), as a share of the limit.
const DESCRIPTOR_RESERVE: u64 = 64;

/// `max_connections`, lowered so client connections and an upstream connection for each fit
/// the process's open-file limit with some left over.
pub fn effective_max_connections(configured: usize) -> usize {
    let Some(limit) = open_file_limit() else {
        return configured;
    };
    let fit = limit.saturating_sub(DESCRIPTOR_RESERVE) / 2;
    let fit = usize::try_from(fit.max(8)).unwrap_or(usize::MAX);
    if fit < configured {
        tracing::info!(
            configured,
            lowered_to = fit,
            open_file_limit = limit,
            "max_connections lowered to fit the open-file limit"
        );
    }
    configured.min(fit)
}

fn open_file_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// An accepted client stream.
pub enum AcceptedStream {
    Tcp(TcpStream, SocketAddr),
    Unix(UnixStream),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Head,
    Busy,
    Idle,
}

/// One open connection's shared state.
#[derive(Debug)]
pub struct Connection {
    id: u64,
    state: Mutex<PhaseState>,
    requests: AtomicU64,
    evicted: AtomicBool,
    changed: Notify,
    /// Admitted beyond the cap: serves the probes only.
    probes_only: bool,
}

#[derive(Debug)]
struct PhaseState {
    phase: Phase,
    since: Instant,
    in_flight: usize,
    /// Busy, and the client has stopped reading the response or sending the body since then.
    stalled_since: Option<Instant>,
}

impl Connection {
    fn state(&self) -> std::sync::MutexGuard<'_, PhaseState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// When this connection is closed unless something happens first.
    fn deadline(&self, limits: &ConnectionLimits) -> Option<Instant> {
        let s = self.state();
        match s.phase {
            Phase::Head => Some(s.since + limits.header_read_timeout),
            Phase::Idle => Some(s.since + limits.idle_timeout),
            Phase::Busy => s.stalled_since.map(|t| t + limits.stall_timeout),
        }
    }

    /// The client cannot take more of the response, or has not sent more of the body.
    fn stalled(&self) {
        let mut s = self.state();
        if s.phase == Phase::Busy && s.stalled_since.is_none() {
            s.stalled_since = Some(Instant::now());
            drop(s);
            self.changed.notify_one();
        }
    }

    /// Bytes moved: not stalled.
    fn progressed(&self) {
        let mut s = self.state();
        if s.stalled_since.is_some() {
            s.stalled_since = None;
            drop(s);
            self.changed.notify_one();
        }
    }

    /// Bytes arrived: an idle connection starts reading a request head.
    fn bytes_read(&self) {
        let mut s = self.state();
        if s.phase == Phase::Idle {
            s.phase = Phase::Head;
            s.since = Instant::now();
            drop(s);
            self.changed.notify_one();
        }
    }

    fn request_started(&self) -> u64 {
        let mut s = self.state();
        s.phase = Phase::Busy;
        s.in_flight += 1;
        s.stalled_since = None;
        self.requests.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn request_finished(&self) {
        let mut s = self.state();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 {
            s.phase = Phase::Idle;
            s.since = Instant::now();
            s.stalled_since = None;
            drop(s);
            self.changed.notify_one();
        }
    }
}

/// The open connections of one listener.
#[derive(Debug)]
pub struct ConnectionRegistry {
    max: usize,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Connection>>>,
}

/// How many open connections are regular and how many serve the probes only.
fn counts(open: &HashMap<u64, Arc<Connection>>) -> (usize, usize) {
    let probes = open.values().filter(|c| c.probes_only).count();
    (open.len() - probes, probes)
}

impl ConnectionRegistry {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        })
    }

    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Connection>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new connection, making room by evicting the oldest one that is not busy;
    /// when every open connection is busy, admits it for the probes only while the reserve
    /// lasts; `None` beyond that.
    pub fn admit(&self) -> Option<Arc<Connection>> {
        let mut open = self.open();
        let (regular, probes) = counts(&open);
        let mut probes_only = false;
        if regular >= self.max && !Self::evict_locked(&mut open) {
            if probes >= PROBE_RESERVE {
                metrics::counter!("tokenwarden_connections_refused_total").increment(1);
                return None;
            }
            probes_only = true;
        }
        let conn = Arc::new(Connection {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            state: Mutex::new(PhaseState {
                phase: Phase::Head,
                since: Instant::now(),
                in_flight: 0,
                stalled_since: None,
            }),
            requests: AtomicU64::new(0),
            evicted: AtomicBool::new(false),
            changed: Notify::new(),
            probes_only,
        });
        open.insert(conn.id, conn.clone());
        Some(conn)
    }

    /// Closes the oldest connection that is not busy (when accepting fails for lack of
    /// descriptors).
    pub fn evict_oldest_idle(&self) {
        Self::evict_locked(&mut self.open());
    }

    fn evict_locked(open: &mut HashMap<u64, Arc<Connection>>) -> bool {
        let victim = open
            .values()
            .filter(|c| !c.probes_only)
            .filter_map(|c| {
                let s = c.state();
                (s.phase != Phase::Busy).then_some((s.since, c.id))
            })
            .min();
        let Some((_, id)) = victim else {
            return false;
        };
        if let Some(conn) = open.remove(&id) {
            conn.evicted.store(true, Ordering::Relaxed);
            conn.changed.notify_one();
            metrics::counter!("tokenwarden_connections_evicted_total").increment(1);
        }
        true
    }

    fn remove(&self, id: u64) {
        self.open().remove(&id);
    }
}

/// Everything a connection task needs.
pub struct ConnectionContext {
    pub router: Router,
    pub conn: Arc<Connection>,
    pub registry: Arc<ConnectionRegistry>,
    pub limits: ConnectionLimits,
    pub stop: watch::Receiver<bool>,
}

/// Removes the connection from the registry however its task ends.
struct Registered(Arc<ConnectionRegistry>, u64);

impl Drop for Registered {
    fn drop(&mut self) {
        self.0.remove(self.1);
    }
}

pub async fn serve_connection(stream: AcceptedStream, ctx: ConnectionContext) {
    match stream {
        AcceptedStream::Tcp(s, addr) => run(s, PeerAddr(Some(addr)), ctx).await,
        AcceptedStream::Unix(s) => run(s, PeerAddr(None), ctx).await,
    }
}

async fn run<I>(io: I, peer: PeerAddr, ctx: ConnectionContext)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ConnectionContext {
        router,
        conn,
        registry,
        limits,
        mut stop,
    } = ctx;
    let _registered = Registered(registry, conn.id);
    let watched = Watched {
        inner: io,
        conn: conn.clone(),
    };
    let service_conn = conn.clone();
    let max_requests = limits.max_requests_per_connection;
    let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
        let conn = service_conn.clone();
        let router = router.clone();
        async move {
            let served = conn.request_started();
            let guard = RequestGuard(conn.clone());
            req.extensions_mut().insert(ConnectInfo(peer));
            let response = if conn.probes_only && !PROBE_PATHS.contains(&req.uri().path()) {
                axum::response::IntoResponse::into_response(crate::ApiError::new(
                    over_capacity_error(),
                ))
            } else {
                router
                    .oneshot(req.map(|b| {
                        Body::new(TrackedBody {
                            inner: Body::new(b),
                            tracked: Tracked::Request(conn.clone()),
                        })
                    }))
                    .await
                    .unwrap_or_else(|never| match never {})
            };
            let (mut parts, body) = response.into_parts();
            if served >= max_requests || conn.probes_only {
                parts
                    .headers
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            let body = TrackedBody {
                inner: body,
                tracked: Tracked::Response { _guard: guard },
            };
            Ok::<_, std::convert::Infallible>(http::Response::from_parts(parts, body))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .keep_alive(true)
        .header_read_timeout(None::<Duration>);
    let connection = builder.serve_connection(TokioIo::new(watched), service);
    let mut connection = std::pin::pin!(connection);
    let mut stopping = false;
    loop {
        let deadline = conn.deadline(&limits);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "client connection ended with an error");
                }
                return;
            }
            () = sleep_until(deadline) => {
                if conn.deadline(&limits).is_some_and(|d| d <= Instant::now()) {
                    metrics::counter!("tokenwarden_connections_timed_out_total").increment(1);
                    return;
                }
            }
            () = conn.changed.notified() => {
                if conn.evicted.load(Ordering::Relaxed) {
                    return;
                }
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn over_capacity_error() -> tw_core::Error {
    tw_core::Error::new(
        tw_core::ErrorKind::Overloaded,
        "too_many_connections",
        "the server is at its connection limit; retry shortly",
    )
    .with_retry_after(Duration::from_secs(1))
}

/// A connection over the cap while every open one is busy: a 503 JSON answer, then close.
pub async fn refuse_over_capacity(stream: AcceptedStream) {
    let body = crate::error_body(&over_capacity_error()).to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncache-control: no-store\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let write = async |mut s: Box<dyn AsyncWrite + Unpin + Send>| {
        let _ = s.write_all(answer.as_bytes()).await;
        let _ = s.shutdown().await;
    };
    let stream: Box<dyn AsyncWrite + Unpin + Send> = match stream {
        AcceptedStream::Tcp(s, _) => Box::new(s),
        AcceptedStream::Unix(s) => Box::new(s),
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write(stream)).await;
}

/// Marks the request finished when the response body is done (or dropped).
struct RequestGuard(Arc<Connection>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// A body as its connection sees it.
enum Tracked {
    /// The client's request body: waiting for more of it (when it is being read) is a stall.
    Request(Arc<Connection>),
    /// The response: the request is finished when it is done or dropped (the guard's drop).
    Response { _guard: RequestGuard },
}

struct TrackedBody {
    inner: Body,
    tracked: Tracked,
}

impl hyper::body::Body for TrackedBody {
    type Data = <Body as hyper::body::Body>::Data;
    type Error = <Body as hyper::body::Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Tracked::Request(conn) = &self.tracked {
            match &polled {
                Poll::Pending => conn.stalled(),
                Poll::Ready(_) => conn.progressed(),
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The client stream, telling its connection when bytes arrive.
struct Watched<I> {
    inner: I,
    conn: Arc<Connection>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.bytes_read();
        }
        polled
    }
}

impl<I> Watched<I> {
    /// A write the client's socket cannot take (it stopped reading) is a stall.
    fn written(&self, polled: &Poll<io::Result<usize>>) {
        match polled {
            Poll::Pending => self.conn.stalled(),
            Poll::Ready(Ok(n)) if *n > 0 => self.conn.progressed(),
            Poll::Ready(_) => {}
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.written(&polled);
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.written(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
