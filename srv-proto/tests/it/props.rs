//! Properties of the framing, checked with proptest on arbitrary messages,
//! arbitrary splits of the byte stream, and garbage.
//!
//! The strategies are written by hand, one per type: a new field shows up
//! here as a compile error, a new variant needs a new `prop_oneof!` arm.
//! Three restrictions keep the round trip exact: a disconnect's grace is
//! whole milliseconds (its unit on the wire), IPv6 addresses carry no flow
//! info or scope id (serde's compact form drops both; see `framing` for the
//! scope id), and Unix paths are not empty (see `framing`). Unix paths are
//! any bytes: UTF-8 or not, each travels in its own form (see `versions`).
//!
//! Case counts keep the whole crate's tests within a few seconds in debug
//! builds; `PROPTEST_CASES` raises them for a longer run. Failures are saved
//! next to this file (`props.proptest-regressions`) and replayed first.

use std::ffi::OsString;
use std::net::{Ipv6Addr, SocketAddr};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde::Serialize;
use serde::de::DeserializeOwned;
use srv_proto::frame::{self, HEADER_LEN};
use srv_proto::{
    DecodeError, Decoder, ListenAddr, ListenError, MAX_FRAME_LEN, MasterMessage, WorkerMessage,
};

/// `cases` cases, unless `PROPTEST_CASES` says otherwise, with failures
/// saved beside this file rather than in a `proptest-regressions` folder at
/// the crate root.
pub(crate) fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

pub(crate) fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(SocketAddr::from),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::from((Ipv6Addr::from(ip), port))),
    ]
}

fn listen_addr() -> impl Strategy<Value = ListenAddr> {
    prop_oneof![
        socket_addr().prop_map(ListenAddr::Tcp),
        any::<String>()
            .prop_filter("a unix path is not empty", |path| !path.is_empty())
            .prop_map(|path| ListenAddr::Unix(PathBuf::from(path))),
        vec(any::<u8>(), 1..128)
            .prop_map(|bytes| ListenAddr::Unix(PathBuf::from(OsString::from_vec(bytes)))),
    ]
}

fn listen_error() -> impl Strategy<Value = ListenError> {
    (any::<Option<i32>>(), any::<String>())
        .prop_map(|(errno, message)| ListenError { errno, message })
}

fn worker_message() -> impl Strategy<Value = WorkerMessage> {
    prop_oneof![
        (any::<u32>(), any::<u32>())
            .prop_map(|(protocol_version, pid)| WorkerMessage::Hello { protocol_version, pid }),
        Just(WorkerMessage::Online),
        listen_addr().prop_map(|addr| WorkerMessage::ListenRequest { addr }),
        listen_addr().prop_map(|addr| WorkerMessage::Listening { addr }),
        any::<i32>().prop_map(|code| WorkerMessage::Exit { code }),
        Just(WorkerMessage::Alive),
    ]
}

fn master_message() -> impl Strategy<Value = MasterMessage> {
    let result = prop_oneof![listen_addr().prop_map(Ok), listen_error().prop_map(Err)];
    prop_oneof![
        (listen_addr(), result)
            .prop_map(|(requested, result)| MasterMessage::ListenReply { requested, result }),
        // The grace travels in whole milliseconds.
        proptest::option::of(any::<u64>().prop_map(std::time::Duration::from_millis))
            .prop_map(|grace| MasterMessage::Disconnect { grace }),
        any::<String>().prop_map(|reason| MasterMessage::Refused { reason }),
    ]
}

fn encode_all<T: Serialize>(messages: &[T]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for message in messages {
        frame::encode(message, &mut bytes).unwrap();
    }
    bytes
}

/// Pushes `bytes` cut at `cuts` (sorted and deduplicated here) and takes
/// every message as soon as it is complete, checking after each push that
/// the decoder holds exactly the bytes of the incomplete frame.
fn decode_at_cuts<T: DeserializeOwned>(bytes: &[u8], mut cuts: Vec<usize>) -> Vec<T> {
    cuts.push(bytes.len());
    cuts.sort_unstable();
    cuts.dedup();
    let mut decoder = Decoder::new();
    let mut messages = Vec::new();
    let (mut start, mut n_frame_bytes) = (0, 0);
    for end in cuts {
        decoder.push(&bytes[start..end]);
        start = end;
        while let Some(message) = decoder.next_message::<T>().unwrap() {
            messages.push(message);
            n_frame_bytes = end - decoder.pending();
        }
        assert_eq!(decoder.pending(), end - n_frame_bytes);
    }
    assert_eq!(decoder.pending(), 0);
    messages
}

/// What feeding bytes to a decoder came to.
#[derive(Debug, Default)]
struct Fed {
    n_frames: usize,
    too_long: Option<usize>,
}

/// Feeds `bytes` in chunks of `chunk_sizes` (cycled; each size at least 1),
/// each followed by an empty push, and takes every frame, decoding each
/// payload as both message types (see [`check_round_trip`]). Checks the
/// decoder's accounting after every step: it holds exactly the bytes pushed
/// and not yet returned, and nothing once poisoned.
fn feed(bytes: &[u8], chunk_sizes: &[usize]) -> Fed {
    let mut decoder = Decoder::new();
    let mut fed = Fed::default();
    let (mut n_pushed, mut n_returned) = (0, 0);
    let mut sizes = chunk_sizes.iter().cycle();
    while n_pushed < bytes.len() {
        let size = (*sizes.next().unwrap()).min(bytes.len() - n_pushed);
        decoder.push(&bytes[n_pushed..n_pushed + size]);
        decoder.push(&[]);
        n_pushed += size;
        loop {
            match decoder.next_frame() {
                Ok(Some(payload)) => {
                    assert!(fed.too_long.is_none(), "a frame after the stream was poisoned");
                    assert!(payload.len() <= MAX_FRAME_LEN);
                    n_returned += HEADER_LEN + payload.len();
                    fed.n_frames += 1;
                    check_round_trip::<WorkerMessage>(payload);
                    check_round_trip::<MasterMessage>(payload);
                }
                Ok(None) => break,
                Err(DecodeError::TooLong { len }) => {
                    assert!(fed.too_long.is_none(), "TooLong twice");
                    assert!(len > MAX_FRAME_LEN);
                    fed.too_long = Some(len);
                }
                Err(DecodeError::Poisoned) => {
                    assert!(fed.too_long.is_some(), "poisoned without TooLong");
                    break;
                }
                Err(error) => panic!("next_frame returned {error:?}"),
            }
        }
        let expected_pending = if fed.too_long.is_some() { 0 } else { n_pushed - n_returned };
        assert_eq!(decoder.pending(), expected_pending);
    }
    fed
}

/// Decodes an arbitrary payload as `T`; when that succeeds (by chance), the
/// message encodes back to a frame that decodes to the same message.
fn check_round_trip<T>(payload: &[u8])
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let Ok(message) = frame::decode::<T>(payload) else {
        return;
    };
    let bytes = encode_all(std::slice::from_ref(&message));
    assert_eq!(frame::decode::<T>(&bytes[HEADER_LEN..]).as_ref(), Ok(&message));
}

/// One frame with an honest header over a random payload.
fn honest_frame() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..48).prop_map(|payload| {
        let mut bytes = (payload.len() as u32).to_le_bytes().to_vec();
        bytes.extend(payload);
        bytes
    })
}

/// Bytes that look like a frame stream often enough to reach the payload
/// decoders: honest frames mixed with raw garbage (which soon reads as an
/// oversized header).
fn frame_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    let garbage = vec(any::<u8>(), 0..8);
    vec(prop_oneof![4 => honest_frame(), 1 => garbage], 0..24)
        .prop_map(|segments| segments.concat())
}

fn messages_and_cuts<S>(message: S) -> impl Strategy<Value = (Vec<S::Value>, Vec<usize>)>
where
    S: Strategy,
    S::Value: Serialize + Clone,
{
    vec(message, 1..8).prop_flat_map(|messages| {
        let len = encode_all(&messages).len();
        (Just(messages), vec(0..=len, 0..24))
    })
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn every_worker_message_round_trips(message in worker_message()) {
        let bytes = encode_all(std::slice::from_ref(&message));
        let len = u32::from_le_bytes(bytes[..HEADER_LEN].try_into().unwrap()) as usize;
        prop_assert_eq!(len, bytes.len() - HEADER_LEN);
        prop_assert_eq!(frame::decode::<WorkerMessage>(&bytes[HEADER_LEN..]), Ok(message.clone()));
        let mut decoder = Decoder::new();
        decoder.push(&bytes);
        prop_assert_eq!(decoder.next_message::<WorkerMessage>(), Ok(Some(message.clone())));
        prop_assert_eq!(decoder.pending(), 0);
        prop_assert_eq!(message.fd_count(), 0);
    }

    #[test]
    fn every_master_message_round_trips(message in master_message()) {
        let bytes = encode_all(std::slice::from_ref(&message));
        let len = u32::from_le_bytes(bytes[..HEADER_LEN].try_into().unwrap()) as usize;
        prop_assert_eq!(len, bytes.len() - HEADER_LEN);
        prop_assert_eq!(frame::decode::<MasterMessage>(&bytes[HEADER_LEN..]), Ok(message.clone()));
        let mut decoder = Decoder::new();
        decoder.push(&bytes);
        prop_assert_eq!(decoder.next_message::<MasterMessage>(), Ok(Some(message.clone())));
        prop_assert_eq!(decoder.pending(), 0);
        let carries_fd = matches!(message, MasterMessage::ListenReply { result: Ok(_), .. });
        prop_assert_eq!(message.fd_count(), usize::from(carries_fd));
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn any_split_of_worker_frames_decodes_the_same((messages, cuts) in messages_and_cuts(worker_message())) {
        let bytes = encode_all(&messages);
        prop_assert_eq!(decode_at_cuts::<WorkerMessage>(&bytes, cuts), messages);
    }

    #[test]
    fn any_split_of_master_frames_decodes_the_same((messages, cuts) in messages_and_cuts(master_message())) {
        let bytes = encode_all(&messages);
        prop_assert_eq!(decode_at_cuts::<MasterMessage>(&bytes, cuts), messages);
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn random_bytes_in_random_chunks_never_panic(
        bytes in prop_oneof![vec(any::<u8>(), 0..1024), frame_like_bytes()],
        chunk_sizes in vec(1usize..96, 1..16),
    ) {
        feed(&bytes, &chunk_sizes);
    }

    #[test]
    fn message_errors_do_not_poison_and_next_message_never_panics(
        bytes in frame_like_bytes(),
        chunk_sizes in vec(1usize..96, 1..16),
    ) {
        let mut decoder = Decoder::new();
        let mut sizes = chunk_sizes.iter().cycle();
        let mut rest = &bytes[..];
        let mut too_long = false;
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at((*sizes.next().unwrap()).min(rest.len()));
            rest = tail;
            decoder.push(chunk);
            loop {
                match decoder.next_message::<MasterMessage>() {
                    Ok(Some(_)) | Err(DecodeError::Message(_)) => {}
                    Ok(None) => break,
                    Err(DecodeError::TooLong { .. }) => too_long = true,
                    Err(DecodeError::Poisoned) => {
                        prop_assert!(too_long, "poisoned by a message error");
                        break;
                    }
                    Err(error) => panic!("next_message returned {error:?}"),
                }
            }
        }
    }

    #[test]
    fn an_oversized_header_is_refused_before_allocating(
        before in vec(worker_message(), 0..4),
        len in (MAX_FRAME_LEN as u32 + 1)..=u32::MAX,
        n_header_bytes_first in 0..HEADER_LEN,
        tail_len in 0usize..(2 * MAX_FRAME_LEN),
    ) {
        let mut bytes = encode_all(&before);
        let header_at = bytes.len();
        bytes.extend_from_slice(&len.to_le_bytes());

        // Everything up to part of the oversized header: the frames before it
        // come out, and the decoder holds just the partial header.
        let mut decoder = Decoder::new();
        decoder.push(&bytes[..header_at + n_header_bytes_first]);
        for message in &before {
            prop_assert_eq!(decoder.next_message::<WorkerMessage>(), Ok(Some(message.clone())));
        }
        prop_assert_eq!(decoder.next_frame(), Ok(None));
        prop_assert_eq!(decoder.pending(), n_header_bytes_first);

        decoder.push(&bytes[header_at + n_header_bytes_first..]);
        prop_assert_eq!(decoder.next_frame(), Err(DecodeError::TooLong { len: len as usize }));
        prop_assert_eq!(decoder.pending(), 0);
        // Whatever follows is dropped, not buffered toward the announced size.
        decoder.push(&vec![0; tail_len]);
        prop_assert_eq!(decoder.pending(), 0);
        prop_assert_eq!(decoder.next_frame(), Err(DecodeError::Poisoned));
    }

    #[test]
    fn oversized_headers_in_random_chunks_are_too_long(
        before in vec(honest_frame(), 0..8),
        len in (MAX_FRAME_LEN as u32 + 1)..=u32::MAX,
        chunk_sizes in vec(1usize..8, 1..8),
    ) {
        let mut bytes = before.concat();
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(&[0; 64]);
        let fed = feed(&bytes, &chunk_sizes);
        prop_assert_eq!(fed.n_frames, before.len());
        prop_assert_eq!(fed.too_long, Some(len as usize));
    }
}
