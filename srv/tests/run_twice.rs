//! `srv::run` called again in a worker returns an error instead of taking
//! the process for a master: as one, it would run the program again as
//! workers, each of which would do the same.
//!
//! The binary is both sides: run by cargo, it hands one end of a socket
//! pair to itself, run again as a worker (`SRV_CHANNEL_FD`, as a master
//! does), and checks how that worker ended; the worker calls `srv::run`
//! twice and exits 0 only if the second call refused. The second call's
//! options are invalid (`worker.count = 0`), so that a `run` that took the
//! worker for a master fails at once instead of spawning anything.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a test's own main reports")]

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};

fn main() -> ExitCode {
    if std::env::var_os("SRV_CHANNEL_FD").is_some() {
        return worker();
    }
    let (_master_end, worker_end) = UnixStream::pair().expect("a socket pair");
    // The worker's end survives the exec, as the master's spawn leaves it.
    fcntl(&worker_end, FcntlArg::F_SETFD(FdFlag::empty())).expect("FD_CLOEXEC cleared");
    let mut child = Command::new(std::env::current_exe().expect("this test's path"))
        .env("SRV_CHANNEL_FD", worker_end.as_raw_fd().to_string())
        .env("SRV_WORKER_ID", "1")
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the test worker runs");
    drop(worker_end);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("the test worker can be waited for") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("run_twice: the test worker did not exit within 20 s");
            return ExitCode::FAILURE;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if status.success() {
        println!("run_twice: the second srv::run in a worker refused: ok");
        ExitCode::SUCCESS
    } else {
        eprintln!("run_twice: the test worker ended with {status}");
        ExitCode::FAILURE
    }
}

/// The test worker: `srv::run` twice.
fn worker() -> ExitCode {
    let first = srv::run(srv::Options::default(), |_worker| Ok::<(), std::io::Error>(()));
    if let Err(error) = first {
        eprintln!("run_twice worker: the first srv::run failed: {error:?}");
        return ExitCode::FAILURE;
    }
    let mut options = srv::Options::default();
    options.worker.count = 0;
    match srv::run(options, |_worker| Ok::<(), std::io::Error>(())) {
        Err(srv::Error::Worker(error))
            if error.to_string().contains("called again in a worker") =>
        {
            ExitCode::SUCCESS
        }
        other => {
            eprintln!("run_twice worker: the second srv::run returned {other:?}");
            ExitCode::FAILURE
        }
    }
}
