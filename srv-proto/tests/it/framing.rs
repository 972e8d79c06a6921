//! Encoder and address edge cases, found while writing the properties in
//! `props`, that need a specific input rather than an arbitrary one.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use srv_proto::{DecodeError, Decoder, ListenAddr, WorkerMessage, frame};

/// A Unix socket path that is not UTF-8: valid on Linux, but serde refuses
/// to encode it.
fn non_utf8_path() -> ListenAddr {
    ListenAddr::Unix(PathBuf::from(OsStr::from_bytes(b"/tmp/\xff.sock")))
}

#[test]
fn a_non_utf8_path_is_a_message_error() {
    let mut bytes = Vec::new();
    let res = frame::encode(&WorkerMessage::ListenRequest { addr: non_utf8_path() }, &mut bytes);
    assert!(matches!(res, Err(DecodeError::Message(_))), "{res:?}");
}

/// `encode` keeps its promise "on error `out` is left as it was" for serde
/// errors too, not only for oversized frames.
#[test]
fn encode_leaves_the_buffer_as_it_was_when_serde_fails() {
    let mut bytes = Vec::new();
    frame::encode(&WorkerMessage::Online, &mut bytes).unwrap();
    let before = bytes.clone();
    let res = frame::encode(&WorkerMessage::ListenRequest { addr: non_utf8_path() }, &mut bytes);
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
