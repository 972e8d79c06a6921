//! An axum server under srv: N worker processes sharing one port, HTTP/1.1
//! and cleartext HTTP/2 (prior knowledge) on it, recycled without losing a
//! request.
//!
//! ```text
//! cargo run --release --bin axum -- --port 8080 --workers 4
//! curl http://127.0.0.1:8080/                        # ok <worker pid>
//! curl --http2-prior-knowledge http://127.0.0.1:8080/sleep?ms=500 # slept 500
//! kill -HUP <master pid>                             # every worker replaced, one by one
//! ```
//!
//! Against a plain axum server, three lines change (see [`serve`]):
//!
//! 1. the listener comes from the worker (`worker.listen_tokio_tcp`), the
//!    socket the master holds for every worker;
//! 2. `worker.online()` once the worker is ready;
//! 3. `srv_worker::axum::serve(&worker, listener, app)` instead of
//!    `axum::serve(listener, app)`: it serves until the worker is
//!    disconnected, then drains without losing a request (stop accepting,
//!    `Connection: close`, HTTP/2 `GOAWAY`, idle connections closed only
//!    after a grace, in-flight requests finished by the master's deadline;
//!    see `srv_worker::drain`).
//!
//! `axum::serve(..).with_graceful_shutdown(worker.shutdown_signal())`
//! compiles too, but closes idle keep-alive connections at the disconnect,
//! which is exactly when their clients send: it loses requests on every
//! recycle under keep-alive load.
//!
//! The runtime starts after `Worker::from_env` (in `srv_examples::run`),
//! which takes the channel's variables out of the environment before any
//! other thread exists.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::RawQuery;
use axum::http::StatusCode;
use axum::routing::get;
use srv_examples::ServerArgs;
use srv_worker::Worker;

const ABOUT: &str = "An axum server (HTTP/1.1 and h2c) run as N srv workers.";

const PAGES: &str = "GET / answers `ok <worker pid>`; GET /sleep?ms=N waits N ms (at most 60000).";

fn main() -> ExitCode {
    srv_examples::main("axum", ABOUT, PAGES, |worker, args| {
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
    let app = Router::new()
        .route("/", get(move || async move { format!("ok {pid}\n") }))
        .route("/sleep", get(sleep));
    let listener = worker.listen_tokio_tcp(args.socket_addr())?;
    srv_examples::log_listening(&worker, listener.local_addr()?, args.socket_addr());
    worker.online()?;
    log::info!("axum worker {pid} online");
    srv_worker::axum::serve(&worker, listener, app).await;
    log::info!("axum worker {pid} done, exiting");
    Ok(())
}

/// `GET /sleep?ms=N`: waits N ms, then answers.
async fn sleep(RawQuery(query): RawQuery) -> Result<String, (StatusCode, &'static str)> {
    let ms = srv_examples::sleep_ms(query.as_deref())
        .ok_or((StatusCode::BAD_REQUEST, "usage: /sleep?ms=N\n"))?;
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(format!("slept {ms}\n"))
}
