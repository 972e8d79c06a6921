//! Integration tests of srv-worker against a stand-in master: a real
//! socket pair whose other end the test drives with `srv_proto::Channel`.
//!
//! One test binary for the crate (CONTRIBUTING.md, "Where tests go"), `it`,
//! in a folder of its own; each other file of the folder is a module of it:
//!
//! - `versions`: a worker under masters of older, equal and newer protocol
//!   versions, each in a child process.
//! - `tokio_listen` (feature `tokio`): the master's socket as a tokio
//!   listener.
//! - `serve` (feature `hyper`, and `axum`): the drain that loses no request.
//! - `actix_serve` (feature `actix`): the same drain for actix-web.

#[cfg(feature = "actix")]
mod actix_serve;
#[cfg(feature = "hyper")]
mod serve;
#[cfg(feature = "tokio")]
mod tokio_listen;
mod versions;

use std::ffi::OsStr;
use std::future::Future;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use srv_proto::{
    Channel, ListenAddr, ListenError, MasterMessage, PROTOCOL_VERSION, Received, WorkerMessage,
};
use srv_worker::{DisconnectReason, Worker};

/// The master's end of a connected worker.
struct FakeMaster {
    channel: Channel,
}

impl FakeMaster {
    fn connect() -> (FakeMaster, Worker) {
        let (master_end, worker_end) = UnixStream::pair().unwrap();
        master_end.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let worker = Worker::connect(worker_end, Some(7)).unwrap();
        let mut master = FakeMaster { channel: Channel::new(master_end) };
        let hello = master.next();
        assert_eq!(
            hello,
            WorkerMessage::Hello { protocol_version: PROTOCOL_VERSION, pid: std::process::id() }
        );
        (master, worker)
    }

    fn next(&mut self) -> WorkerMessage {
        loop {
            if let Some((message, fds)) = self.channel.next_message::<WorkerMessage>().unwrap() {
                assert!(fds.is_empty());
                return message;
            }
            let received = self.channel.receive().unwrap();
            assert!(matches!(received, Received::Bytes(_)), "the worker closed its end");
        }
    }

    fn send(&mut self, message: &MasterMessage, fds: &[std::os::fd::BorrowedFd<'_>]) {
        assert!(self.channel.send(message, fds).unwrap());
    }

    /// Answers the worker's next `ListenRequest` with `socket`, as a master
    /// that bound it, and checks that the worker then reports `Listening`
    /// on its address.
    fn grant(&mut self, socket: &TcpListener) {
        let WorkerMessage::ListenRequest { addr: requested } = self.next() else {
            panic!("listen request expected")
        };
        let actual = srv_proto::ListenAddr::Tcp(socket.local_addr().unwrap());
        let reply = MasterMessage::ListenReply { requested, result: Ok(actual.clone()) };
        self.send(&reply, &[socket.as_fd()]);
        assert_eq!(self.next(), WorkerMessage::Listening { addr: actual });
    }
}

/// Polls a future to completion on this thread.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park_timeout(Duration::from_secs(10));
    }
}

fn readable_within(fd: std::os::fd::BorrowedFd<'_>, ms: u16) -> bool {
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    poll(&mut fds, PollTimeout::from(ms)).unwrap() == 1
}

#[test]
fn reports_online_and_intentional_state() {
    let (mut master, worker) = FakeMaster::connect();
    assert!(worker.is_supervised());
    assert_eq!(worker.id(), Some(7));
    worker.online().unwrap();
    assert_eq!(master.next(), WorkerMessage::Online);
}

#[test]
fn disconnect_reaches_every_form_of_waiting() {
    let (mut master, worker) = FakeMaster::connect();
    let worker = Arc::new(worker);
    let fd_worker = Arc::clone(&worker);
    assert!(!worker.is_disconnected());
    assert!(!readable_within(worker.disconnect_fd().unwrap(), 50));
    let blocked = std::thread::spawn({
        let worker = Arc::clone(&worker);
        move || worker.wait_disconnect()
    });
    let future = std::thread::spawn({
        let worker = Arc::clone(&worker);
        move || block_on(worker.disconnected())
    });
    master.send(&MasterMessage::Disconnect { grace: None }, &[]);
    assert_eq!(blocked.join().unwrap(), DisconnectReason::Requested);
    assert_eq!(future.join().unwrap(), DisconnectReason::Requested);
    assert!(worker.is_disconnected());
    assert_eq!(worker.disconnect_reason(), Some(DisconnectReason::Requested));
    assert!(readable_within(fd_worker.disconnect_fd().unwrap(), 1000));
}

#[test]
fn disconnect_fd_created_after_the_disconnect_is_readable_too() {
    let (mut master, worker) = FakeMaster::connect();
    master.send(&MasterMessage::Disconnect { grace: None }, &[]);
    assert_eq!(worker.wait_disconnect(), DisconnectReason::Requested);
    assert!(readable_within(worker.disconnect_fd().unwrap(), 1000));
}

#[test]
fn the_grace_of_the_disconnect_is_the_drain_deadline_and_a_shorter_one_brings_it_forward() {
    let (mut master, worker) = FakeMaster::connect();
    assert_eq!((worker.drain_deadline(), worker.drain_until()), (None, None));
    let before = Instant::now();
    master.send(&MasterMessage::Disconnect { grace: Some(Duration::from_secs(20)) }, &[]);
    assert_eq!(worker.wait_disconnect(), DisconnectReason::Requested);
    let first = worker.drain_deadline().expect("the master gave a grace");
    assert!(
        first >= before + Duration::from_secs(20)
            && first <= Instant::now() + Duration::from_secs(20)
    );
    assert_eq!(worker.drain_until(), Some(first - srv_worker::drain::EXIT_MARGIN));
    // A shutdown during a recycle cuts the grace, and says so.
    master.send(&MasterMessage::Disconnect { grace: Some(Duration::from_secs(1)) }, &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while worker.drain_deadline() == Some(first) {
        assert!(Instant::now() < deadline, "the shorter grace did not arrive");
        std::thread::sleep(Duration::from_millis(1));
    }
    let second = worker.drain_deadline().unwrap();
    assert!(second <= Instant::now() + Duration::from_secs(1), "{second:?} is not within 1 s");
}

#[test]
fn master_gone_counts_as_disconnect() {
    let (master, worker) = FakeMaster::connect();
    drop(master);
    assert_eq!(worker.wait_disconnect(), DisconnectReason::MasterGone);
    assert!(readable_within(worker.disconnect_fd().unwrap(), 1000));
    // Nobody will kill it: no deadline, and the worker's own limit.
    assert_eq!(worker.drain_deadline(), None);
    assert!(worker.drain_until().unwrap() > Instant::now() + Duration::from_secs(10));
}

#[test]
fn refusal_is_a_disconnect_with_its_reason() {
    let (mut master, worker) = FakeMaster::connect();
    let reason = "protocol version mismatch: worker speaks 1, master speaks 2".to_owned();
    master.send(&MasterMessage::Refused { reason: reason.clone() }, &[]);
    assert_eq!(worker.wait_disconnect(), DisconnectReason::Refused(reason));
}

#[test]
fn garbage_from_the_master_is_a_broken_channel_not_a_refusal_nor_a_panic() {
    let (master_end, worker_end) = UnixStream::pair().unwrap();
    let worker = Worker::connect(worker_end, None).unwrap();
    // An oversized length prefix.
    std::io::Write::write_all(&mut &master_end, &u32::MAX.to_le_bytes()).unwrap();
    let reason = worker.wait_disconnect();
    assert!(
        matches!(&reason, DisconnectReason::ChannelBroken(why) if why.contains("exceeds")),
        "{reason:?}"
    );
    assert!(reason.to_string().starts_with("the channel to the master broke: "), "{reason}");
}

#[test]
fn listen_gets_the_masters_socket_and_reports_listening() {
    let (mut master, worker) = FakeMaster::connect();
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let actual = ListenAddr::Tcp(held.local_addr().unwrap());
    let serving = std::thread::spawn(move || {
        let request = master.next();
        let requested: ListenAddr = "127.0.0.1:0".parse().unwrap();
        assert_eq!(request, WorkerMessage::ListenRequest { addr: requested.clone() });
        let reply = MasterMessage::ListenReply { requested, result: Ok(actual.clone()) };
        master.send(&reply, &[held.as_fd()]);
        assert_eq!(master.next(), WorkerMessage::Listening { addr: actual });
        held
    });
    let listener = worker.listen_tcp(([127, 0, 0, 1], 0)).unwrap();
    let held = serving.join().unwrap();
    // One kernel socket: a connection queued through the master's copy is
    // accepted through the worker's.
    assert_eq!(listener.local_addr().unwrap(), held.local_addr().unwrap());
    let _client = TcpStream::connect(held.local_addr().unwrap()).unwrap();
    listener.accept().unwrap();
}

#[test]
fn listen_errors_name_the_address() {
    let (mut master, worker) = FakeMaster::connect();
    let serving = std::thread::spawn(move || {
        let WorkerMessage::ListenRequest { addr } = master.next() else {
            panic!("listen request expected")
        };
        let message = format!("bind {addr}: Permission denied (os error 13)");
        let error = ListenError { errno: Some(13), message };
        master.send(&MasterMessage::ListenReply { requested: addr, result: Err(error) }, &[]);
        master
    });
    let error = worker.listen_tcp(([0, 0, 0, 0], 80)).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::PermissionDenied);
    assert!(error.to_string().contains("bind 0.0.0.0:80"), "{error}");
    drop(serving.join().unwrap());
}

#[test]
fn listen_fails_when_the_master_dies_meanwhile() {
    let (mut master, worker) = FakeMaster::connect();
    let serving = std::thread::spawn(move || {
        assert!(matches!(master.next(), WorkerMessage::ListenRequest { .. }));
        drop(master);
    });
    let error = worker.listen_tcp(([127, 0, 0, 1], 0)).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::BrokenPipe, "{error}");
    assert!(error.to_string().contains("the master is gone"), "{error}");
    serving.join().unwrap();
}

#[test]
fn bad_addresses_are_refused_before_asking_the_master() {
    let (mut master, worker) = FakeMaster::connect();
    // Text is parsed first, and a parse error is an `io::Error` for `?`.
    let listen = |text: &str| -> std::io::Result<_> { worker.listen(text.parse::<ListenAddr>()?) };
    let error = listen("example.com:80").unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    assert!(error.to_string().contains("'example.com:80'"), "{error}");
    // The master heard nothing of it: the next message is the next report.
    worker.online().unwrap();
    assert_eq!(master.next(), WorkerMessage::Online);
}

#[test]
fn listen_tcp_refuses_a_unix_path_before_asking_the_master() {
    let (mut master, worker) = FakeMaster::connect();
    let path = std::path::Path::new("/run/srv-test-never-asked.sock");
    let error = worker.listen_tcp(path).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    assert!(error.to_string().contains("unix:/run/srv-test-never-asked.sock"), "{error}");
    worker.online().unwrap();
    assert_eq!(master.next(), WorkerMessage::Online, "no listen request was sent");
}

#[test]
fn standalone_listen_tcp_refuses_a_unix_path_before_binding_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("never-bound.sock");
    let error = Worker::standalone().listen_tcp(&path).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    assert!(!path.exists(), "a socket file was bound at {}", path.display());
}

#[test]
fn listen_unix_asks_for_a_path_that_is_not_utf8_as_it_is() {
    let (mut master, worker) = FakeMaster::connect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(OsStr::from_bytes(b"\xff\xfe.sock"));
    let held = UnixListener::bind(&path).unwrap();
    let expected = ListenAddr::Unix(path.clone());
    let serving = std::thread::spawn(move || {
        let request = master.next();
        assert_eq!(request, WorkerMessage::ListenRequest { addr: expected.clone() });
        let reply = MasterMessage::ListenReply {
            requested: expected.clone(),
            result: Ok(expected.clone()),
        };
        master.send(&reply, &[held.as_fd()]);
        assert_eq!(master.next(), WorkerMessage::Listening { addr: expected });
        held
    });
    let listener = worker.listen_unix(&path).unwrap();
    let _held = serving.join().unwrap();
    UnixStream::connect(&path).unwrap();
    listener.accept().unwrap();
}

#[test]
fn standalone_binds_directly_and_is_never_disconnected() {
    let worker = Worker::standalone();
    assert!(!worker.is_supervised());
    assert_eq!(worker.id(), None);
    worker.online().unwrap();
    let listener = worker.listen_tcp(([127, 0, 0, 1], 0)).unwrap();
    let taken = listener.local_addr().unwrap();
    let error = worker.listen_tcp(taken).unwrap_err();
    let taken = taken.to_string();
    assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse);
    assert!(error.to_string().contains(&taken), "{error}");
    assert!(!worker.is_disconnected());
    assert!(!readable_within(worker.disconnect_fd().unwrap(), 20));
}

#[test]
fn standalone_unix_listen_binds_a_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sock");
    let worker = Worker::standalone();
    let listener = worker.listen_unix(&path).unwrap();
    UnixStream::connect(&path).unwrap();
    listener.accept().unwrap();
}

#[test]
fn standalone_unix_listen_binds_a_path_that_is_not_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(OsStr::from_bytes(b"\xff.sock"));
    let listener = Worker::standalone().listen_unix(&path).unwrap();
    assert_eq!(listener.local_addr().unwrap().as_pathname(), Some(path.as_path()));
    UnixStream::connect(&path).unwrap();
    listener.accept().unwrap();
}

#[test]
fn a_master_that_dies_with_messages_unread_is_gone_not_refusing() {
    let (master_end, worker_end) = UnixStream::pair().unwrap();
    // The worker's Hello stays unread in the master's end: closing it then
    // resets the connection instead of ending it.
    let worker = Worker::connect(worker_end, None).unwrap();
    worker.online().unwrap();
    drop(master_end);
    assert_eq!(worker.wait_disconnect(), DisconnectReason::MasterGone);
}
