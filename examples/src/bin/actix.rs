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
//! actix-web owns its accept loop, so `srv_worker::hyper::serve` does not
//! apply; the drain is written here with actix's own handles, in the steps of
//! `srv_worker::drain`:
//!
//! - actix's signal handling is off (`disable_signals`): srv's master
//!   drives the lifecycle, and SIGINT reaches workers only as a disconnect;
//! - on the disconnect, the server is *paused*: its accept thread stops
//!   accepting at once (connections wait in the shared backlog for the other
//!   workers), and a middleware adds `Connection: close` to every response
//!   from then on, so busy keep-alive connections close after their next
//!   response;
//! - `IDLE_GRACE` later, actix's graceful stop closes what stayed idle,
//!   lets busy connections finish their response, and drops this worker's
//!   descriptor of the listening socket (never shut down);
//! - the worker exits when actix has stopped, or at `Worker::drain_until`
//!   (shortly before the master's deadline), whichever comes first.
//!
//! actix's own graceful stop alone, started at the disconnect, loses
//! requests: it closes every idle keep-alive connection at once (the race
//! `srv_worker::drain` describes), and drops the connections its accept
//! thread had already handed to the worker but the worker had not started.
//! Measured with the recycle tests of `examples/tests/e2e/actix.rs` (see
//! the README), the pause and the grace close that gap.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::ConnectionType;
use actix_web::middleware::{Next, from_fn};
use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context as _;
use srv_examples::ServerArgs;
use srv_worker::Worker;
use srv_worker::drain::{FALLBACK_LIMIT, IDLE_GRACE};

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
    let listener = worker.listen_tcp(&args.socket_addr().to_string())?;
    srv_examples::log_listening(&worker, listener.local_addr()?, args.socket_addr());
    // Set by the disconnect: every response from then on closes its
    // connection.
    let draining = Arc::new(AtomicBool::new(false));
    let for_app = Arc::clone(&draining);
    let server = HttpServer::new(move || {
        let draining = Arc::clone(&for_app);
        App::new()
            .app_data(web::Data::new(draining))
            .wrap(from_fn(close_when_draining))
            .route("/", web::get().to(move || async move { format!("ok {pid}\n") }))
            .route("/sleep", web::get().to(sleep))
    })
    // srv's processes are the parallelism: one actix worker thread each.
    .workers(1)
    // The master drives the lifecycle; actix must not act on SIGTERM or
    // SIGINT by itself (a Ctrl+C reaches every process of the group).
    .disable_signals()
    // The deadline is enforced below, from the master's grace; actix's
    // own limit (whole seconds) is only a backstop.
    .shutdown_timeout(FALLBACK_LIMIT.as_secs())
    .listen(listener)
    .context("serve on the listening socket")?
    .run();
    let handle = server.handle();
    let server = actix_web::rt::spawn(server);
    worker.online()?;
    log::info!("actix worker {pid} online");

    let reason = worker.disconnected().await;
    // Stop accepting at once; the connections already accepted are served.
    handle.pause().await;
    draining.store(true, Ordering::Relaxed);
    log::info!("actix worker {pid} disconnected ({reason:?}): stopped accepting");
    let until = worker.drain_until().unwrap_or_else(|| Instant::now() + FALLBACK_LIMIT);
    let until = tokio::time::Instant::from_std(until);
    let drained = async {
        // Idle keep-alive connections may carry one more request meanwhile.
        actix_web::rt::time::sleep(IDLE_GRACE).await;
        handle.stop(true).await;
        server.await
    };
    match tokio::time::timeout_at(until, drained).await {
        Ok(res) => {
            res.context("the actix server task")?.context("the actix server")?;
            log::info!("actix worker {pid} done, exiting");
        }
        Err(_) => log::warn!("actix worker {pid} exiting with requests still in flight"),
    }
    Ok(())
}

/// Adds `Connection: close` to every response once the worker drains.
async fn close_when_draining(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let draining = request.app_data::<web::Data<Arc<AtomicBool>>>().cloned();
    let mut response = next.call(request).await?;
    // Decided when the response is ready: a request in flight at the
    // disconnect closes its connection too.
    if draining.is_some_and(|draining| draining.load(Ordering::Relaxed)) {
        response.response_mut().head_mut().set_connection_type(ConnectionType::Close);
    }
    Ok(response)
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
