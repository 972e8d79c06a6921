//! Encoder and address edge cases, found while writing the properties in
//! `props`, that need a specific input rather than an arbitrary one.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use srv_proto::{DecodeError, Decoder, ListenAddr, WorkerMessage, frame};

/// A Unix socket path that is not UTF-8: valid on Linux.
fn non_utf8_path() -> ListenAddr {
    ListenAddr::Unix(PathBuf::from(OsStr::from_bytes(b"/tmp/\xff.sock")))
}

/// The one address serde refuses to encode: a Unix path must name something.
fn empty_path() -> ListenAddr {
    ListenAddr::Unix(PathBuf::new())
}

#[test]
fn an_empty_path_is_a_message_error() {
    let mut bytes = Vec::new();
    let res = frame::encode(&WorkerMessage::ListenRequest { addr: empty_path() }, &mut bytes);
    assert!(matches!(res, Err(DecodeError::Message(_))), "{res:?}");
}

/// A path that is not UTF-8 travels, in its own form, and arrives as it
/// left (see `versions` for what peers of srv 0.1 make of it).
#[test]
fn a_non_utf8_path_travels_unchanged() {
    let mut bytes = Vec::new();
    let sent = WorkerMessage::ListenRequest { addr: non_utf8_path() };
    frame::encode(&sent, &mut bytes).unwrap();
    let text = b"unix-hex:2f746d702fff2e736f636b";
    assert!(bytes.windows(text.len()).any(|window| window == text), "{bytes:?}");
    let mut decoder = Decoder::new();
    decoder.push(&bytes);
    assert_eq!(decoder.next_message(), Ok(Some(sent)));
}

/// `encode` keeps its promise "on error `out` is left as it was" for serde
/// errors too, not only for oversized frames.
#[test]
fn encode_leaves_the_buffer_as_it_was_when_serde_fails() {
    let mut bytes = Vec::new();
    frame::encode(&WorkerMessage::Online, &mut bytes).unwrap();
    let before = bytes.clone();
    let res = frame::encode(&WorkerMessage::ListenRequest { addr: empty_path() }, &mut bytes);
    assert!(res.is_err());
    assert_eq!(bytes, before, "encode lost the frames already in the buffer");
}

/// An IPv6 scope id survives the wire: without it, binding a link-local
/// address fails with `EINVAL`.
#[test]
fn an_ipv6_scope_id_survives_the_wire() {
    let addr: ListenAddr = "[fe80::1%2]:8080".parse().unwrap();
    assert_eq!(addr.to_string(), "[fe80::1%2]:8080");
    let mut bytes = Vec::new();
    frame::encode(&WorkerMessage::ListenRequest { addr: addr.clone() }, &mut bytes).unwrap();
    let mut decoder = Decoder::new();
    decoder.push(&bytes);
    assert_eq!(decoder.next_message(), Ok(Some(WorkerMessage::ListenRequest { addr })));
}
