//! Unit tests of the machine, data-driven (CONTRIBUTING.md, "Where tests go").
//!
//! Each test is a script of timed events and the transcript of what the
//! machine answers. [`Shell`], a fake of the mio shell, is the only code that
//! touches the `Machine` API: it starts the machine at `t0`, feeds each script
//! line at `t0 + ms`, writes every action as `ms action` (its `Display`; log
//! lines only in [`check_logs`]), and ends the transcript with the machine's
//! next deadline. [`check`] compares that transcript with the expected text
//! and prints a diff when they differ.
//!
//! Like the real shell, the fake answers every `Spawn` at once, with
//! `Spawned` and pid `1000 + id` (or `SpawnFailed` after a `spawn-fails`
//! line), so scripts never spell those answers out.
//!
//! # Script lines
//!
//! `MS COMMAND ARGS`, with `MS` the milliseconds since `t0` (never
//! decreasing) and `IDS` one or more worker ids:
//!
//! | command | event(s) |
//! |---|---|
//! | `tick` | `Tick` |
//! | `SIGINT` `SIGTERM` `SIGHUP` `SIGTTIN` `SIGTTOU` | `Signal` |
//! | `hello IDS [version=N]` | `Hello`, with [`PROTOCOL_VERSION`] unless given |
//! | `online IDS` | `Online` |
//! | `flood IDS n=N` | `N` times `Online` |
//! | `listen-requests IDS n=N [ADDR]` | `N` times `ListenRequest` |
//! | `up IDS` | `Hello`, then `Online` |
//! | `listen-request ID [ADDR]` | `ListenRequest` (`127.0.0.1:8080` unless given) |
//! | `listening ID [ADDR]` | `Listening` (`127.0.0.1:8080` unless given) |
//! | `exit-msg ID code=N` | the message `Exit { code }` |
//! | `exited IDS [code=N or signal=N]` | `Exited`, with exit code 0 unless given |
//! | `closed IDS` | `ChannelClosed` |
//! | `listen-fails IDS [ADDR]` | `ListenFailed` (the shell could not bind) |
//! | `garbage IDS` | `ProtocolError` |
//! | `spawn-slowly [N]` | none: the next `N` spawns are answered only by a `spawned` line |
//! | `spawned IDS` | `Spawned` (after `spawn-slowly`) |
//! | `spawn-fails [N]` | none: the next `N` spawns (default 1) report `SpawnFailed` |
//! | `deadline` | none: writes `MS next deadline D` into the transcript |
//! | `status` | none: writes `MS status S` (the `STATUS=` line) into the transcript |
//! | `state` | none: writes `MS state phase=P started=N target=N workers=N ready=B recycling=B failure=F` into the transcript |
//!
//! The fake shell also checks every action against what a real shell relies
//! on, and panics with the recent history when one breaks it: one `Spawn` per
//! id; no `Send`, `Listen` or `Kill` for a worker that was never spawned or
//! has exited; no `Disconnect` after a `Kill`, no second `Kill`; nothing
//! after `Exit`; and after a `Tick`, no deadline at or before now (the real
//! shell would spin on a zero poll timeout).

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use srv_proto::{ListenAddr, MasterMessage, PROTOCOL_VERSION, WorkerMessage};

use super::{Action, Event, ExitStatus, Machine, Signal, WorkerId};
use crate::options::{Options, Require};

/// The fake shell gives worker `id` the pid `PID_BASE + id`.
const PID_BASE: u32 = 1000;

/// The default options but `worker.count`: `worker.timeout` 2000 ms,
/// `restart.delay` 5000 ms, `restart.max_delay` 60000 ms,
/// `recycle.timeout` and `shutdown.timeout` 15000 ms.
fn options(count: usize) -> Options {
    let mut options = Options::default();
    options.worker.count = count;
    options
}

/// Runs `script` and compares the transcript, without log lines, to `expect`.
fn check(options: Options, script: &str, expect: &str) {
    compare(&run(options, false, script), expect);
}

/// Runs `script` and compares the transcript, with log lines, to `expect`.
fn check_logs(options: Options, script: &str, expect: &str) {
    compare(&run(options, true, script), expect);
}

fn run(options: Options, logs: bool, script: &str) -> String {
    let mut shell = Shell::start(options, logs);
    for line in script.lines().map(str::trim).filter(|line| !line.is_empty()) {
        shell.line(line);
    }
    let mut transcript = shell.transcript.join("\n");
    write!(transcript, "\nnext deadline {}", shell.next_deadline()).unwrap();
    transcript
}

/// What the fake shell knows about one worker process.
#[derive(Debug, Default)]
struct Process {
    greeted: bool,
    /// Sent `Listening`, which starts a worker whatever `worker.require`.
    listening: bool,
    /// Sent `Disconnect` or `Refused`, or killed: it should exit.
    told_to_leave: bool,
    killed: bool,
    /// Exited, or could not be spawned.
    gone: bool,
}

/// A fake of the mio shell: the only code that touches the `Machine` API.
struct Shell {
    machine: Machine,
    t0: Instant,
    now_ms: u64,
    logs: bool,
    /// What tests compare: actions (without logs unless `logs`) and
    /// `deadline` lines.
    transcript: Vec<String>,
    /// Events and all actions, for the message of a broken invariant.
    history: Vec<String>,
    processes: BTreeMap<u32, Process>,
    failing_spawns: usize,
    /// Spawns whose `Spawned` answer waits for a `spawned` script line.
    slow_spawns: usize,
    exits: usize,
    /// `CloseListeners` was seen: a `Listen` would bind again.
    listeners_closed: bool,
    /// Names the run in the message of a broken invariant (a seed).
    label: String,
}

impl Shell {
    fn start(options: Options, logs: bool) -> Shell {
        let t0 = Instant::now();
        let (machine, actions) = Machine::new(options, t0);
        let mut shell = Shell {
            machine,
            t0,
            now_ms: 0,
            logs,
            transcript: Vec::new(),
            history: Vec::new(),
            processes: BTreeMap::new(),
            failing_spawns: 0,
            slow_spawns: 0,
            exits: 0,
            listeners_closed: false,
            label: String::new(),
        };
        let mut answers = VecDeque::new();
        for action in actions {
            shell.act(action, &mut answers);
        }
        shell.feed_all(answers);
        shell
    }

    fn now(&self) -> Instant {
        self.t0 + Duration::from_millis(self.now_ms)
    }

    fn next_deadline(&self) -> String {
        match self.machine.next_deadline() {
            Some(deadline) => deadline.duration_since(self.t0).as_millis().to_string(),
            None => "none".to_owned(),
        }
    }

    /// The machine's counts and flags, for a `state` line. The counts in
    /// [`Machine::status`] must be those of the machine's own accessors.
    fn state(&self) -> String {
        let machine = &self.machine;
        let status = machine.status();
        let (started, target) = (machine.started(), machine.target());
        if (status.started, status.target) != (started, target) {
            self.broken(&format!("{status:?}, but {started} started and target {target}"));
        }
        format!(
            "phase={:?} started={started} target={target} workers={} ready={} recycling={} failure={:?}",
            status.phase,
            status.workers,
            machine.is_ready(),
            machine.is_recycling(),
            machine.failure(),
        )
    }

    /// Runs one script line (see the module docs).
    fn line(&mut self, line: &str) {
        let mut words = line.split_whitespace();
        let ms = words.next().and_then(|word| word.parse::<u64>().ok());
        let ms = ms.unwrap_or_else(|| panic!("script line `{line}` does not start with ms"));
        assert!(ms >= self.now_ms, "script line `{line}` goes back in time");
        self.now_ms = ms;
        let command = words.next().unwrap_or_else(|| panic!("script line `{line}` has no command"));
        let (mut ids, mut values, mut others) = (Vec::new(), BTreeMap::new(), Vec::new());
        for word in words {
            if let Ok(id) = word.parse::<u32>() {
                ids.push(WorkerId(id));
            } else if let Some((key, value)) = word.split_once('=') {
                let value = value.parse::<i32>().unwrap_or_else(|_| panic!("`{word}` in `{line}`"));
                values.insert(key, value);
            } else {
                others.push(word);
            }
        }
        let addr: ListenAddr = others.first().unwrap_or(&"127.0.0.1:8080").parse().unwrap();
        let message = |worker, message| Event::Message { worker, message };
        let hello = |worker: WorkerId| {
            let protocol_version = values.get("version").map_or(PROTOCOL_VERSION, |v| *v as u32);
            message(worker, WorkerMessage::Hello { protocol_version, pid: PID_BASE + worker.0 })
        };
        let each = |event: &dyn Fn(WorkerId) -> Event| ids.iter().map(|id| event(*id)).collect();
        let events: Vec<Event> = match command {
            "tick" => vec![Event::Tick],
            "SIGINT" => vec![Event::Signal(Signal::Int)],
            "SIGTERM" => vec![Event::Signal(Signal::Term)],
            "SIGHUP" => vec![Event::Signal(Signal::Hup)],
            "SIGTTIN" => vec![Event::Signal(Signal::Ttin)],
            "SIGTTOU" => vec![Event::Signal(Signal::Ttou)],
            "hello" => each(&hello),
            "online" => each(&|worker| message(worker, WorkerMessage::Online)),
            "flood" => {
                let n = values.get("n").map_or(1, |n| *n as usize);
                let online = |worker| vec![message(worker, WorkerMessage::Online); n];
                ids.iter().flat_map(|worker| online(*worker)).collect()
            }
            "up" => ids
                .iter()
                .flat_map(|worker| [hello(*worker), message(*worker, WorkerMessage::Online)])
                .collect(),
            "listen-requests" => {
                let n = values.get("n").map_or(1, |n| *n as usize);
                let request = |worker| {
                    vec![message(worker, WorkerMessage::ListenRequest { addr: addr.clone() }); n]
                };
                ids.iter().flat_map(|worker| request(*worker)).collect()
            }
            "listen-request" => {
                each(&|worker| message(worker, WorkerMessage::ListenRequest { addr: addr.clone() }))
            }
            "listening" => {
                each(&|worker| message(worker, WorkerMessage::Listening { addr: addr.clone() }))
            }
            "exit-msg" => {
                each(&|worker| message(worker, WorkerMessage::Exit { code: values["code"] }))
            }
            "exited" => {
                let status = match (values.get("code"), values.get("signal")) {
                    (_, Some(signal)) => ExitStatus::Signal(*signal),
                    (code, None) => ExitStatus::Code(code.copied().unwrap_or(0)),
                };
                each(&|worker| Event::Exited { worker, status })
            }
            "closed" => each(&|worker| Event::ChannelClosed { worker }),
            "listen-fails" => each(&|worker| Event::ListenFailed {
                worker,
                addr: addr.clone(),
                error: format!("bind {addr}: Address already in use (os error 98)"),
            }),
            "garbage" => {
                each(&|worker| Event::ProtocolError { worker, error: "bad frame".to_owned() })
            }
            "spawn-slowly" => {
                self.slow_spawns += ids.first().map_or(1, |n| n.0 as usize);
                vec![]
            }
            "spawned" => each(&|worker| Event::Spawned { worker, pid: PID_BASE + worker.0 }),
            "spawn-fails" => {
                self.failing_spawns += ids.first().map_or(1, |n| n.0 as usize);
                vec![]
            }
            "status" => {
                let line = format!("{ms} status {}", self.machine.status());
                self.transcript.push(line);
                vec![]
            }
            "state" => {
                let line = format!("{ms} state {}", self.state());
                self.transcript.push(line);
                vec![]
            }
            "deadline" => {
                let line = format!("{ms} next deadline {}", self.next_deadline());
                self.transcript.push(line);
                vec![]
            }
            _ => panic!("script line `{line}`: unknown command"),
        };
        self.feed_all(events.into());
    }

    /// Feeds events, and the answers to the actions they cause, in order.
    fn feed_all(&mut self, mut events: VecDeque<Event>) {
        while let Some(event) = events.pop_front() {
            self.history.push(format!("{} <- {event:?}", self.now_ms));
            if let Event::Exited { worker, .. } | Event::SpawnFailed { worker, .. } = &event
                && let Some(process) = self.processes.get_mut(&worker.0)
            {
                process.gone = true;
            }
            if let Event::Message { worker, message } = &event
                && let Some(process) = self.processes.get_mut(&worker.0)
            {
                match message {
                    WorkerMessage::Hello { .. } => process.greeted = true,
                    WorkerMessage::Listening { .. } => process.listening = true,
                    _ => {}
                }
            }
            let is_tick = event == Event::Tick;
            let mut actions = Vec::new();
            self.machine.handle(self.now(), event, &mut actions);
            for action in actions {
                self.act(action, &mut events);
            }
            if is_tick && self.machine.next_deadline().is_some_and(|at| at <= self.now()) {
                self.broken(&format!(
                    "the next deadline {} is due after a Tick",
                    self.next_deadline()
                ));
            }
        }
    }

    /// Records and checks one action, queueing the shell's answer to it.
    fn act(&mut self, action: Action, answers: &mut VecDeque<Event>) {
        let line = format!("{} {action}", self.now_ms);
        self.history.push(line.clone());
        if self.logs || !matches!(action, Action::Log(..)) {
            self.transcript.push(line);
        }
        if self.exits > 0 {
            self.broken("an action after Exit");
        }
        let worker = match &action {
            Action::Spawn(worker)
            | Action::Send(worker, _)
            | Action::Listen(worker, _)
            | Action::Kill(worker) => *worker,
            Action::Log(..) => return,
            Action::CloseListeners => {
                self.listeners_closed = true;
                return;
            }
            Action::Exit(_) => {
                self.exits += 1;
                return;
            }
        };
        let Some(process) = self.processes.get_mut(&worker.0) else {
            if !matches!(action, Action::Spawn(_)) {
                self.broken(&format!("an action for {worker}, never spawned"));
            }
            self.processes.insert(worker.0, Process::default());
            if self.slow_spawns > 0 {
                self.slow_spawns -= 1;
                return;
            }
            let answer = if self.failing_spawns > 0 {
                self.failing_spawns -= 1;
                let error = "cannot spawn /srv/app: No such file or directory".to_owned();
                Event::SpawnFailed { worker, error }
            } else {
                Event::Spawned { worker, pid: PID_BASE + worker.0 }
            };
            answers.push_back(answer);
            return;
        };
        let broken = match &action {
            Action::Spawn(_) => Some("a second Spawn"),
            Action::Listen(..) if self.listeners_closed => Some("a Listen after CloseListeners"),
            _ if process.gone => Some("an action after its exit"),
            // `Listen` and `Refused` for a killed worker are allowed: the
            // machine answers `ListenRequest` and a bad `Hello` whatever the
            // sender's state, and a killed process ignores them.
            Action::Send(_, MasterMessage::Disconnect) if process.killed => {
                Some("a Disconnect after Kill")
            }
            Action::Kill(_) if process.killed => Some("a second Kill"),
            _ => None,
        };
        match &action {
            Action::Send(_, MasterMessage::Disconnect | MasterMessage::Refused { .. }) => {
                process.told_to_leave = true;
            }
            Action::Kill(_) => (process.told_to_leave, process.killed) = (true, true),
            _ => {}
        }
        if let Some(broken) = broken {
            self.broken(&format!("{broken} for {worker}"));
        }
    }

    fn broken(&self, what: &str) -> ! {
        let start = self.history.len().saturating_sub(80);
        let (label, history) = (&self.label, self.history[start..].join("\n"));
        panic!("broken invariant{label}: {what}; history:\n{history}");
    }

    /// Workers spawned and not gone.
    fn live(&self) -> Vec<u32> {
        self.processes.iter().filter(|(_, p)| !p.gone).map(|(id, _)| *id).collect()
    }

    /// Live workers not told to leave.
    fn serving(&self) -> Vec<u32> {
        let serving = self.processes.iter().filter(|(_, p)| !p.gone && !p.told_to_leave);
        serving.map(|(id, _)| *id).collect()
    }

    /// Live workers told to leave.
    fn leaving(&self) -> Vec<u32> {
        let leaving = self.processes.iter().filter(|(_, p)| !p.gone && p.told_to_leave);
        leaving.map(|(id, _)| *id).collect()
    }

    /// While running: the machine wants `target` workers, and at most one
    /// more (a recycle's replacement) is starting or serving.
    fn check_running(&self, target: usize) {
        let serving = self.serving();
        let most = target + usize::from(self.machine.is_recycling());
        if self.machine.target() != target || serving.len() > most || self.exits > 0 {
            let wants = self.machine.target();
            let (exits, count) = (self.exits, serving.len());
            self.broken(&format!(
                "target {target}, machine target {wants}, {count} serving {serving:?}, {exits} exits"
            ));
        }
    }

    /// After settling while running: exactly `target` workers, all started,
    /// nothing pending.
    fn check_settled(&self, target: usize) {
        self.check_running(target);
        let (live, started) = (self.live(), self.machine.started());
        let idle = self.machine.next_deadline().is_none() && !self.machine.is_recycling();
        if live.len() != target || started != target || !self.machine.is_ready() || !idle {
            self.broken(&format!(
                "settled with {live:?} live, {started} started, target {target}, next deadline {}",
                self.next_deadline()
            ));
        }
    }

    /// After settling a shutdown: one `Exit`, no worker left.
    fn check_exited(&self) {
        let live = self.live();
        if self.exits != 1 || !live.is_empty() {
            self.broken(&format!("shut down with {} exits and {live:?} live", self.exits));
        }
    }

    /// Plays a well-behaved world until nothing is left to do: every worker
    /// says `Hello` and `Listening`, every worker told to leave exits (code 0
    /// after `Disconnect`, signal 9 after `Kill`), and when nobody has
    /// anything to say, time jumps to the next deadline.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut lines = Vec::new();
            for (id, process) in self.processes.iter().filter(|(_, process)| !process.gone) {
                if process.killed {
                    lines.push(format!("exited {id} signal=9"));
                } else if process.told_to_leave {
                    lines.push(format!("exited {id} code=0"));
                } else if !process.greeted {
                    lines.push(format!("hello {id}"));
                    lines.push(format!("listening {id}"));
                } else if !process.listening {
                    lines.push(format!("listening {id}"));
                }
            }
            if lines.is_empty() {
                let Some(deadline) = self.machine.next_deadline() else { return };
                let at = deadline.duration_since(self.t0).as_millis() as u64;
                self.now_ms = self.now_ms.max(at);
                lines.push("tick".to_owned());
            }
            for line in lines {
                self.line(&format!("{} {line}", self.now_ms));
            }
        }
        self.broken("still busy after 10000 rounds of settling");
    }
}

/// Compares line by line, ignoring indentation and blank lines of `expect`.
fn compare(actual: &str, expect: &str) {
    let expect: Vec<&str> = expect.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let actual: Vec<&str> = actual.lines().collect();
    if expect != actual {
        panic!(
            "transcript differs (- expected, + actual):\n{}\nactual transcript:\n{}\n",
            diff(&expect, &actual),
            actual.join("\n")
        );
    }
}

/// A line diff through the longest common subsequence.
fn diff(expect: &[&str], actual: &[&str]) -> String {
    let (n, m) = (expect.len(), actual.len());
    let mut common = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            common[i][j] = if expect[i] == actual[j] {
                common[i + 1][j + 1] + 1
            } else {
                common[i + 1][j].max(common[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < n || j < m {
        if i < n && j < m && expect[i] == actual[j] {
            writeln!(out, "  {}", expect[i]).unwrap();
            (i, j) = (i + 1, j + 1);
        } else if j < m && (i == n || common[i][j + 1] >= common[i + 1][j]) {
            writeln!(out, "+ {}", actual[j]).unwrap();
            j += 1;
        } else {
            writeln!(out, "- {}", expect[i]).unwrap();
            i += 1;
        }
    }
    out
}

// Starting.

#[test]
fn workers_are_numbered_from_1() {
    check(
        options(2),
        "",
        "
        0 spawn worker 1
        0 spawn worker 2
        next deadline 2000
        ",
    );
}

#[test]
fn at_start_the_machine_only_spawns_and_logs() {
    check_logs(
        Options::default(),
        "",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 spawn worker 3
        0 spawn worker 4
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 3 spawned (pid 1003)
        0 log INFO: worker 4 spawned (pid 1004)
        next deadline 2000
        ",
    );
}

#[test]
fn each_worker_must_report_worker_require_within_worker_timeout() {
    check(
        Options::default(),
        "0 deadline",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 spawn worker 3
        0 spawn worker 4
        0 next deadline 2000
        next deadline 2000
        ",
    );
}

#[test]
fn the_next_deadline_is_when_a_tick_has_work() {
    check(
        options(1),
        "
        0 deadline
        2000 tick
        ",
        "
        0 spawn worker 1
        0 next deadline 2000
        2000 kill worker 1
        next deadline 7000
        ",
    );
}

#[test]
fn a_spawned_worker_that_says_hello_and_online_makes_the_master_ready() {
    check(
        options(1),
        "
        0 state
        0 up 1
        0 state
        ",
        "
        0 spawn worker 1
        0 state phase=Starting started=0 target=1 workers=1 ready=false recycling=false failure=None
        0 state phase=Ready started=1 target=1 workers=1 ready=true recycling=false failure=None
        next deadline none
        ",
    );
}

#[test]
fn the_master_is_ready_once_every_worker_started() {
    check(
        options(2),
        "
        0 up 1
        0 state
        0 up 2
        0 state
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 state phase=Starting started=1 target=2 workers=2 ready=false recycling=false failure=None
        0 state phase=Ready started=2 target=2 workers=2 ready=true recycling=false failure=None
        next deadline none
        ",
    );
}

#[test]
fn start_spawns_count_workers_and_online_starts_them() {
    check_logs(
        options(2),
        "
        5 deadline
        10 hello 1
        20 online 1
        30 up 2
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        5 next deadline 2000
        20 log INFO: worker 1 (pid 1001) started (online) in 20 ms
        30 log INFO: worker 2 (pid 1002) started (online) in 30 ms
        next deadline none
        ",
    );
}

#[test]
fn require_listen_starts_on_listening_not_online() {
    let mut options = options(1);
    options.worker.require = Require::Listen;
    check_logs(
        options,
        "
        10 up 1
        10 deadline
        20 listen-request 1 127.0.0.1:0
        30 listening 1 127.0.0.1:8080
        ",
        "
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        10 next deadline 2000
        20 listen worker 1 127.0.0.1:0
        30 log INFO: worker 1 (pid 1001) listening on 127.0.0.1:8080
        30 log INFO: worker 1 (pid 1001) started (listen) in 30 ms
        next deadline none
        ",
    );
}

// The protocol.

#[test]
fn a_message_before_hello_fails_the_worker() {
    check_logs(
        options(1),
        "
        10 online 1
        20 exited 1 signal=9
        5009 tick
        5010 tick
        ",
        "
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        10 kill worker 1
        10 log WARN: worker 1 (pid 1001) sent Online before Hello; restarting in 5000 ms
        20 log INFO: worker 1 (pid 1001) exited (signal 9) after being killed
        5010 spawn worker 2
        5010 log INFO: worker 2 spawned (pid 1002)
        next deadline 7010
        ",
    );
}

#[test]
fn a_hello_with_another_protocol_version_is_refused_and_may_exit_by_itself() {
    // What a refused worker sends meanwhile is ignored: a srv-worker sends
    // its first requests right after `Hello`, and a newer one may send
    // messages this master cannot decode.
    check_logs(
        options(1),
        "
        10 hello 1 version=2
        10 deadline
        11 listen-request 1
        12 garbage 1
        500 exited 1 code=1
        5010 tick
        ",
        r#"
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        10 send worker 1 Refused { reason: "protocol version mismatch: worker speaks 2, master speaks 1" }
        10 log WARN: worker 1 (pid 1001) protocol version mismatch: worker speaks 2, master speaks 1; restarting in 5000 ms
        10 next deadline 1010
        500 log INFO: worker 1 (pid 1001) exited (exit code 1) after being refused
        5010 spawn worker 2
        5010 log INFO: worker 2 spawned (pid 1002)
        next deadline 7010
        "#,
    );
}

#[test]
fn a_refused_worker_that_does_not_exit_is_killed_after_the_grace() {
    check_logs(
        options(1),
        "
        10 hello 1 version=2
        1009 tick
        1010 tick
        1020 exited 1 signal=9
        ",
        r#"
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        10 send worker 1 Refused { reason: "protocol version mismatch: worker speaks 2, master speaks 1" }
        10 log WARN: worker 1 (pid 1001) protocol version mismatch: worker speaks 2, master speaks 1; restarting in 5000 ms
        1010 log WARN: worker 1 (pid 1001) did not exit in time after being refused; killing it
        1010 kill worker 1
        1020 log INFO: worker 1 (pid 1001) exited (signal 9) after being killed
        next deadline 5010
        "#,
    );
}

#[test]
fn a_refusal_during_shutdown_kills_at_once() {
    check(
        options(1),
        "
        10 SIGTERM
        20 hello 1 version=2
        ",
        "
        0 spawn worker 1
        10 close listeners
        10 send worker 1 Disconnect
        20 kill worker 1
        next deadline none
        ",
    );
}

#[test]
fn a_worker_flooding_the_channel_is_killed_and_replaced() {
    // Up to the limit within one window is fine (`up` is two messages); the
    // next window starts counting afresh; one message over the limit is a
    // flood.
    check_logs(
        options(2),
        "
        0 up 1 2
        10 flood 1 n=997
        999 online 1
        1000 flood 1 n=1000
        1500 flood 1 n=1
        1600 online 2
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        1500 kill worker 1
        1500 log WARN: worker 1 (pid 1001) flooded the channel: more than 1000 messages within 1000 ms; restarting in 5000 ms
        next deadline 6500
        ",
    );
}

#[test]
fn the_rest_of_a_flood_is_ignored() {
    check(
        options(1),
        "
        0 up 1
        10 flood 1 n=5000
        20 exited 1 signal=9
        ",
        "
        0 spawn worker 1
        10 kill worker 1
        next deadline 5010
        ",
    );
}

#[test]
fn a_second_hello_or_garbage_kills_the_worker() {
    check_logs(
        options(2),
        "
        0 up 1 2
        10 hello 1
        20 garbage 2
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        10 kill worker 1
        10 log WARN: worker 1 (pid 1001) said Hello twice; restarting in 5000 ms
        20 kill worker 2
        20 log WARN: worker 2 (pid 1002) broke the protocol: bad frame; restarting in 5000 ms
        next deadline 5010
        ",
    );
}

#[test]
fn a_refused_worker_gets_refused_grace_to_exit() {
    check(
        Options::default(),
        "
        0 hello 1 version=2
        999 tick
        1000 tick
        ",
        r#"
        0 spawn worker 1
        0 spawn worker 2
        0 spawn worker 3
        0 spawn worker 4
        0 send worker 1 Refused { reason: "protocol version mismatch: worker speaks 2, master speaks 1" }
        1000 kill worker 1
        next deadline 2000
        "#,
    );
}

#[test]
fn the_message_count_starts_afresh_each_flood_window() {
    // Chatty, but within each window's limit: not killed.
    check(
        options(1),
        "
        0 hello 1
        1000 flood 1 n=1000
        2000 flood 1 n=1000
        3000 flood 1 n=1000
        ",
        "
        0 spawn worker 1
        next deadline none
        ",
    );
}

#[test]
fn hello_and_max_messages_per_window_more_within_one_window_is_a_flood() {
    // `Hello` and MAX_MESSAGES_PER_WINDOW `Online`s: one message too many.
    check_logs(
        options(1),
        "
        0 hello 1
        0 flood 1 n=1000
        ",
        "
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 kill worker 1
        0 log WARN: worker 1 (pid 1001) flooded the channel: more than 1000 messages within 1000 ms; restarting in 5000 ms
        next deadline 5000
        ",
    );
}

// Starting too slowly.

#[test]
fn a_worker_that_does_not_start_in_time_is_killed_and_replaced_after_the_delay() {
    check_logs(
        options(1),
        "
        10 hello 1
        1999 tick
        2000 tick
        2010 exited 1 signal=9
        6999 tick
        7000 tick
        7010 up 2
        ",
        "
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        2000 kill worker 1
        2000 log WARN: worker 1 (pid 1001) did not report online within 2000 ms; restarting in 5000 ms
        2010 log INFO: worker 1 (pid 1001) exited (signal 9) after being killed
        7000 spawn worker 2
        7000 log INFO: worker 2 spawned (pid 1002)
        7010 log INFO: worker 2 (pid 1002) started (online) in 10 ms
        next deadline none
        ",
    );
}

// Crashes.

#[test]
fn a_crash_is_replaced_after_the_restart_delay_not_before() {
    check(
        options(2),
        "
        0 up 1 2
        100 exited 1 signal=11
        100 deadline
        5099 tick
        5100 tick
        5100 up 3
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        100 next deadline 5100
        5100 spawn worker 3
        next deadline none
        ",
    );
}

#[test]
fn crashes_in_a_row_back_off_to_the_cap_and_a_stable_worker_ends_the_streak() {
    let mut options = options(1);
    options.restart.delay = Duration::from_millis(1000);
    options.restart.max_delay = Duration::from_millis(4000);
    check(
        options,
        "
        0 up 1
        100 exited 1 signal=11
        100 deadline
        1100 tick
        1100 up 2
        1200 exited 2 code=1
        1200 deadline
        3200 tick
        3200 up 3
        3300 exited 3 signal=6
        3300 deadline
        7300 tick
        7300 up 4
        7400 exited 4 signal=11
        7400 deadline
        11400 tick
        11400 up 5
        15399 exited 5 signal=11
        15399 deadline
        19399 tick
        19399 up 6
        23399 exited 6 signal=11
        23399 deadline
        ",
        "
        0 spawn worker 1
        100 next deadline 1100
        1100 spawn worker 2
        1200 next deadline 3200
        3200 spawn worker 3
        3300 next deadline 7300
        7300 spawn worker 4
        7400 next deadline 11400
        11400 spawn worker 5
        15399 next deadline 19399
        19399 spawn worker 6
        23399 next deadline 24399
        next deadline 24399
        ",
    );
}

#[test]
fn spawn_failures_back_off_like_crashes() {
    let mut options = options(1);
    options.restart.delay = Duration::from_millis(1000);
    options.restart.max_delay = Duration::from_millis(4000);
    check_logs(
        options,
        "
        0 up 1
        0 spawn-fails 2
        100 exited 1 signal=11
        1100 tick
        3100 tick
        7100 tick
        7100 up 4
        ",
        "
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        100 log WARN: worker 1 (pid 1001) exited unasked (signal 11); restarting in 1000 ms
        1100 spawn worker 2
        1100 log WARN: worker 2 could not be spawned: cannot spawn /srv/app: No such file or directory; restarting in 2000 ms
        3100 spawn worker 3
        3100 log WARN: worker 3 could not be spawned: cannot spawn /srv/app: No such file or directory; restarting in 4000 ms
        7100 spawn worker 4
        7100 log INFO: worker 4 spawned (pid 1004)
        7100 log INFO: worker 4 (pid 1004) started (online) in 0 ms
        next deadline none
        ",
    );
}

#[test]
fn a_worker_killed_by_a_signal_is_replaced_after_restart_delay() {
    check_logs(
        options(1),
        "
        0 exited 1 signal=11
        0 deadline
        4999 tick
        5000 tick
        ",
        "
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        0 log WARN: worker 1 (pid 1001) exited unasked (signal 11); restarting in 5000 ms
        0 next deadline 5000
        5000 spawn worker 2
        5000 log INFO: worker 2 spawned (pid 1002)
        next deadline 7000
        ",
    );
}

// Exits on purpose.

#[test]
fn an_announced_exit_is_replaced_at_once_and_a_different_code_is_a_crash() {
    check_logs(
        options(2),
        "
        0 up 1 2
        100 exit-msg 1 code=0
        110 exited 1 code=0
        120 up 3
        200 exit-msg 2 code=3
        210 exited 2 code=1
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        110 log INFO: worker 1 (pid 1001) exited on purpose (exit code 0); replacing it
        110 spawn worker 3
        110 log INFO: worker 3 spawned (pid 1003)
        120 log INFO: worker 3 (pid 1003) started (online) in 10 ms
        210 log WARN: worker 2 (pid 1002) exited unasked (exit code 1); restarting in 5000 ms
        next deadline 5210
        ",
    );
}

#[test]
fn an_old_worker_that_exits_on_purpose_while_its_replacement_starts_is_not_replaced_twice() {
    check_logs(
        options(2),
        "
        0 up 1 2
        1000 SIGHUP
        1100 exit-msg 1 code=0
        1100 exited 1 code=0
        1200 up 3
        1300 up 4
        1400 exited 2
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        1000 log INFO: SIGHUP: recycling 2 workers
        1000 spawn worker 3
        1000 log INFO: worker 3 spawned (pid 1003)
        1100 log INFO: worker 1 (pid 1001) exited on purpose (exit code 0); replacing it
        1200 log INFO: worker 3 (pid 1003) started (online) in 200 ms
        1200 spawn worker 4
        1200 log INFO: worker 4 spawned (pid 1004)
        1300 log INFO: worker 4 (pid 1004) started (online) in 100 ms
        1300 log INFO: worker 2 (pid 1002) disconnecting
        1300 send worker 2 Disconnect
        1300 log INFO: recycle complete: 2 workers replaced in 300 ms
        1400 log INFO: worker 2 (pid 1002) exited (exit code 0) as asked
        next deadline none
        ",
    );
}

#[test]
fn an_old_worker_that_exits_on_purpose_before_its_turn_is_replaced_at_once_and_skipped() {
    check_logs(
        options(2),
        "
        0 up 1 2
        1000 SIGHUP
        1100 exit-msg 2 code=0
        1100 exited 2 code=0
        1200 up 3 4
        1300 exited 1
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        1000 log INFO: SIGHUP: recycling 2 workers
        1000 spawn worker 3
        1000 log INFO: worker 3 spawned (pid 1003)
        1100 log INFO: worker 2 (pid 1002) exited on purpose (exit code 0); replacing it
        1100 spawn worker 4
        1100 log INFO: worker 4 spawned (pid 1004)
        1200 log INFO: worker 3 (pid 1003) started (online) in 200 ms
        1200 log INFO: worker 1 (pid 1001) disconnecting
        1200 send worker 1 Disconnect
        1200 log INFO: recycle complete: 1 workers replaced in 200 ms
        1200 log INFO: worker 4 (pid 1004) started (online) in 100 ms
        1300 log INFO: worker 1 (pid 1001) exited (exit code 0) as asked
        next deadline none
        ",
    );
}

// A closed channel.

#[test]
fn a_worker_that_closes_its_channel_and_stays_is_killed_after_the_grace() {
    check_logs(
        options(1),
        "
        0 up 1
        100 closed 1
        100 deadline
        1099 tick
        1100 tick
        1100 deadline
        1110 exited 1 signal=9
        6100 tick
        ",
        "
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        100 next deadline 1100
        1100 kill worker 1
        1100 log WARN: worker 1 (pid 1001) closed its channel but did not exit; restarting in 5000 ms
        1100 next deadline 6100
        1110 log INFO: worker 1 (pid 1001) exited (signal 9) after being killed
        6100 spawn worker 2
        6100 log INFO: worker 2 spawned (pid 1002)
        next deadline 8100
        ",
    );
}

#[test]
fn a_closed_channel_then_a_prompt_exit_is_just_a_crash() {
    check_logs(
        options(1),
        "
        0 up 1
        100 closed 1
        150 exited 1 code=101
        ",
        "
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        150 log WARN: worker 1 (pid 1001) exited unasked (exit code 101); restarting in 5000 ms
        next deadline 5150
        ",
    );
}

#[test]
fn a_closed_channel_of_a_retiring_worker_leaves_only_the_retire_deadline() {
    check(
        options(1),
        "
        0 up 1
        100 closed 1
        500 SIGTERM
        1100 tick
        1100 deadline
        15500 tick
        15510 exited 1 signal=9
        ",
        "
        0 spawn worker 1
        500 close listeners
        500 send worker 1 Disconnect
        1100 next deadline 15500
        15500 kill worker 1
        15510 exit 0
        next deadline none
        ",
    );
}

#[test]
fn an_exit_reported_after_a_deadline_passed_is_not_killed() {
    check_logs(
        options(2),
        "
        0 up 1
        2500 exited 2 code=1
        3000 SIGTERM
        18500 exited 1
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        2500 log WARN: worker 2 (pid 1002) exited unasked (exit code 1); restarting in 5000 ms
        3000 close listeners
        3000 log INFO: SIGTERM: shutting down 1 workers (grace 15000 ms)
        3000 log INFO: worker 1 (pid 1001) disconnecting
        3000 send worker 1 Disconnect
        18500 log INFO: worker 1 (pid 1001) exited (exit code 0) as asked
        18500 log INFO: shutdown complete: all workers exited
        18500 exit 0
        next deadline none
        ",
    );
}

#[test]
fn a_closed_channel_gives_the_worker_channel_close_grace_to_exit() {
    check(
        Options::default(),
        "
        0 up 1
        0 closed 1
        0 deadline
        999 tick
        1000 tick
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 spawn worker 3
        0 spawn worker 4
        0 next deadline 1000
        1000 kill worker 1
        next deadline 2000
        ",
    );
}

// Shutdown.

#[test]
fn shutdown_disconnects_every_worker_and_exits_after_the_last() {
    check_logs(
        options(3),
        "
        0 up 1 2 3
        1000 SIGTERM
        1000 deadline
        1100 exited 1
        1200 exited 3
        1300 exited 2
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 spawn worker 3
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 3 spawned (pid 1003)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        0 log INFO: worker 3 (pid 1003) started (online) in 0 ms
        1000 close listeners
        1000 log INFO: SIGTERM: shutting down 3 workers (grace 15000 ms)
        1000 log INFO: worker 1 (pid 1001) disconnecting
        1000 send worker 1 Disconnect
        1000 log INFO: worker 2 (pid 1002) disconnecting
        1000 send worker 2 Disconnect
        1000 log INFO: worker 3 (pid 1003) disconnecting
        1000 send worker 3 Disconnect
        1000 next deadline 16000
        1100 log INFO: worker 1 (pid 1001) exited (exit code 0) as asked
        1200 log INFO: worker 3 (pid 1003) exited (exit code 0) as asked
        1300 log INFO: worker 2 (pid 1002) exited (exit code 0) as asked
        1300 log INFO: shutdown complete: all workers exited
        1300 exit 0
        next deadline none
        ",
    );
}

#[test]
fn shutdown_kills_a_worker_that_ignores_disconnect_at_the_timeout() {
    check(
        options(2),
        "
        0 up 1 2
        1000 SIGTERM
        1100 exited 1
        15999 tick
        16000 tick
        16010 exited 2 signal=9
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        1000 close listeners
        1000 send worker 1 Disconnect
        1000 send worker 2 Disconnect
        16000 kill worker 2
        16010 exit 0
        next deadline none
        ",
    );
}

#[test]
fn shutdown_cuts_the_grace_of_a_worker_already_retiring_to_the_shutdown_timeout() {
    // Recycled workers retire with recycle.timeout (20 s); a SIGTERM then
    // gives them no more than shutdown.timeout (1 s) from the signal.
    let mut longer = options(2);
    longer.recycle.timeout = Duration::from_millis(20_000);
    longer.shutdown.timeout = Duration::from_millis(1000);
    check(
        longer,
        "
        0 up 1 2
        1000 SIGHUP
        1000 up 3 4
        2000 SIGTERM
        2000 deadline
        2100 exited 1 3 4
        2999 tick
        3000 tick
        3010 exited 2 signal=9
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        1000 spawn worker 3
        1000 send worker 1 Disconnect
        1000 spawn worker 4
        1000 send worker 2 Disconnect
        2000 close listeners
        2000 send worker 3 Disconnect
        2000 send worker 4 Disconnect
        2000 next deadline 3000
        3000 kill worker 2
        3010 exit 0
        next deadline none
        ",
    );
    // A grace that ends before the shutdown's is kept, not extended.
    let shorter = {
        let mut options = options(1);
        options.recycle.timeout = Duration::from_millis(1500);
        options.shutdown.timeout = Duration::from_millis(15_000);
        options
    };
    check(
        shorter,
        "
        0 up 1
        1000 SIGHUP
        1000 up 2
        2000 SIGTERM
        2000 deadline
        2000 exited 2
        2500 tick
        2510 exited 1 signal=9
        ",
        "
        0 spawn worker 1
        1000 spawn worker 2
        1000 send worker 1 Disconnect
        2000 close listeners
        2000 send worker 2 Disconnect
        2000 next deadline 2500
        2500 kill worker 1
        2510 exit 0
        next deadline none
        ",
    );
}

#[test]
fn a_second_sigterm_or_sigint_kills_every_worker_at_once() {
    for second in ["SIGTERM", "SIGINT"] {
        check_logs(
            options(2),
            &format!(
                "
                0 up 1 2
                1000 SIGINT
                2000 {second}
                2010 exited 1 signal=9
                2020 exited 2 signal=9
                "
            ),
            &format!(
                "
                0 spawn worker 1
                0 spawn worker 2
                0 log INFO: worker 1 spawned (pid 1001)
                0 log INFO: worker 2 spawned (pid 1002)
                0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
                0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
                1000 close listeners
                1000 log INFO: SIGINT: shutting down 2 workers (grace 15000 ms)
                1000 log INFO: worker 1 (pid 1001) disconnecting
                1000 send worker 1 Disconnect
                1000 log INFO: worker 2 (pid 1002) disconnecting
                1000 send worker 2 Disconnect
                2000 log WARN: {second} again: forcing shutdown, killing 2 workers
                2000 kill worker 1
                2000 kill worker 2
                2010 log INFO: worker 1 (pid 1001) exited (signal 9) after being killed
                2020 log INFO: worker 2 (pid 1002) exited (signal 9) after being killed
                2020 log INFO: forced shutdown complete: all workers exited
                2020 exit 0
                next deadline none
                "
            ),
        );
    }
}

#[test]
fn nothing_is_restarted_during_shutdown() {
    check(
        options(3),
        "
        0 up 1 2 3
        100 exited 1 signal=11
        100 deadline
        200 SIGTERM
        200 deadline
        300 exited 2 signal=11
        5100 tick
        15200 tick
        15210 exited 3 signal=9
        20000 tick
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 spawn worker 3
        100 next deadline 5100
        200 close listeners
        200 send worker 2 Disconnect
        200 send worker 3 Disconnect
        200 next deadline 15200
        15200 kill worker 3
        15210 exit 0
        next deadline none
        ",
    );
}

#[test]
fn shutdown_with_no_live_worker_exits_at_once() {
    check(
        options(1),
        "
        0 up 1
        100 exited 1 signal=11
        200 SIGTERM
        ",
        "
        0 spawn worker 1
        200 close listeners
        200 exit 0
        next deadline none
        ",
    );
}

#[test]
fn signals_during_shutdown_are_ignored() {
    check_logs(
        options(1),
        "
        0 up 1
        100 SIGTERM
        200 SIGHUP
        200 SIGTTIN
        200 SIGTTOU
        300 exited 1
        400 SIGTERM
        400 SIGHUP
        ",
        "
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        100 close listeners
        100 log INFO: SIGTERM: shutting down 1 workers (grace 15000 ms)
        100 log INFO: worker 1 (pid 1001) disconnecting
        100 send worker 1 Disconnect
        200 log INFO: SIGHUP ignored: shutting down
        200 log INFO: SIGTTIN ignored: shutting down
        200 log INFO: SIGTTOU ignored: shutting down
        300 log INFO: worker 1 (pid 1001) exited (exit code 0) as asked
        300 log INFO: shutdown complete: all workers exited
        300 exit 0
        next deadline none
        ",
    );
}

#[test]
fn a_whole_life_from_start_to_shutdown() {
    check(
        options(1),
        "
        0 up 1
        0 SIGTERM
        0 exited 1
        ",
        "
        0 spawn worker 1
        0 close listeners
        0 send worker 1 Disconnect
        0 exit 0
        next deadline none
        ",
    );
}

#[test]
fn shutdown_retires_every_started_worker() {
    check(
        Options::default(),
        "
        0 up 1 2
        0 state
        0 SIGTERM
        0 state
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 spawn worker 3
        0 spawn worker 4
        0 state phase=Starting started=2 target=4 workers=4 ready=false recycling=false failure=None
        0 close listeners
        0 send worker 1 Disconnect
        0 send worker 2 Disconnect
        0 send worker 3 Disconnect
        0 send worker 4 Disconnect
        0 state phase=Stopping started=0 target=4 workers=4 ready=false recycling=false failure=None
        next deadline 15000
        ",
    );
}

// Recycle.

#[test]
fn recycle_replaces_one_worker_at_a_time() {
    check_logs(
        options(3),
        "
        0 up 1 2 3
        1000 SIGHUP
        1100 up 4
        1200 up 5
        1300 exited 1
        1400 up 6
        1500 exited 2
        1500 deadline
        16399 tick
        16400 tick
        16410 exited 3 signal=9
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 spawn worker 3
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 3 spawned (pid 1003)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        0 log INFO: worker 3 (pid 1003) started (online) in 0 ms
        1000 log INFO: SIGHUP: recycling 3 workers
        1000 spawn worker 4
        1000 log INFO: worker 4 spawned (pid 1004)
        1100 log INFO: worker 4 (pid 1004) started (online) in 100 ms
        1100 log INFO: worker 1 (pid 1001) disconnecting
        1100 send worker 1 Disconnect
        1100 spawn worker 5
        1100 log INFO: worker 5 spawned (pid 1005)
        1200 log INFO: worker 5 (pid 1005) started (online) in 100 ms
        1200 log INFO: worker 2 (pid 1002) disconnecting
        1200 send worker 2 Disconnect
        1200 spawn worker 6
        1200 log INFO: worker 6 spawned (pid 1006)
        1300 log INFO: worker 1 (pid 1001) exited (exit code 0) as asked
        1400 log INFO: worker 6 (pid 1006) started (online) in 200 ms
        1400 log INFO: worker 3 (pid 1003) disconnecting
        1400 send worker 3 Disconnect
        1400 log INFO: recycle complete: 3 workers replaced in 400 ms
        1500 log INFO: worker 2 (pid 1002) exited (exit code 0) as asked
        1500 next deadline 16400
        16400 log WARN: worker 3 (pid 1003) did not exit in time after disconnect; killing it
        16400 kill worker 3
        16410 log INFO: worker 3 (pid 1003) exited (signal 9) after being killed
        next deadline none
        ",
    );
}

#[test]
fn recycle_waits_for_its_own_replacement_not_any_new_worker() {
    check(
        options(2),
        "
        0 up 1 2
        1000 SIGHUP
        1000 SIGTTIN
        1100 up 4
        1200 up 3
        1300 up 5
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        1000 spawn worker 3
        1000 spawn worker 4
        1200 send worker 1 Disconnect
        1200 spawn worker 5
        1300 send worker 2 Disconnect
        next deadline 16200
        ",
    );
}

#[test]
fn a_replacement_that_crashes_stops_the_recycle_and_the_old_workers_serve_on() {
    check_logs(
        options(2),
        "
        0 up 1 2
        1000 SIGHUP
        1100 hello 3
        1200 exited 3 code=1
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        1000 log INFO: SIGHUP: recycling 2 workers
        1000 spawn worker 3
        1000 log INFO: worker 3 spawned (pid 1003)
        1200 log ERROR: recycle stopped: replacement worker 3 (pid 1003) exited unasked (exit code 1); 2 old workers keep serving
        next deadline none
        ",
    );
}

#[test]
fn a_replacement_that_does_not_start_in_time_stops_the_recycle() {
    check_logs(
        options(2),
        "
        0 up 1 2
        1000 SIGHUP
        3000 tick
        3010 exited 3 signal=9
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        1000 log INFO: SIGHUP: recycling 2 workers
        1000 spawn worker 3
        1000 log INFO: worker 3 spawned (pid 1003)
        3000 kill worker 3
        3000 log ERROR: recycle stopped: replacement worker 3 (pid 1003) did not report online within 2000 ms; 2 old workers keep serving
        3010 log INFO: worker 3 (pid 1003) exited (signal 9) after being killed
        next deadline none
        ",
    );
}

#[test]
fn a_replacement_that_cannot_be_spawned_stops_the_recycle_and_a_later_sighup_works() {
    check(
        options(2),
        "
        0 up 1 2
        1000 spawn-fails
        1000 SIGHUP
        1000 deadline
        2000 SIGHUP
        2100 up 4
        2200 up 5
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        1000 spawn worker 3
        1000 next deadline none
        2000 spawn worker 4
        2100 send worker 1 Disconnect
        2100 spawn worker 5
        2200 send worker 2 Disconnect
        next deadline 17100
        ",
    );
}

#[test]
fn a_sighup_during_a_recycle_starts_over_and_retires_the_replacement_in_flight() {
    check(
        options(3),
        "
        0 up 1 2 3
        1000 SIGHUP
        1100 up 4
        1200 SIGHUP
        1300 up 5
        1400 up 6
        1500 up 7
        1600 up 8
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 spawn worker 3
        1000 spawn worker 4
        1100 send worker 1 Disconnect
        1100 spawn worker 5
        1200 send worker 5 Disconnect
        1200 spawn worker 6
        1400 send worker 2 Disconnect
        1400 spawn worker 7
        1500 send worker 3 Disconnect
        1500 spawn worker 8
        1600 send worker 4 Disconnect
        next deadline 16100
        ",
    );
}

#[test]
fn a_sigterm_during_a_recycle_stops_it_and_shuts_everything_down() {
    check_logs(
        options(2),
        "
        0 up 1 2
        1000 SIGHUP
        1100 SIGTERM
        1200 exited 1 2 3
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        1000 log INFO: SIGHUP: recycling 2 workers
        1000 spawn worker 3
        1000 log INFO: worker 3 spawned (pid 1003)
        1100 close listeners
        1100 log INFO: recycle stopped by SIGTERM with 2 workers not replaced
        1100 log INFO: SIGTERM: shutting down 3 workers (grace 15000 ms)
        1100 log INFO: worker 1 (pid 1001) disconnecting
        1100 send worker 1 Disconnect
        1100 log INFO: worker 2 (pid 1002) disconnecting
        1100 send worker 2 Disconnect
        1100 log INFO: worker 3 (pid 1003) disconnecting
        1100 send worker 3 Disconnect
        1200 log INFO: worker 1 (pid 1001) exited (exit code 0) as asked
        1200 log INFO: worker 2 (pid 1002) exited (exit code 0) as asked
        1200 log INFO: worker 3 (pid 1003) exited (exit code 0) as asked
        1200 log INFO: shutdown complete: all workers exited
        1200 exit 0
        next deadline none
        ",
    );
}

#[test]
fn an_old_worker_that_crashes_while_its_replacement_starts_is_not_restarted() {
    check_logs(
        options(2),
        "
        0 up 1 2
        1000 SIGHUP
        1100 exited 1 signal=11
        1100 deadline
        1200 up 3
        1300 up 4
        1400 exited 2
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        1000 log INFO: SIGHUP: recycling 2 workers
        1000 spawn worker 3
        1000 log INFO: worker 3 spawned (pid 1003)
        1100 log WARN: worker 1 (pid 1001) exited unasked (signal 11); its replacement is already starting
        1100 next deadline 3000
        1200 log INFO: worker 3 (pid 1003) started (online) in 200 ms
        1200 spawn worker 4
        1200 log INFO: worker 4 spawned (pid 1004)
        1300 log INFO: worker 4 (pid 1004) started (online) in 100 ms
        1300 log INFO: worker 2 (pid 1002) disconnecting
        1300 send worker 2 Disconnect
        1300 log INFO: recycle complete: 2 workers replaced in 300 ms
        1400 log INFO: worker 2 (pid 1002) exited (exit code 0) as asked
        next deadline none
        ",
    );
}

#[test]
fn an_old_worker_that_crashes_before_its_turn_is_restarted_and_skipped() {
    check(
        options(2),
        "
        0 up 1 2
        1000 SIGHUP
        1100 exited 2 signal=11
        1200 up 3
        1200 deadline
        6100 tick
        6100 up 4
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        1000 spawn worker 3
        1200 send worker 1 Disconnect
        1200 next deadline 6100
        6100 spawn worker 4
        next deadline 16200
        ",
    );
}

#[test]
fn a_sighup_spawns_one_replacement_and_retires_its_old_worker_once_it_started() {
    check(
        Options::default(),
        "
        0 up 1 2 3 4
        0 SIGHUP
        0 up 5
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 spawn worker 3
        0 spawn worker 4
        0 spawn worker 5
        0 send worker 1 Disconnect
        0 spawn worker 6
        next deadline 2000
        ",
    );
}

#[test]
fn the_recycle_ends_when_the_last_replacement_started() {
    check(
        options(1),
        "
        0 up 1
        0 SIGHUP
        0 state
        0 up 2
        0 state
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 state phase=Reloading started=1 target=1 workers=2 ready=true recycling=true failure=None
        0 send worker 1 Disconnect
        0 state phase=Ready started=1 target=1 workers=2 ready=true recycling=false failure=None
        next deadline 15000
        ",
    );
}

// Scaling.

#[test]
fn sigttin_spawns_one_more_worker() {
    check_logs(
        options(1),
        "
        0 up 1
        100 SIGTTIN
        200 up 2
        ",
        "
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        100 log INFO: SIGTTIN: workers 1 -> 2
        100 spawn worker 2
        100 log INFO: worker 2 spawned (pid 1002)
        200 log INFO: worker 2 (pid 1002) started (online) in 100 ms
        next deadline none
        ",
    );
}

#[test]
fn sigttou_drops_a_pending_restart_then_a_starting_worker_then_the_newest() {
    check_logs(
        options(3),
        "
        0 up 1 2 3
        100 exited 3 signal=11
        200 SIGTTOU
        300 SIGTTIN
        400 SIGTTOU
        500 SIGTTOU
        600 SIGTTOU
        700 exited 4 2
        5100 tick
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 spawn worker 3
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 3 spawned (pid 1003)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        0 log INFO: worker 3 (pid 1003) started (online) in 0 ms
        100 log WARN: worker 3 (pid 1003) exited unasked (signal 11); restarting in 5000 ms
        200 log INFO: SIGTTOU: workers 3 -> 2
        300 log INFO: SIGTTIN: workers 2 -> 3
        300 spawn worker 4
        300 log INFO: worker 4 spawned (pid 1004)
        400 log INFO: SIGTTOU: workers 3 -> 2
        400 log INFO: worker 4 (pid 1004) disconnecting
        400 send worker 4 Disconnect
        500 log INFO: SIGTTOU: workers 2 -> 1
        500 log INFO: worker 2 (pid 1002) disconnecting
        500 send worker 2 Disconnect
        600 log WARN: SIGTTOU ignored: already at 1 worker
        700 log INFO: worker 4 (pid 1004) exited (exit code 0) as asked
        700 log INFO: worker 2 (pid 1002) exited (exit code 0) as asked
        next deadline none
        ",
    );
}

#[test]
fn a_worker_removed_by_sigttou_whose_spawn_then_fails_is_not_restarted() {
    let mut options = options(2);
    options.restart.delay = Duration::from_millis(1000);
    check_logs(
        options,
        "
        0 up 1 2
        100 exited 2 signal=11
        1100 spawn-fails
        1100 SIGTTOU
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        100 log WARN: worker 2 (pid 1002) exited unasked (signal 11); restarting in 1000 ms
        1100 spawn worker 3
        1100 log INFO: SIGTTOU: workers 2 -> 1
        1100 log INFO: worker 3 disconnecting
        1100 send worker 3 Disconnect
        1100 log WARN: worker 3 could not be spawned: cannot spawn /srv/app: No such file or directory
        next deadline none
        ",
    );
}

#[test]
fn sigttou_during_a_recycle_retires_an_old_worker_still_queued() {
    check(
        options(3),
        "
        0 up 1 2 3
        1000 SIGHUP
        1100 SIGTTOU
        1200 up 4
        1300 up 5
        1400 exited 1 2 3
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 spawn worker 3
        1000 spawn worker 4
        1100 send worker 3 Disconnect
        1200 send worker 1 Disconnect
        1200 spawn worker 5
        1300 send worker 2 Disconnect
        next deadline none
        ",
    );
}

#[test]
fn sigttin_raises_the_target_and_spawns() {
    check_logs(
        Options::default(),
        "
        0 SIGTTIN
        0 state
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 spawn worker 3
        0 spawn worker 4
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 3 spawned (pid 1003)
        0 log INFO: worker 4 spawned (pid 1004)
        0 log INFO: SIGTTIN: workers 4 -> 5
        0 spawn worker 5
        0 log INFO: worker 5 spawned (pid 1005)
        0 state phase=Starting started=0 target=5 workers=5 ready=false recycling=false failure=None
        next deadline 2000
        ",
    );
}

#[test]
fn sigttou_lowers_the_target_and_retires_a_worker() {
    check(
        Options::default(),
        "
        0 state
        0 SIGTTOU
        0 state
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 spawn worker 3
        0 spawn worker 4
        0 state phase=Starting started=0 target=4 workers=4 ready=false recycling=false failure=None
        0 send worker 4 Disconnect
        0 state phase=Starting started=0 target=3 workers=4 ready=false recycling=false failure=None
        next deadline 2000
        ",
    );
}

// Random sequences.

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick(&mut self, ids: &[u32]) -> Option<u32> {
        (!ids.is_empty()).then(|| ids[self.below(ids.len() as u64) as usize])
    }
}

/// Random signals, messages, crashes, exits and time; after every step the
/// fake shell's invariants hold, and the machine never runs more than the
/// target plus one recycle replacement. Every so often the world turns
/// well-behaved until it is quiet: then exactly the target runs, all
/// started, and after a `SIGHUP` all of them were spawned after it. The end
/// is a shutdown that exits exactly once.
#[test]
fn random_event_sequences_keep_the_invariants() {
    for seed in 1..=600 {
        random_run(seed);
    }
}

fn random_run(seed: u64) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let count = 1 + rng.below(4) as usize;
    let mut options = options(count);
    options.restart.delay = Duration::from_millis([0, 100, 1000, 5000][rng.below(4) as usize]);
    options.restart.max_delay = Duration::from_millis(8000);
    options.recycle.timeout = Duration::from_millis(3000);
    options.shutdown.timeout = Duration::from_millis(3000);
    if rng.below(3) == 0 {
        options.worker.require = Require::Listen;
    }
    let mut shell = Shell::start(options, false);
    shell.label = format!(" (seed {seed})");
    let (mut target, mut shutting_down) = (count, false);
    for _ in 0..120 {
        if shell.exits > 0 {
            break;
        }
        let (live, serving, leaving) = (shell.live(), shell.serving(), shell.leaving());
        let later = [0, 0, 0, 1, 10, 100, 1000][rng.below(7) as usize];
        let mut lines = Vec::new();
        match rng.below(100) {
            0..6 => lines.push("SIGHUP".to_owned()),
            6..11 => {
                target += usize::from(!shutting_down);
                lines.push("SIGTTIN".to_owned());
            }
            11..17 => {
                target -= usize::from(!shutting_down && target > 1);
                lines.push("SIGTTOU".to_owned());
            }
            17..19 => {
                shutting_down = true;
                lines.push(["SIGTERM", "SIGINT"][rng.below(2) as usize].to_owned());
            }
            19..45 => {
                if let Some(id) = rng.pick(&live) {
                    let process = &shell.processes[&id];
                    lines.push(match (process.greeted, rng.below(4)) {
                        (false, _) => format!("hello {id}"),
                        (true, 0) => format!("listen-request {id}"),
                        (true, 1) => format!("listening {id}"),
                        (true, _) => format!("online {id}"),
                    });
                }
            }
            45..52 => lines.extend(rng.pick(&serving).map(|id| format!("exited {id} signal=11"))),
            52..56 => {
                if let Some(id) = rng.pick(&serving) {
                    lines.push(format!("exit-msg {id} code=3"));
                    lines.push(format!("exited {id} code=3"));
                }
            }
            56..70 => {
                if let Some(id) = rng.pick(&leaving) {
                    let killed = shell.processes[&id].killed;
                    lines.push(format!(
                        "exited {id} {}",
                        if killed { "signal=9" } else { "code=0" }
                    ));
                }
            }
            70..73 => lines.extend(rng.pick(&live).map(|id| format!("closed {id}"))),
            73..75 => {
                let line = ["garbage", "flood n=1001"][rng.below(2) as usize];
                lines.extend(rng.pick(&live).map(|id| format!("{line} {id}")));
            }
            75..77 => {
                let version = [PROTOCOL_VERSION, PROTOCOL_VERSION + 1][rng.below(2) as usize];
                lines.extend(rng.pick(&live).map(|id| format!("hello {id} version={version}")));
            }
            77..79 => lines.push("spawn-fails".to_owned()),
            79..84 if !shutting_down && shell.failing_spawns == 0 => {
                shell.settle();
                shell.check_settled(target);
                let before = shell.processes.keys().max().copied().unwrap_or(0);
                shell.line(&format!("{} SIGHUP", shell.now_ms));
                shell.settle();
                shell.check_settled(target);
                let live = shell.live();
                if live.iter().any(|id| *id <= before) {
                    shell.broken(&format!(
                        "{live:?} live after a SIGHUP when {before} was the newest"
                    ));
                }
            }
            84..88 if !shutting_down => {
                shell.settle();
                shell.check_settled(target);
            }
            _ => {}
        }
        let ms = shell.now_ms + later;
        if lines.is_empty() {
            // Nothing else happens: time passes.
            shell.line(&format!("{} tick", ms + rng.below(6000)));
        }
        for line in lines {
            shell.line(&format!("{ms} {line}"));
        }
        if !shutting_down {
            shell.check_running(target);
        }
    }
    if !shutting_down {
        shell.settle();
        shell.check_settled(target);
        shell.line(&format!("{} SIGTERM", shell.now_ms));
    }
    shell.settle();
    shell.check_exited();
}

#[test]
fn a_listen_failure_before_any_worker_started_stops_the_master_with_exit_1() {
    check_logs(
        options(2),
        "
        0 hello 1 2
        0 listen-request 1
        0 listen-fails 1
        10 exited 1 code=1
        10 exited 2
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 listen worker 1 127.0.0.1:8080
        0 log ERROR: cannot listen on 127.0.0.1:8080: bind 127.0.0.1:8080: Address already in use (os error 98): stopping
        0 close listeners
        0 log INFO: cannot listen on 127.0.0.1:8080: bind 127.0.0.1:8080: Address already in use (os error 98): shutting down 2 workers (grace 15000 ms)
        0 log INFO: worker 1 (pid 1001) disconnecting
        0 send worker 1 Disconnect
        0 log INFO: worker 2 (pid 1002) disconnecting
        0 send worker 2 Disconnect
        10 log INFO: worker 1 (pid 1001) exited (exit code 1) as asked
        10 log INFO: worker 2 (pid 1002) exited (exit code 0) as asked
        10 log INFO: shutdown complete: all workers exited
        10 exit 1
        next deadline none
        ",
    );
}

#[test]
fn a_listen_failure_once_serving_only_fails_that_worker() {
    check(
        options(1),
        "
        0 up 1
        100 SIGHUP
        110 hello 2
        110 listen-request 2 127.0.0.1:9090
        110 listen-fails 2 127.0.0.1:9090
        120 exited 2 code=1
        ",
        "
        0 spawn worker 1
        100 spawn worker 2
        110 listen worker 2 127.0.0.1:9090
        next deadline none
        ",
    );
}

#[test]
fn a_listen_request_during_shutdown_is_refused_without_binding() {
    check(
        options(1),
        "
        0 hello 1
        100 SIGTERM
        110 listen-request 1
        120 exited 1
        ",
        "
        0 spawn worker 1
        100 close listeners
        100 send worker 1 Disconnect
        110 send worker 1 ListenReply { requested: Tcp(127.0.0.1:8080), result: Err(ListenError { errno: None, message: \"listen 127.0.0.1:8080: the master is shutting down\" }) }
        120 exit 0
        next deadline none
        ",
    );
}

#[test]
fn listen_allow_refuses_other_addresses_without_binding() {
    let allow = || {
        let mut options = options(1);
        options.listen.allow = vec!["0.0.0.0:80".parse().unwrap()];
        options
    };
    // Once serving, only the asking worker gets the error.
    check_logs(
        allow(),
        "
        0 up 1
        10 listen-request 1 0.0.0.0:80
        20 listen-request 1 0.0.0.0:22
        ",
        "
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        10 listen worker 1 0.0.0.0:80
        20 send worker 1 ListenReply { requested: Tcp(0.0.0.0:22), result: Err(ListenError { errno: Some(13), message: \"listen 0.0.0.0:22: not in listen.allow\" }) }
        20 log WARN: worker 1 (pid 1001): listen 0.0.0.0:22: not in listen.allow
        next deadline none
        ",
    );
    // Before any worker served, it is a configuration error: stop.
    check(
        allow(),
        "
        0 hello 1
        20 listen-request 1 0.0.0.0:22
        30 exited 1 code=1
        ",
        "
        0 spawn worker 1
        20 send worker 1 ListenReply { requested: Tcp(0.0.0.0:22), result: Err(ListenError { errno: Some(13), message: \"listen 0.0.0.0:22: not in listen.allow\" }) }
        20 close listeners
        20 send worker 1 Disconnect
        30 exit 1
        next deadline none
        ",
    );
}

#[test]
fn status_follows_start_recycle_and_shutdown() {
    check(
        options(2),
        "
        0 status
        0 up 1
        0 status
        0 up 2
        0 status
        10 exited 1 code=1
        10 status
        5010 tick
        5020 up 3
        6000 SIGHUP
        6000 status
        6100 SIGTERM
        6100 status
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 status starting: 0/2 workers ready
        0 status starting: 1/2 workers ready
        0 status 2/2 workers ready
        10 status 1/2 workers ready
        5010 spawn worker 3
        6000 spawn worker 4
        6000 status recycling: 2/2 workers ready
        6100 close listeners
        6100 send worker 2 Disconnect
        6100 send worker 3 Disconnect
        6100 send worker 4 Disconnect
        6100 status stopping: 3 workers left
        next deadline 21100
        ",
    );
}

#[test]
fn a_worker_asking_to_listen_too_often_is_killed() {
    check_logs(
        options(1),
        &format!(
            "
            0 up 1
            10 listen-requests 1 n={}
            ",
            crate::machine::messages::MAX_LISTEN_REQUESTS + 1
        ),
        &format!(
            "
            0 spawn worker 1
            0 log INFO: worker 1 spawned (pid 1001)
            0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
            {}
            10 kill worker 1
            10 log WARN: worker 1 (pid 1001) asked to listen more than 64 times; restarting in 5000 ms
            next deadline 5010
            ",
            vec!["10 listen worker 1 127.0.0.1:8080"; 64].join("\n            ")
        ),
    );
}

#[test]
fn worker_timeout_counts_from_when_the_process_exists() {
    // The fork took 300 ms (a busy machine): the worker still gets its whole
    // worker.timeout from then, not from when the master asked for it.
    check(
        options(1),
        "
        0 up 1
        0 spawn-slowly
        0 SIGTTIN
        0 deadline
        300 spawned 2
        300 deadline
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 next deadline 2000
        300 next deadline 2300
        next deadline 2300
        ",
    );
}

#[test]
fn a_listen_failure_before_any_worker_started_is_the_masters_failure() {
    check(
        options(1),
        "
        0 listen-fails 1 0.0.0.0:80
        0 state
        0 exited 1 code=1
        ",
        r#"
        0 spawn worker 1
        0 close listeners
        0 send worker 1 Disconnect
        0 state phase=Stopping started=0 target=1 workers=1 ready=false recycling=false failure=Some("cannot listen on 0.0.0.0:80: bind 0.0.0.0:80: Address already in use (os error 98)")
        0 exit 1
        next deadline none
        "#,
    );
}

#[test]
fn a_worker_may_listen_on_sixteen_addresses() {
    // MAX_LISTEN_REQUESTS bounds what a worker can make the master hold, and
    // leaves room for a real server's few addresses.
    check(
        options(1),
        "
        0 up 1
        10 listen-requests 1 n=16
        ",
        "
        0 spawn worker 1
        10 listen worker 1 127.0.0.1:8080
        10 listen worker 1 127.0.0.1:8080
        10 listen worker 1 127.0.0.1:8080
        10 listen worker 1 127.0.0.1:8080
        10 listen worker 1 127.0.0.1:8080
        10 listen worker 1 127.0.0.1:8080
        10 listen worker 1 127.0.0.1:8080
        10 listen worker 1 127.0.0.1:8080
        10 listen worker 1 127.0.0.1:8080
        10 listen worker 1 127.0.0.1:8080
        10 listen worker 1 127.0.0.1:8080
        10 listen worker 1 127.0.0.1:8080
        10 listen worker 1 127.0.0.1:8080
        10 listen worker 1 127.0.0.1:8080
        10 listen worker 1 127.0.0.1:8080
        10 listen worker 1 127.0.0.1:8080
        next deadline none
        ",
    );
}

#[test]
fn the_service_phase_follows_start_recycle_and_shutdown() {
    check(
        options(1),
        "
        0 state
        0 up 1
        0 state
        0 SIGHUP
        0 state
        0 SIGTERM
        0 state
        ",
        "
        0 spawn worker 1
        0 state phase=Starting started=0 target=1 workers=1 ready=false recycling=false failure=None
        0 state phase=Ready started=1 target=1 workers=1 ready=true recycling=false failure=None
        0 spawn worker 2
        0 state phase=Reloading started=1 target=1 workers=2 ready=true recycling=true failure=None
        0 close listeners
        0 send worker 1 Disconnect
        0 send worker 2 Disconnect
        0 state phase=Stopping started=0 target=1 workers=2 ready=false recycling=false failure=None
        next deadline 15000
        ",
    );
}

#[test]
fn the_status_at_start() {
    check(
        Options::default(),
        "
        0 state
        0 status
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 spawn worker 3
        0 spawn worker 4
        0 state phase=Starting started=0 target=4 workers=4 ready=false recycling=false failure=None
        0 status starting: 0/4 workers ready
        next deadline 2000
        ",
    );
}

#[test]
fn the_status_line_counts_started_workers_then_workers_left() {
    check(
        options(2),
        "
        0 up 1
        0 status
        0 up 2
        0 status
        0 SIGTERM
        0 status
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 status starting: 1/2 workers ready
        0 status 2/2 workers ready
        0 close listeners
        0 send worker 1 Disconnect
        0 send worker 2 Disconnect
        0 status stopping: 2 workers left
        next deadline 15000
        ",
    );
}
