//! Run an actix-web server on a worker's socket until the worker is
//! disconnected, then drain it without losing a request (feature `actix`).
//!
//! actix-web owns its accept loop and its connections, so the drain of
//! [`crate::drain`] is done with actix's own handles:
//!
//! - [`CloseOnDisconnect`], a middleware: from the disconnect on, every
//!   response carries `Connection: close`, so busy keep-alive connections
//!   close after their next response;
//! - [`serve`]: on the disconnect it *pauses* the server (its accept thread
//!   stops accepting at once, connections wait in the shared backlog for the
//!   other workers); [`IDLE_GRACE`] later it starts actix's graceful stop,
//!   which closes what stayed idle, lets busy connections finish their
//!   response, and closes the listening descriptor (never shuts it down);
//!   it returns when actix has stopped, or at [`Worker::drain_until`]
//!   (which it follows if the master changes it).
//!
//! actix's own graceful stop, started at the disconnect, is not enough: it
//! closes every idle keep-alive connection at once (the race
//! [`crate::drain`] describes), and a worker thread that starts its
//! graceful shutdown drops the connections the accept thread had already
//! handed to it but it had not started serving. The pause and the grace
//! avoid both.
//!
//! For the master's watchdog (`worker.watchdog`), [`serve`] runs
//! [`Worker::spawn_heartbeat`] on the runtime of the actix System that
//! calls it: a blocked System misses its heartbeats. actix-web serves
//! connections on threads of its own, each with its own runtime, which
//! that task does not see: a handler that blocks one of them for good is
//! not detected (with `.workers(1)`, as srv advises, that thread is the
//! whole server).
//!
//! The server must be built with `disable_signals()`: the master drives
//! the lifecycle, and actix acting on SIGINT or SIGTERM by itself (a
//! Ctrl+C reaches every process of the group) would stop it at once.

use std::future::{Future, Ready, ready};
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use crate::Worker;
use crate::drain::IDLE_GRACE;
use crate::drain_timer::drain_deadline_passed;
use crate::shared::Shared;
use actix_web::body::MessageBody;
use actix_web::dev::{Server, Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::ConnectionType;

/// Middleware that closes each connection after its response once the
/// worker is disconnected. Wrap every `App` with it.
///
/// ```
/// use actix_web::{App, web};
///
/// let worker = srv_worker::Worker::standalone();
/// let close = srv_worker::actix::CloseOnDisconnect::new(&worker);
/// let app = move || App::new().wrap(close.clone()).route("/", web::get().to(|| async { "hi" }));
/// # let _ = app;
/// ```
#[derive(Debug, Clone)]
pub struct CloseOnDisconnect {
    shared: Arc<Shared>,
}

impl CloseOnDisconnect {
    /// The middleware for `worker`'s connections.
    ///
    /// ```
    /// let _close = srv_worker::actix::CloseOnDisconnect::new(&srv_worker::Worker::standalone());
    /// ```
    pub fn new(worker: &Worker) -> CloseOnDisconnect {
        CloseOnDisconnect { shared: Arc::clone(&worker.shared) }
    }
}

impl<S, B> Transform<S, ServiceRequest> for CloseOnDisconnect
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = CloseOnDisconnectService<S>;
    type InitError = ();
    type Future = Ready<Result<CloseOnDisconnectService<S>, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(CloseOnDisconnectService { service, shared: Arc::clone(&self.shared) }))
    }
}

/// The service [`CloseOnDisconnect`] wraps around an application.
#[derive(Debug)]
pub struct CloseOnDisconnectService<S> {
    service: S,
    shared: Arc<Shared>,
}

impl<S, B> Service<ServiceRequest> for CloseOnDisconnectService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<ServiceResponse<B>, actix_web::Error>>>>;

    forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let response = self.service.call(request);
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let mut response = response.await?;
            // Decided when the response is ready: a request in flight at
            // the disconnect closes its connection too. A protocol switch
            // keeps its own `Connection: upgrade`.
            let head = response.response_mut().head_mut();
            if shared.reason().is_some() && head.connection_type() != ConnectionType::Upgrade {
                head.set_connection_type(ConnectionType::Close);
            }
            Ok(response)
        })
    }
}

/// Runs `server` until `worker` is disconnected, then drains it (see the
/// [module documentation](self)) and returns. A standalone worker runs it
/// until the server stops. Call it from the actix system the server was
/// built in.
///
/// ```no_run
/// use actix_web::{App, HttpServer, web};
/// use srv_worker::Worker;
///
/// fn main() -> std::io::Result<()> {
///     let worker = Worker::from_env()?.unwrap_or_else(Worker::standalone);
///     actix_web::rt::System::new().block_on(async {
///         let close = srv_worker::actix::CloseOnDisconnect::new(&worker);
///         let server = HttpServer::new(move || {
///             App::new().wrap(close.clone()).route("/", web::get().to(|| async { "hello\n" }))
///         })
///         .disable_signals() // the master drives the lifecycle
///         .listen(worker.listen_tcp(([127, 0, 0, 1], 8080))?)?
///         .run();
///         worker.online()?;
///         srv_worker::actix::serve(&worker, server).await
///     })
/// }
/// ```
///
/// # Errors
///
/// The server failed (what awaiting it returns).
pub async fn serve(worker: &Worker, server: Server) -> io::Result<()> {
    // The proof, for the master's watchdog, that the runtime of this
    // System runs tasks (see the limits in the module docs).
    let _heartbeat = worker.spawn_heartbeat();
    let handle = server.handle();
    let mut server = actix_web::rt::spawn(server);
    let reason = tokio::select! {
        reason = worker.disconnected() => reason,
        ended = &mut server => return ended.map_err(io::Error::other)?,
    };
    // Step 1: the accept thread stops accepting now; connections already
    // handed to the worker thread are served.
    handle.pause().await;
    log::info!("srv: disconnected ({reason}): stopped accepting, draining");
    let drained = async {
        // Idle keep-alive connections may carry one more request meanwhile.
        tokio::time::sleep(IDLE_GRACE).await;
        handle.stop(true).await;
        server.await
    };
    tokio::select! {
        ended = drained => {
            log::info!("srv: drained every connection");
            ended.map_err(io::Error::other)?
        }
        () = drain_deadline_passed(worker) => {
            log::warn!("srv: connections still open at the drain deadline: dropping them");
            Ok(())
        }
    }
}
