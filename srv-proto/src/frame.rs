//! Framing: a little-endian `u32` payload length, then a postcard payload.
//!
//! Pure code, no syscalls. The [`Decoder`] is incremental: bytes arrive in
//! any split (partial frames, several frames per read) and always produce
//! the same frames. A length over [`MAX_FRAME_LEN`] is rejected from the
//! 4-byte header alone, before anything is allocated for the payload, and
//! poisons the decoder: after it, the stream has no frame boundaries left to
//! trust.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The largest payload a frame may carry, in bytes.
///
/// ```
/// use srv_proto::{DecodeError, MAX_FRAME_LEN, MasterMessage, frame};
///
/// let reason = "x".repeat(MAX_FRAME_LEN); // plus the encoded length and tag: too long
/// let res = frame::encode(&MasterMessage::Refused { reason }, &mut Vec::new());
/// assert!(matches!(res, Err(DecodeError::TooLong { len }) if len > MAX_FRAME_LEN));
/// ```
pub const MAX_FRAME_LEN: usize = 64 * 1024;

/// The size of the length prefix, in bytes.
///
/// ```
/// use srv_proto::{WorkerMessage, frame};
///
/// let mut bytes = Vec::new();
/// frame::encode(&WorkerMessage::Exit { code: 1 }, &mut bytes).unwrap();
/// let (header, payload) = bytes.split_at(frame::HEADER_LEN);
/// assert_eq!(u32::from_le_bytes(header.try_into().unwrap()) as usize, payload.len());
/// ```
pub const HEADER_LEN: usize = 4;

/// Appends `message` to `out` as one frame.
///
/// # Errors
///
/// [`DecodeError::TooLong`] when the encoded message would exceed
/// [`MAX_FRAME_LEN`]; [`DecodeError::Message`] when serde cannot encode it.
/// On error `out` is left as it was.
///
/// ```
/// use srv_proto::{frame, WorkerMessage};
/// let mut bytes = Vec::new();
/// frame::encode(&WorkerMessage::Online, &mut bytes).unwrap();
/// assert_eq!(&bytes[..4], &1u32.to_le_bytes());
/// ```
pub fn encode<T: Serialize>(message: &T, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    let payload =
        postcard::to_stdvec(message).map_err(|error| DecodeError::Message(error.to_string()))?;
    if payload.len() > MAX_FRAME_LEN {
        return Err(DecodeError::TooLong { len: payload.len() });
    }
    out.reserve(HEADER_LEN + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}

/// Decodes one frame's payload into a message.
///
/// # Errors
///
/// [`DecodeError::Message`] when the payload is not a valid message (garbage,
/// a variant from a newer peer, or trailing bytes).
///
/// ```
/// use srv_proto::{DecodeError, WorkerMessage, frame};
///
/// let mut bytes = Vec::new();
/// frame::encode(&WorkerMessage::Online, &mut bytes).unwrap();
/// let payload = &bytes[frame::HEADER_LEN..];
/// assert_eq!(frame::decode::<WorkerMessage>(payload), Ok(WorkerMessage::Online));
/// let garbage = frame::decode::<WorkerMessage>(&[0xff, 0xff]);
/// assert!(matches!(garbage, Err(DecodeError::Message(_))));
/// ```
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, DecodeError> {
    match postcard::take_from_bytes::<T>(payload) {
        Ok((message, [])) => Ok(message),
        Ok((_, rest)) => {
            Err(DecodeError::Message(format!("{} unexpected bytes after the message", rest.len())))
        }
        Err(error) => Err(DecodeError::Message(error.to_string())),
    }
}

/// Why bytes from a peer could not be turned into a message.
///
/// Every variant means the peer is broken or hostile; it converts into an
/// [`std::io::Error`] of kind `InvalidData`.
///
/// ```
/// use srv_proto::{DecodeError, Decoder, MAX_FRAME_LEN, WorkerMessage};
///
/// let mut decoder = Decoder::new();
/// decoder.push(&(MAX_FRAME_LEN as u32 + 1).to_le_bytes());
/// let error = decoder.next_message::<WorkerMessage>().unwrap_err();
/// assert_eq!(error, DecodeError::TooLong { len: MAX_FRAME_LEN + 1 });
/// assert_eq!(error.to_string(), "frame of 65537 bytes exceeds the maximum of 65536");
/// assert_eq!(std::io::Error::from(error).kind(), std::io::ErrorKind::InvalidData);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// A frame header announced more than [`MAX_FRAME_LEN`] bytes.
    TooLong {
        /// The announced payload length.
        len: usize,
    },
    /// A frame's payload is not a message this side understands.
    Message(String),
    /// The decoder already failed; the stream has no trustworthy boundaries.
    Poisoned,
    /// A frame needs more file descriptors than arrived with it.
    MissingFds {
        /// How many the frame carries.
        expected: usize,
        /// How many had arrived.
        got: usize,
    },
    /// File descriptors arrived that no frame carries.
    UnexpectedFds {
        /// How many; they have been closed.
        count: usize,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooLong { len } => {
                write!(f, "frame of {len} bytes exceeds the maximum of {MAX_FRAME_LEN}")
            }
            DecodeError::Message(error) => write!(f, "undecodable message: {error}"),
            DecodeError::Poisoned => f.write_str("stream already failed to decode"),
            DecodeError::MissingFds { expected, got } => {
                write!(f, "frame carries {expected} file descriptors but {got} arrived")
            }
            DecodeError::UnexpectedFds { count } => {
                write!(f, "{count} file descriptors arrived that no frame carries")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

impl From<DecodeError> for std::io::Error {
    fn from(error: DecodeError) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, error)
    }
}

/// An incremental frame decoder.
///
/// ```
/// use srv_proto::{frame, Decoder, WorkerMessage};
/// let mut bytes = Vec::new();
/// frame::encode(&WorkerMessage::Online, &mut bytes).unwrap();
/// frame::encode(&WorkerMessage::Exit { code: 3 }, &mut bytes).unwrap();
///
/// let mut decoder = Decoder::new();
/// decoder.push(&bytes[..3]);
/// assert_eq!(decoder.next_message::<WorkerMessage>(), Ok(None));
/// decoder.push(&bytes[3..]);
/// assert_eq!(decoder.next_message(), Ok(Some(WorkerMessage::Online)));
/// assert_eq!(decoder.next_message(), Ok(Some(WorkerMessage::Exit { code: 3 })));
/// assert_eq!(decoder.next_message::<WorkerMessage>(), Ok(None));
/// ```
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Bytes at the front of `buf` already handed out as frames.
    consumed: usize,
    poisoned: bool,
}

impl Decoder {
    /// An empty decoder.
    ///
    /// ```
    /// let decoder = srv_proto::Decoder::new();
    /// assert_eq!(decoder.pending(), 0);
    /// ```
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Appends bytes read from the stream.
    ///
    /// Callers feed what one read returned and then take frames until
    /// [`Decoder::next_frame`] returns `Ok(None)`, so the buffer holds at most
    /// one partial frame plus one read.
    ///
    /// After a [`DecodeError::TooLong`] the decoder is poisoned and drops
    /// whatever is pushed.
    ///
    /// ```
    /// use srv_proto::Decoder;
    ///
    /// let mut decoder = Decoder::new();
    /// decoder.push(&[1, 0, 0]); // part of a header
    /// assert_eq!(decoder.pending(), 3);
    /// assert_eq!(decoder.next_frame(), Ok(None));
    /// ```
    pub fn push(&mut self, bytes: &[u8]) {
        if self.poisoned {
            return;
        }
        if self.consumed > 0 {
            self.buf.drain(..self.consumed);
            self.consumed = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame's payload, `Ok(None)` if more bytes are needed.
    ///
    /// ```
    /// use srv_proto::{DecodeError, Decoder};
    ///
    /// let mut decoder = Decoder::new();
    /// decoder.push(&[2, 0, 0, 0, 7, 8, 3, 0]); // a frame of 2 bytes, then half a header
    /// assert_eq!(decoder.next_frame(), Ok(Some(&[7, 8][..])));
    /// assert_eq!(decoder.next_frame(), Ok(None));
    /// decoder.push(&[1, 0]); // the rest of a header announcing 65,539 bytes
    /// assert_eq!(decoder.next_frame(), Err(DecodeError::TooLong { len: 0x1_0003 }));
    /// assert_eq!(decoder.next_frame(), Err(DecodeError::Poisoned));
    /// ```
    ///
    /// # Errors
    ///
    /// [`DecodeError::TooLong`] for an oversized header, then
    /// [`DecodeError::Poisoned`] on every later call.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, DecodeError> {
        if self.poisoned {
            return Err(DecodeError::Poisoned);
        }
        let rest = &self.buf[self.consumed..];
        let Some(header) = rest.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let len = u32::from_le_bytes(*header) as usize;
        if len > MAX_FRAME_LEN {
            self.poisoned = true;
            self.buf = Vec::new();
            self.consumed = 0;
            return Err(DecodeError::TooLong { len });
        }
        if rest.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let start = self.consumed + HEADER_LEN;
        self.consumed = start + len;
        Ok(Some(&self.buf[start..start + len]))
    }

    /// The next complete frame decoded as a message, `Ok(None)` if more bytes
    /// are needed.
    ///
    /// # Errors
    ///
    /// As [`Decoder::next_frame`], plus [`DecodeError::Message`] for a payload
    /// that is not a `T`. A bad payload does not poison the decoder, since
    /// the frame boundaries are still sound, but callers treat it as a
    /// protocol error.
    ///
    /// ```
    /// use srv_proto::{DecodeError, Decoder, WorkerMessage, frame};
    ///
    /// let mut bytes = vec![1, 0, 0, 0, 0xff]; // a frame whose payload is no message
    /// frame::encode(&WorkerMessage::Online, &mut bytes).unwrap();
    /// let mut decoder = Decoder::new();
    /// decoder.push(&bytes);
    /// let bad = decoder.next_message::<WorkerMessage>();
    /// assert!(matches!(bad, Err(DecodeError::Message(_))));
    /// assert_eq!(decoder.next_message(), Ok(Some(WorkerMessage::Online)));
    /// ```
    pub fn next_message<T: DeserializeOwned>(&mut self) -> Result<Option<T>, DecodeError> {
        match self.next_frame()? {
            Some(payload) => decode(payload).map(Some),
            None => Ok(None),
        }
    }

    /// Bytes received but not yet returned as frames.
    ///
    /// Nonzero at end of file means the peer stopped in the middle of a
    /// frame.
    ///
    /// ```
    /// use srv_proto::{Decoder, WorkerMessage, frame};
    ///
    /// let mut bytes = Vec::new();
    /// frame::encode(&WorkerMessage::Online, &mut bytes).unwrap();
    /// let mut decoder = Decoder::new();
    /// decoder.push(&bytes);
    /// assert_eq!(decoder.pending(), bytes.len());
    /// decoder.next_frame().unwrap();
    /// assert_eq!(decoder.pending(), 0);
    /// ```
    pub fn pending(&self) -> usize {
        self.buf.len() - self.consumed
    }

    /// The bytes received but not yet returned as frames (their number is
    /// [`Decoder::pending`]): what a process that hands the stream over to
    /// another must pass along, so that the other's decoder, fed these
    /// first, goes on where this one stopped. Empty once poisoned.
    ///
    /// ```
    /// use srv_proto::{Decoder, WorkerMessage, frame};
    ///
    /// let mut bytes = Vec::new();
    /// frame::encode(&WorkerMessage::Online, &mut bytes).unwrap();
    /// frame::encode(&WorkerMessage::Exit { code: 3 }, &mut bytes).unwrap();
    /// let mut decoder = Decoder::new();
    /// decoder.push(&bytes[..7]); // one frame and two bytes of the next
    /// assert_eq!(decoder.next_message(), Ok(Some(WorkerMessage::Online)));
    ///
    /// let mut successor = Decoder::new();
    /// successor.push(decoder.unread());
    /// successor.push(&bytes[7..]);
    /// assert_eq!(successor.next_message(), Ok(Some(WorkerMessage::Exit { code: 3 })));
    /// ```
    pub fn unread(&self) -> &[u8] {
        &self.buf[self.consumed..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ListenAddr, ListenError, MasterMessage, WorkerMessage};

    fn frames(messages: &[WorkerMessage]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for message in messages {
            encode(message, &mut bytes).unwrap();
        }
        bytes
    }

    fn drain(decoder: &mut Decoder) -> Vec<WorkerMessage> {
        let mut out = Vec::new();
        while let Some(message) = decoder.next_message().unwrap() {
            out.push(message);
        }
        out
    }

    fn sample() -> Vec<WorkerMessage> {
        vec![
            WorkerMessage::Hello { protocol_version: 1, pid: 42 },
            WorkerMessage::Online,
            WorkerMessage::ListenRequest { addr: "127.0.0.1:0".parse().unwrap() },
            WorkerMessage::Listening { addr: "unix:/tmp/x".parse().unwrap() },
            WorkerMessage::Exit { code: -1 },
        ]
    }

    #[test]
    fn byte_by_byte_feed_gives_the_same_frames() {
        let bytes = frames(&sample());
        let mut decoder = Decoder::new();
        let mut out = Vec::new();
        for byte in &bytes {
            decoder.push(std::slice::from_ref(byte));
            out.extend(drain(&mut decoder));
        }
        assert_eq!(out, sample());
        assert_eq!(decoder.pending(), 0);
    }

    #[test]
    fn several_frames_in_one_push() {
        let mut decoder = Decoder::new();
        decoder.push(&frames(&sample()));
        assert_eq!(drain(&mut decoder), sample());
    }

    #[test]
    fn exact_max_is_accepted_and_max_plus_one_rejected_from_the_header() {
        let mut decoder = Decoder::new();
        let mut bytes = (MAX_FRAME_LEN as u32).to_le_bytes().to_vec();
        bytes.resize(HEADER_LEN + MAX_FRAME_LEN, 0);
        decoder.push(&bytes);
        assert_eq!(decoder.next_frame().unwrap().map(<[u8]>::len), Some(MAX_FRAME_LEN));

        let mut decoder = Decoder::new();
        decoder.push(&(MAX_FRAME_LEN as u32 + 1).to_le_bytes());
        assert_eq!(decoder.next_frame(), Err(DecodeError::TooLong { len: MAX_FRAME_LEN + 1 }));
        assert_eq!(decoder.next_frame(), Err(DecodeError::Poisoned));
        decoder.push(&frames(&sample()));
        assert_eq!(decoder.next_frame(), Err(DecodeError::Poisoned));
    }

    #[test]
    fn truncated_header_and_payload_wait_for_more() {
        let bytes = frames(&[WorkerMessage::Exit { code: 7 }]);
        for cut in 0..bytes.len() {
            let mut decoder = Decoder::new();
            decoder.push(&bytes[..cut]);
            assert_eq!(decoder.next_frame(), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn garbage_payload_is_a_message_error() {
        let mut decoder = Decoder::new();
        decoder.push(&[2, 0, 0, 0, 0xff, 0xff]);
        assert!(matches!(decoder.next_message::<WorkerMessage>(), Err(DecodeError::Message(_))));
        // Framing is intact: the next frame still decodes.
        decoder.push(&frames(&[WorkerMessage::Online]));
        assert_eq!(decoder.next_message(), Ok(Some(WorkerMessage::Online)));
    }

    #[test]
    fn trailing_bytes_in_a_frame_are_an_error() {
        let mut bytes = frames(&[WorkerMessage::Online]);
        bytes[0] += 1;
        bytes.push(0);
        let mut decoder = Decoder::new();
        decoder.push(&bytes);
        assert!(matches!(decoder.next_message::<WorkerMessage>(), Err(DecodeError::Message(_))));
    }

    #[test]
    fn master_messages_round_trip() {
        let messages = [
            MasterMessage::Disconnect { grace: None },
            MasterMessage::Disconnect { grace: Some(std::time::Duration::from_millis(15_000)) },
            MasterMessage::Refused { reason: "protocol version 9, master speaks 1".into() },
            MasterMessage::ListenReply {
                requested: ListenAddr::Tcp("[::1]:0".parse().unwrap()),
                result: Ok(ListenAddr::Tcp("[::1]:4000".parse().unwrap())),
            },
            MasterMessage::ListenReply {
                requested: ListenAddr::Tcp("0.0.0.0:80".parse().unwrap()),
                result: Err(ListenError { errno: Some(13), message: "denied".into() }),
            },
        ];
        let mut bytes = Vec::new();
        for message in &messages {
            encode(message, &mut bytes).unwrap();
        }
        let mut decoder = Decoder::new();
        decoder.push(&bytes);
        for message in &messages {
            assert_eq!(decoder.next_message::<MasterMessage>().unwrap().as_ref(), Some(message));
        }
    }

    #[test]
    fn encode_refuses_oversized_messages_and_leaves_the_buffer() {
        let mut bytes = vec![1, 2, 3];
        let reason = "x".repeat(MAX_FRAME_LEN);
        let res = encode(&MasterMessage::Refused { reason }, &mut bytes);
        assert!(matches!(res, Err(DecodeError::TooLong { .. })));
        assert_eq!(bytes, [1, 2, 3]);
    }
}
