//! How a disconnected HTTP worker drains without losing a request, and the
//! numbers every drain of this crate and of its examples shares.
//!
//! A disconnect has one meaning whatever its reason (recycle, shutdown, one
//! worker fewer, or the master is gone): stop taking work, finish what is in
//! flight, exit. Done naively, that loses requests on keep-alive
//! connections, which is how node cluster and PM2 lose requests on reload:
//! a connection is *idle* between two requests, which is exactly when its
//! client sends the next one. Closing it at that moment races with a
//! request already in the socket's receive buffer or on the wire; the
//! client reads end of file or a reset instead of a response, and cannot
//! know whether its request was handled. hyper's `graceful_shutdown` (and so
//! `axum::serve(..).with_graceful_shutdown(..)`) closes idle HTTP/1
//! connections at once, and that is the race.
//!
//! The drain that loses nothing, in four steps:
//!
//! 1. **Stop accepting at once**: drop this worker's descriptor of the
//!    listening socket. Never `shutdown()` it: the master and the other
//!    workers hold the same kernel socket, and a shutdown would stop them
//!    all. Connections waiting in the backlog stay there for the other
//!    workers, or for the replacement.
//! 2. **Close busy connections after their response**: every HTTP/1.1
//!    response from then on carries `Connection: close`, so a keep-alive
//!    client opens its next connection to another worker. An HTTP/2
//!    connection gets a `GOAWAY` at once; the streams it carries complete,
//!    and the client opens new streams elsewhere.
//! 3. **Close idle connections only after [`IDLE_GRACE`]**: a client that
//!    was about to send on an idle connection does so within milliseconds,
//!    and gets its answer (with `Connection: close`). A connection still
//!    idle after the grace is closed as any keep-alive connection may be.
//! 4. **Exit when the last connection is done**, and no later than the
//!    master's deadline ([`crate::Worker::drain_until`]): the master kills the
//!    worker then anyway.
//!
//! What no server can promise: a client that sends on a connection that
//! stayed idle for the whole [`IDLE_GRACE`], at the very moment it is
//! closed, gets end of file instead of an answer, as with any HTTP/1.1
//! server that closes idle connections; a recycle makes it no more likely
//! than the server's own keep-alive timeout does. A request still running
//! at the master's deadline is cut off.

use std::time::Duration;

/// How long idle connections stay open after the disconnect, waiting for
/// one last request (step 3 above).
///
/// ```
/// assert_eq!(srv_worker::drain::IDLE_GRACE.as_millis(), 1000);
/// ```
pub const IDLE_GRACE: Duration = Duration::from_secs(1);

/// How long a worker drains when its master gave no deadline: the master
/// is gone, so nobody will kill the worker, or it speaks protocol version 1,
/// whose default grace this is (srv-master's default `recycle.timeout` and
/// `shutdown.timeout`).
///
/// ```
/// assert_eq!(srv_worker::drain::FALLBACK_LIMIT.as_secs(), 15);
/// ```
pub const FALLBACK_LIMIT: Duration = Duration::from_secs(15);

/// How long before the master's deadline a draining worker gives up on the
/// requests still in flight and exits, so that it ends by itself, with its
/// own log line, rather than by `SIGKILL`. The deadline the worker knows is
/// the master's plus the message's transit, which is far shorter.
///
/// ```
/// assert!(srv_worker::drain::EXIT_MARGIN < srv_worker::drain::IDLE_GRACE);
/// ```
pub const EXIT_MARGIN: Duration = Duration::from_millis(100);
