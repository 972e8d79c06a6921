//! Serve HTTP/1.1 and HTTP/2 with hyper on a worker's socket until the
//! worker is disconnected, then drain without losing a request (feature
//! `hyper`).
//!
//! [`serve`] is the accept loop every hyper server writes, with the drain
//! of [`crate::drain`] built in:
//!
//! - each connection speaks HTTP/1.1, or HTTP/2 when it opens with the
//!   HTTP/2 preface (cleartext HTTP/2 with prior knowledge, "h2c"): hyper-util's
//!   `auto` connection, with upgrades (WebSockets) allowed;
//! - on the disconnect the listener is dropped at once (never shut down:
//!   the master and the other workers hold the same socket);
//! - from then on every HTTP/1.x response carries `Connection: close`, and
//!   every HTTP/2 connection known to be one (it carried a request) gets a
//!   `GOAWAY` at once, whose streams in flight complete;
//! - [`IDLE_GRACE`] after the disconnect, hyper's graceful shutdown closes
//!   what is left idle, ends busy HTTP/1 connections after their response,
//!   and sends `GOAWAY` on the HTTP/2 connections that carried nothing yet;
//! - while it serves, a task on the runtime proves to the master's
//!   watchdog that the runtime runs ([`Worker::spawn_heartbeat`]);
//! - `serve` returns when the last connection is done, or at
//!   [`Worker::drain_until`] (shortly before the master's deadline, which
//!   it follows if the master changes it), when it drops the connections
//!   still open.
//!
//! A connection upgraded to another protocol (a WebSocket) leaves hyper's
//! hands and so the drain's: the application ends it, or the process's
//! exit does.
//!
//! # Races
//!
//! The disconnect is checked before every accept, so a worker takes no new
//! connection once it knows (a connection the kernel had already queued
//! stays in the backlog for the other workers). Responses produced in the
//! microseconds between the disconnect and the moment this loop sees it
//! lack `Connection: close`; their connections are closed after
//! [`IDLE_GRACE`] if they stay idle, or after their next response if not.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use ::hyper::body::{Body, Incoming};
use ::hyper::header::{CONNECTION, HeaderValue};
use ::hyper::{Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::Worker;
use crate::drain::IDLE_GRACE;
use crate::drain_timer::drain_deadline_passed;

/// How long the accept loop pauses after an accept error that is not about
/// one connection (out of descriptors, for example), so that a listener
/// reporting the same error again and again does not become a busy loop.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

type BoxError = Box<dyn StdError + Send + Sync>;

/// A listening socket [`serve`] accepts on: tokio's TCP and Unix-domain
/// listeners (as [`Worker::listen_tokio_tcp`] and
/// [`Worker::listen_tokio_unix`] give them), or a type of your own, for
/// example one that wraps accepted connections in TLS.
///
/// ```
/// fn check<L: srv_worker::hyper::Listener>() {}
/// check::<tokio::net::TcpListener>();
/// check::<tokio::net::UnixListener>();
/// ```
pub trait Listener: Send + 'static {
    /// An accepted connection.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// The address of the peer of an accepted connection.
    type Addr: Clone + fmt::Debug + Send + Sync + 'static;

    /// Accepts one connection.
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Io, Self::Addr)>> + Send;
}

impl Listener for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> io::Result<(Self::Io, Self::Addr)> {
        let (stream, peer) = tokio::net::TcpListener::accept(self).await?;
        // Small responses go out at once rather than after a delayed ACK.
        // A socket that refuses the option still serves.
        let _ = stream.set_nodelay(true);
        Ok((stream, peer))
    }
}

impl Listener for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> io::Result<(Self::Io, Self::Addr)> {
        tokio::net::UnixListener::accept(self).await
    }
}

/// Serves every connection accepted on `listener` with the hyper service
/// `make_service` makes for it from the peer's address, until `worker` is
/// disconnected; then drains (see the [module documentation](self)) and
/// returns. A standalone worker serves until the process ends.
///
/// Each connection speaks HTTP/1.1, or HTTP/2 when it starts with the
/// HTTP/2 preface (prior knowledge). [`serve_with`] takes a configured
/// hyper-util builder instead of the default one.
///
/// ```no_run
/// use std::convert::Infallible;
/// use http_body_util::Full;
/// use hyper::body::{Bytes, Incoming};
/// use hyper::{Request, Response};
/// use hyper::service::service_fn;
/// use srv_worker::Worker;
///
/// async fn hello(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
///     Ok(Response::new(Full::new(Bytes::from("hello\n"))))
/// }
///
/// # async fn run(worker: Worker) -> std::io::Result<()> {
/// let listener = worker.listen_tokio_tcp(([127, 0, 0, 1], 8080))?;
/// worker.online()?;
/// srv_worker::hyper::serve(&worker, listener, |_peer| service_fn(hello)).await;
/// # Ok(())
/// # }
/// # drop(run(Worker::standalone()));
/// ```
pub async fn serve<L, M, S, B>(worker: &Worker, listener: L, make_service: M)
where
    L: Listener,
    M: FnMut(&L::Addr) -> S,
    S: ::hyper::service::Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    serve_with(worker, listener, Builder::new(TokioExecutor::new()), make_service).await;
}

/// [`serve`] with a hyper-util builder configured by the caller (limits,
/// timeouts, HTTP/1 or HTTP/2 only).
///
/// ```no_run
/// # use std::convert::Infallible;
/// # use http_body_util::Full;
/// # use hyper::body::{Bytes, Incoming};
/// # use hyper::{Request, Response};
/// # async fn hello(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
/// #     Ok(Response::new(Full::new(Bytes::from("hello\n"))))
/// # }
/// use hyper_util::rt::TokioExecutor;
/// use hyper_util::server::conn::auto::Builder;
///
/// # async fn run(worker: srv_worker::Worker) -> std::io::Result<()> {
/// let listener = worker.listen_tokio_tcp(([127, 0, 0, 1], 8080))?;
/// let mut builder = Builder::new(TokioExecutor::new());
/// builder.http2().max_concurrent_streams(64);
/// worker.online()?;
/// let make_service = |_peer: &_| hyper::service::service_fn(hello);
/// srv_worker::hyper::serve_with(&worker, listener, builder, make_service).await;
/// # Ok(())
/// # }
/// # drop(run(srv_worker::Worker::standalone()));
/// ```
pub async fn serve_with<L, M, S, B>(
    worker: &Worker,
    mut listener: L,
    builder: Builder<TokioExecutor>,
    mut make_service: M,
) where
    L: Listener,
    M: FnMut(&L::Addr) -> S,
    S: ::hyper::service::Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    // The proof that this runtime runs tasks, for the master's watchdog;
    // it ends with this function.
    let _heartbeat = worker.spawn_heartbeat();
    let builder = Arc::new(builder);
    let (phase, _) = watch::channel(Phase::Serving);
    let draining = Arc::new(AtomicBool::new(false));
    let mut connections = JoinSet::new();
    let mut disconnected = worker.disconnected();

    let reason = 'accept: loop {
        tokio::select! {
            // Checked first: a disconnected worker takes no more
            // connections, even when some are ready.
            biased;
            reason = &mut disconnected => break 'accept reason,
            // Finished connections are reaped as they end, so the set
            // holds only open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((io, peer)) => {
                    let service = DrainService {
                        inner: make_service(&peer),
                        draining: Arc::clone(&draining),
                        http2: Arc::new(AtomicBool::new(false)),
                    };
                    let connection =
                        serve_connection(Arc::clone(&builder), io, service, phase.subscribe());
                    connections.spawn(connection);
                }
                Err(error) if is_about_one_connection(&error) => {}
                Err(error) => {
                    log::error!("srv: accept: {error}");
                    tokio::select! {
                        reason = &mut disconnected => break 'accept reason,
                        () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                    }
                }
            },
        }
    };

    // Step 1: this worker's descriptor goes; the socket lives on in the
    // master and the other workers.
    drop(listener);
    draining.store(true, Ordering::Relaxed);
    phase.send_replace(Phase::Draining);
    let close_idle_at = Instant::now() + IDLE_GRACE;
    let mut deadline = std::pin::pin!(drain_deadline_passed(worker));
    log::info!(
        "srv: disconnected ({reason}): stopped accepting, draining {} connections",
        connections.len()
    );
    let mut idle_closed = false;
    loop {
        tokio::select! {
            done = connections.join_next() => {
                if done.is_none() {
                    log::info!("srv: drained every connection");
                    return;
                }
            }
            () = tokio::time::sleep_until(close_idle_at), if !idle_closed => {
                idle_closed = true;
                phase.send_replace(Phase::CloseIdle);
            }
            () = &mut deadline => {
                log::warn!(
                    "srv: {} connections still open at the drain deadline: dropping them",
                    connections.len()
                );
                connections.shutdown().await;
                return;
            }
        }
    }
}

/// Where the drain is; every connection task watches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Connected to the master.
    Serving,
    /// Disconnected: HTTP/2 connections get `GOAWAY`, HTTP/1 responses
    /// `Connection: close`, idle connections may carry one more request.
    Draining,
    /// [`IDLE_GRACE`] has passed: every connection shuts down gracefully.
    CloseIdle,
}

/// Accept errors that concern the one connection being accepted (it was
/// reset before it could be taken, or the call was interrupted): the next
/// accept is fine.
fn is_about_one_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// Serves one connection until it ends, shutting it down gracefully when
/// the drain says so.
async fn serve_connection<I, S, B>(
    builder: Arc<Builder<TokioExecutor>>,
    io: I,
    service: DrainService<S>,
    mut phase: watch::Receiver<Phase>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: ::hyper::service::Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let http2 = Arc::clone(&service.http2);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    let mut connection = std::pin::pin!(connection);
    let mut shutting_down = false;
    loop {
        tokio::select! {
            res = connection.as_mut() => {
                if let Err(error) = res {
                    log::debug!("srv: connection: {error}");
                }
                return;
            }
            changed = phase.changed(), if !shutting_down => {
                // The sender is gone only when `serve` is: shut down too.
                let now = if changed.is_ok() { *phase.borrow_and_update() } else { Phase::CloseIdle };
                let shut_down = match now {
                    Phase::Serving => false,
                    Phase::Draining => http2.load(Ordering::Relaxed),
                    Phase::CloseIdle => true,
                };
                if shut_down {
                    connection.as_mut().graceful_shutdown();
                    shutting_down = true;
                }
            }
        }
    }
}

/// The application's service, with what the drain needs: it marks its
/// connection as HTTP/2 when a request says so, and closes HTTP/1
/// connections after their response once the worker drains.
#[derive(Debug)]
struct DrainService<S> {
    inner: S,
    /// Set once the worker is disconnected (shared by all connections).
    draining: Arc<AtomicBool>,
    /// This connection carried an HTTP/2 request.
    http2: Arc<AtomicBool>,
}

impl<S, B> ::hyper::service::Service<Request<Incoming>> for DrainService<S>
where
    S: ::hyper::service::Service<Request<Incoming>, Response = Response<B>>,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = CloseWhenDraining<S::Future>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let http1 = request.version() < Version::HTTP_2;
        if !http1 {
            self.http2.store(true, Ordering::Relaxed);
        }
        CloseWhenDraining {
            inner: self.inner.call(request),
            http1,
            draining: Arc::clone(&self.draining),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`DrainService`].
    struct CloseWhenDraining<F> {
        #[pin]
        inner: F,
        http1: bool,
        draining: Arc<AtomicBool>,
    }
}

impl<F, B, E> Future for CloseWhenDraining<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        // Decided when the response is ready, not when the request came: a
        // request in flight at the disconnect closes its connection too. A
        // protocol switch keeps its own `Connection: upgrade`.
        if *this.http1
            && this.draining.load(Ordering::Relaxed)
            && response.status() != StatusCode::SWITCHING_PROTOCOLS
        {
            response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
        }
        Poll::Ready(Ok(response))
    }
}
