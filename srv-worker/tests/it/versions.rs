//! A worker and a master of different protocol versions, each case in a
//! child process: [`Worker::from_env`] reads and removes process-wide
//! environment variables and takes its channel once per process.
//!
//! Each test re-executes this test binary with [`CHILD_CASE`] naming the
//! case, filtered to [`child_entry`], which plays the worker; the test plays
//! the master on the other end of a socket pair that the child inherits, as
//! a master passes it, and checks the child's `Hello` and its test result.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::{Mutex, PoisonError, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use srv_proto::env::{ENV_CHANNEL_FD, ENV_PROTOCOL_VERSION, ENV_WORKER_ID};
use srv_proto::{Channel, MasterMessage, PROTOCOL_VERSION, Received, WorkerMessage};
use srv_worker::{DisconnectReason, Worker};

/// Names the case a child process runs; unset in the parent.
const CHILD_CASE: &str = "SRV_WORKER_TEST_CHILD_CASE";

/// The full name of [`child_entry`] in this test binary.
const CHILD_ENTRY: &str = "versions::child_entry";

/// The grace the fake master gives with its `Disconnect`.
const GRACE: Duration = Duration::from_secs(30);

/// How long a child may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Held while a descriptor is open across `exec`, so that no other child
/// of this binary inherits it.
static SPAWN_LOCK: Mutex<()> = Mutex::new(());

/// Not a test by itself: the worker of the tests below. Without
/// [`CHILD_CASE`] it returns at once.
#[test]
fn child_entry() {
    let Some(case) = std::env::var_os(CHILD_CASE) else {
        return;
    };
    let worker = Worker::from_env().unwrap().expect("a channel");
    assert_eq!(std::env::var_os(ENV_PROTOCOL_VERSION), None, "the variable is removed");
    assert_eq!(worker.drain_deadline(), None, "no deadline before the disconnect");
    assert_eq!(worker.drain_until(), None);
    if case == "without-grace" {
        // A master of protocol 1 cannot read a Unix path that is not
        // UTF-8: the worker refuses it without asking (the master would
        // see a ListenRequest where it expects Online).
        let path =
            std::path::PathBuf::from(std::ffi::OsString::from_vec(b"/tmp/\xff.sock".to_vec()));
        let error = worker.listen_unix(&path).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput, "{error}");
        assert!(error.to_string().contains("needs a master of protocol 2"), "{error}");
    }
    worker.online().unwrap(); // the master disconnects it only then
    assert_eq!(worker.wait_disconnect(), DisconnectReason::Requested);
    let now = Instant::now();
    match case.to_str().unwrap() {
        "with-grace" => {
            let deadline = worker.drain_deadline().expect("the master gave a grace");
            assert!(deadline > now + GRACE - Duration::from_secs(1) && deadline <= now + GRACE);
            let until = worker.drain_until().unwrap();
            assert_eq!(until, deadline - srv_worker::drain::EXIT_MARGIN);
        }
        "without-grace" => {
            assert_eq!(worker.drain_deadline(), None);
            let until = worker.drain_until().unwrap();
            let limit = srv_worker::drain::FALLBACK_LIMIT;
            assert!(until > now + limit - Duration::from_secs(1) && until <= now + limit);
        }
        other => panic!("unknown child case {other:?}"),
    }
}

/// Plays the master of a child worker running `case`, announcing
/// `announced` in [`ENV_PROTOCOL_VERSION`] (or nothing, as a master of
/// protocol 1 does): checks that the child says `Hello` with
/// `expected_version`, sends it the `Disconnect` a master sends that
/// version, and fails unless the child's test passed.
fn master_of(case: &str, announced: Option<&str>, expected_version: u32) {
    let (master_end, child_end) = UnixStream::pair().unwrap();
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", CHILD_ENTRY, "--test-threads=1"])
        .env(CHILD_CASE, case)
        .env(ENV_CHANNEL_FD, child_end.as_raw_fd().to_string())
        .env(ENV_WORKER_ID, "7")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match announced {
        Some(version) => command.env(ENV_PROTOCOL_VERSION, version),
        None => command.env_remove(ENV_PROTOCOL_VERSION),
    };
    let lock = SPAWN_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    fcntl(child_end.as_fd(), FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
    let child = command.spawn().unwrap();
    drop(OwnedFd::from(child_end));
    drop(lock);
    let child_pid = child.id();
    let (done, waited) = mpsc::channel();
    thread::spawn(move || done.send(child.wait_with_output()));

    master_end.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut master = Channel::new(master_end);
    let mut next = || loop {
        if let Some((message, _)) = master.next_message::<WorkerMessage>().unwrap() {
            break message;
        }
        assert!(matches!(master.receive().unwrap(), Received::Bytes(_)), "the child closed");
    };
    assert_eq!(
        next(),
        WorkerMessage::Hello { protocol_version: expected_version, pid: child_pid },
        "the {case} child's hello"
    );
    assert_eq!(next(), WorkerMessage::Online, "the {case} child's report");
    let disconnect = MasterMessage::disconnect_for(Some(expected_version), GRACE);
    assert!(master.send(&disconnect, &[]).unwrap());

    let output = match waited.recv_timeout(TIMEOUT) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = kill(Pid::from_raw(child_pid as i32), Signal::SIGKILL);
            panic!("child case {case} did not finish within {TIMEOUT:?}: {command:?}");
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "child case {case} failed: {command:?}\nstatus: {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
    );
}

#[test]
fn under_a_master_of_protocol_1_a_worker_says_version_1_and_drains_by_its_own_limit() {
    // A master built before the version was announced: a SIGHUP recycle
    // onto a newly built binary meets it.
    master_of("without-grace", None, 1);
}

#[test]
fn under_a_master_of_this_version_a_worker_learns_the_grace() {
    master_of("with-grace", Some(&PROTOCOL_VERSION.to_string()), PROTOCOL_VERSION);
}

#[test]
fn under_a_newer_master_a_worker_says_its_own_version() {
    master_of("with-grace", Some("99"), PROTOCOL_VERSION);
}
