//! The messages of the protocol, one enum per direction.
//!
//! Separate enums make "the master never receives `Disconnect`" a type error.
//! Both are `#[non_exhaustive]`: a newer peer may add variants, and an older
//! peer that receives one gets a decode error ([`crate::DecodeError::Message`])
//! rather than a guess.

use serde::{Deserialize, Serialize};

use crate::ListenAddr;

/// The protocol version this crate speaks, sent by the worker in
/// [`WorkerMessage::Hello`] and checked by the master.
///
/// ```
/// use srv_proto::{PROTOCOL_VERSION, WorkerMessage};
///
/// let pid = std::process::id();
/// let hello = WorkerMessage::Hello { protocol_version: PROTOCOL_VERSION, pid };
/// assert!(matches!(hello, WorkerMessage::Hello { protocol_version: 1, .. }));
/// ```
pub const PROTOCOL_VERSION: u32 = 1;

/// A message from a worker to its master.
///
/// A worker says `Hello` first, then reports how far it got:
///
/// ```
/// use srv_proto::{Decoder, PROTOCOL_VERSION, WorkerMessage, frame};
///
/// let said = [
///     WorkerMessage::Hello { protocol_version: PROTOCOL_VERSION, pid: 4242 },
///     WorkerMessage::ListenRequest { addr: "127.0.0.1:0".parse().unwrap() },
///     WorkerMessage::Listening { addr: "127.0.0.1:8080".parse().unwrap() },
///     WorkerMessage::Online,
/// ];
/// let mut bytes = Vec::new();
/// said.iter().try_for_each(|message| frame::encode(message, &mut bytes)).unwrap();
/// let mut decoder = Decoder::new();
/// decoder.push(&bytes);
/// let heard = std::iter::from_fn(|| decoder.next_message::<WorkerMessage>().unwrap());
/// assert_eq!(heard.collect::<Vec<_>>(), said);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum WorkerMessage {
    /// The first message of every worker: who it is and what it speaks.
    Hello {
        /// The worker's [`PROTOCOL_VERSION`].
        protocol_version: u32,
        /// The worker's process id, as the worker sees it.
        pid: u32,
    },
    /// The worker is ready to do its work.
    Online,
    /// The worker asks the master for a listening socket bound to `addr`.
    ListenRequest {
        /// The address as the worker asked for it (port 0 included).
        addr: ListenAddr,
    },
    /// The worker now accepts connections on `addr` (its actual local address).
    Listening {
        /// The actual local address.
        addr: ListenAddr,
    },
    /// The worker is about to exit on purpose with `code`: not a crash.
    Exit {
        /// The exit code the worker is about to exit with.
        code: i32,
    },
}

/// A message from the master to a worker.
///
/// ```
/// use srv_proto::{ListenError, MasterMessage};
///
/// let refused = MasterMessage::ListenReply {
///     requested: "0.0.0.0:80".parse().unwrap(),
///     result: Err(ListenError { errno: Some(13), message: "bind 0.0.0.0:80: denied".into() }),
/// };
/// assert_eq!(refused.fd_count(), 0); // no socket travels with an error
/// assert_eq!(MasterMessage::Disconnect.fd_count(), 0);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum MasterMessage {
    /// The answer to [`WorkerMessage::ListenRequest`]. On success exactly one
    /// file descriptor, the listening socket, travels with this frame.
    ListenReply {
        /// The address as the worker asked for it.
        requested: ListenAddr,
        /// The socket's actual local address, or why there is none.
        result: Result<ListenAddr, ListenError>,
    },
    /// Stop accepting new work, finish what is in flight, then exit.
    Disconnect,
    /// The master refuses to go on with this worker; the worker should exit.
    Refused {
        /// Why, in words for a log line.
        reason: String,
    },
}

impl MasterMessage {
    /// How many file descriptors travel with this message.
    ///
    /// The receiver matches frames to the queue of received descriptors by
    /// this count; a mismatch is a protocol error.
    ///
    /// ```
    /// use srv_proto::MasterMessage;
    ///
    /// let granted = MasterMessage::ListenReply {
    ///     requested: "127.0.0.1:0".parse().unwrap(),
    ///     result: Ok("127.0.0.1:41000".parse().unwrap()),
    /// };
    /// assert_eq!(granted.fd_count(), 1); // the listening socket
    /// ```
    pub fn fd_count(&self) -> usize {
        match self {
            MasterMessage::ListenReply { result: Ok(_), .. } => 1,
            _ => 0,
        }
    }
}

impl WorkerMessage {
    /// How many file descriptors travel with this message: always none.
    ///
    /// ```
    /// assert_eq!(srv_proto::WorkerMessage::Online.fd_count(), 0);
    /// ```
    pub fn fd_count(&self) -> usize {
        0
    }
}

/// Why the master could not provide a listening socket.
///
/// It converts into an [`std::io::Error`] of the kind its `errno` maps to,
/// which is what `srv_worker::Worker::listen` returns.
///
/// ```
/// use srv_proto::ListenError;
///
/// let error = ListenError {
///     errno: Some(98), // EADDRINUSE on Linux
///     message: "bind 127.0.0.1:8080: Address already in use (os error 98)".into(),
/// };
/// let error = std::io::Error::from(error);
/// assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse);
/// assert!(error.to_string().starts_with("bind 127.0.0.1:8080"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenError {
    /// The OS error number, when the failure came from a syscall.
    pub errno: Option<i32>,
    /// A message naming the address, for example
    /// `bind 127.0.0.1:80: Permission denied (os error 13)`.
    pub message: String,
}

impl std::fmt::Display for ListenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ListenError {}

impl From<ListenError> for std::io::Error {
    fn from(error: ListenError) -> std::io::Error {
        let kind = match error.errno {
            Some(errno) => std::io::Error::from_raw_os_error(errno).kind(),
            None => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, error.message)
    }
}
