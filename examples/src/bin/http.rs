//! The reference server: a small HTTP/1.1 server run as N srv workers, which
//! the end-to-end tests and the benchmarks drive.
//!
//! ```text
//! cargo run --release --bin http -- --port 8080 --workers 4
//! curl http://127.0.0.1:8080/            # ok <worker pid>
//! curl http://127.0.0.1:8080/sleep?ms=500 # slept 500
//! curl http://127.0.0.1:8080/exe          # exe <hash of the binary> <pid>
//! curl http://127.0.0.1:8080/alloc?mb=64  # holds 64 MiB <pid>
//! ```
//!
//! One binary is both master and worker (as in `hello`): started by hand it
//! is the master, which re-executes it once per worker with the same
//! arguments; started by a master it is a worker. `--standalone` serves in
//! this very process, without a master. The command line and that order
//! are the examples' shared `srv_examples::run`.
//!
//! `--config FILE` loads srv's options from a TOML or JSON file
//! (`Options::from_file`); the option flags given with it override the file.
//! Only the master reads it: a worker learns its drain deadline from the
//! master's `Disconnect`.
//!
//! A worker asks the master for the shared listening socket, reports
//! `online`, then accepts in a `poll(2)` loop on two descriptors: the
//! listening socket and `Worker::disconnect_fd`. Each turn of that loop
//! calls `Worker::alive`, and `poll` waits at most
//! `Worker::heartbeat_interval`, so that a master with `worker.watchdog`
//! hears from the loop itself: a stopped or stuck loop goes silent. Each connection gets a
//! thread that reads with a short timeout ([`READ_TICK`]), so an idle
//! connection notices the disconnect without any wake-up machinery.
//!
//! # Shutdown sequence
//!
//! A disconnect has one meaning whatever its reason (recycle, shutdown, one
//! worker fewer, or the master died and the channel reached end of file):
//!
//! 1. Stop accepting at once, and drop this worker's descriptor of the
//!    listening socket. Never `shutdown()` it: the kernel socket is shared
//!    with the other workers and the master, and a shutdown would stop them
//!    all. Connections waiting in the backlog stay there for the other
//!    workers (or the replacement); that is what makes a recycle lossless.
//! 2. Requests in flight finish and are answered with `Connection: close`.
//! 3. An idle keep-alive connection may carry one more request, answered
//!    with `Connection: close`. Only a connection that stays idle for
//!    [`IDLE_GRACE`] after the disconnect is closed without an answer: the
//!    client may be sending a request at the very moment the server closes,
//!    and that request would be lost (see `srv_worker::drain`).
//! 4. When the last connection is done, exit 0. A worker never waits past
//!    `Worker::drain_until`, shortly before the master's deadline, after
//!    which the master would kill it anyway.
//!
//! These are the steps of `srv_worker::drain`, which the async examples get
//! from `srv_worker::hyper::serve`; this threaded server takes the same
//! numbers from there.
//!
//! Every close after a response is a lingering close ([`close_gracefully`]):
//! shut down the sending side, then read what the client still sends for a
//! moment, because closing a socket with unread data makes the kernel send
//! a reset, which can destroy the response before the client reads it.
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use srv_examples::ServerArgs;
use srv_worker::Worker;
use srv_worker::drain::{FALLBACK_LIMIT, IDLE_GRACE};

const ABOUT: &str = "The reference server: a threaded HTTP/1.1 server run as N srv workers.";

const PAGES: &str = "\
GET / answers `ok <worker pid>`; GET /sleep?ms=N waits N ms (at most 60000);
GET /exe answers `exe <hash of the worker's executable file> <worker pid>`;
GET /alloc?mb=N makes the worker hold N MiB (at most 1024), allocated and touched,
until the next /alloc, and answers `holds N MiB <worker pid>`.";

/// The most memory `GET /alloc?mb=N` makes a worker hold, in MiB.
const MAX_ALLOC_MB: usize = 1024;

/// What `GET /alloc` makes this worker hold: resident, since every page
/// was written, until the next `/alloc` replaces it.
static HELD: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// How long a connection thread blocks in one `read` before it looks at the
/// disconnect state again.
const READ_TICK: Duration = Duration::from_millis(100);

/// An idle keep-alive connection is closed after this long even without a
/// disconnect, so clients that vanish do not keep threads forever.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(60);

/// A client that takes longer than this to take a response is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a lingering close reads what the client still sends.
const LINGER: Duration = Duration::from_secs(1);

/// The request line and headers together; more is answered with 431.
const MAX_HEAD_LEN: usize = 8 * 1024;

/// A larger declared body is answered with 413 rather than read.
const MAX_BODY_LEN: u64 = 1024 * 1024;

/// The 64-bit FNV-1a hash of the executable file this worker runs, or why
/// it could not be computed; computed by the first `GET /exe` (see
/// [`exe_hash`]), not at start: reading and hashing the whole executable
/// takes tens of milliseconds, which every start, recycle and crash
/// recovery would otherwise wait for.
static EXE_HASH: OnceLock<Result<u64, String>> = OnceLock::new();

/// Back-off after an unexpected `accept` error (for example out of
/// descriptors), so that `poll` reporting the socket readable again and
/// again does not turn into a busy loop.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

fn main() -> ExitCode {
    srv_examples::main("http", ABOUT, PAGES, serve)
}

/// The worker: accept until disconnected, then drain and return.
fn serve(worker: Worker, args: &ServerArgs) -> anyhow::Result<()> {
    let pid = std::process::id();
    let requested = args.socket_addr();
    let listener = worker.listen_tcp(requested)?;
    // Several workers accept on this one socket, and one of them may win the
    // race for a connection that `poll` announced to all: accept must not
    // block then. `O_NONBLOCK` is shared by every process holding the socket,
    // which is fine because every worker of this program sets it.
    listener.set_nonblocking(true).context("set the listening socket non-blocking")?;
    srv_examples::log_listening(&worker, listener.local_addr()?, requested);
    worker.online()?;
    log::info!("http worker {pid} online");

    let worker = Arc::new(worker);
    let connections = Arc::new(Connections::default());
    accept_until_disconnected(&worker, &listener, &connections)?;
    // Dropping our descriptor is all it takes; the socket lives on in the
    // master and the other workers (see the module documentation).
    drop(listener);

    let reason = worker.disconnect_reason().map_or_else(String::new, |reason| reason.to_string());
    log::info!(
        "http worker {pid} disconnected ({reason}): stopped accepting, finishing {} connections",
        connections.open()
    );
    // The master's deadline (less a margin) when it gave one; otherwise,
    // the master is gone, the worker's own limit.
    let until = worker.drain_until().unwrap_or_else(|| Instant::now() + FALLBACK_LIMIT);
    let left = connections.wait_all(until);
    if left == 0 {
        log::info!("http worker {pid} done, exiting");
    } else {
        log::warn!("http worker {pid} exiting with {left} connections still open");
    }
    Ok(())
}

/// Hashes the bytes of the executable file this process runs, so that
/// `GET /exe` tells which binary a worker was started from: after the file
/// on disk is replaced and the workers are recycled, the new workers answer
/// with another hash than the old ones.
///
/// `/proc/self/exe` opens the file this process was started from even after
/// it was replaced or deleted, where a path would open the new file; so the
/// hash may be computed at any time in the worker's life, and is computed
/// only when first asked for.
fn exe_hash() -> Result<u64, String> {
    let bytes =
        std::fs::read("/proc/self/exe").map_err(|error| format!("read /proc/self/exe: {error}"))?;
    Ok(fnv1a_64(&bytes))
}

/// 64-bit FNV-1a: tiny, stable across Rust versions (unlike
/// `DefaultHasher`), and good enough to tell two binaries apart.
fn fnv1a_64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(PRIME))
}

fn accept_until_disconnected(
    worker: &Arc<Worker>,
    listener: &TcpListener,
    connections: &Arc<Connections>,
) -> anyhow::Result<()> {
    let disconnect_fd = worker.disconnect_fd().context("create the disconnect pipe")?;
    // Watched by the master (`worker.watchdog`): wake up often enough to
    // prove, from this very loop, that it runs, traffic or not.
    let tick = worker.heartbeat_interval().map_or(PollTimeout::NONE, |every| {
        PollTimeout::try_from(every).unwrap_or(PollTimeout::MAX)
    });
    loop {
        if let Err(error) = worker.alive() {
            // The master is gone; the disconnect pipe says so next.
            log::debug!("heartbeat: {error}");
        }
        let mut fds = [
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(disconnect_fd, PollFlags::POLLIN),
        ];
        match poll(&mut fds, tick) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(io::Error::from(errno)).context("poll the listening socket"),
        }
        // Readable, or an error/hang-up: either way the worker is done.
        if fds[1].any() == Some(true) || worker.is_disconnected() {
            return Ok(());
        }
        if fds[0].any() != Some(true) {
            continue;
        }
        // Take what is queued, but look at the disconnect between accepts;
        // a backlog that stays full keeps this loop here, and each accept
        // proves it runs.
        while !worker.is_disconnected() {
            let _ = worker.alive();
            match listener.accept() {
                Ok((stream, _)) => spawn_connection(stream, worker, connections),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(error) => {
                    log::error!("accept: {error}");
                    thread::sleep(ACCEPT_ERROR_PAUSE);
                    break;
                }
            }
        }
    }
}

fn spawn_connection(stream: TcpStream, worker: &Arc<Worker>, connections: &Arc<Connections>) {
    // Counted before the thread starts, so the count is right as soon as the
    // accept loop ends.
    let guard = connections.open_one();
    let worker = Arc::clone(worker);
    let spawned = thread::Builder::new().name("http-connection".into()).spawn(move || {
        let _guard = guard;
        if let Err(error) = serve_connection(stream, &worker) {
            log::debug!("connection: {error}");
        }
    });
    if let Err(error) = spawned {
        // The closure, the stream and the guard are dropped: the connection
        // is closed and uncounted.
        log::error!("cannot start a connection thread: {error}");
    }
}

/// The number of open connections, and a way to wait for it to reach 0.
#[derive(Debug, Default)]
struct Connections {
    open: Mutex<usize>,
    changed: Condvar,
}

/// One open connection; dropping it (even in a panic) uncounts it.
#[derive(Debug)]
struct ConnectionGuard(Arc<Connections>);

impl Connections {
    fn lock(&self) -> MutexGuard<'_, usize> {
        self.open.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    fn open_one(self: &Arc<Connections>) -> ConnectionGuard {
        *self.lock() += 1;
        ConnectionGuard(Arc::clone(self))
    }

    fn open(&self) -> usize {
        *self.lock()
    }

    /// Waits until no connection is open or `until` has passed; returns how
    /// many are still open.
    fn wait_all(&self, until: Instant) -> usize {
        let limit = until.saturating_duration_since(Instant::now());
        let (open, _) = self
            .changed
            .wait_timeout_while(self.lock(), limit, |open| *open > 0)
            .unwrap_or_else(|poison| poison.into_inner());
        *open
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        *self.0.lock() -= 1;
        self.0.changed.notify_all();
    }
}

/// Serves requests on one connection, one at a time, until either side
/// closes it. Bytes after the current request (a pipelined request) stay in
/// the buffer for the next round.
fn serve_connection(mut stream: TcpStream, worker: &Worker) -> io::Result<()> {
    // Accepted sockets do not inherit `O_NONBLOCK` on Linux, but other
    // systems differ; the read timeout below needs a blocking socket.
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(READ_TICK))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(1024);
    let mut idle_since = Instant::now();
    let mut disconnected_at = None;
    loop {
        // Wait for a complete request head.
        let head_len = loop {
            skip_blank_lines(&mut buf);
            let head_len = find_head_end(&buf);
            if head_len.unwrap_or(buf.len()) > MAX_HEAD_LEN {
                let response = Response::error(431, "request head too large");
                return respond_and_close(stream, &response, false);
            }
            if let Some(head_len) = head_len {
                break head_len;
            }
            if buf.is_empty() {
                // Idle: between requests, or before the first one.
                if disconnected_at.is_none() && worker.is_disconnected() {
                    disconnected_at = Some(Instant::now());
                }
                let grace_over = disconnected_at.is_some_and(|at| at.elapsed() >= IDLE_GRACE);
                if grace_over || idle_since.elapsed() >= KEEP_ALIVE_TIMEOUT {
                    return Ok(());
                }
            }
            if read_tick(&mut stream, &mut buf)? == Some(0) {
                // The client closed; a partial request has nobody to answer.
                return Ok(());
            }
        };

        let request = parse_head(&buf[..head_len]);
        buf.drain(..head_len);
        let request = match request {
            Ok(request) => request,
            Err(response) => return respond_and_close(stream, &response, false),
        };
        if request.content_length > MAX_BODY_LEN {
            let response = Response::error(413, "request body too large");
            return respond_and_close(stream, &response, request.is_head);
        }
        // Read the body and discard it.
        let mut body_left = request.content_length;
        loop {
            let take = buf.len().min(usize::try_from(body_left).unwrap_or(usize::MAX));
            buf.drain(..take);
            body_left -= take as u64;
            if body_left == 0 {
                break;
            }
            if read_tick(&mut stream, &mut buf)? == Some(0) {
                return Ok(());
            }
        }

        let response = route(&request);
        // Decided after the work is done: a disconnect that came meanwhile
        // closes this connection too.
        let close = !request.keep_alive || worker.is_disconnected();
        if close {
            return respond_and_close(stream, &response, request.is_head);
        }
        let connection = if request.is_http10 { "keep-alive" } else { "" };
        stream.write_all(&response.to_bytes(connection, request.is_head))?;
        idle_since = Instant::now();
    }
}

/// Reads once, waiting one [`READ_TICK`] at most. `Some(0)` is end of file,
/// `None` a tick without data.
fn read_tick(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
    let mut chunk = [0; 4096];
    match stream.read(&mut chunk) {
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(Some(n))
        }
        Err(error) if is_tick(&error) => Ok(None),
        Err(error) => Err(error),
    }
}

/// A read timeout shows up as `WouldBlock` on Unix, `TimedOut` elsewhere.
fn is_tick(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

fn respond_and_close(mut stream: TcpStream, response: &Response, is_head: bool) -> io::Result<()> {
    stream.write_all(&response.to_bytes("close", is_head))?;
    close_gracefully(stream);
    Ok(())
}

/// A lingering close: stop sending, then read (and drop) what the client
/// still sends until it closes or [`LINGER`] passes. Closing with unread
/// data would make the kernel answer with a reset, and a reset can destroy
/// the response before the client has read it.
fn close_gracefully(mut stream: TcpStream) {
    if stream.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER;
    let mut sink = [0; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut sink) {
            Ok(0) => return,
            Ok(_) => {}
            Err(error) if is_tick(&error) => {}
            Err(_) => return,
        }
    }
}

/// Drops empty lines before a request line, which RFC 9112 §2.2 asks
/// servers to ignore (some clients send a CRLF after a body).
fn skip_blank_lines(buf: &mut Vec<u8>) {
    let blank = buf.iter().take_while(|&&byte| byte == b'\r' || byte == b'\n').count();
    buf.drain(..blank);
}

/// The length of the request head (through its empty line), if complete.
/// Lines end with CRLF or, leniently, with a bare LF.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    for (i, &byte) in buf.iter().enumerate() {
        if byte == b'\n' {
            if matches!(&buf[line_start..i], b"" | b"\r") {
                return Some(i + 1);
            }
            line_start = i + 1;
        }
    }
    None
}

/// What the server needs to know about a request.
#[derive(Debug)]
struct Request {
    method: String,
    /// `HEAD`: the response has no body.
    is_head: bool,
    target: String,
    is_http10: bool,
    keep_alive: bool,
    content_length: u64,
}

/// Parses a complete request head, or says what to answer (and then close).
fn parse_head(head: &[u8]) -> Result<Request, Response> {
    let bad = |why: &str| Response::error(400, why);
    let head = std::str::from_utf8(head).map_err(|_| bad("request head is not UTF-8"))?;
    let mut lines = head.lines().map(|line| line.strip_suffix('\r').unwrap_or(line));
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("malformed request line"));
    };
    if method.is_empty() || !method.bytes().all(|byte| byte.is_ascii_alphabetic()) {
        return Err(bad("malformed method"));
    }
    if target.is_empty() || target.bytes().any(|byte| byte.is_ascii_control()) {
        return Err(bad("malformed request target"));
    }
    let is_http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ if version.starts_with("HTTP/") => {
            return Err(Response::error(505, "only HTTP/1.0 and HTTP/1.1 are supported"));
        }
        _ => return Err(bad("malformed HTTP version")),
    };

    let (mut wants_close, mut wants_keep_alive) = (false, false);
    let mut content_length = None;
    for line in lines.take_while(|line| !line.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(bad("malformed header line"));
        };
        if name.is_empty() || name.bytes().any(|byte| byte.is_ascii_whitespace()) {
            return Err(bad("malformed header name"));
        }
        let value = value.trim();
        if name.eq_ignore_ascii_case("connection") {
            for option in value.split(',').map(str::trim) {
                wants_close |= option.eq_ignore_ascii_case("close");
                wants_keep_alive |= option.eq_ignore_ascii_case("keep-alive");
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            let length = (!value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit()))
                .then(|| value.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| bad("malformed Content-Length"))?;
            if content_length.is_some_and(|known| known != length) {
                return Err(bad("conflicting Content-Length headers"));
            }
            content_length = Some(length);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked bodies are not worth the code here; without reading
            // them, the connection cannot be reused.
            return Err(Response::error(501, "Transfer-Encoding is not supported"));
        }
    }
    let keep_alive = if is_http10 { wants_keep_alive && !wants_close } else { !wants_close };
    Ok(Request {
        method: method.to_owned(),
        is_head: method == "HEAD",
        target: target.to_owned(),
        is_http10,
        keep_alive,
        content_length: content_length.unwrap_or(0),
    })
}

/// A response; `Content-Length` and `Connection` are added when it is sent.
#[derive(Debug)]
struct Response {
    status: u16,
    extra_header: &'static str,
    body: String,
}

impl Response {
    fn ok(body: String) -> Response {
        Response { status: 200, extra_header: "", body }
    }

    fn error(status: u16, why: &str) -> Response {
        Response { status, extra_header: "", body: format!("{why}\n") }
    }

    /// The response on the wire; `connection` is the `Connection` header's
    /// value, or empty for none. A response to `HEAD` has no body.
    fn to_bytes(&self, connection: &str, is_head: bool) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            413 => "Content Too Large",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            501 => "Not Implemented",
            505 => "HTTP Version Not Supported",
            _ => "Unknown",
        };
        let connection = if connection.is_empty() {
            String::new()
        } else {
            format!("Connection: {connection}\r\n")
        };
        let mut bytes = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{connection}{}\r\n",
            self.status,
            self.body.len(),
            self.extra_header,
        )
        .into_bytes();
        if !is_head {
            bytes.extend_from_slice(self.body.as_bytes());
        }
        bytes
    }
}

/// The pages: `/`, `/sleep?ms=N` and `/exe`.
fn route(request: &Request) -> Response {
    let (path, query) = request.target.split_once('?').unwrap_or((&request.target, ""));
    match path {
        "/" | "/sleep" | "/exe" | "/alloc"
            if !matches!(request.method.as_str(), "GET" | "HEAD") =>
        {
            Response {
                status: 405,
                extra_header: "Allow: GET, HEAD\r\n",
                body: "only GET and HEAD\n".to_owned(),
            }
        }
        "/" => Response::ok(format!("ok {}\n", std::process::id())),
        "/sleep" => {
            let Some(ms) = srv_examples::sleep_ms(Some(query)) else {
                return Response::error(400, "usage: /sleep?ms=N");
            };
            thread::sleep(Duration::from_millis(ms));
            Response::ok(format!("slept {ms}\n"))
        }
        "/exe" => match EXE_HASH.get_or_init(exe_hash) {
            Ok(hash) => Response::ok(format!("exe {hash:016x} {}\n", std::process::id())),
            Err(why) => Response::error(500, why),
        },
        "/alloc" => {
            let mb = query.split('&').find_map(|pair| pair.strip_prefix("mb="));
            match mb.and_then(|mb| mb.parse::<usize>().ok()) {
                Some(mb) if mb <= MAX_ALLOC_MB => {
                    hold(mb << 20);
                    Response::ok(format!("holds {mb} MiB {}\n", std::process::id()))
                }
                Some(_) => Response::error(400, &format!("at most {MAX_ALLOC_MB} MiB")),
                None => Response::error(400, "usage: /alloc?mb=N"),
            }
        }
        _ => Response::error(404, "not found"),
    }
}

/// Makes this worker hold `bytes`, every page written so that it is
/// resident, in place of what it held.
fn hold(bytes: usize) {
    let mut held = HELD.lock().unwrap_or_else(|poison| poison.into_inner());
    // Freed first: the worker holds the new amount, not both.
    *held = Vec::new();
    // A non-zero value: pages of zeroes could stay shared with the zero page.
    *held = vec![0x5a; bytes];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_64_matches_the_published_test_vectors() {
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
