//! Serving HTTP/1.1 connections with bounds, for the console and for the
//! engine's notification listener (SY-5): a client that never finishes its
//! request head, or sits idle on a kept connection, is closed after a
//! timeout; at most so many connections are held at once, and when that
//! many are held a new one takes the place of the longest-idle one, so a
//! flood of silent connections cannot shut real clients (or `/healthz`)
//! out. Both listeners accept from anyone before authenticating, which is
//! why neither may trust a peer to finish or to leave.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// File descriptors the process may hold, as raised at start (see
/// [`raise_fd_limit`]); the connection caps are fitted under it.
static FD_LIMIT: AtomicU64 = AtomicU64::new(1024);
/// Descriptors kept for everything that is not an incoming connection: the
/// database, outgoing Exchange connections, certificate files, logs.
const FD_RESERVE: u64 = 512;

/// The bounds one listener serves under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections held at once (including TLS handshakes in progress).
    pub max_connections: usize,
    /// From the moment the server waits for a request head (a new
    /// connection, or a kept one after its last answer) until the head is
    /// complete; the TLS handshake has as long. This is also the idle
    /// keep-alive timeout: a kept connection that sends nothing closes.
    pub header_timeout: Duration,
    /// How long open connections may finish their requests at shutdown.
    pub grace: Duration,
}

impl Limits {
    /// The console: browsers, API clients and their event streams (at most
    /// 10,000 of those per process), two thirds of the descriptors left.
    pub fn console() -> Limits {
        Limits {
            max_connections: fitted(12_288, 2),
            header_timeout: Duration::from_secs(10),
            grace: Duration::from_secs(5),
        }
    }

    /// The notification listener: Exchange posts from a small pool of
    /// connections (tens), so a thousand is plenty, within a third of the
    /// descriptors left.
    pub fn notifications() -> Limits {
        Limits {
            max_connections: fitted(1024, 1),
            header_timeout: Duration::from_secs(10),
            grace: Duration::from_secs(3),
        }
    }
}

/// `wanted`, or `thirds`/3 of the descriptors beyond the reserve if fewer.
fn fitted(wanted: usize, thirds: u64) -> usize {
    let spare = FD_LIMIT.load(Ordering::Relaxed).saturating_sub(FD_RESERVE);
    let share = usize::try_from(spare / 3 * thirds).unwrap_or(usize::MAX);
    wanted.min(share).max(16)
}

/// Raises the soft limit on open files to the hard limit (as Go's runtime
/// does): service managers often start processes with a soft limit of
/// 1024, which a few hundred connections and the engine's own would
/// exhaust. Returns the limit now in force; the caps are fitted under it.
pub fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    let now = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return FD_LIMIT.load(Ordering::Relaxed);
        }
        let wanted = libc::rlimit {
            rlim_cur: limit.rlim_max.min(1 << 20),
            rlim_max: limit.rlim_max,
        };
        if wanted.rlim_cur > limit.rlim_cur && libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
            wanted.rlim_cur
        } else {
            limit.rlim_cur
        }
    };
    FD_LIMIT.store(now, Ordering::Relaxed);
    now
}

/// One held connection, as the table sees it.
struct Held {
    /// Requests whose answers are not yet fully written (an event stream
    /// stays in flight while it is open).
    in_flight: AtomicUsize,
    /// When the connection last became idle, in ms since the table began.
    idle_since: AtomicU64,
    /// Rung to close the connection at once (it was the longest idle).
    evict: Notify,
}

/// The connections one listener holds.
struct Table {
    limits: Limits,
    began: Instant,
    held: Mutex<(u64, HashMap<u64, Arc<Held>>)>,
    /// When a refusal was last logged (s since `began`), to log one a minute.
    refused_logged: AtomicI64,
}

impl Table {
    fn ms(&self) -> u64 {
        u64::try_from(self.began.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, HashMap<u64, Arc<Held>>)> {
        // The map stays whole across a panic elsewhere: use it as it is.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for a new connection: free, or the longest-idle one's.
    /// None when every held connection is busy answering.
    fn admit(&self) -> Option<(u64, Arc<Held>)> {
        let mut guard = self.lock();
        let (next, held) = &mut *guard;
        if held.len() >= self.limits.max_connections {
            let oldest = held
                .iter()
                .filter(|(_, h)| h.in_flight.load(Ordering::Acquire) == 0)
                .min_by_key(|(id, h)| (h.idle_since.load(Ordering::Relaxed), **id))
                .map(|(id, _)| *id)?;
            if let Some(evicted) = held.remove(&oldest) {
                evicted.evict.notify_one();
            }
        }
        *next += 1;
        let entry = Arc::new(Held {
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(self.ms()),
            evict: Notify::new(),
        });
        held.insert(*next, entry.clone());
        Some((*next, entry))
    }

    fn release(&self, id: u64) {
        self.lock().1.remove(&id);
    }

    fn len(&self) -> usize {
        self.lock().1.len()
    }

    fn log_refusal(&self) {
        let now = i64::try_from(self.began.elapsed().as_secs()).unwrap_or(i64::MAX);
        let last = self.refused_logged.load(Ordering::Relaxed);
        if (last < 0 || now - last >= 60)
            && self
                .refused_logged
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                max = self.limits.max_connections,
                "every connection is busy answering: refusing new connections"
            );
        }
    }
}

/// Serves `router` on `listener` (over TLS with `tls`) until `shutdown`
/// completes, then lets open requests finish within the grace period.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let table = Arc::new(Table {
        limits,
        began: Instant::now(),
        held: Mutex::new((0, HashMap::new())),
        refused_logged: AtomicI64::new(-1),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some((id, held)) = table.admit() else {
            table.log_refusal();
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let connection = Connection {
            table: table.clone(),
            id,
            peer,
            held,
            router: router.clone(),
            stop: stop_rx.clone(),
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => connection.run(tcp).await,
                Some(acceptor) => {
                    let limit = connection.table.limits.header_timeout;
                    let handshake = tokio::time::timeout(limit, acceptor.accept(tcp));
                    let evicted = connection.held.evict.notified();
                    tokio::select! {
                        done = handshake => match done {
                            Ok(Ok(stream)) => connection.run(stream).await,
                            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        },
                        () = evicted => {}
                    }
                }
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Open requests get the grace period; whatever is left is dropped with
    // the runtime's tasks.
    let deadline = Instant::now() + limits.grace;
    while table.len() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// The address a request came from, in its extensions (the event stream
/// bounds streams per client address).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

/// One accepted connection and its place in the table.
struct Connection {
    table: Arc<Table>,
    id: u64,
    peer: std::net::SocketAddr,
    held: Arc<Held>,
    router: Router,
    stop: watch::Receiver<bool>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.table.release(self.id);
    }
}

impl Connection {
    async fn run<I>(mut self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let held = self.held.clone();
        let table = self.table.clone();
        let router = self.router.clone();
        let peer = Peer(self.peer);
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(peer);
            let answering = InFlight::begin(held.clone(), table.clone());
            let call = router.clone().oneshot(request.map(Body::new));
            async move {
                let response = match call.await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                Ok::<Response, Infallible>(response.map(|body| {
                    Body::new(Tracked {
                        inner: body,
                        _answering: answering,
                    })
                }))
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.table.limits.header_timeout)
            .keep_alive(true);
        let serving = builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(serving);
        let evicted = self.held.evict.notified();
        tokio::pin!(evicted);
        if *self.stop.borrow() {
            serving.as_mut().graceful_shutdown();
        }
        loop {
            tokio::select! {
                result = serving.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection closed");
                    }
                    return;
                }
                () = &mut evicted => return,
                changed = self.stop.changed() => {
                    if changed.is_err() || *self.stop.borrow() {
                        serving.as_mut().graceful_shutdown();
                        // Each connection is given the grace period; `serve`
                        // stops waiting for them after it.
                        let _ = tokio::time::timeout(self.table.limits.grace, serving.as_mut()).await;
                        return;
                    }
                }
            }
        }
    }
}

/// A request being answered on a connection: the connection is busy (not
/// to be evicted) until the answer's body is written or dropped.
struct InFlight {
    held: Arc<Held>,
    table: Arc<Table>,
}

impl InFlight {
    fn begin(held: Arc<Held>, table: Arc<Table>) -> InFlight {
        held.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight { held, table }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.held
            .idle_since
            .store(self.table.ms(), Ordering::Relaxed);
        self.held.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An answer's body carrying its [`InFlight`] until it is done.
struct Tracked {
    inner: Body,
    _answering: InFlight,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(max: usize) -> Table {
        Table {
            limits: Limits {
                max_connections: max,
                header_timeout: Duration::from_secs(1),
                grace: Duration::from_secs(1),
            },
            began: Instant::now(),
            held: Mutex::new((0, HashMap::new())),
            refused_logged: AtomicI64::new(-1),
        }
    }

    #[test]
    fn a_full_table_gives_the_longest_idle_place_away_and_never_a_busy_one() {
        let table = table(3);
        let (first, a) = table.admit().expect("room");
        let (_, b) = table.admit().expect("room");
        let (third, c) = table.admit().expect("room");
        // The first is busy answering; the second the longest idle.
        a.in_flight.fetch_add(1, Ordering::AcqRel);
        b.idle_since.store(0, Ordering::Relaxed);
        c.idle_since.store(5, Ordering::Relaxed);
        let (_, d) = table.admit().expect("the idle one's place");
        assert_eq!(table.len(), 3);
        let held: Vec<u64> = table.lock().1.keys().copied().collect();
        assert!(held.contains(&first) && held.contains(&third));
        // Every place busy: the newcomer is refused.
        c.in_flight.fetch_add(1, Ordering::AcqRel);
        d.in_flight.fetch_add(1, Ordering::AcqRel);
        assert!(table.admit().is_none());
        // A place freed by a closed connection is given at once.
        table.release(first);
        assert!(table.admit().is_some());
    }

    #[test]
    fn the_caps_fit_under_the_open_file_limit() {
        // The default 1024 leaves 512 beyond the reserve: 340 and 170.
        assert_eq!(fitted(4096, 2), 340);
        assert_eq!(fitted(1024, 1), 170);
    }
}
