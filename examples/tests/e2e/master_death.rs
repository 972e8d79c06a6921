//! The master dies by `SIGKILL` while the reference server has slow
//! requests in flight: every worker notices at once (end of file on its
//! channel), stops accepting, finishes what it accepted and exits, so no
//! worker outlives the master by more than its last request.

use std::collections::BTreeSet;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::harness::{Master, wait_until};
use crate::http_support::{
    Response, get, http, start_on_port_0, threads_named, wait_addr, wait_serving,
};

/// Workers of the reference server: more than one, so that every one of
/// them has to notice, and few, for a 2-core machine.
const N_WORKERS: usize = 2;

/// Slow requests in flight when the master dies.
const N_SLOW: usize = 6;

/// How long each slow request sleeps in the worker.
const SLOW_MS: u64 = 1500;

/// The requirement: every worker notices the master's death this fast.
const NOTICE_WITHIN: Duration = Duration::from_millis(100);

/// The requirement: this long after the last answer, no worker is alive.
const GONE_WITHIN: Duration = Duration::from_secs(1);

/// The worker thread that serves one connection (`http.rs`).
const CONNECTION_THREAD: &str = "http-connection";

type SlowRequest = JoinHandle<(Result<Response, String>, Instant)>;

#[test]
fn sigkill_of_the_master_lets_in_flight_requests_finish_and_the_workers_exit() {
    // Grace far longer than the requests: a worker that exits early does so
    // because it finished, not because it gave up.
    let mut master = start_on_port_0(
        http(),
        &["--workers", "2", "--shutdown-timeout", "10000", "--recycle-timeout", "10000"],
    );
    let addr = wait_addr(&master);
    let workers = wait_serving(&master, N_WORKERS);

    let path = format!("/sleep?ms={SLOW_MS}");
    let requests: Vec<SlowRequest> = (0..N_SLOW)
        .map(|_| {
            let path = path.clone();
            thread::spawn(move || (get(addr, &path), Instant::now()))
        })
        .collect();
    // Every request is accepted (has its connection thread) before the kill:
    // they are in flight, not in the backlog.
    let accepted =
        || workers.iter().map(|&pid| threads_named(pid, CONNECTION_THREAD)).sum::<usize>();
    if !wait_until(Instant::now() + Duration::from_secs(5), || accepted() == N_SLOW) {
        master.fail(&format!("the workers accepted {} of {N_SLOW} slow requests", accepted()));
    }

    master.signal(Signal::SIGKILL);
    let killed_at = Instant::now();

    // Every worker notices: the reference server logs the disconnect reason.
    let notices = wait_notices(&master, &workers);
    let mut slowest = Duration::ZERO;
    for (pid, at) in &notices {
        let took = at.saturating_duration_since(killed_at);
        eprintln!("master_death: worker pid {pid} noticed after {took:?} (line read)");
        slowest = slowest.max(took);
    }
    if slowest > NOTICE_WITHIN {
        master.fail(&format!(
            "a worker noticed the master's death {slowest:?} after the kill, over {NOTICE_WITHIN:?}"
        ));
    }
    // Once every worker has stopped accepting, nobody holds the listening
    // socket any more: new connections are refused.
    assert_refused(&master, addr);

    // The requests in flight complete.
    let deadline = Instant::now() + Duration::from_secs(10);
    if !wait_until(deadline, || requests.iter().all(JoinHandle::is_finished)) {
        master.fail("slow requests still unanswered 10 s after the kill");
    }
    let mut last_answer = killed_at;
    for request in requests {
        let (response, at) = request.join().expect("the request thread does not panic");
        match response {
            Ok(response)
                if response.status == 200 && response.body == format!("slept {SLOW_MS}\n") => {}
            other => master.fail(&format!("slow request in flight: expected 200, got {other:?}")),
        }
        last_answer = last_answer.max(at);
    }

    // And then the workers are gone, within a second of the last answer.
    let gone =
        wait_until(last_answer + GONE_WITHIN, || workers.iter().all(|&pid| !master.is_alive(pid)));
    let alive: Vec<Pid> = workers.iter().copied().filter(|&pid| master.is_alive(pid)).collect();
    if !gone {
        master
            .fail(&format!("workers {alive:?} still alive {GONE_WITHIN:?} after the last answer"));
    }
    eprintln!(
        "master_death: last answer {:?} after the kill, workers gone {:?} after it",
        last_answer.saturating_duration_since(killed_at),
        last_answer.elapsed()
    );
    let lines = master.lines();
    for pid in &workers {
        let done = format!("http worker {pid} done, exiting");
        if !lines.iter().any(|line| line.contains(&done)) {
            master.fail(&format!("worker pid {pid} did not finish its connections and exit"));
        }
    }
    assert_eq!(
        master.wait_exit_within(Duration::from_secs(1)),
        crate::harness::Exit::Signal(Signal::SIGKILL)
    );
}

/// Waits until every worker in `workers` logged that the master is gone;
/// returns when each line was read.
fn wait_notices(master: &Master, workers: &BTreeSet<Pid>) -> Vec<(Pid, Instant)> {
    let needles: Vec<(Pid, String)> = workers
        .iter()
        .map(|pid| (*pid, format!("http worker {pid} disconnected (the master is gone)")))
        .collect();
    master.wait_until_within(
        Duration::from_secs(5),
        "every worker noticing the master's death",
        |lines| needles.iter().all(|(_, needle)| lines.iter().any(|line| line.contains(needle))),
    );
    let lines = master.timed_lines();
    needles
        .iter()
        .map(|(pid, needle)| {
            let line = lines.iter().find(|line| line.text.contains(needle)).expect("waited for it");
            (*pid, line.at)
        })
        .collect()
}

/// Fails unless a new connection to `addr` is refused.
fn assert_refused(master: &Master, addr: SocketAddr) {
    match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {}
        other => master.fail(&format!(
            "a connection after every worker stopped accepting: expected refused, got {other:?}"
        )),
    }
}
