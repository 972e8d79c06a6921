//! The messages of the protocol, one enum per direction.
//!
//! Separate enums make "the master never receives `Disconnect`" a type error.
//! Both are `#[non_exhaustive]`: a newer peer may add variants, and an older
//! peer that receives one gets a decode error ([`crate::DecodeError::Message`])
//! rather than a guess.
//!
//! # Versions
//!
//! postcard encodes an enum as its variant's index followed by its fields,
//! with nothing that says where a message ends but the frame, so a field added
//! to an existing variant makes an older decoder fail on the trailing bytes. A
//! change of the wire format is therefore a new [`PROTOCOL_VERSION`], and a
//! master speaks every version from [`MIN_PROTOCOL_VERSION`] on:
//!
//! | version | what changed |
//! |---|---|
//! | 1 | the first: `Hello`, `Online`, `ListenRequest`, `Listening`, `Exit`; `ListenReply`, `Disconnect`, `Refused` |
//! | 2 | `Disconnect` carries the grace the master gives; `Alive`, the heartbeat of a worker the master watches (`worker.watchdog`, announced in [`crate::env::ENV_WATCHDOG_MS`]) |
//!
//! Both peers of one deployment can differ: a SIGHUP recycle starts workers
//! from a newly built binary under the master that is already running, and
//! a new master may supervise workers built earlier. So both sides adapt:
//!
//! - the master announces the newest version it speaks in the worker's
//!   environment ([`crate::env::ENV_PROTOCOL_VERSION`]; a master that
//!   predates the variable speaks version 1), and a worker says `Hello` with
//!   the newest version both speak;
//! - the master learns each worker's version from its `Hello`, and sends it
//!   only what that version decodes: a worker of version 1 gets `Disconnect`
//!   in its version-1 form, without the grace (`grace: None`), as does a
//!   worker that has not said `Hello` yet;
//! - a worker sends `Alive` only to a master of version 2 or later that
//!   announced a watchdog period, so a master of version 1 never gets it,
//!   and a worker of version 1, which never sends it, is never watched.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ListenAddr;

/// The newest protocol version this crate speaks, sent by the worker in
/// [`WorkerMessage::Hello`] and checked by the master (see the module
/// documentation for what each version changed).
///
/// ```
/// use srv_proto::{PROTOCOL_VERSION, WorkerMessage};
///
/// let pid = std::process::id();
/// let hello = WorkerMessage::Hello { protocol_version: PROTOCOL_VERSION, pid };
/// assert!(matches!(hello, WorkerMessage::Hello { protocol_version: 2, .. }));
/// ```
pub const PROTOCOL_VERSION: u32 = 2;

/// The oldest protocol version this crate still speaks: a master accepts a
/// `Hello` with any version from this one to [`PROTOCOL_VERSION`].
///
/// ```
/// use srv_proto::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
///
/// let spoken = MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION;
/// assert!(spoken.contains(&1) && spoken.contains(&2));
/// ```
pub const MIN_PROTOCOL_VERSION: u32 = 1;

/// The first protocol version with [`WorkerMessage::Alive`]: a master
/// watches only workers that said `Hello` with this version or a later one.
///
/// ```
/// assert!(srv_proto::message::ALIVE_VERSION <= srv_proto::PROTOCOL_VERSION);
/// ```
pub const ALIVE_VERSION: u32 = 2;

/// The first protocol version whose peers read a Unix path that is not
/// UTF-8 (`unix-hex:`, see [`ListenAddr`]): a worker asks a master of an
/// older version only for paths it can name.
///
/// ```
/// assert!(srv_proto::message::NON_UTF8_PATH_VERSION <= srv_proto::PROTOCOL_VERSION);
/// ```
pub const NON_UTF8_PATH_VERSION: u32 = 2;

/// The first protocol version whose `Disconnect` carries the grace.
///
/// ```
/// assert!(srv_proto::message::GRACE_VERSION <= srv_proto::PROTOCOL_VERSION);
/// ```
pub const GRACE_VERSION: u32 = 2;

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
    /// The worker's serving loop ran since its last `Alive` (protocol 2,
    /// see [`ALIVE_VERSION`]): the heartbeat of a worker its master watches
    /// (`worker.watchdog`). A worker sends it a few times per watchdog
    /// period, and only when the master announced one
    /// ([`crate::env::ENV_WATCHDOG_MS`]).
    ///
    /// ```
    /// use srv_proto::{Decoder, WorkerMessage, frame};
    ///
    /// let mut bytes = Vec::new();
    /// frame::encode(&WorkerMessage::Alive, &mut bytes)?;
    /// assert_eq!(bytes.len(), 5); // a 4-byte length and the variant's index
    /// let mut decoder = Decoder::new();
    /// decoder.push(&bytes);
    /// assert_eq!(decoder.next_message::<WorkerMessage>()?, Some(WorkerMessage::Alive));
    /// # Ok::<(), srv_proto::DecodeError>(())
    /// ```
    Alive,
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
/// assert_eq!(MasterMessage::Disconnect { grace: None }.fd_count(), 0);
/// ```
///
/// On the wire, `Disconnect` has two forms: `grace: None` is protocol 1's
/// `Disconnect`, which every worker decodes, and `grace: Some(..)` a variant
/// that only workers of protocol 2 or later decode (see the module
/// documentation). The grace travels in whole milliseconds.
///
/// ```
/// use std::time::Duration;
/// use srv_proto::{Decoder, MasterMessage, frame};
///
/// let told = MasterMessage::Disconnect { grace: Some(Duration::from_millis(15_000)) };
/// let mut bytes = Vec::new();
/// frame::encode(&told, &mut bytes)?;
/// let mut decoder = Decoder::new();
/// decoder.push(&bytes);
/// assert_eq!(decoder.next_message::<MasterMessage>()?, Some(told));
/// # Ok::<(), srv_proto::DecodeError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
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
    Disconnect {
        /// How long the master gives the worker to exit before it kills it,
        /// counted from when it sent this message; `None` from a master, or
        /// to a worker, of protocol version 1, which does not say.
        grace: Option<Duration>,
    },
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

/// [`MasterMessage`] as it travels: every form of every protocol version,
/// in the order that gives each its postcard variant index. Variants are only
/// ever added at the end, so the indexes of older ones never change.
#[derive(Deserialize)]
enum Wire {
    ListenReply {
        requested: ListenAddr,
        result: Result<ListenAddr, ListenError>,
    },
    /// Protocol 1's disconnect, without a grace.
    Disconnect,
    Refused {
        reason: String,
    },
    /// Protocol 2: the disconnect with the grace, in milliseconds.
    DisconnectWithin {
        grace_ms: u64,
    },
}

/// [`Wire`] borrowing from a [`MasterMessage`], so that encoding copies
/// nothing. Its variants mirror [`Wire`]'s, index for index.
#[derive(Serialize)]
enum WireRef<'a> {
    ListenReply { requested: &'a ListenAddr, result: &'a Result<ListenAddr, ListenError> },
    Disconnect,
    Refused { reason: &'a str },
    DisconnectWithin { grace_ms: u64 },
}

impl Serialize for MasterMessage {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let wire = match self {
            MasterMessage::ListenReply { requested, result } => {
                WireRef::ListenReply { requested, result }
            }
            MasterMessage::Disconnect { grace: None } => WireRef::Disconnect,
            MasterMessage::Disconnect { grace: Some(grace) } => {
                // Saturates: a grace of more than 584 million years is
                // no different from one of exactly that.
                let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
                WireRef::DisconnectWithin { grace_ms }
            }
            MasterMessage::Refused { reason } => WireRef::Refused { reason },
        };
        wire.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for MasterMessage {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<MasterMessage, D::Error> {
        Ok(match Wire::deserialize(deserializer)? {
            Wire::ListenReply { requested, result } => {
                MasterMessage::ListenReply { requested, result }
            }
            Wire::Disconnect => MasterMessage::Disconnect { grace: None },
            Wire::DisconnectWithin { grace_ms } => {
                MasterMessage::Disconnect { grace: Some(Duration::from_millis(grace_ms)) }
            }
            Wire::Refused { reason } => MasterMessage::Refused { reason },
        })
    }
}

impl MasterMessage {
    /// A `Disconnect` with `grace` in the form a worker that said `Hello`
    /// with `protocol_version` decodes: with the grace from
    /// [`GRACE_VERSION`] on, without it before (and for `None`, a worker
    /// that has not said `Hello` yet).
    ///
    /// ```
    /// use std::time::Duration;
    /// use srv_proto::{MasterMessage, PROTOCOL_VERSION};
    ///
    /// let grace = Duration::from_secs(15);
    /// let new = MasterMessage::disconnect_for(Some(PROTOCOL_VERSION), grace);
    /// assert_eq!(new, MasterMessage::Disconnect { grace: Some(grace) });
    /// let old = MasterMessage::disconnect_for(Some(1), grace);
    /// assert_eq!(old, MasterMessage::Disconnect { grace: None });
    /// ```
    pub fn disconnect_for(protocol_version: Option<u32>, grace: Duration) -> MasterMessage {
        let knows_grace = protocol_version.is_some_and(|version| version >= GRACE_VERSION);
        MasterMessage::Disconnect { grace: knows_grace.then_some(grace) }
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
