//! The shell around [`Machine`]: one `mio::Poll` over signals, worker
//! channels and the machine's next deadline.
//!
//! The loop is `poll → translate into events → Machine::handle → carry out
//! actions`. It makes no decisions: anything that reads like policy belongs
//! in the machine.
//!
//! # Ordering and races
//!
//! - Signals arrive through signal-hook's self-pipe; on readiness the loop
//!   drains every pending signal before acting, and retries `poll` on
//!   `EINTR`.
//! - `SIGCHLD` only says "some children may have exited": signals coalesce,
//!   so the loop calls `waitpid(-1, WNOHANG)` until nothing is left. This
//!   also reaps orphans re-parented to the master: the master is a child
//!   subreaper (`PR_SET_CHILD_SUBREAPER`), so what a worker leaves behind
//!   comes to it rather than to init, and as PID 1 every orphan does.
//! - Before reporting a worker's exit, the loop reads what is left in its
//!   channel, so an `Online` or `Exit` sent just before exiting is handled
//!   before the exit. That read has the same bounds as any other (below):
//!   what a worker, or a child that inherited its channel, keeps writing
//!   after that is not read.
//! - mio is edge-triggered: a channel must be read until `WouldBlock`. To
//!   keep a flooding worker (or a grandchild that inherited its channel)
//!   from stalling the loop or growing the master, one channel gets at most
//!   [`MESSAGES_PER_TURN`] messages and [`READS_PER_TURN`] reads per turn,
//!   and is read only once the messages already decoded are taken, so the
//!   decoder holds at most one read beyond a partial frame. A channel not
//!   drained stays on a list and is read again next turn, with a zero
//!   `poll` timeout; the events of one turn are bounded, and the machine
//!   sees a flood (and kills the worker, `MAX_MESSAGES_PER_WINDOW`) within a
//!   few turns.
//! - Once the machine kills a worker, nothing it sends matters: its
//!   channel is closed at once, so a child still writing into it gets
//!   `EPIPE` instead of the master's time.
//! - A worker's pid is used (for `SIGKILL`) only until it is reaped, so a
//!   reused pid is never signalled. So is the pid of an upgrade's probe,
//!   the id of its process group: the reap loop knows it, so the probe is
//!   never taken for an orphan nor a worker, and its pipes are read, with
//!   the same bounds as a channel, as they fill and once more at its reap.
//! - The exec of an upgrade happens at the end of a turn, once every event
//!   of the turn is handled, and only if the machine still wants it then
//!   (`Machine::handover`); if it fails, the signals drained for it, and a
//!   reap if a `SIGCHLD` was among them, are handled before anything else.
//!   A master that an upgrade executed reaps and reads every channel before
//!   its first `poll` (see the `upgrade` module).
//!
//! # Time
//!
//! The master must not charge its own stalls to its workers: a worker
//! whose message was in its channel before its deadline is never killed as
//! late, however long the master took to get to it (a busy machine, a long
//! turn of the loop, a `SIGSTOP`). So each turn reads every ready channel
//! first and hands the machine what the workers reported before anything
//! else: each such event is stamped with the time its channel was read, and
//! never at or after a deadline that is still due (just before it instead),
//! so no deadline expires while workers' messages of this turn wait. The
//! watchdog's deadlines are the exception (`Machine::report_deadline`): a
//! hang is judged only at the turn's `Tick`, after every report, so a
//! heartbeat keeps its true time (clamped before another worker's stale
//! deadline, a heartbeat read after a stall of the master could not move
//! its worker's past that deadline, and that worker was killed). Only
//! then come what the master saw itself (signals, exits) and the `Tick`,
//! stamped when they are handled, which expire what is due. The price is
//! that a message that arrives after its deadline, while the master was
//! stalled past that deadline, counts as in time: the master cannot tell
//! the two apart, and the doubt goes to the worker. A worker's `Spawned` is
//! stamped the same way, with the moment its spawn returned, so that the
//! worker's time counts from when its process exists, not from when the
//! master is done with the rest of a batch of spawns.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::errno::Errno;
use nix::sys::signal::{Signal as NixSignal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGTTIN, SIGTTOU, SIGUSR2};
use signal_hook_mio::v1_0::Signals;
use srv_proto::{Channel, ListenAddr, ListenError, MasterMessage, Received, WorkerMessage};

use crate::Error;
use crate::listeners::{Listeners, Policy};
use crate::machine::{Action, Event, ExitStatus, Machine, Signal, WorkerId};
use crate::notify::Notifier;
use crate::options::Options;
use crate::spawn::{Credentials, spawn_worker};
use crate::upgrade::{ProbePipe, Program};

mod upgrade;

const SIGNALS: Token = Token(0);

/// The probe's report pipe and its output pipe. Workers' tokens are their
/// ids, which never come near these.
const PROBE_REPORT: Token = Token(usize::MAX - 1);
const PROBE_OUTPUT: Token = Token(usize::MAX - 2);

/// The most reads (of up to 16 KiB each) from one channel in one turn of
/// the loop: a 64 KiB frame fits, a flood does not stall the loop.
pub(crate) const READS_PER_TURN: usize = 16;

/// The most messages taken from one channel in one turn of the loop. A
/// well-behaved worker sends a handful in its whole life.
pub(crate) const MESSAGES_PER_TURN: usize = 64;

/// A worker process as the shell knows it.
#[derive(Debug)]
struct Child {
    pid: Pid,
    /// `None` once the channel closed or broke.
    channel: Option<Channel>,
    /// Registered for writable readiness because frames wait to be written.
    wants_write: bool,
    /// Its `/proc/<pid>/statm`, opened at its first memory sample.
    statm: Option<std::fs::File>,
}

/// The probe of an upgrade, as the shell knows it.
#[derive(Debug)]
struct ProbeChild {
    /// Until it is reaped; it leads its own process group.
    pid: Pid,
    report: ProbePipe,
    output: ProbePipe,
}

struct Shell {
    poll: Poll,
    options: Options,
    credentials: Option<Credentials>,
    command: Box<dyn FnMut() -> Command>,
    children: HashMap<WorkerId, Child>,
    by_pid: HashMap<Pid, WorkerId>,
    listeners: Listeners,
    /// Channels not read until `WouldBlock` last turn.
    unread: Vec<WorkerId>,
    exit_code: Option<i32>,
    /// The master's own program (see [`run`]).
    program: Result<Program, String>,
    /// Its file, opened for the last probe, executed if it is vouched for.
    exe: Option<std::os::fd::OwnedFd>,
    probe: Option<ProbeChild>,
    /// The probe's pipes were not read until `WouldBlock` last turn.
    probe_unread: bool,
    /// `Action::Exec` was carried out this turn.
    exec_due: bool,
    /// The size of a memory page, for memory samples.
    page_size: u64,
}

fn token(worker: WorkerId) -> Token {
    Token(worker.0 as usize)
}

fn io_error(context: &str) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io { context: context.to_owned(), source }
}

/// Runs the master until every worker is gone after a shutdown.
///
/// `program` is the master's own program, which `SIGUSR2` probes and
/// executes in place (`Err`: why there is none).
pub(crate) fn run(
    options: Options,
    command: Box<dyn FnMut() -> Command>,
    program: Result<Program, String>,
) -> Result<i32, Error> {
    // First, before the master creates any descriptor (name lookups below
    // included): see the `upgrade` and `activation` modules. A master that
    // an upgrade executed holds the sockets of its predecessor, systemd's
    // included; the variables of socket activation were dropped by the
    // exec.
    let handover = crate::upgrade::take_handover()?;
    let adopted = if handover.is_some() { Vec::new() } else { crate::activation::adopt() };
    let credentials =
        Credentials::resolve(options.worker.user.as_deref(), options.worker.group.as_deref())
            .map_err(Error::Credentials)?;
    // Processes that workers leave behind are re-parented to the master, not
    // to init, so that the master reaps them (the `waitpid(-1)` loop) and no
    // zombie outlives its worker; as PID 1 this happens anyway.
    if let Err(errno) = nix::sys::prctl::set_child_subreaper(true) {
        log::warn!(target: "srv", "cannot become a child subreaper: {errno}");
    }
    let poll = Poll::new().map_err(io_error("cannot create the event loop"))?;
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP, SIGTTIN, SIGTTOU, SIGUSR2, SIGCHLD])
        .map_err(io_error("cannot install signal handlers"))?;
    poll.registry()
        .register(&mut signals, SIGNALS, Interest::READABLE)
        .map_err(io_error("cannot watch signals"))?;
    // An upgraded master starts with these blocked (the exec kept the mask):
    // now that the handlers are installed, what was pending is delivered.
    crate::upgrade::unblock_signals().map_err(io_error("cannot unblock signals"))?;
    let policy = listen_policy(&options, credentials);
    let mut shell = Shell {
        poll,
        options: options.clone(),
        credentials,
        command,
        children: HashMap::new(),
        by_pid: HashMap::new(),
        listeners: Listeners::new(policy.clone(), Vec::new()),
        unread: Vec::new(),
        exit_code: None,
        program,
        exe: None,
        probe: None,
        probe_unread: false,
        exec_due: false,
        page_size: crate::rss::page_size(),
    };
    let mut notifier = Notifier::from_env(Instant::now());
    let mut machine = match handover {
        None => {
            shell.listeners = Listeners::new(policy, adopted);
            log::info!(target: "srv", "master {} starting {} workers", std::process::id(), options.worker.count);
            let (mut machine, actions) = Machine::new(options, Instant::now());
            shell.carry_out(&mut machine, actions, Queue::new());
            machine
        }
        Some(handover) => {
            let mut machine = shell.adopt(handover, options)?;
            // The previous master said RELOADING=1 already: only what
            // changes from here on is sent.
            notifier.resume(machine.status().phase);
            // Workers may have exited, and written, during the exec.
            let (mut reported, mut happened) = (Queue::new(), Queue::new());
            shell.reap(&mut reported, &mut happened);
            reported.append(&mut happened);
            shell.carry_out(&mut machine, Vec::new(), reported);
            machine
        }
    };
    notifier.update(Instant::now(), machine.status());

    let mut events = Events::with_capacity(256);
    while shell.exit_code.is_none() {
        let timeout = if shell.unread.is_empty() && !shell.probe_unread {
            let deadline =
                [machine.next_deadline(), notifier.next_deadline()].into_iter().flatten().min();
            deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()))
        } else {
            Some(Duration::ZERO)
        };
        match shell.poll.poll(&mut events, timeout) {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            res => res.map_err(io_error("cannot wait for events"))?,
        }
        // What workers sent comes first, then what the master saw itself
        // (see "Time" in the module docs).
        let mut reported = Queue::new();
        let mut happened = Queue::new();
        let mut reap = false;
        let mut to_read = std::mem::take(&mut shell.unread);
        let mut read_probe = std::mem::take(&mut shell.probe_unread);
        for event in events.iter() {
            match event.token() {
                SIGNALS => {
                    for signal in signals.pending() {
                        match master_signal(signal) {
                            Some(signal) => happened.push_back((Event::Signal(signal), None)),
                            None => reap |= signal == SIGCHLD,
                        }
                    }
                }
                PROBE_REPORT | PROBE_OUTPUT => read_probe = true,
                Token(n) => {
                    let worker = WorkerId(n as u32);
                    if event.is_writable() {
                        shell.flush(worker);
                    }
                    if (event.is_readable() || event.is_read_closed() || event.is_error())
                        && !to_read.contains(&worker)
                    {
                        to_read.push(worker);
                    }
                }
            }
        }
        for worker in to_read {
            shell.read_channel(worker, &mut reported);
        }
        if read_probe {
            shell.read_probe();
        }
        if reap {
            shell.reap(&mut reported, &mut happened);
        }
        happened.push_back((Event::Tick, None));
        reported.append(&mut happened);
        shell.carry_out(&mut machine, Vec::new(), reported);
        // The exec is due at the end of the turn, with the machine's state
        // once every event of the turn is handled; the machine decides
        // whether it is still due (a SIGTERM handled after the decision
        // cancels it). It returns only if it failed.
        if std::mem::take(&mut shell.exec_due)
            && let Some(handover) = machine.handover(Instant::now())
        {
            let (mut failed, reap) = shell.exec(handover, &mut signals);
            if reap {
                let mut exits = Queue::new();
                shell.reap(&mut failed, &mut exits);
                failed.append(&mut exits);
            }
            shell.carry_out(&mut machine, Vec::new(), failed);
        }
        notifier.update(Instant::now(), machine.status());
    }
    end_leftovers();
    match (shell.exit_code, machine.failure()) {
        (Some(0) | None, _) => Ok(0),
        (Some(_), Some(failure)) => Err(Error::from(failure.clone())),
        (Some(code), None) => Err(Error::Stopped { code }),
    }
}

/// The machine's name of a signal number it acts on; `None` for `SIGCHLD`
/// (the shell's business) and any other.
fn master_signal(signal: i32) -> Option<Signal> {
    Some(match signal {
        SIGINT => Signal::Int,
        SIGTERM => Signal::Term,
        SIGHUP => Signal::Hup,
        SIGTTIN => Signal::Ttin,
        SIGTTOU => Signal::Ttou,
        SIGUSR2 => Signal::Usr2,
        _ => return None,
    })
}

/// What the listeners may bind: `listen.unix_mode`, and Unix paths only
/// from `listen.allow` when the workers run as another user.
fn listen_policy(options: &Options, credentials: Option<Credentials>) -> Policy {
    Policy {
        unix_mode: options.listen.unix_mode,
        unix_needs_allow: credentials.is_some_and(|credentials| credentials.changes_user()),
        allow: options.listen.allow.clone(),
        max_addresses: options.listen.max_addresses,
    }
}

impl Shell {
    /// Feeds events to the machine and carries out its actions, which may
    /// produce more events (a spawn reports its pid), until none are left.
    ///
    /// An event the master saw itself is handled at the time it is handled,
    /// so that a spawn slowed by a busy machine does not eat into the
    /// worker's time. One a worker reported is handled at the time it was
    /// read, and never at or after a deadline still due (see "Time" in the
    /// module docs).
    fn carry_out(&mut self, machine: &mut Machine, mut actions: Vec<Action>, mut events: Queue) {
        loop {
            for action in actions.drain(..) {
                self.execute(action, &mut events);
            }
            let Some((event, read_at)) = events.pop_front() else { return };
            let now = Instant::now();
            let at = match read_at {
                Some(read_at) => before_due(read_at.min(now), machine.report_deadline()),
                None => now,
            };
            machine.handle(at, event, &mut actions);
        }
    }

    fn execute(&mut self, action: Action, events: &mut Queue) {
        match action {
            Action::Spawn(worker) => self.spawn(worker, events),
            Action::Send(worker, message) => self.send(worker, &message),
            Action::Listen(worker, addr) => self.listen(worker, addr, events),
            Action::Kill(worker) => {
                if let Some(child) = self.children.get(&worker) {
                    match kill(child.pid, NixSignal::SIGKILL) {
                        Ok(()) | Err(Errno::ESRCH) => {}
                        Err(errno) => {
                            log::error!(target: "srv", "cannot kill {worker} (pid {}): {errno}", child.pid)
                        }
                    }
                }
                // Nothing it sends matters any more (see the module docs).
                self.close_channel(worker);
            }
            Action::CloseListeners => self.listeners.close(),
            Action::Log(level, line) => log::log!(target: "srv", level, "{line}"),
            Action::Exit(code) => self.exit_code = Some(code),
            Action::Probe => self.start_probe(events),
            Action::KillProbe => {
                if let Some(probe) = &self.probe {
                    // The probe is not reaped yet, so its pid, which is its
                    // process group's id, is still its own: whatever it
                    // started goes too.
                    match nix::sys::signal::killpg(probe.pid, NixSignal::SIGKILL) {
                        Ok(()) | Err(Errno::ESRCH) => {}
                        Err(errno) => {
                            log::error!(target: "srv", "cannot kill the probe (pid {}): {errno}", probe.pid)
                        }
                    }
                }
            }
            Action::Exec => self.exec_due = true,
            Action::SampleRss(worker) => self.sample_rss(worker, events),
        }
    }

    /// Reads a worker's resident memory and reports it; a worker that is
    /// gone, or whose numbers cannot be read, is not reported (see
    /// `rss.rs`).
    fn sample_rss(&mut self, worker: WorkerId, events: &mut Queue) {
        let Some(child) = self.children.get_mut(&worker) else { return };
        if child.statm.is_none() {
            match crate::rss::open(child.pid) {
                Ok(file) => child.statm = Some(file),
                Err(error) => {
                    log::debug!(target: "srv", "cannot open the statm of {worker}: {error}");
                    return;
                }
            }
        }
        let Some(statm) = &child.statm else { return };
        match crate::rss::resident_bytes(statm, self.page_size) {
            Ok(bytes) => events.push_back((Event::Rss { worker, bytes }, None)),
            Err(error) => log::debug!(target: "srv", "cannot read the statm of {worker}: {error}"),
        }
    }

    /// Answers a worker's `ListenRequest` with the socket held for `addr`,
    /// bound now if need be, or with the error (also reported to the
    /// machine).
    ///
    /// The socket is duplicated once, here, for the reply; if even that
    /// fails (the master is out of descriptors), the worker gets the error
    /// instead of no reply at all.
    fn listen(&mut self, worker: WorkerId, addr: ListenAddr, events: &mut Queue) {
        let socket = self.listeners.get_or_bind(&addr).and_then(|(socket, actual, bound_now)| {
            if bound_now {
                log::info!(target: "srv", "listening on {actual} (requested {addr})");
            }
            let socket = socket.try_clone_to_owned().map_err(|error| ListenError {
                errno: error.raw_os_error(),
                message: format!("listen {addr}: cannot duplicate the socket: {error}"),
            })?;
            Ok((socket, actual))
        });
        let (message, fds) = match socket {
            Ok((socket, actual)) => {
                (MasterMessage::ListenReply { requested: addr, result: Ok(actual) }, vec![socket])
            }
            Err(error) => {
                let failed =
                    Event::ListenFailed { worker, addr: addr.clone(), error: error.clone() };
                events.push_back((failed, None));
                (MasterMessage::ListenReply { requested: addr, result: Err(error) }, Vec::new())
            }
        };
        self.send_owned(worker, &message, fds);
    }

    /// Starts a worker; its `Spawned` is stamped with the moment the spawn
    /// returned (the program was executed), so that each worker of a batch
    /// of spawns gets its own time, and its start is counted from when its
    /// process exists.
    fn spawn(&mut self, worker: WorkerId, events: &mut Queue) {
        let command = (self.command)();
        let began = Instant::now();
        let spawned = spawn_worker(
            command,
            worker,
            self.options.worker.ignore_sigint,
            self.options.worker.watchdog,
            self.credentials,
        )
        .and_then(|spawned| {
            let fd = spawned.channel.as_raw_fd();
            spawned.channel.set_nonblocking(true)?;
            self.poll.registry().register(&mut SourceFd(&fd), token(worker), Interest::READABLE)?;
            Ok(spawned)
        });
        match spawned {
            Ok(spawned) => {
                let pid = Pid::from_raw(spawned.pid as i32);
                self.by_pid.insert(pid, worker);
                let child = Child {
                    pid,
                    channel: Some(Channel::new(spawned.channel)),
                    wants_write: false,
                    statm: None,
                };
                self.children.insert(worker, child);
                let executed = Instant::now();
                let took = executed.saturating_duration_since(began).as_secs_f64() * 1000.0;
                log::debug!(target: "srv", "{worker} (pid {pid}) forked and executed in {took:.2} ms");
                events.push_back((Event::Spawned { worker, pid: spawned.pid }, Some(executed)));
            }
            Err(error) => {
                events.push_back((Event::SpawnFailed { worker, error: error.to_string() }, None))
            }
        }
    }

    fn send(&mut self, worker: WorkerId, message: &MasterMessage) {
        self.send_owned(worker, message, Vec::new());
    }

    /// Sends `message` with `fds` (already duplicated for it).
    fn send_owned(
        &mut self,
        worker: WorkerId,
        message: &MasterMessage,
        fds: Vec<std::os::fd::OwnedFd>,
    ) {
        let Some(channel) = self.children.get_mut(&worker).and_then(|child| child.channel.as_mut())
        else {
            return;
        };
        match channel.send_owned(message, fds) {
            Ok(true) => {}
            Ok(false) => self.want_write(worker, true),
            // The worker is gone or going; its exit will be reaped.
            Err(error) => log::debug!(target: "srv", "cannot send to {worker}: {error}"),
        }
    }

    fn flush(&mut self, worker: WorkerId) {
        let Some(channel) = self.children.get_mut(&worker).and_then(|child| child.channel.as_mut())
        else {
            return;
        };
        match channel.flush() {
            Ok(true) => self.want_write(worker, false),
            Ok(false) => {}
            Err(error) => log::debug!(target: "srv", "cannot send to {worker}: {error}"),
        }
    }

    fn want_write(&mut self, worker: WorkerId, wanted: bool) {
        let Some(child) = self.children.get_mut(&worker) else { return };
        let Some(channel) = &child.channel else { return };
        if child.wants_write == wanted {
            return;
        }
        let interest =
            if wanted { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
        let fd = channel.stream().as_raw_fd();
        if let Err(error) =
            self.poll.registry().reregister(&mut SourceFd(&fd), token(worker), interest)
        {
            log::error!(target: "srv", "cannot watch the channel of {worker}: {error}");
        }
        child.wants_write = wanted;
    }

    /// Reads a worker's channel until `WouldBlock`, end of file or an
    /// error, taking at most [`MESSAGES_PER_TURN`] messages and making at
    /// most [`READS_PER_TURN`] reads; a channel left with more to read is
    /// put on the `unread` list.
    fn read_channel(&mut self, worker: WorkerId, events: &mut Queue) {
        let Some(child) = self.children.get_mut(&worker) else { return };
        let Some(channel) = child.channel.as_mut() else { return };
        // Taken before the reads: no later than when anything was read.
        let read_at = Some(Instant::now());
        let (mut messages, mut reads) = (0, 0);
        // `None`: more to read; `Some(None)`: closed; `Some(Some(error))`: broken.
        let broken: Option<Option<String>> = loop {
            // What was decoded already comes first: reading more before
            // would grow the decoder's buffer without bound.
            let decoded = loop {
                if messages == MESSAGES_PER_TURN {
                    break Ok(false);
                }
                match channel.next_message::<WorkerMessage>() {
                    Ok(Some((message, _))) => {
                        events.push_back((Event::Message { worker, message }, read_at));
                        messages += 1;
                    }
                    Ok(None) => break Ok(true),
                    Err(error) => break Err(error.to_string()),
                }
            };
            match decoded {
                Ok(true) => {}
                Ok(false) => break None,
                Err(error) => break Some(Some(error)),
            }
            if reads == READS_PER_TURN {
                break None;
            }
            reads += 1;
            let received = match channel.receive() {
                // A reset is how the channel closes when the worker died with
                // a message from the master still unread: a close, not a
                // protocol error.
                Err(error) if error.kind() == io::ErrorKind::ConnectionReset => {
                    Ok(Received::Closed)
                }
                res => res,
            };
            match received {
                Ok(Received::Bytes(_)) => {}
                Ok(Received::Closed) => {
                    // Every complete frame was taken before this read: what
                    // is left is a frame the close cut short.
                    let pending = channel.pending();
                    if pending > 0 {
                        let error = format!(
                            "the channel closed inside a frame ({pending} bytes of it arrived)"
                        );
                        events.push_back((Event::ProtocolError { worker, error }, read_at));
                    }
                    events.push_back((Event::ChannelClosed { worker }, read_at));
                    break Some(None);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) => break Some(Some(error.to_string())),
            }
        };
        match broken {
            None => {
                if !self.unread.contains(&worker) {
                    self.unread.push(worker);
                }
            }
            Some(error) => {
                if let Some(error) = error {
                    events.push_back((Event::ProtocolError { worker, error }, read_at));
                }
                self.close_channel(worker);
            }
        }
    }

    fn close_channel(&mut self, worker: WorkerId) {
        let Some(child) = self.children.get_mut(&worker) else { return };
        if let Some(channel) = child.channel.take() {
            let fd = channel.stream().as_raw_fd();
            // Closing the descriptor removes it from epoll anyway.
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        }
        self.unread.retain(|unread| *unread != worker);
    }

    /// Reaps every child that has exited, workers and orphans alike: what a
    /// worker sent before it exited goes to `reported`, its exit to
    /// `exits`.
    fn reap(&mut self, reported: &mut Queue, exits: &mut Queue) {
        loop {
            let (pid, status) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, ExitStatus::Code(code)),
                Ok(WaitStatus::Signaled(pid, signal, _)) => {
                    (pid, ExitStatus::Signal(signal as i32))
                }
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(_) => continue,
                Err(Errno::EINTR) => continue,
                Err(errno) => {
                    log::error!(target: "srv", "waitpid failed: {errno}");
                    return;
                }
            };
            if self.probe.as_ref().is_some_and(|probe| probe.pid == pid) {
                exits.push_back((self.end_probe(status), None));
                continue;
            }
            let Some(worker) = self.by_pid.remove(&pid) else {
                log::info!(target: "srv", "reaped orphan pid {pid} ({status})");
                continue;
            };
            // What the worker sent before it exited comes first: one
            // bounded read, like any turn's (see the module docs).
            self.read_channel(worker, reported);
            self.close_channel(worker);
            self.children.remove(&worker);
            exits.push_back((Event::Exited { worker, status }, None));
        }
    }
}

/// Events for the machine, each with the time it was read when a worker
/// reported it (`None`: the master saw it itself; handled when handled).
type Queue = VecDeque<(Event, Option<Instant>)>;

/// The time to handle an event that a worker reported and the master read
/// at `read_at`: that time, unless a deadline of the machine is due by
/// then, in which case just before it, so that the event is handled before
/// the deadline expires (see "Time" in the module docs).
fn before_due(read_at: Instant, deadline: Option<Instant>) -> Instant {
    match deadline {
        Some(deadline) if deadline <= read_at => {
            deadline.checked_sub(Duration::from_nanos(1)).unwrap_or(deadline)
        }
        _ => read_at,
    }
}

/// How long processes left behind get after `SIGTERM` before `SIGKILL`.
const LEFTOVER_GRACE: Duration = Duration::from_millis(1000);

/// How long, after [`LEFTOVER_GRACE`], the master keeps killing what is
/// left before it gives up and exits anyway.
const LEFTOVER_KILL_TIME: Duration = Duration::from_millis(500);

/// How often the children are listed again while they end.
const LEFTOVER_POLL: Duration = Duration::from_millis(10);

/// Ends the processes that workers left behind, once every worker is gone.
///
/// They were re-parented to the master (a subreaper), so they are its only
/// children now; without this they would outlive it, re-parented to init.
/// Each gets `SIGTERM`; what is left after [`LEFTOVER_GRACE`] gets
/// `SIGKILL`. Ending a process re-parents *its* children to the master in
/// turn, so the children are listed again and again (every
/// [`LEFTOVER_POLL`]) and each newcomer is ended too, until the master has
/// no child left, for at most [`LEFTOVER_GRACE`] and then
/// [`LEFTOVER_KILL_TIME`]: a process that forks faster than that, or one
/// that cannot die (stuck in the kernel), is left with an error line. The
/// children are listed from `/proc/self/task/*/children` (Linux); where
/// that cannot be read, nothing is done.
fn end_leftovers() {
    let mut signalled: Vec<Pid> = Vec::new();
    let grace_ends = Instant::now() + LEFTOVER_GRACE;
    let mut killing = false;
    let mut kill_ends = grace_ends + LEFTOVER_KILL_TIME;
    loop {
        reap_leftovers();
        let children = children_of_self();
        if children.is_empty() {
            return;
        }
        let now = Instant::now();
        if !killing && now >= grace_ends {
            killing = true;
            kill_ends = now + LEFTOVER_KILL_TIME;
        }
        if killing && now >= kill_ends {
            let pids: Vec<String> = children.iter().map(ToString::to_string).collect();
            log::error!(target: "srv", "pids {} left behind by workers would not end; exiting anyway", pids.join(", "));
            return;
        }
        for pid in children {
            if killing {
                log::warn!(target: "srv", "killing pid {pid}, left behind by a worker");
                let _ = kill(pid, NixSignal::SIGKILL);
            } else if !signalled.contains(&pid) {
                log::warn!(target: "srv", "ending pid {pid}, left behind by a worker");
                let _ = kill(pid, NixSignal::SIGTERM);
                signalled.push(pid);
            }
        }
        std::thread::sleep(LEFTOVER_POLL);
    }
}

/// Reaps every child that has ended, without waiting.
fn reap_leftovers() {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
            Err(Errno::EINTR) | Ok(_) => continue,
            Err(errno) => {
                log::error!(target: "srv", "waitpid failed: {errno}");
                return;
            }
        }
    }
}

/// The pids of this process's children, from `/proc/self/task/*/children`.
fn children_of_self() -> Vec<Pid> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return Vec::new() };
    let mut pids = Vec::new();
    for task in tasks.flatten() {
        let Ok(children) = std::fs::read_to_string(task.path().join("children")) else { continue };
        pids.extend(
            children.split_whitespace().filter_map(|pid| pid.parse().ok()).map(Pid::from_raw),
        );
    }
    pids.sort();
    pids.dedup();
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_events_are_handled_before_a_due_deadline() {
        let start = Instant::now();
        let later = start + Duration::from_secs(5);
        // No deadline, or one still ahead: the time it was read.
        assert_eq!(before_due(start, None), start);
        assert_eq!(before_due(start, Some(later)), start);
        // A deadline due by then: just before it, so it has not expired.
        let at = before_due(later, Some(start + Duration::from_secs(2)));
        assert!(at < start + Duration::from_secs(2));
        assert!(at + Duration::from_millis(1) > start + Duration::from_secs(2));
    }
}
