//! Serve an axum application on a worker's socket until the worker is
//! disconnected, then drain without losing a request (feature `axum`).
//!
//! [`serve`] takes the place of `axum::serve(listener, app)`: the same
//! `Router`, HTTP/1.1 and cleartext HTTP/2 on the same port, and the drain
//! of [`crate::hyper::serve`], which it runs. Each request carries
//! `axum::extract::ConnectInfo` of its peer's address, so the
//! `ConnectInfo<SocketAddr>` extractor works without
//! `into_make_service_with_connect_info`.

use std::convert::Infallible;
use std::task::{Context, Poll};

use ::axum::extract::ConnectInfo;
use ::axum::response::Response;
use ::hyper::Request;
use ::hyper::body::Incoming;
use hyper_util::service::TowerToHyperService;
use tower_service::Service;

use crate::Worker;
use crate::hyper::Listener;

/// Serves `app` on `listener` until `worker` is disconnected, then drains
/// and returns (see [`crate::drain`] for what the drain does and what it
/// cannot promise). A standalone worker serves until the process ends.
///
/// The only lines an axum server changes:
///
/// ```no_run
/// use axum::Router;
/// use axum::routing::get;
///
/// # async fn run(worker: srv_worker::Worker) -> std::io::Result<()> {
/// let app = Router::new().route("/", get(|| async { "hello\n" }));
/// // was: let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// let listener = worker.listen_tokio_tcp(([127, 0, 0, 1], 8080))?;
/// worker.online()?;
/// // was: axum::serve(listener, app).await?;
/// srv_worker::axum::serve(&worker, listener, app).await;
/// # Ok(())
/// # }
/// # drop(run(srv_worker::Worker::standalone()));
/// ```
pub async fn serve<L, S>(worker: &Worker, listener: L, app: S)
where
    L: Listener,
    S: Service<Request<Incoming>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let make_service = move |peer: &L::Addr| {
        TowerToHyperService::new(WithConnectInfo {
            app: app.clone(),
            peer: ConnectInfo(peer.clone()),
        })
    };
    crate::hyper::serve(worker, listener, make_service).await;
}

/// `app` with the peer's address in every request's extensions.
#[derive(Debug, Clone)]
struct WithConnectInfo<S, A> {
    app: S,
    peer: ConnectInfo<A>,
}

impl<S, A, B> Service<Request<B>> for WithConnectInfo<S, A>
where
    S: Service<Request<B>>,
    A: Clone + Send + Sync + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.app.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> S::Future {
        request.extensions_mut().insert(self.peer.clone());
        self.app.call(request)
    }
}
