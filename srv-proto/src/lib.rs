//! The wire protocol between an srv master and its workers.
//!
//! A master and each of its workers share one `socketpair(AF_UNIX,
//! SOCK_STREAM)`. The worker inherits its end at a fixed file descriptor
//! ([`env::CHANNEL_FD`]) whose number is also passed in an environment
//! variable ([`env::ENV_CHANNEL_FD`]). Over it travel length-prefixed frames
//! ([`frame`]) carrying postcard-encoded messages ([`message`]); listening
//! sockets travel beside a frame as `SCM_RIGHTS` ancillary data ([`fd`]).
//! [`Channel`] puts these together for either end.
//!
//! This crate has no event loop, no timers and no policy: it never decides
//! what a message means.
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![doc(test(attr(deny(warnings))))]

mod addr;
mod channel;
pub mod env;
pub mod fd;
pub mod frame;
pub mod message;

pub use addr::{AddrParseError, ListenAddr};
pub use channel::{Channel, MAX_QUEUED_FDS, Message, Received};
pub use frame::{DecodeError, Decoder, MAX_FRAME_LEN};
pub use message::{
    ListenError, MIN_PROTOCOL_VERSION, MasterMessage, PROTOCOL_VERSION, WorkerMessage,
};
