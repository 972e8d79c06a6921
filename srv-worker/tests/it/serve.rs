//! Feature `hyper` (and `axum`): the drain of `srv_worker::hyper::serve`,
//! in one process: a fake master holds the listening socket and sends
//! `Disconnect`, a real hyper server serves the worker's copy, and raw
//! HTTP/1.1 and hyper HTTP/2 clients play the connections a recycle meets.
//!
//! Waits here are on conditions (a response, end of file, a count of
//! descriptors) with deadlines; the only sleeps are part of a scenario (a
//! client that sends its next request 300 ms after the disconnect).

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::MetadataExt as _;
use std::time::Duration;

use http_body_util::{BodyExt as _, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use srv_proto::MasterMessage;
use srv_worker::drain::IDLE_GRACE;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};

use crate::FakeMaster;

/// No step of these tests waits longer.
const STEP: Duration = Duration::from_secs(10);

/// `GET /` answers `ok`; `GET /sleep?ms=N` answers `slept` after N ms.
async fn app(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let ms = request.uri().query().and_then(|query| query.strip_prefix("ms="));
    if let Some(ms) = ms.and_then(|ms| ms.parse().ok()) {
        sleep(Duration::from_millis(ms)).await;
        return Ok(Response::new(Full::new(Bytes::from("slept"))));
    }
    Ok(Response::new(Full::new(Bytes::from("ok"))))
}

/// What a test script drives while the worker serves.
struct Script<'a> {
    master: &'a mut FakeMaster,
    /// The master's own copy of the listening socket.
    held: &'a TcpListener,
    addr: SocketAddr,
}

impl Script<'_> {
    /// Tells the worker to go, with `grace`.
    fn disconnect(&mut self, grace: Duration) {
        self.master.send(&MasterMessage::Disconnect { grace: Some(grace) }, &[]);
    }

    /// How many descriptors of this process are the listening socket.
    fn listener_fds(&self) -> usize {
        let path = format!("/proc/self/fd/{}", self.held.as_raw_fd());
        let target = format!("socket:[{}]", std::fs::metadata(path).unwrap().ino());
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
            .filter(|link| link.to_str() == Some(target.as_str()))
            .count()
    }

    /// Waits until the worker's copy of the listening socket is closed:
    /// only the master's is left.
    async fn wait_listener_dropped(&self) {
        let deadline = Instant::now() + STEP;
        while self.listener_fds() != 1 {
            assert!(Instant::now() < deadline, "the worker still holds the listening socket");
            sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Runs `script` beside `srv_worker::hyper::serve` on a worker whose fake
/// master gave it a socket on 127.0.0.1, and returns when both are done.
fn serve_beside(script: impl AsyncFnOnce(Script<'_>)) {
    let (mut master, worker) = FakeMaster::connect();
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap();
    let granted = held.try_clone().unwrap();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let asked = tokio::task::spawn_blocking(move || {
            master.grant(&granted);
            master
        });
        let listener = worker.listen_tokio_tcp(([127, 0, 0, 1], 0)).unwrap();
        let mut master = asked.await.unwrap();
        let serve = srv_worker::hyper::serve(&worker, listener, |_peer: &SocketAddr| {
            hyper::service::service_fn(app)
        });
        let script = script(Script { master: &mut master, held: &held, addr });
        let (served, ()) = tokio::join!(timeout(STEP, serve), script);
        served.expect("serve returns once drained, within its deadline");
    });
}

/// An HTTP/1.1 response, as the raw client reads it.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// `Connection: close` was among the headers.
    close: bool,
    body: String,
}

/// Sends `GET path` on `stream` (HTTP/1.1, keep-alive) and reads one
/// response, by its `Content-Length`.
async fn get(stream: &mut TcpStream, path: &str) -> Result<Answer, String> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|error| format!("write: {error}"))?;
    let mut bytes = Vec::new();
    let head_end = loop {
        if let Some(end) = bytes.windows(4).position(|window| window == b"\r\n\r\n") {
            break end + 4;
        }
        let mut chunk = [0; 1024];
        let n = timeout(STEP, stream.read(&mut chunk))
            .await
            .map_err(|_| "no response".to_owned())?
            .map_err(|error| format!("read: {error}"))?;
        if n == 0 {
            return Err(format!("end of file after {} bytes", bytes.len()));
        }
        bytes.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(bytes[..head_end].to_vec()).unwrap().to_ascii_lowercase();
    let status = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .map_or(0, |length| length.trim().parse().unwrap());
    while bytes.len() < head_end + length {
        let mut chunk = [0; 1024];
        let n = timeout(STEP, stream.read(&mut chunk)).await.unwrap().unwrap();
        assert_ne!(n, 0, "end of file within the body");
        bytes.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8(bytes[head_end..].to_vec()).unwrap();
    Ok(Answer { status, close: head.contains("\r\nconnection: close\r\n"), body })
}

/// Waits for the server to close `stream`: end of file (or a reset).
async fn wait_closed(stream: &mut TcpStream) {
    let mut byte = [0; 1];
    let read = timeout(STEP, stream.read(&mut byte)).await.expect("the server closes it");
    assert!(!matches!(read, Ok(1)), "unexpected data from the server");
}

#[test]
fn an_idle_keep_alive_connection_carries_one_more_request_after_the_disconnect() {
    serve_beside(async |mut script| {
        let mut client = TcpStream::connect(script.addr).await.unwrap();
        let first = get(&mut client, "/").await.unwrap();
        assert_eq!((first.status, first.close), (200, false), "{first:?}");
        // The connection is idle, as between any two requests of a
        // keep-alive client, when the master says go.
        script.disconnect(Duration::from_secs(10));
        script.wait_listener_dropped().await;
        sleep(IDLE_GRACE / 3).await; // the client's next request comes now
        let last = get(&mut client, "/").await.expect("the request after the disconnect");
        assert_eq!((last.status, last.close, last.body.as_str()), (200, true, "ok"));
        wait_closed(&mut client).await;
    });
}

#[test]
fn a_request_in_flight_at_the_disconnect_completes_and_closes_its_connection() {
    serve_beside(async |mut script| {
        let mut client = TcpStream::connect(script.addr).await.unwrap();
        let slow = tokio::spawn(async move {
            let answer = get(&mut client, "/sleep?ms=500").await;
            (answer, client)
        });
        // Let the request reach the server, then disconnect.
        sleep(Duration::from_millis(100)).await;
        script.disconnect(Duration::from_secs(10));
        let (answer, mut client) = slow.await.unwrap();
        let answer = answer.expect("the slow request completes");
        assert_eq!((answer.status, answer.close, answer.body.as_str()), (200, true, "slept"));
        wait_closed(&mut client).await;
    });
}

#[test]
fn a_disconnected_worker_accepts_nothing_and_closes_idle_connections_after_the_grace() {
    serve_beside(async |mut script| {
        let mut idle = TcpStream::connect(script.addr).await.unwrap();
        assert_eq!(get(&mut idle, "/").await.unwrap().status, 200);
        assert_eq!(script.listener_fds(), 2, "the master's copy and the worker's");
        let disconnected_at = Instant::now();
        script.disconnect(Duration::from_secs(10));
        script.wait_listener_dropped().await;
        // At once, not when the drain ends: the idle connection is still open.
        let mut byte = [0; 1];
        assert!(
            timeout(Duration::ZERO, idle.read(&mut byte)).await.is_err(),
            "the listener was dropped only at the end of the drain"
        );
        // A new connection waits in the backlog for another worker: here,
        // the master's copy takes it.
        let _queued = TcpStream::connect(script.addr).await.unwrap();
        let deadline = Instant::now() + STEP;
        while let Err(error) = script.held.accept() {
            assert_eq!(error.kind(), std::io::ErrorKind::WouldBlock, "{error}");
            assert!(Instant::now() < deadline, "the connection did not stay in the backlog");
            sleep(Duration::from_millis(5)).await;
        }
        // The idle connection is closed only once the grace is over.
        wait_closed(&mut idle).await;
        assert!(disconnected_at.elapsed() >= IDLE_GRACE, "closed before the idle grace");
    });
}

#[test]
fn an_http2_connection_gets_goaway_at_once_and_its_streams_complete() {
    serve_beside(async |mut script| {
        let io = hyper_util::rt::TokioIo::new(TcpStream::connect(script.addr).await.unwrap());
        let executor = hyper_util::rt::TokioExecutor::new();
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(executor, io)
                .await
                .unwrap();
        let connection = tokio::spawn(connection);
        let request = || {
            let uri = format!("http://{}/sleep?ms=300", script.addr);
            Request::get(uri).body(Empty::<Bytes>::new()).unwrap()
        };
        let first = sender.send_request(request()).await.unwrap();
        assert_eq!(first.version(), hyper::Version::HTTP_2);
        // An idle HTTP/1.1 connection beside it, to tell "at once" from
        // "after the idle grace".
        let mut idle = TcpStream::connect(script.addr).await.unwrap();
        assert_eq!(get(&mut idle, "/").await.unwrap().status, 200);

        let in_flight = sender.send_request(request());
        let in_flight = tokio::spawn(in_flight);
        sleep(Duration::from_millis(50)).await; // the stream reaches the server
        script.disconnect(Duration::from_secs(10));
        let response = in_flight.await.unwrap().expect("the stream in flight completes");
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "slept");
        // GOAWAY, then the connection ends when its last stream did: while
        // the idle HTTP/1.1 connection still waits out its grace.
        timeout(STEP, connection).await.expect("the HTTP/2 connection ends").unwrap().unwrap();
        let mut byte = [0; 1];
        assert!(
            timeout(Duration::ZERO, idle.read(&mut byte)).await.is_err(),
            "the idle HTTP/1.1 connection was closed as early as the HTTP/2 one"
        );
        wait_closed(&mut idle).await;
    });
}

#[test]
fn requests_still_running_at_the_deadline_are_cut_and_serve_returns() {
    serve_beside(async |mut script| {
        let mut client = TcpStream::connect(script.addr).await.unwrap();
        let endless = tokio::spawn(async move { get(&mut client, "/sleep?ms=60000").await });
        sleep(Duration::from_millis(100)).await;
        // The master gives 1.5 s: `serve` gives up 100 ms before that, well
        // within the 5 s this test waits (and its client's own 10 s).
        script.disconnect(Duration::from_millis(1500));
        let within = Duration::from_secs(5);
        let cut = timeout(within, endless).await.expect("cut at the deadline").unwrap();
        assert!(cut.is_err(), "a request of a minute completed: {cut:?}");
    });
}

#[test]
fn a_shorter_grace_told_during_the_drain_brings_its_end_forward() {
    serve_beside(async |mut script| {
        let mut client = TcpStream::connect(script.addr).await.unwrap();
        let endless = tokio::spawn(async move { get(&mut client, "/sleep?ms=60000").await });
        sleep(Duration::from_millis(100)).await;
        // A recycle's grace, then a shutdown that cuts it to 1.5 s.
        script.disconnect(Duration::from_secs(30));
        sleep(Duration::from_millis(200)).await;
        script.disconnect(Duration::from_millis(1500));
        let within = Duration::from_secs(5);
        let cut = timeout(within, endless).await.expect("cut at the new deadline").unwrap();
        assert!(cut.is_err(), "a request of a minute completed: {cut:?}");
    });
}

#[cfg(feature = "axum")]
#[test]
fn axum_serve_drains_and_gives_handlers_the_peer_address() {
    use axum::extract::ConnectInfo;
    use axum::routing::get as route_get;

    let (mut master, worker) = FakeMaster::connect();
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let granted = held.try_clone().unwrap();
        let asked = tokio::task::spawn_blocking(move || {
            master.grant(&granted);
            master
        });
        let listener = worker.listen_tokio_tcp(([127, 0, 0, 1], 0)).unwrap();
        let mut master = asked.await.unwrap();
        let app = axum::Router::new().route(
            "/",
            route_get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        );
        let serve = srv_worker::axum::serve(&worker, listener, app);
        let script = async {
            let mut client = TcpStream::connect(addr).await.unwrap();
            let answer = get(&mut client, "/").await.unwrap();
            assert_eq!(answer.body, client.local_addr().unwrap().to_string());
            master.send(&MasterMessage::Disconnect { grace: Some(STEP) }, &[]);
            sleep(IDLE_GRACE / 3).await;
            let last = get(&mut client, "/").await.unwrap();
            assert_eq!((last.status, last.close), (200, true), "{last:?}");
        };
        let (served, ()) = tokio::join!(timeout(STEP, serve), script);
        served.expect("serve returns once drained");
    });
}
