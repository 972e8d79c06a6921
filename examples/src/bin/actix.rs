//! An actix-web 4 server under srv: each srv worker runs one actix worker on
//! the socket the master holds for all of them, and drains without losing a
//! request when it is disconnected.
//!
//! ```text
//! cargo run --release --bin actix -- --port 8080 --workers 4
//! curl http://127.0.0.1:8080/             # ok <worker pid>
//! curl http://127.0.0.1:8080/sleep?ms=500 # slept 500
//! kill -HUP <master pid>                  # every worker replaced, one by one
//! ```
//!
//! actix-web owns its accept loop, so the drain is `srv_worker::actix`'s:
//! its middleware closes each connection after its response once the worker
//! is disconnected, and `srv_worker::actix::serve` pauses the server at the
//! disconnect, starts actix's graceful stop only after the idle grace, and
//! returns by the master's deadline (see `srv_worker::drain`). actix's own
//! signal handling is off (`disable_signals`): srv's master drives the
//! lifecycle, and SIGINT reaches workers only as a disconnect.
//!
//! actix's own graceful stop alone, started at the disconnect, loses
//! requests: it closes every idle keep-alive connection at once, and drops
//! the connections its accept thread had already handed to the worker but
//! the worker had not started (measured in the README, "actix-web").

use std::process::ExitCode;
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context as _;
use srv_examples::ServerArgs;
use srv_worker::Worker;
use srv_worker::actix::CloseOnDisconnect;
use srv_worker::drain::FALLBACK_LIMIT;

const ABOUT: &str = "An actix-web server run as N srv workers.";

const PAGES: &str = "GET / answers `ok <worker pid>`; GET /sleep?ms=N waits N ms (at most 60000).";

fn main() -> ExitCode {
    srv_examples::main("actix", ABOUT, PAGES, |worker, args| {
        actix_web::rt::System::new().block_on(serve(worker, args))
    })
}

/// The worker: serve until disconnected, then drain and return.
async fn serve(worker: Worker, args: &ServerArgs) -> anyhow::Result<()> {
    let pid = std::process::id();
    let listener = worker.listen_tcp(args.socket_addr())?;
    srv_examples::log_listening(&worker, listener.local_addr()?, args.socket_addr());
    let close = CloseOnDisconnect::new(&worker);
    let server = HttpServer::new(move || {
        App::new()
            .wrap(close.clone())
            .route("/", web::get().to(move || async move { format!("ok {pid}\n") }))
            .route("/sleep", web::get().to(sleep))
    })
    // srv's processes are the parallelism: one actix worker thread each.
    .workers(1)
    // The master drives the lifecycle; actix must not act on SIGTERM or
    // SIGINT by itself (a Ctrl+C reaches every process of the group).
    .disable_signals()
    // `serve` enforces the master's deadline; actix's own limit (whole
    // seconds) is only a backstop.
    .shutdown_timeout(FALLBACK_LIMIT.as_secs())
    .listen(listener)
    .context("serve on the listening socket")?
    .run();
    worker.online()?;
    log::info!("actix worker {pid} online");
    srv_worker::actix::serve(&worker, server).await.context("the actix server")?;
    log::info!("actix worker {pid} done, exiting");
    Ok(())
}

/// `GET /sleep?ms=N`: waits N ms, then answers.
async fn sleep(request: actix_web::HttpRequest) -> HttpResponse {
    match srv_examples::sleep_ms(Some(request.query_string())) {
        Some(ms) => {
            actix_web::rt::time::sleep(Duration::from_millis(ms)).await;
            HttpResponse::Ok().body(format!("slept {ms}\n"))
        }
        None => HttpResponse::BadRequest().body("usage: /sleep?ms=N\n"),
    }
}
