//! Descriptors passed beside frames over a real `socketpair`.
//!
//! Each test proves what happened to a descriptor through a pipe: a pipe
//! reads end of file only once every copy of its write end is closed, in
//! this process and in flight. So "the received fd works" is shown by writing
//! through it, and "the fds were closed" by a read that sees end of file
//! rather than `WouldBlock`.

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;

use srv_proto::fd::{MAX_FDS_PER_MESSAGE, send_with_fds};
use srv_proto::{
    Channel, DecodeError, MAX_QUEUED_FDS, MasterMessage, Received, WorkerMessage, frame,
};

use crate::support::{self, TIMEOUT};

fn listen_reply() -> MasterMessage {
    MasterMessage::ListenReply {
        requested: "127.0.0.1:0".parse().unwrap(),
        result: Ok("127.0.0.1:4000".parse().unwrap()),
    }
}

/// Sends one frame of `message` with `fds` attached, bypassing
/// [`Channel::send`] and its debug assertion on the descriptor count, as a
/// broken or hostile peer would.
fn send_raw(stream: &UnixStream, message: &WorkerMessage, fds: &[BorrowedFd<'_>]) {
    let mut bytes = Vec::new();
    frame::encode(message, &mut bytes).unwrap();
    let sent = send_with_fds(stream.as_fd(), &bytes, fds).unwrap();
    assert_eq!(sent, bytes.len());
}

#[test]
fn listen_reply_carries_a_working_close_on_exec_descriptor() {
    let (master_end, worker_end) = UnixStream::pair().unwrap();
    let (mut master, mut worker) = (Channel::new(master_end), Channel::new(worker_end));
    let (mut read_end, write_end) = support::pipe();

    assert!(master.send(&listen_reply(), &[write_end.as_fd()]).unwrap());
    assert!(!master.has_outgoing());
    // From here on the only write ends are the one in flight and, if the
    // channel leaked it, the duplicate `send` made.
    drop(write_end);

    let (message, fds) = support::receive_one(&mut worker, Channel::next_message::<MasterMessage>);
    assert_eq!(message, listen_reply());
    assert_eq!(fds.len(), 1);
    let received = fds.into_iter().next().unwrap();
    assert!(support::is_cloexec(&received), "received fd is not close-on-exec");

    let mut through = std::fs::File::from(received);
    through.write_all(b"through the passed fd").unwrap();
    let mut got = [0u8; 21];
    read_end.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"through the passed fd");

    drop(through);
    assert!(support::writers_closed(&read_end), "a copy of the write end leaked");
}

#[test]
fn a_frame_whose_descriptor_did_not_arrive_is_missing_fds() {
    let (master_end, worker_end) = UnixStream::pair().unwrap();
    let mut bytes = Vec::new();
    frame::encode(&listen_reply(), &mut bytes).unwrap();
    // Plain write: the frame arrives without the descriptor it announces.
    (&master_end).write_all(&bytes).unwrap();

    let mut worker = Channel::new(worker_end);
    worker.stream().set_read_timeout(Some(TIMEOUT)).unwrap();
    assert_eq!(worker.receive().unwrap(), Received::Bytes(bytes.len()));
    let res = worker.next_message::<MasterMessage>();
    assert_eq!(res.err(), Some(DecodeError::MissingFds { expected: 1, got: 0 }));
}

#[test]
fn descriptors_beside_a_worker_message_are_unexpected_and_closed() {
    let (worker_end, master_end) = UnixStream::pair().unwrap();
    let (read_end, write_end) = support::pipe();
    send_raw(&worker_end, &WorkerMessage::Online, &[write_end.as_fd(), write_end.as_fd()]);
    drop(write_end);

    let mut master = Channel::new(master_end);
    master.stream().set_read_timeout(Some(TIMEOUT)).unwrap();
    assert!(matches!(master.receive().unwrap(), Received::Bytes(_)));
    // The frame itself is sound; the descriptors are reported once no frame
    // is left that could claim them.
    let (message, fds) = master.next_message::<WorkerMessage>().unwrap().unwrap();
    assert_eq!((message, fds.len()), (WorkerMessage::Online, 0));
    let res = master.next_message::<WorkerMessage>();
    assert_eq!(res.err(), Some(DecodeError::UnexpectedFds { count: 2 }));
    // Closed by the channel, which is still alive.
    assert!(support::writers_closed(&read_end), "unexpected fds were not closed");
    drop(master);
}

#[test]
fn descriptors_beside_a_master_message_that_carries_none_are_unexpected() {
    let (master_end, worker_end) = UnixStream::pair().unwrap();
    let (read_end, write_end) = support::pipe();
    let mut bytes = Vec::new();
    frame::encode(&MasterMessage::Disconnect { grace: None }, &mut bytes).unwrap();
    send_with_fds(master_end.as_fd(), &bytes, &[write_end.as_fd()]).unwrap();
    drop(write_end);

    let mut worker = Channel::new(worker_end);
    let (message, fds) = support::receive_one(&mut worker, Channel::next_message::<MasterMessage>);
    assert_eq!((message, fds.len()), (MasterMessage::Disconnect { grace: None }, 0));
    let res = worker.next_message::<MasterMessage>();
    assert_eq!(res.err(), Some(DecodeError::UnexpectedFds { count: 1 }));
    assert!(support::writers_closed(&read_end), "unexpected fds were not closed");
}

#[test]
fn max_fds_per_message_is_accepted() {
    let (worker_end, master_end) = UnixStream::pair().unwrap();
    let (read_end, write_end) = support::pipe();
    let fds = vec![write_end.as_fd(); MAX_FDS_PER_MESSAGE];
    send_raw(&worker_end, &WorkerMessage::Online, &fds);
    drop(write_end);

    let mut master = Channel::new(master_end);
    let (message, _) = support::receive_one(&mut master, Channel::next_message::<WorkerMessage>);
    assert_eq!(message, WorkerMessage::Online);
    let res = master.next_message::<WorkerMessage>();
    assert_eq!(res.err(), Some(DecodeError::UnexpectedFds { count: MAX_FDS_PER_MESSAGE }));
    assert!(support::writers_closed(&read_end));
}

/// One message with more descriptors than allowed is refused, and every
/// descriptor it brought is closed (the receive buffer has room for the
/// kernel's maximum, so none is dropped unowned by a truncation).
#[test]
fn more_than_max_fds_is_invalid_data_and_leaks_nothing() {
    let (worker_end, master_end) = UnixStream::pair().unwrap();
    let (read_end, write_end) = support::pipe();
    let fds = vec![write_end.as_fd(); MAX_FDS_PER_MESSAGE + 1];
    send_raw(&worker_end, &WorkerMessage::Online, &fds);
    drop(write_end);

    let mut master = Channel::new(master_end);
    master.stream().set_read_timeout(Some(TIMEOUT)).unwrap();
    let error = master.receive().unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData, "{error}");
    assert!(error.to_string().contains(&MAX_FDS_PER_MESSAGE.to_string()), "{error}");

    // Whatever the channel kept, dropping it must close; nothing may stay
    // open behind its back.
    drop(master);
    assert!(support::writers_closed(&read_end), "descriptors of a truncated message leaked");
}

/// A peer that trickles descriptors a few bytes at a time, so that no frame
/// completes to claim or refuse them, is cut off once more are queued than
/// any frame could carry.
#[test]
fn descriptors_trickled_without_frames_are_bounded() {
    let (worker_end, master_end) = UnixStream::pair().unwrap();
    let (read_end, write_end) = support::pipe();
    let mut bytes = Vec::new();
    frame::encode(&WorkerMessage::Online, &mut bytes).unwrap();
    let fds = vec![write_end.as_fd(); MAX_FDS_PER_MESSAGE];
    // A frame header announcing a large payload, then one byte per sendmsg,
    // each with descriptors attached.
    let header = 60_000u32.to_le_bytes();
    assert_eq!(send_with_fds(worker_end.as_fd(), &header, &[]).unwrap(), header.len());
    let sends = MAX_QUEUED_FDS / MAX_FDS_PER_MESSAGE + 1;
    for _ in 0..sends {
        assert_eq!(send_with_fds(worker_end.as_fd(), &[0], &fds).unwrap(), 1);
    }
    drop(write_end);

    let mut master = Channel::new(master_end);
    master.stream().set_read_timeout(Some(TIMEOUT)).unwrap();
    let error = loop {
        match master.receive() {
            Ok(Received::Bytes(_)) => {
                assert!(matches!(master.next_message::<WorkerMessage>(), Ok(None)))
            }
            Ok(Received::Closed) => panic!("closed before the limit"),
            Err(error) => break error,
        }
    };
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData, "{error}");
    drop(master);
    assert!(support::writers_closed(&read_end), "trickled descriptors leaked");
}

/// Names the case an `emfile_child` process runs; unset in the parent.
const EMFILE_CHILD: &str = "SRV_PROTO_TEST_EMFILE_CHILD";

/// Not a test by itself: the entry point of the child process that
/// [`descriptors_installed_before_emfile_are_closed`] starts, since it
/// lowers the process's descriptor limit. Without [`EMFILE_CHILD`] it
/// returns at once.
///
/// A message carries four descriptors while only two descriptor numbers
/// are free: the kernel installs two, fails on the third (`EMFILE`) and
/// reports `MSG_CTRUNC`. The two it installed must be closed, not leaked.
#[test]
fn emfile_child() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if std::env::var_os(EMFILE_CHILD).is_none() {
        return;
    }
    let (a, b) = UnixStream::pair().unwrap();
    let (_read_end, write_end) = support::pipe();
    let four = [write_end.as_fd(); MAX_FDS_PER_MESSAGE];
    send_with_fds(a.as_fd(), b"x", &four).unwrap();
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, 64, hard).unwrap();
    // Fill every free number below the limit, then free exactly two.
    let mut filler = Vec::new();
    while let Ok(file) = std::fs::File::open("/dev/null") {
        filler.push(file);
        assert!(filler.len() < 64, "the descriptor limit did not apply");
    }
    filler.truncate(filler.len() - 2);
    let mut fds = std::collections::VecDeque::new();
    let error = srv_proto::fd::recv_with_fds(b.as_fd(), &mut [0; 16], &mut fds).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData, "{error}");
    assert!(fds.is_empty());
    // Both free numbers are free again: nothing leaked.
    let mut free = Vec::new();
    while let Ok(file) = std::fs::File::open("/dev/null") {
        free.push(file);
    }
    assert_eq!(free.len(), 2, "descriptors installed before EMFILE leaked");
}

/// Suspected in issue 9: a receive that runs out of descriptor numbers
/// (`MSG_CTRUNC`) returned before wrapping the descriptors the kernel had
/// installed already, so they leaked. Run in a child process
/// ([`emfile_child`]), whose descriptor limit can be lowered safely.
#[test]
fn descriptors_installed_before_emfile_are_closed() {
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "fd_passing::emfile_child", "--test-threads=1", "--nocapture"])
        .env(EMFILE_CHILD, "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let lock = support::SPAWN_LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let child = command.spawn().unwrap();
    let output = support::wait_with_timeout(child, TIMEOUT);
    // Held until the child is gone: see `SPAWN_LOCK`.
    drop(lock);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "the child failed: {command:?}\nstatus: {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
    );
}
