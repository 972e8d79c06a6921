//! Fuzz target `decoder`: arbitrary bytes, split into arbitrary chunks, fed
//! to [`Decoder`]s that take every frame and decode it as both
//! [`WorkerMessage`] and [`MasterMessage`].
//!
//! The input's first byte says how many of the next bytes are chunk sizes
//! (0 to 7; none means the whole stream in one push); each of those gives a
//! size from 1 to 64, cycled; the rest is the stream. Besides "no panic", the
//! target checks what the decoder promises: it holds exactly the bytes
//! pushed and not yet returned (nothing once poisoned, so an oversized
//! header allocates nothing), `TooLong` comes at most once and only for a
//! length over [`MAX_FRAME_LEN`], and every message that decodes encodes
//! back to a frame that decodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use srv_proto::frame::{self, HEADER_LEN};
use srv_proto::{DecodeError, Decoder, MAX_FRAME_LEN, MasterMessage, WorkerMessage};

fuzz_target!(|input: &[u8]| {
    let (chunk_sizes, stream) = split_input(input);
    feed_frames(stream, &chunk_sizes);
    feed_messages::<WorkerMessage>(stream, &chunk_sizes);
    feed_messages::<MasterMessage>(stream, &chunk_sizes);
});

fn split_input(input: &[u8]) -> (Vec<usize>, &[u8]) {
    let Some((&first, rest)) = input.split_first() else {
        return (vec![1], input);
    };
    let n_sizes = usize::from(first % 8).min(rest.len());
    let (sizes, stream) = rest.split_at(n_sizes);
    let mut chunk_sizes: Vec<usize> = sizes.iter().map(|size| usize::from(size % 64) + 1).collect();
    if chunk_sizes.is_empty() {
        chunk_sizes.push(stream.len().max(1));
    }
    (chunk_sizes, stream)
}

fn chunks<'a>(stream: &'a [u8], chunk_sizes: &'a [usize]) -> impl Iterator<Item = &'a [u8]> {
    let mut sizes = chunk_sizes.iter().cycle();
    let mut rest = stream;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (chunk, tail) = rest.split_at((*sizes.next()?).min(rest.len()));
        rest = tail;
        Some(chunk)
    })
}

/// Takes frames with `next_frame`, checking the decoder's accounting.
fn feed_frames(stream: &[u8], chunk_sizes: &[usize]) {
    let mut decoder = Decoder::new();
    let (mut n_pushed, mut n_returned) = (0, 0);
    let mut poisoned = false;
    for chunk in chunks(stream, chunk_sizes) {
        decoder.push(chunk);
        n_pushed += chunk.len();
        loop {
            match decoder.next_frame() {
                Ok(Some(payload)) => {
                    assert!(!poisoned, "a frame after TooLong");
                    assert!(payload.len() <= MAX_FRAME_LEN);
                    n_returned += HEADER_LEN + payload.len();
                    check_round_trip::<WorkerMessage>(payload);
                    check_round_trip::<MasterMessage>(payload);
                }
                Ok(None) => break,
                Err(DecodeError::TooLong { len }) => {
                    assert!(!poisoned, "TooLong twice");
                    assert!(len > MAX_FRAME_LEN);
                    poisoned = true;
                }
                Err(DecodeError::Poisoned) => {
                    assert!(poisoned, "Poisoned without TooLong");
                    break;
                }
                Err(error) => panic!("next_frame returned {error:?}"),
            }
        }
        let expected = if poisoned { 0 } else { n_pushed - n_returned };
        assert_eq!(decoder.pending(), expected);
    }
}

/// A payload that decodes as `T` encodes back to a frame of the same
/// message.
fn check_round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(payload: &[u8]) {
    let Ok(message) = frame::decode::<T>(payload) else {
        return;
    };
    let mut bytes = Vec::new();
    frame::encode(&message, &mut bytes).expect("a decoded message encodes");
    assert_eq!(frame::decode::<T>(&bytes[HEADER_LEN..]).as_ref(), Ok(&message));
}

/// Takes messages with `next_message`: message errors never poison.
fn feed_messages<T: DeserializeOwned>(stream: &[u8], chunk_sizes: &[usize]) {
    let mut decoder = Decoder::new();
    let mut poisoned = false;
    for chunk in chunks(stream, chunk_sizes) {
        decoder.push(chunk);
        loop {
            match decoder.next_message::<T>() {
                Ok(Some(_)) | Err(DecodeError::Message(_)) => {}
                Ok(None) => break,
                Err(DecodeError::TooLong { .. }) => poisoned = true,
                Err(DecodeError::Poisoned) => {
                    assert!(poisoned, "poisoned by a message error");
                    break;
                }
                Err(error) => panic!("next_message returned {error:?}"),
            }
        }
    }
}
