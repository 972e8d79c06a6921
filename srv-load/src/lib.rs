//! A load generator for the reference server: plain threads, blocking
//! `std::net::TcpStream`s and just enough HTTP/1.1.
//!
//! `cargo xtask bench` and the end-to-end tests (`examples/tests/e2e`) use
//! it; it depends on std only.
//!
//! [`Load::start`] spawns `threads` threads that send `GET {path}` requests
//! until `max_requests` (in total, over all threads) have been attempted,
//! `max_duration` has passed, or [`Load::stop`] is called. Every attempted
//! request ends as exactly one success or one classified [`Failure`], so a
//! [`Report`] always has `sent == ok + failed()`.
//!
//! # What counts as a failure
//!
//! A response other than `200`, a malformed response, a refused connection,
//! a timeout, and a connection that is reset or reaches end of file after the
//! request was written. The last one holds on a reused keep-alive connection
//! too: a server that closes an idle keep-alive connection races with a
//! request the client is already sending, and that lost request is exactly
//! what a graceful recycle must avoid. The generator cannot
//! cheaply tell whether the server closed before or after the request left,
//! and it does not try to be clever: it counts the failure.
//!
//! A response with `Connection: close` is not a failure; in keep-alive mode
//! the next request simply opens a new connection.
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::TcpListener;
//! use srv_load::{Load, LoadConfig, Mode};
//!
//! // A server that answers one request per connection, as the reference
//! // server's body says: `ok <pid>`.
//! let server = TcpListener::bind("127.0.0.1:0")?;
//! let addr = server.local_addr()?;
//! std::thread::spawn(move || {
//!     for stream in server.incoming().take(3) {
//!         let mut stream = stream.unwrap();
//!         let mut request = [0; 1024];
//!         let _ = stream.read(&mut request).unwrap();
//!         let body = "ok 42\n";
//!         let head = format!("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {}\r\n\r\n", body.len());
//!         stream.write_all(format!("{head}{body}").as_bytes()).unwrap();
//!     }
//! });
//! let config = LoadConfig { threads: 1, mode: Mode::NewConnection, max_requests: 3, ..LoadConfig::new(addr) };
//! let report = Load::start(config).wait();
//! assert_eq!((report.sent, report.ok, report.failed()), (3, 3, 0));
//! # Ok::<(), std::io::Error>(())
//! ```
#![warn(missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How many failures a [`Report`] lists one by one; [`Report::by_kind`]
/// counts all of them.
pub const MAX_LISTED_FAILURES: usize = 100;

/// The most answers a [`Report`] records one by one when
/// [`LoadConfig::record_answers`] is set, over all threads; more are
/// counted but not recorded, so memory stays bounded.
pub const MAX_RECORDED_ANSWERS: usize = 2_000_000;

/// A response head longer than this is malformed (the reference server's are
/// about 100 bytes).
const MAX_HEAD_LEN: usize = 16 * 1024;
/// A larger `Content-Length` is malformed rather than a reason to allocate.
const MAX_BODY_LEN: usize = 1024 * 1024;

/// How connections are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One connection per request; requests carry `Connection: close`.
    NewConnection,
    /// Reuse each connection until the server answers `Connection: close`
    /// or something fails.
    KeepAlive,
}

/// What to send, where, and for how long.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The server; it must be a loopback address.
    pub addr: SocketAddr,
    /// Number of client threads, each with at most one connection open.
    pub threads: usize,
    /// How connections are used.
    pub mode: Mode,
    /// The request target, e.g. `/` or `/sleep?ms=100`.
    pub path: String,
    /// Bound on the number of requests attempted, over all threads.
    pub max_requests: u64,
    /// Bound on the time spent starting new requests; a request in flight
    /// when it expires still completes (or times out).
    pub max_duration: Duration,
    /// Timeout for connecting and for each read and write.
    pub timeout: Duration,
    /// Record when each `200` answer came and from which worker pid
    /// ([`Report::answers`]), up to [`MAX_RECORDED_ANSWERS`].
    pub record_answers: bool,
}

impl LoadConfig {
    /// `GET /` on `addr` from 4 keep-alive threads, for at most 10 seconds,
    /// with a 5 second timeout and no bound on the number of requests.
    pub fn new(addr: SocketAddr) -> LoadConfig {
        LoadConfig {
            addr,
            threads: 4,
            mode: Mode::KeepAlive,
            path: "/".to_owned(),
            max_requests: u64::MAX,
            max_duration: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            record_answers: false,
        }
    }

    fn check(&self) -> Result<(), String> {
        if !self.addr.ip().is_loopback() {
            return Err(format!("refusing to load {}: not a loopback address", self.addr));
        }
        if self.threads == 0 {
            return Err("threads must be at least 1".to_owned());
        }
        if self.timeout.is_zero() {
            return Err("timeout must not be zero".to_owned());
        }
        if !self.path.starts_with('/') || self.path.contains(|c: char| c.is_ascii_whitespace()) {
            return Err(format!(
                "path {:?} must start with `/` and contain no whitespace",
                self.path
            ));
        }
        Ok(())
    }
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailureKind {
    /// The connection was refused.
    Refused,
    /// The connection was reset, or the request could not be written
    /// (`ECONNRESET`, `EPIPE`, `ECONNABORTED`).
    Reset,
    /// Connecting, writing or reading took longer than the timeout.
    Timeout,
    /// The server closed the connection after the request was written,
    /// before the whole response arrived.
    EofAfterRequest,
    /// A complete response with a status other than `200`.
    BadStatus(u16),
    /// The response was not HTTP/1.x as the reference server sends it.
    Malformed,
    /// Any other error.
    Other,
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureKind::Refused => f.write_str("refused"),
            FailureKind::Reset => f.write_str("reset"),
            FailureKind::Timeout => f.write_str("timeout"),
            FailureKind::EofAfterRequest => f.write_str("eof after request"),
            FailureKind::BadStatus(status) => write!(f, "status {status}"),
            FailureKind::Malformed => f.write_str("malformed response"),
            FailureKind::Other => f.write_str("other"),
        }
    }
}

/// One failed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Why it failed.
    pub kind: FailureKind,
    /// When it failed, since the load started.
    pub at: Duration,
    /// The client thread that sent it, from 0.
    pub thread: usize,
    /// Whether it was sent on a keep-alive connection that had already
    /// carried a response.
    pub reused: bool,
    /// The error or the offending response, for humans.
    pub detail: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let connection = if self.reused { "reused" } else { "new" };
        write!(
            f,
            "+{:.3?} thread {} ({connection} connection): {}: {}",
            self.at, self.thread, self.kind, self.detail
        )
    }
}

/// What a load did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Requests attempted (connecting counts as part of the attempt).
    pub sent: u64,
    /// Requests answered with `200`.
    pub ok: u64,
    /// The first [`MAX_LISTED_FAILURES`] failures, in time order.
    pub failures: Vec<Failure>,
    /// All failures, counted by kind.
    pub by_kind: BTreeMap<FailureKind, u64>,
    /// Worker pids parsed from `ok <pid>` response bodies.
    pub pids: BTreeSet<u32>,
    /// With [`LoadConfig::record_answers`]: every answer that named a pid,
    /// in the order of the time it was read, up to
    /// [`MAX_RECORDED_ANSWERS`].
    pub answers: Vec<Answer>,
    /// From [`Load::start`] until every thread finished.
    pub duration: Duration,
}

/// One `200` answer: when its last byte was read, since [`Load::start`],
/// and the worker pid it named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Answer {
    /// When its last byte was read, since [`Load::start`].
    pub at: Duration,
    /// The worker pid its body named.
    pub pid: u32,
}

impl Report {
    /// Number of failed requests, of all kinds.
    pub fn failed(&self) -> u64 {
        self.by_kind.values().sum()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent {}, ok {}, failed {} in {:.3?} from {} worker pids",
            self.sent,
            self.ok,
            self.failed(),
            self.duration,
            self.pids.len()
        )?;
        if !self.by_kind.is_empty() {
            let kinds: Vec<String> =
                self.by_kind.iter().map(|(kind, count)| format!("{kind}: {count}")).collect();
            write!(f, " ({})", kinds.join(", "))?;
        }
        for failure in &self.failures {
            write!(f, "\n  {failure}")?;
        }
        if self.failed() > self.failures.len() as u64 {
            write!(f, "\n  ... and {} more", self.failed() - self.failures.len() as u64)?;
        }
        Ok(())
    }
}

/// A running load; see the module documentation.
#[derive(Debug)]
pub struct Load {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<Tally>>,
}

impl Load {
    /// Spawns the client threads and returns at once.
    ///
    /// # Panics
    ///
    /// If `config.addr` is not a loopback address (this tool must never load
    /// someone else's server), if `threads` or `timeout` is zero, if `path`
    /// does not start with `/` or contains whitespace, or if a thread cannot
    /// be spawned.
    pub fn start(config: LoadConfig) -> Load {
        if let Err(why) = config.check() {
            panic!("load generator: {why}");
        }
        let started = Instant::now();
        let per_thread_answers = MAX_RECORDED_ANSWERS / config.threads;
        // A `max_duration` too long to add to `started` means no deadline.
        let deadline = started.checked_add(config.max_duration);
        let n_threads = config.threads;
        let shared = Arc::new(Shared {
            request: request_bytes(&config),
            config,
            started,
            deadline,
            stop: AtomicBool::new(false),
            claimed: AtomicU64::new(0),
            completed: AtomicU64::new(0),
        });
        let threads = (0..n_threads)
            .map(|index| {
                let shared = Arc::clone(&shared);
                thread::Builder::new()
                    .name(format!("load-{index}"))
                    .spawn(move || run_thread(&shared, index, per_thread_answers))
                    .expect("load generator: cannot spawn a client thread")
            })
            .collect();
        Load { shared, threads }
    }

    /// When the load started: [`Answer::at`] counts from here.
    pub fn started(&self) -> Instant {
        self.shared.started
    }

    /// Requests completed so far (answered or failed), over all threads.
    pub fn requests_so_far(&self) -> u64 {
        self.shared.completed.load(Ordering::Relaxed)
    }

    /// Whether every thread has stopped because a bound was reached.
    pub fn is_finished(&self) -> bool {
        self.threads.iter().all(JoinHandle::is_finished)
    }

    /// Stops starting new requests, waits for the ones in flight (each at
    /// most `timeout` per read or write) and reports.
    pub fn stop(self) -> Report {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.wait()
    }

    /// Waits until a bound is reached (`max_requests` or `max_duration`)
    /// and reports.
    pub fn wait(self) -> Report {
        let mut report = Report::default();
        let mut failures = Vec::new();
        for handle in self.threads {
            let tally = handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            report.sent += tally.sent;
            report.ok += tally.ok;
            failures.extend(tally.failures);
            for (kind, count) in tally.by_kind {
                *report.by_kind.entry(kind).or_insert(0) += count;
            }
            report.pids.extend(tally.pids);
            report.answers.extend(tally.answers);
        }
        report.answers.sort();
        // Each thread kept its own first failures, so together they hold the
        // first ones overall.
        failures.sort_by_key(|failure| failure.at);
        failures.truncate(MAX_LISTED_FAILURES);
        report.failures = failures;
        report.duration = self.shared.started.elapsed();
        report
    }
}

/// State shared by the client threads.
#[derive(Debug)]
struct Shared {
    config: LoadConfig,
    request: Vec<u8>,
    started: Instant,
    deadline: Option<Instant>,
    stop: AtomicBool,
    /// Requests claimed against `max_requests`; may overshoot it.
    claimed: AtomicU64,
    /// Requests completed, successfully or not.
    completed: AtomicU64,
}

impl Shared {
    /// Whether one more request may be sent, counting it if so.
    fn claim(&self) -> bool {
        let expired = self.deadline.is_some_and(|deadline| Instant::now() >= deadline);
        if self.stop.load(Ordering::Relaxed) || expired {
            return false;
        }
        self.claimed.fetch_add(1, Ordering::Relaxed) < self.config.max_requests
    }
}

/// One thread's part of a [`Report`].
#[derive(Debug, Default)]
struct Tally {
    sent: u64,
    ok: u64,
    failures: Vec<Failure>,
    by_kind: BTreeMap<FailureKind, u64>,
    pids: BTreeSet<u32>,
    answers: Vec<Answer>,
}

fn run_thread(shared: &Shared, index: usize, max_answers: usize) -> Tally {
    let mut tally = Tally::default();
    let mut connection: Option<Connection> = None;
    while shared.claim() {
        let reused = connection.is_some();
        tally.sent += 1;
        let res = attempt(&shared.config, &shared.request, &mut connection);
        let outcome = match res {
            Ok(response) if response.status == 200 => Ok(response),
            Ok(response) => Err((
                FailureKind::BadStatus(response.status),
                format!("body {:?}", String::from_utf8_lossy(&response.body)),
            )),
            Err(failure) => Err(failure),
        };
        match outcome {
            Ok(response) => {
                tally.ok += 1;
                let pid = parse_pid(&response.body);
                tally.pids.extend(pid);
                if let Some(pid) = pid
                    && shared.config.record_answers
                    && tally.answers.len() < max_answers
                {
                    tally.answers.push(Answer { at: shared.started.elapsed(), pid });
                }
            }
            Err((kind, detail)) => {
                *tally.by_kind.entry(kind).or_insert(0) += 1;
                if tally.failures.len() < MAX_LISTED_FAILURES {
                    let at = shared.started.elapsed();
                    tally.failures.push(Failure { kind, at, thread: index, reused, detail });
                }
            }
        }
        shared.completed.fetch_add(1, Ordering::Relaxed);
    }
    tally
}

/// Sends one request, on `connection` if there is one, else on a new
/// connection; leaves in `connection` what may carry the next request.
fn attempt(
    config: &LoadConfig,
    request: &[u8],
    connection: &mut Option<Connection>,
) -> Result<Response, (FailureKind, String)> {
    let mut conn = match connection.take() {
        Some(conn) => conn,
        None => Connection::open(config.addr, config.timeout)
            .map_err(|error| (classify(&error), format!("connect to {}: {error}", config.addr)))?,
    };
    conn.stream
        .write_all(request)
        .map_err(|error| (classify(&error), format!("write request: {error}")))?;
    let response = conn.receive()?;
    if config.mode == Mode::KeepAlive && !response.close {
        *connection = Some(conn);
    }
    Ok(response)
}

fn classify(error: &io::Error) -> FailureKind {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => FailureKind::Refused,
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => FailureKind::Reset,
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => FailureKind::Timeout,
        io::ErrorKind::UnexpectedEof => FailureKind::EofAfterRequest,
        _ => FailureKind::Other,
    }
}

fn request_bytes(config: &LoadConfig) -> Vec<u8> {
    let connection = match config.mode {
        Mode::NewConnection => "Connection: close\r\n",
        Mode::KeepAlive => "",
    };
    format!("GET {} HTTP/1.1\r\nHost: 127.0.0.1\r\n{connection}\r\n", config.path).into_bytes()
}

/// A connection and the bytes read from it that no response has used yet.
#[derive(Debug)]
struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Connection {
    fn open(addr: SocketAddr, timeout: Duration) -> io::Result<Connection> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(Connection { stream, buf: Vec::new() })
    }

    /// Reads one response; the request has been written.
    fn receive(&mut self) -> Result<Response, (FailureKind, String)> {
        let mut chunk = [0u8; 8192];
        loop {
            match parse_response(&self.buf) {
                Ok(Some((response, len))) => {
                    self.buf.drain(..len);
                    return Ok(response);
                }
                Ok(None) => {}
                Err(why) => return Err((FailureKind::Malformed, why)),
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    let detail = if self.buf.is_empty() {
                        "connection closed before any response byte".to_owned()
                    } else {
                        format!("connection closed after {} bytes of response", self.buf.len())
                    };
                    return Err((FailureKind::EofAfterRequest, detail));
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    return Err((classify(&error), format!("read response: {error}")));
                }
            }
        }
    }
}

/// A complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Response {
    status: u16,
    /// The server will close the connection after this response.
    close: bool,
    body: Vec<u8>,
}

/// Parses the response at the start of `bytes`: `Ok(None)` if more bytes
/// are needed, else the response and the number of bytes it took.
///
/// The reference server always sends `Content-Length`, so a response without
/// one is malformed, except for the statuses that have no body.
fn parse_response(bytes: &[u8]) -> Result<Option<(Response, usize)>, String> {
    let Some(head_end) = bytes.windows(4).position(|window| window == b"\r\n\r\n") else {
        if bytes.len() > MAX_HEAD_LEN {
            return Err(format!("no end of headers in the first {MAX_HEAD_LEN} bytes"));
        }
        return Ok(None);
    };
    if head_end > MAX_HEAD_LEN {
        return Err(format!("response head longer than {MAX_HEAD_LEN} bytes"));
    }
    let head = std::str::from_utf8(&bytes[..head_end])
        .map_err(|_| "response head is not UTF-8".to_owned())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let malformed_status = || format!("bad status line {status_line:?}");
    let (version, rest) = status_line.split_once(' ').ok_or_else(malformed_status)?;
    let mut close = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(malformed_status()),
    };
    let code = rest.split(' ').next().unwrap_or_default();
    if code.len() != 3 || !code.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(malformed_status());
    }
    let status: u16 = code.parse().map_err(|_| malformed_status())?;
    if status < 100 {
        return Err(malformed_status());
    }

    let mut content_length: Option<usize> = None;
    for line in lines {
        let (name, value) =
            line.split_once(':').ok_or_else(|| format!("bad header line {line:?}"))?;
        if name.is_empty() || name.contains(|c: char| c.is_ascii_whitespace()) {
            return Err(format!("bad header line {line:?}"));
        }
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            if value.is_empty() || !value.bytes().all(|byte| byte.is_ascii_digit()) {
                return Err(format!("bad content-length {value:?}"));
            }
            let len: usize = value.parse().map_err(|_| format!("bad content-length {value:?}"))?;
            if content_length.is_some_and(|previous| previous != len) {
                return Err("conflicting content-length headers".to_owned());
            }
            content_length = Some(len);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(format!("unsupported transfer-encoding {value:?}"));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") && version == "HTTP/1.0" {
                    close = false;
                }
            }
        }
    }

    let body_len = match content_length {
        Some(len) => len,
        None if status < 200 || status == 204 || status == 304 => 0,
        None => return Err(format!("status {status} without content-length")),
    };
    if body_len > MAX_BODY_LEN {
        return Err(format!("content-length {body_len} over {MAX_BODY_LEN}"));
    }
    let body_start = head_end + 4;
    let total = body_start + body_len;
    if bytes.len() < total {
        return Ok(None);
    }
    let body = bytes[body_start..total].to_vec();
    Ok(Some((Response { status, close, body }, total)))
}

/// The worker pid in a reference server body, `ok <pid>\n`.
fn parse_pid(body: &[u8]) -> Option<u32> {
    let body = std::str::from_utf8(body).ok()?;
    body.trim_end().strip_prefix("ok ")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, TcpListener};

    use super::*;

    fn parse(bytes: &str) -> Result<Option<(Response, usize)>, String> {
        parse_response(bytes.as_bytes())
    }

    fn response(status: u16, close: bool, body: &str) -> Response {
        Response { status, close, body: body.as_bytes().to_vec() }
    }

    #[test]
    fn parses_a_complete_response() {
        let text = "HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nok 1234\n";
        assert_eq!(parse(text), Ok(Some((response(200, false, "ok 1234\n"), text.len()))));
        assert_eq!(parse_pid(b"ok 1234\n"), Some(1234));
    }

    #[test]
    fn leaves_the_next_response_alone() {
        let first = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
        let text = format!("{first}HTTP/1.1 200 OK\r\n");
        assert_eq!(parse(&text), Ok(Some((response(200, false, "hi"), first.len()))));
    }

    #[test]
    fn waits_for_every_byte() {
        let text = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nok 1234\n";
        for len in 0..text.len() {
            assert_eq!(parse(&text[..len]), Ok(None), "prefix of {len} bytes");
        }
    }

    #[test]
    fn sees_connection_close() {
        let closes = [
            ("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", true),
            ("HTTP/1.1 200 OK\r\nconnection: Keep-Alive, Close\r\nContent-Length: 0\r\n\r\n", true),
            ("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", false),
            ("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", true),
            ("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", false),
        ];
        for (text, close) in closes {
            let (response, _) = parse(text).unwrap().unwrap();
            assert_eq!(response.close, close, "{text:?}");
        }
    }

    #[test]
    fn bodyless_statuses_need_no_content_length() {
        let text = "HTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(parse(text), Ok(Some((response(204, false, ""), text.len()))));
        let text = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy";
        assert_eq!(parse(text), Ok(Some((response(503, false, "busy"), text.len()))));
    }

    #[test]
    fn rejects_malformed_responses() {
        let malformed = [
            "garbage\r\n\r\n",
            "HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nno colon\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n",
        ];
        for text in malformed {
            assert!(parse(text).is_err(), "{text:?} parsed as {:?}", parse(text));
        }
        let endless_head = "HTTP/1.1 200 OK\r\n".repeat(MAX_HEAD_LEN);
        assert!(parse(&endless_head).is_err());
    }

    #[test]
    fn pid_only_from_ok_bodies() {
        assert_eq!(parse_pid(b"ok 7"), Some(7));
        assert_eq!(parse_pid(b"slept 100 ms\n"), None);
        assert_eq!(parse_pid(b"ok -1\n"), None);
    }

    #[test]
    fn refuses_remote_addresses() {
        let remote = LoadConfig::new("192.0.2.1:80".parse().unwrap());
        assert!(remote.check().unwrap_err().contains("not a loopback address"));
        assert_eq!(LoadConfig::new("[::1]:80".parse().unwrap()).check(), Ok(()));
        let bad_path = LoadConfig { path: "/a b".to_owned(), ..LoadConfig::new(local(80)) };
        assert!(bad_path.check().is_err());
    }

    fn local(port: u16) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    }

    /// What the scripted server does with one request.
    #[derive(Clone, Copy)]
    enum Reply {
        Ok {
            pid: u32,
            close: bool,
        },
        Status(u16),
        /// Close the connection after reading the request, without answering.
        Hang,
    }

    /// Serves one connection per element of `script`, in order, answering
    /// its requests as scripted; the thread returns every request it read.
    fn scripted_server(script: Vec<Vec<Reply>>) -> (SocketAddr, JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind(local(0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let mut requests = Vec::new();
            for replies in script {
                let (mut stream, _) = listener.accept().unwrap();
                for reply in replies {
                    let Some(request) = read_request(&mut stream) else { break };
                    requests.push(request);
                    let answer = match reply {
                        Reply::Ok { pid, close } => {
                            let body = format!("ok {pid}\n");
                            let connection = if close { "Connection: close\r\n" } else { "" };
                            format!(
                                "HTTP/1.1 200 OK\r\n{connection}Content-Length: {}\r\n\r\n{body}",
                                body.len()
                            )
                        }
                        Reply::Status(status) => {
                            format!("HTTP/1.1 {status} Nope\r\nContent-Length: 0\r\n\r\n")
                        }
                        Reply::Hang => break,
                    };
                    stream.write_all(answer.as_bytes()).unwrap();
                }
            }
            requests
        });
        (addr, server)
    }

    /// Reads one request head, or `None` at end of file.
    fn read_request(stream: &mut TcpStream) -> Option<String> {
        let mut request = Vec::new();
        let mut byte = [0u8; 1];
        while !request.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte) {
                Ok(0) | Err(_) => return None,
                Ok(_) => request.push(byte[0]),
            }
        }
        Some(String::from_utf8(request).unwrap())
    }

    fn config(addr: SocketAddr, mode: Mode, max_requests: u64) -> LoadConfig {
        LoadConfig {
            threads: 1,
            mode,
            max_requests,
            max_duration: Duration::from_secs(20),
            timeout: Duration::from_secs(10),
            ..LoadConfig::new(addr)
        }
    }

    #[test]
    fn keep_alive_counts_responses_and_lost_requests() {
        let (addr, server) = scripted_server(vec![
            vec![Reply::Ok { pid: 42, close: false }, Reply::Ok { pid: 43, close: true }],
            vec![Reply::Ok { pid: 44, close: false }, Reply::Status(503), Reply::Hang],
            vec![Reply::Hang],
        ]);
        let report = Load::start(config(addr, Mode::KeepAlive, 6)).wait();
        let requests = server.join().unwrap();

        assert_eq!((report.sent, report.ok, report.failed()), (6, 3, 3), "{report}");
        assert_eq!(report.pids, BTreeSet::from([42, 43, 44]));
        let by_kind =
            BTreeMap::from([(FailureKind::EofAfterRequest, 2), (FailureKind::BadStatus(503), 1)]);
        assert_eq!(report.by_kind, by_kind);
        let failures: Vec<(FailureKind, bool)> =
            report.failures.iter().map(|failure| (failure.kind, failure.reused)).collect();
        assert_eq!(
            failures,
            [
                (FailureKind::BadStatus(503), true),
                (FailureKind::EofAfterRequest, true),
                (FailureKind::EofAfterRequest, false),
            ]
        );
        assert_eq!(requests.len(), 6);
        for request in requests {
            assert_eq!(request, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        }
    }

    #[test]
    fn records_each_answer_with_its_pid_in_time_order_when_asked() {
        let script = vec![
            vec![Reply::Ok { pid: 7, close: true }],
            vec![Reply::Ok { pid: 8, close: false }, Reply::Status(503)],
        ];
        let (addr, server) = scripted_server(script.clone());
        let recording = LoadConfig { record_answers: true, ..config(addr, Mode::KeepAlive, 3) };
        let report = Load::start(recording).wait();
        server.join().unwrap();
        let pids: Vec<u32> = report.answers.iter().map(|answer| answer.pid).collect();
        assert_eq!(pids, [7, 8], "{report}");
        assert!(report.answers[0].at <= report.answers[1].at);
        assert!(report.answers[1].at <= report.duration);

        let (addr, server) = scripted_server(script);
        let report = Load::start(config(addr, Mode::KeepAlive, 3)).wait();
        server.join().unwrap();
        assert_eq!(report.ok, 2, "{report}");
        assert!(report.answers.is_empty(), "recorded without being asked");
    }

    #[test]
    fn new_connection_mode_asks_the_server_to_close() {
        let (addr, server) = scripted_server(vec![vec![Reply::Ok { pid: 1, close: false }]; 3]);
        let report = Load::start(config(addr, Mode::NewConnection, 3)).wait();
        let requests = server.join().unwrap();

        assert_eq!((report.sent, report.ok, report.failed()), (3, 3, 0), "{report}");
        assert_eq!(requests.len(), 3);
        for request in requests {
            assert_eq!(request, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        }
    }

    #[test]
    fn refused_connections_are_counted() {
        let addr = TcpListener::bind(local(0)).unwrap().local_addr().unwrap();
        // The listener is closed now, so nothing listens on `addr`.
        let report = Load::start(config(addr, Mode::KeepAlive, 3)).wait();
        assert_eq!((report.sent, report.ok), (3, 0), "{report}");
        assert_eq!(report.by_kind, BTreeMap::from([(FailureKind::Refused, 3)]));
    }

    /// Answers every request on every connection with `ok 1`, forever.
    fn endless_server() -> SocketAddr {
        let listener = TcpListener::bind(local(0)).unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                thread::spawn(move || {
                    while read_request(&mut stream).is_some() {
                        let answer = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nok 1\n";
                        if stream.write_all(answer.as_bytes()).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    #[test]
    fn stops_by_itself_after_max_duration() {
        let config = LoadConfig {
            threads: 2,
            max_duration: Duration::from_millis(100),
            ..LoadConfig::new(endless_server())
        };
        let report = Load::start(config).wait();
        assert!(report.ok > 0, "{report}");
        assert_eq!(report.failed(), 0, "{report}");
        assert_eq!(report.pids, BTreeSet::from([1]));
        assert!(report.duration < Duration::from_secs(5), "{report}");
    }

    #[test]
    fn stop_reports_what_was_done() {
        let config =
            LoadConfig { max_duration: Duration::MAX, ..LoadConfig::new(endless_server()) };
        let load = Load::start(config);
        let deadline = Instant::now() + Duration::from_secs(10);
        while load.requests_so_far() < 20 {
            assert!(Instant::now() < deadline, "no progress");
            thread::yield_now();
        }
        assert!(!load.is_finished());
        let report = load.stop();
        assert!(report.sent >= 20, "{report}");
        assert_eq!(report.ok, report.sent, "{report}");
    }
}
