//! An async server under srv: axum on tokio, N worker processes sharing one
//! port, recycled without losing a request.
//!
//! ```text
//! cargo run --release --bin axum -- --port 8080 --workers 4
//! curl http://127.0.0.1:8080/             # ok <worker pid>
//! curl http://127.0.0.1:8080/sleep?ms=500 # slept 500
//! kill -HUP <master pid>                  # every worker replaced, one by one
//! ```
//!
//! The shape is the one any tokio server takes under srv:
//!
//! 1. `Worker::from_env` before the runtime starts any thread;
//! 2. `worker.listen_tcp(addr)` gives the socket the master holds for every
//!    worker, made non-blocking and handed to `tokio::net::TcpListener`;
//! 3. `worker.online()`, then `axum::serve` until `worker.disconnected()`,
//!    a plain `Future` that needs no tokio support from srv-worker.
//!
//! # Graceful shutdown without lost requests
//!
//! `axum::serve(..).with_graceful_shutdown(worker.disconnected())` alone
//! loses requests on keep-alive connections during a recycle. When the
//! signal fires, hyper's `graceful_shutdown` closes every *idle* connection
//! at once, and idle means "between two requests", which is exactly when a
//! keep-alive client sends its next request. If that request is already in
//! the socket's receive buffer, or on the wire, the close (a reset, since
//! unread data is thrown away) reaches the client instead of a response,
//! and the client cannot know whether the request was handled. The same
//! happens to a connection accepted just before the signal whose first
//! bytes hyper has not read yet (hyper-util's version detection, or hyper
//! before the first request, counts it as idle). This is the race by which
//! node cluster and PM2 lose requests on reload.
//!
//! Measured with the end-to-end recycle test (`examples/tests/e2e/axum.rs`:
//! 4 recycles of 2 workers under 3 client threads), the plain form lost 17
//! to 24 requests in each of 4 runs on keep-alive connections, and 1 to 9
//! in 8 of 9 runs even with a new connection per request (reset, or closed
//! before any response byte). The reference server (`http.rs`) avoids the
//! race, and so does this example, in three steps:
//!
//! 1. On the disconnect, stop accepting at once ([`DrainingListener`] drops
//!    this worker's descriptor of the shared socket; never `shutdown()` it,
//!    the other workers and the master hold the same socket). Connections
//!    waiting in the backlog are left to the other workers.
//! 2. Every response from then on carries `Connection: close`
//!    ([`close_after_disconnect`]), and hyper closes the connection after
//!    writing it, so a busy keep-alive connection ends cleanly after its
//!    next request and its client reconnects to another worker.
//! 3. Only [`IDLE_GRACE`] after the disconnect does axum's graceful shutdown
//!    begin: it closes the connections that stayed idle all that time, and
//!    waits for the requests still in flight.
//!
//! A client that sends on a connection idle for a whole second at the very
//! moment it is closed still loses that request, as with any HTTP/1.1
//! server that closes idle connections; a recycle makes it no more likely.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "prints usage and argument errors")]

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use srv_master::{Master, Options};
use srv_worker::{Disconnected, Worker};

const USAGE: &str = "\
usage: axum --port PORT [--config FILE] [--workers N] [--addr IP]
            [--recycle-timeout MS] [--shutdown-timeout MS] [--standalone]

  --port PORT           TCP port to serve on; 0 picks a free one (see the log)
  --config FILE         srv options from a .toml or .json file; the flags override it
  --workers N           number of worker processes (default 4)
  --addr IP             address to bind (default 127.0.0.1)
  --recycle-timeout MS  grace for each old worker on SIGHUP (default 15000)
  --shutdown-timeout MS grace for each worker on SIGTERM/SIGINT (default 15000)
  --standalone          serve in this process, without a master

GET / answers `ok <worker pid>`; GET /sleep?ms=N waits N ms (at most 60000).";

/// How long connections may stay open after the disconnect before the
/// idle ones are closed: long enough for a client that was about to send on
/// an idle keep-alive connection to have sent (see the module docs).
const IDLE_GRACE: Duration = Duration::from_secs(1);

/// The longest `/sleep`, in milliseconds; larger values are capped.
const MAX_SLEEP_MS: u64 = 60_000;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("axum: {error:#}\n(axum --help explains the options)");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            log::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    // Before any runtime thread exists: `from_env` takes the channel's
    // variables out of the environment.
    let worker = match Worker::from_env()? {
        Some(worker) => worker,
        None if args.standalone => Worker::standalone(),
        None => {
            Master::current_exe(args.options.clone())?.run()?;
            return Ok(());
        }
    };
    let listener = worker.listen_tcp(&args.addr.to_string())?;
    // Tokio needs a non-blocking socket. The flag is shared by every process
    // holding the socket, and every worker of this program sets it alike.
    listener.set_nonblocking(true).context("set the listening socket non-blocking")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the tokio runtime")?;
    runtime.block_on(serve(worker, listener, args.drain_limit()))
}

/// The worker: serve until disconnected, then drain and return.
async fn serve(
    worker: Worker,
    listener: std::net::TcpListener,
    drain_limit: Duration,
) -> anyhow::Result<()> {
    let pid = std::process::id();
    let listener = tokio::net::TcpListener::from_std(listener)?;
    if !worker.is_supervised() {
        // The master logs this line under a master; tests read the port from it.
        log::info!("listening on {}", listener.local_addr()?);
    }
    let worker = Arc::new(worker);
    let app = Router::new()
        .route("/", get(move || async move { format!("ok {pid}\n") }))
        .route("/sleep", get(sleep))
        .layer(axum::middleware::map_response_with_state(
            Arc::clone(&worker),
            close_after_disconnect,
        ));
    let listener =
        DrainingListener { listener: Some(listener), disconnected: worker.disconnected() };
    let disconnected = worker.disconnected();
    let shutdown = async move {
        let reason = disconnected.await;
        log::info!("axum worker {pid} disconnected ({reason:?}): stopped accepting");
        tokio::time::sleep(IDLE_GRACE).await;
    };
    worker.online()?;
    log::info!("axum worker {pid} online");

    let server = axum::serve(listener, app).with_graceful_shutdown(shutdown).into_future();
    // Serve for as long as it takes until the disconnect, then drain for at
    // most the master's own grace (it kills the worker after that anyway).
    tokio::pin!(server);
    tokio::select! {
        res = &mut server => res.context("serve")?,
        () = async { worker.disconnected().await; tokio::time::sleep(drain_limit).await } => {
            log::warn!("axum worker {pid} exiting with requests still in flight");
            return Ok(());
        }
    }
    log::info!("axum worker {pid} done, exiting");
    Ok(())
}

/// `GET /sleep?ms=N`: waits N ms, then answers.
async fn sleep(RawQuery(query): RawQuery) -> Result<String, (StatusCode, &'static str)> {
    let ms = query
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("ms="))
        .and_then(|ms| ms.parse::<u64>().ok())
        .ok_or((StatusCode::BAD_REQUEST, "usage: /sleep?ms=N\n"))?;
    let ms = ms.min(MAX_SLEEP_MS);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(format!("slept {ms}\n"))
}

/// Once the worker is disconnected, asks hyper to close each connection
/// after its response, so keep-alive clients move to the other workers.
async fn close_after_disconnect(
    State(worker): State<Arc<Worker>>,
    mut response: Response,
) -> Response {
    if worker.is_disconnected() {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// The shared listening socket, given up as soon as the worker is
/// disconnected: from then on `accept` never completes, and this worker's
/// descriptor is closed so that the kernel queues new connections for the
/// other workers only.
struct DrainingListener {
    /// `None` once disconnected.
    listener: Option<tokio::net::TcpListener>,
    disconnected: Disconnected,
}

impl axum::serve::Listener for DrainingListener {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (tokio::net::TcpStream, SocketAddr) {
        loop {
            let Some(listener) = &mut self.listener else {
                return std::future::pending().await;
            };
            tokio::select! {
                // Checked first: a disconnected worker takes no more
                // connections, even when some are ready.
                biased;
                _ = &mut self.disconnected => self.listener = None,
                accepted = axum::serve::Listener::accept(listener) => return accepted,
            }
        }
    }

    fn local_addr(&self) -> tokio::io::Result<SocketAddr> {
        match &self.listener {
            Some(listener) => listener.local_addr(),
            None => Err(std::io::Error::other("no longer listening: disconnected")),
        }
    }
}

/// The command line, checked.
#[derive(Debug)]
struct Args {
    addr: SocketAddr,
    options: Options,
    standalone: bool,
}

impl Args {
    /// `Ok(None)` for `--help`.
    fn parse(mut args: impl Iterator<Item = String>) -> anyhow::Result<Option<Args>> {
        let mut ip: IpAddr = [127, 0, 0, 1].into();
        let mut port: Option<u16> = None;
        let mut config: Option<PathBuf> = None;
        let mut workers: Option<usize> = None;
        let mut recycle_timeout: Option<u64> = None;
        let mut shutdown_timeout: Option<u64> = None;
        let mut standalone = false;
        while let Some(arg) = args.next() {
            let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
            let mut number = |what: &str| -> anyhow::Result<u64> {
                let text = value()?;
                text.parse().with_context(|| format!("{what} {text}"))
            };
            match arg.as_str() {
                "-h" | "--help" => return Ok(None),
                "--port" => port = Some(u16::try_from(number("--port")?).context("--port")?),
                "--addr" => ip = value()?.parse().context("--addr")?,
                "--config" => config = Some(value()?.into()),
                "--workers" => workers = Some(usize::try_from(number("--workers")?)?),
                "--recycle-timeout" => recycle_timeout = Some(number("--recycle-timeout")?),
                "--shutdown-timeout" => shutdown_timeout = Some(number("--shutdown-timeout")?),
                "--standalone" => standalone = true,
                _ => bail!("unknown argument {arg}"),
            }
        }
        let port = port.context("--port is required")?;
        let mut options = match &config {
            Some(path) => Options::from_file(path)?,
            None => Options::default(),
        };
        if let Some(workers) = workers {
            options.worker.count = workers;
        }
        if let Some(ms) = recycle_timeout {
            options.recycle.timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = shutdown_timeout {
            options.shutdown.timeout = Duration::from_millis(ms);
        }
        options.validate()?;
        Ok(Some(Args { addr: SocketAddr::new(ip, port), options, standalone }))
    }

    /// How long a disconnected worker may drain: the longest grace the
    /// master gives, and the limit when the master is gone.
    fn drain_limit(&self) -> Duration {
        self.options.recycle.timeout.max(self.options.shutdown.timeout)
    }
}
