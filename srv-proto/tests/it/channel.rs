//! [`Channel`] over a real `socketpair`: a non-blocking sender that fills the
//! socket, and the ends of a conversation.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::Instant;

use nix::poll::{PollFd, PollFlags, poll};
use srv_proto::{Channel, MasterMessage, Received, WorkerMessage};

use crate::support::{self, TIMEOUT};

/// Every `FD_EVERY`-th frame of the non-blocking test carries a descriptor,
/// so that descriptors also ride on frames that are written in parts.
const FD_EVERY: usize = 5;

fn nth_message(index: usize) -> MasterMessage {
    if index.is_multiple_of(FD_EVERY) {
        MasterMessage::ListenReply {
            requested: "127.0.0.1:0".parse().unwrap(),
            result: Ok(format!("127.0.0.1:{}", 1000 + index).parse().unwrap()),
        }
    } else {
        // Sizes vary so that the socket fills at a different offset of a
        // frame on each kernel, and partial writes split frames anywhere.
        let filler = "x".repeat(6000 + index * 37 % 1000);
        MasterMessage::Refused { reason: format!("frame {index} {filler}") }
    }
}

/// Receives everything until end of file, on a blocking socket.
fn receive_all(stream: UnixStream) -> Vec<(MasterMessage, Vec<OwnedFd>)> {
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut channel = Channel::new(stream);
    let mut received = Vec::new();
    loop {
        while let Some(next) = channel.next_message::<MasterMessage>().unwrap() {
            received.push(next);
        }
        match channel.receive().unwrap() {
            Received::Bytes(_) => {}
            Received::Closed => break,
        }
    }
    assert_eq!(channel.next_message::<MasterMessage>().map(|next| next.is_none()), Ok(true));
    received
}

#[test]
fn a_non_blocking_sender_queues_then_flushes_every_frame_in_order() {
    let (sender_end, receiver_end) = UnixStream::pair().unwrap();
    sender_end.set_nonblocking(true).unwrap();
    let mut sender = Channel::new(sender_end);

    // Send until the socket is full, then queue a few more frames behind the
    // one that is partly written.
    let mut sent = Vec::new();
    let mut read_ends: Vec<(usize, File)> = Vec::new();
    let mut n_queued = 0;
    while n_queued < 4 {
        let index = sent.len();
        assert!(index < 10_000, "the socket never filled up");
        let message = nth_message(index);
        let written = if message.fd_count() == 1 {
            let (read_end, write_end) = support::pipe();
            read_ends.push((index, read_end));
            sender.send(&message, &[write_end.as_fd()]).unwrap()
        } else {
            sender.send(&message, &[]).unwrap()
        };
        if !written {
            n_queued += 1;
        }
        sent.push(message);
    }
    assert!(sender.has_outgoing());

    let receiver = thread::spawn(move || receive_all(receiver_end));
    let deadline = Instant::now() + TIMEOUT;
    while !sender.flush().unwrap() {
        assert!(Instant::now() < deadline, "flush did not finish within {TIMEOUT:?}");
        let mut poll_fds = [PollFd::new(sender.stream().as_fd(), PollFlags::POLLOUT)];
        poll(&mut poll_fds, 100u16).unwrap();
    }
    assert!(!sender.has_outgoing());
    drop(sender);

    let mut received = receiver.join().expect("receiver thread panicked");
    assert_eq!(received.len(), sent.len());
    for (index, ((message, fds), expected)) in received.iter().zip(&sent).enumerate() {
        assert_eq!(message, expected, "frame {index}");
        assert_eq!(fds.len(), expected.fd_count(), "descriptors of frame {index}");
    }
    // Each descriptor reached its own frame: writing the frame's index
    // through it arrives in the pipe created for that frame.
    for (index, mut read_end) in read_ends {
        let fd = received[index].1.pop().unwrap();
        File::from(fd).write_all(&index.to_le_bytes()).unwrap();
        let mut got = [0u8; size_of::<usize>()];
        read_end.read_exact(&mut got).unwrap();
        assert_eq!(usize::from_le_bytes(got), index, "descriptor of frame {index}");
        assert!(support::writers_closed(&read_end), "write end of frame {index} leaked");
    }
}

/// A master that re-executes itself hands its end of each channel over:
/// `unread` and `queued` go to a new `Channel` (`resume`) on a duplicate of
/// the socket, and the old one is dropped. Nothing is lost or split in
/// either direction: the frames queued behind a partly written one (some
/// with a descriptor) arrive whole and in order, and so does a frame that
/// was half received before the handover.
#[test]
fn a_channel_resumed_from_unread_and_queued_loses_and_splits_nothing() {
    let (sender_end, receiver_end) = UnixStream::pair().unwrap();
    sender_end.set_nonblocking(true).unwrap();
    let mut before = Channel::new(sender_end);
    let mut sent = Vec::new();
    let mut read_ends: Vec<(usize, File)> = Vec::new();
    let mut n_queued = 0;
    while n_queued < 4 {
        let index = sent.len();
        assert!(index < 10_000, "the socket never filled up");
        let message = nth_message(index);
        let written = if message.fd_count() == 1 {
            let (read_end, write_end) = support::pipe();
            read_ends.push((index, read_end));
            before.send(&message, &[write_end.as_fd()]).unwrap()
        } else {
            before.send(&message, &[]).unwrap()
        };
        n_queued += usize::from(!written);
        sent.push(message);
    }
    // Half a frame from the peer arrives before the handover.
    let mut incoming = Vec::new();
    srv_proto::frame::encode(&WorkerMessage::Exit { code: 5 }, &mut incoming).unwrap();
    (&receiver_end).write_all(&incoming[..3]).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while before.pending() < 3 {
        assert!(Instant::now() < deadline, "the half frame did not arrive");
        match before.receive() {
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(error) => panic!("{error}"),
        }
    }
    assert_eq!(before.next_message::<WorkerMessage>().map(|next| next.is_none()), Ok(true));

    // The handover: copies of what is unread and queued, descriptors
    // duplicated as they would be inherited, then the old channel is gone.
    let unread = before.unread().to_vec();
    let queued: Vec<(Vec<u8>, Vec<OwnedFd>)> = before
        .queued()
        .map(|(bytes, fds)| {
            let fds = fds.iter().map(|fd| fd.try_clone().unwrap()).collect();
            (bytes.to_vec(), fds)
        })
        .collect();
    assert!(queued.len() >= 4, "{} frames queued", queued.len());
    let stream = before.stream().try_clone().unwrap();
    drop(before);
    let mut after = Channel::resume(stream, &unread, queued);
    assert!(after.has_outgoing());

    // The peer's frame completes after the handover.
    (&receiver_end).write_all(&incoming[3..]).unwrap();
    let receiver = thread::spawn(move || receive_all(receiver_end));
    while !after.flush().unwrap() {
        assert!(Instant::now() < deadline, "flush did not finish within {TIMEOUT:?}");
        let mut poll_fds = [PollFd::new(after.stream().as_fd(), PollFlags::POLLOUT)];
        poll(&mut poll_fds, 100u16).unwrap();
    }
    after.stream().set_nonblocking(false).unwrap();
    let (message, _) = support::receive_one(&mut after, Channel::next_message::<WorkerMessage>);
    assert_eq!(message, WorkerMessage::Exit { code: 5 });
    drop(after);

    let mut received = receiver.join().expect("receiver thread panicked");
    assert_eq!(received.len(), sent.len());
    for (index, ((message, fds), expected)) in received.iter().zip(&sent).enumerate() {
        assert_eq!(message, expected, "frame {index}");
        assert_eq!(fds.len(), expected.fd_count(), "descriptors of frame {index}");
    }
    for (index, mut read_end) in read_ends {
        let fd = received[index].1.pop().unwrap();
        File::from(fd).write_all(&index.to_le_bytes()).unwrap();
        let mut got = [0u8; size_of::<usize>()];
        read_end.read_exact(&mut got).unwrap();
        assert_eq!(usize::from_le_bytes(got), index, "descriptor of frame {index}");
    }
}

#[test]
fn peer_closed_is_received_after_the_frames_it_sent() {
    let (worker_end, master_end) = UnixStream::pair().unwrap();
    let mut worker = Channel::new(worker_end);
    assert!(worker.send(&WorkerMessage::Exit { code: 3 }, &[]).unwrap());
    drop(worker);

    let mut master = Channel::new(master_end);
    let (message, _) = support::receive_one(&mut master, Channel::next_message::<WorkerMessage>);
    assert_eq!(message, WorkerMessage::Exit { code: 3 });
    assert_eq!(master.receive().unwrap(), Received::Closed);
    assert_eq!(master.receive().unwrap(), Received::Closed);
    assert_eq!(master.pending(), 0);
}

#[test]
fn peer_closed_in_the_middle_of_a_frame_is_closed_with_bytes_pending() {
    let (worker_end, master_end) = UnixStream::pair().unwrap();
    let mut bytes = Vec::new();
    srv_proto::frame::encode(&WorkerMessage::Exit { code: 3 }, &mut bytes).unwrap();
    (&worker_end).write_all(&bytes[..bytes.len() - 1]).unwrap();
    drop(worker_end);

    let mut master = Channel::new(master_end);
    master.stream().set_read_timeout(Some(TIMEOUT)).unwrap();
    assert_eq!(master.receive().unwrap(), Received::Bytes(bytes.len() - 1));
    assert_eq!(master.next_message::<WorkerMessage>().map(|next| next.is_none()), Ok(true));
    assert_eq!(master.receive().unwrap(), Received::Closed);
    // The caller can tell the close cut a frame short.
    assert_eq!(master.pending(), bytes.len() - 1);
}

#[test]
fn sending_to_a_closed_peer_is_broken_pipe() {
    let (master_end, worker_end) = UnixStream::pair().unwrap();
    drop(worker_end);
    let mut master = Channel::new(master_end);
    let error = master.send(&MasterMessage::Disconnect { grace: None }, &[]).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::BrokenPipe, "{error}");
}
