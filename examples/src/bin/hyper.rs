//! A hyper server under srv, without axum: hyper 1 and hyper-util, HTTP/1.1
//! and cleartext HTTP/2 (prior knowledge) on one port, N worker processes,
//! recycled without losing a request.
//!
//! ```text
//! cargo run --release --bin hyper -- --port 8080 --workers 4
//! curl http://127.0.0.1:8080/                        # ok <worker pid>
//! curl --http2-prior-knowledge http://127.0.0.1:8080/sleep?ms=500 # slept 500
//! kill -HUP <master pid>                             # every worker replaced, one by one
//! ```
//!
//! The service is a plain `service_fn`; `srv_worker::hyper::serve` is the
//! accept loop, with the drain built in (see `srv_worker::drain`).

use std::convert::Infallible;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use srv_examples::ServerArgs;
use srv_worker::Worker;

const ABOUT: &str = "A hyper server (HTTP/1.1 and h2c, no axum) run as N srv workers.";

const PAGES: &str = "GET / answers `ok <worker pid>`; GET /sleep?ms=N waits N ms (at most 60000).";

fn main() -> ExitCode {
    srv_examples::main("hyper", ABOUT, PAGES, |worker, args| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("start the tokio runtime")?;
        runtime.block_on(serve(worker, args))
    })
}

/// The worker: serve until disconnected, then drain and return.
async fn serve(worker: Worker, args: &ServerArgs) -> anyhow::Result<()> {
    let pid = std::process::id();
    let listener = worker.listen_tokio_tcp(args.socket_addr())?;
    srv_examples::log_listening(&worker, listener.local_addr()?, args.socket_addr());
    worker.online()?;
    log::info!("hyper worker {pid} online");
    let make_service = |_peer: &std::net::SocketAddr| hyper::service::service_fn(route);
    srv_worker::hyper::serve(&worker, listener, make_service).await;
    log::info!("hyper worker {pid} done, exiting");
    Ok(())
}

/// The pages: `/` and `/sleep?ms=N`.
async fn route(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".to_owned()));
    }
    Ok(match request.uri().path() {
        "/" => text(StatusCode::OK, format!("ok {}\n", std::process::id())),
        "/sleep" => match srv_examples::sleep_ms(request.uri().query()) {
            Some(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                text(StatusCode::OK, format!("slept {ms}\n"))
            }
            None => text(StatusCode::BAD_REQUEST, "usage: /sleep?ms=N\n".to_owned()),
        },
        _ => text(StatusCode::NOT_FOUND, "not found\n".to_owned()),
    })
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}
