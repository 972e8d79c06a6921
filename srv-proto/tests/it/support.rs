//! Helpers shared by the test modules: pipes, descriptor flags, and
//! receiving with a deadline.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use srv_proto::{Channel, DecodeError, Received};

/// How long any blocking step of a test may take before the test fails
/// instead of hanging.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);

/// A pipe as (read end, write end), both close-on-exec.
///
/// Close-on-exec matters: the `inherit` tests spawn children concurrently,
/// and a child that inherited a write end would keep the pipe open and make
/// [`writers_closed`] lie.
pub(crate) fn pipe() -> (File, OwnedFd) {
    let (read_end, write_end) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe2");
    (File::from(read_end), write_end)
}

/// Whether `fd` has `FD_CLOEXEC` set.
pub(crate) fn is_cloexec(fd: impl AsFd) -> bool {
    let flags = fcntl(fd.as_fd(), FcntlArg::F_GETFD).expect("fcntl F_GETFD");
    FdFlag::from_bits_truncate(flags).contains(FdFlag::FD_CLOEXEC)
}

/// Held around every spawn of this test binary, from before the fork (in the
/// `inherit` tests, from clearing `FD_CLOEXEC` on the descriptor to pass)
/// until the child is gone.
///
/// A child holds a copy of *every* descriptor of this process, close-on-exec
/// or not, from its fork until its `exec` closes them, and that happens
/// after `Command::spawn` returned (the kernel wakes a `vfork` parent before
/// it closes the child's close-on-exec descriptors). [`writers_closed`]
/// takes the lock too, so that such a passing copy never makes it lie.
pub(crate) static SPAWN_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Whether every write end of the pipe whose read end is `read_end` is
/// closed, in this process and wherever it was sent: a non-blocking read
/// then sees end of file rather than `WouldBlock`.
///
/// Panics if the pipe still holds data: read it first.
pub(crate) fn writers_closed(read_end: &File) -> bool {
    let _no_fork_in_flight = SPAWN_LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    fcntl(read_end.as_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).expect("fcntl F_SETFL");
    let mut byte = [0u8; 1];
    match (&*read_end).read(&mut byte) {
        Ok(0) => true,
        Ok(_) => panic!("the pipe still holds data"),
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => false,
        Err(error) => panic!("read from the pipe: {error}"),
    }
}

/// What [`Channel::next_message`] returns for messages of type `M`.
pub(crate) type Next<M> = Result<Option<(M, Vec<OwnedFd>)>, DecodeError>;

/// Receives on a blocking channel until `next_message` (one of
/// `Channel::next_message::<WorkerMessage>` or `::<MasterMessage>`) yields a
/// message.
///
/// The message type is passed as a function because the bound of
/// `Channel::next_message`, `srv_proto`'s `Message` trait, lives in a private
/// module and cannot be named here.
///
/// Fails after [`TIMEOUT`] rather than hanging, and on end of file.
pub(crate) fn receive_one<M>(
    channel: &mut Channel,
    next_message: fn(&mut Channel) -> Next<M>,
) -> (M, Vec<OwnedFd>) {
    channel.stream().set_read_timeout(Some(TIMEOUT)).expect("set_read_timeout");
    loop {
        if let Some(received) = next_message(channel).expect("next_message") {
            return received;
        }
        match channel.receive().expect("receive") {
            Received::Bytes(_) => {}
            Received::Closed => panic!("the peer closed before a whole message arrived"),
        }
    }
}

/// Waits for `child` (with piped output) for at most `timeout`, killing it
/// and panicking past that.
pub(crate) fn wait_with_timeout(
    child: std::process::Child,
    timeout: Duration,
) -> std::process::Output {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid fits in i32"));
    let (done, waited) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(child.wait_with_output()));
    match waited.recv_timeout(timeout) {
        Ok(output) => output.expect("wait for the child"),
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            panic!("the child pid {pid} did not finish within {timeout:?}");
        }
    }
}
