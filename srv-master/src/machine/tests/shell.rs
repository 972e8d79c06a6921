//! The fake shell that runs the tests' scripts against the machine, and the
//! helpers that compare its transcript with the expected text (see the
//! parent module for the script lines and the invariants it checks).

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use log::Level;
use similar::{Algorithm, ChangeTag};
use srv_proto::{
    ListenAddr, ListenError, MIN_PROTOCOL_VERSION, MasterMessage, PROTOCOL_VERSION, WorkerMessage,
};

use crate::machine::{
    Action, Event, ExitStatus, HANDOVER_VERSION, Handover, Machine, ProbeReport, Signal, WorkerId,
};
use crate::options::Options;

/// The fake shell gives worker `id` the pid `PID_BASE + id`.
pub(super) const PID_BASE: u32 = 1000;

/// The pid of every probe the fake shell starts.
pub(super) const PROBE_PID: u32 = 999;

/// The default options but `worker.count`: `worker.timeout` 2000 ms,
/// `restart.delay` 5000 ms, `restart.max_delay` 60000 ms,
/// `recycle.timeout` and `shutdown.timeout` 15000 ms.
pub(super) fn options(count: usize) -> Options {
    let mut options = Options::default();
    options.worker.count = count;
    options
}

/// Runs `script` and compares the transcript, without log lines, to `expect`.
pub(super) fn check(options: Options, script: &str, expect: &str) {
    compare(&run(options, false, false, script), expect);
}

/// Runs `script` and compares the transcript, with log lines but those at
/// debug level, to `expect`.
pub(super) fn check_logs(options: Options, script: &str, expect: &str) {
    compare(&run(options, true, false, script), expect);
}

/// Runs `script` and compares the transcript, with every log line, to
/// `expect`.
pub(super) fn check_debug_logs(options: Options, script: &str, expect: &str) {
    compare(&run(options, true, true, script), expect);
}

fn run(options: Options, logs: bool, debug: bool, script: &str) -> String {
    let mut shell = Shell::start(options, logs);
    shell.debug = debug;
    for line in script.lines().map(str::trim).filter(|line| !line.is_empty()) {
        shell.line(line);
    }
    let mut transcript = shell.transcript.join("\n");
    write!(transcript, "\nnext deadline {}", shell.next_deadline()).unwrap();
    transcript
}

/// What the fake shell knows about one worker process.
#[derive(Debug, Default)]
pub(super) struct Process {
    pub(super) greeted: bool,
    /// Sent `Listening`, which starts a worker whatever `worker.require`.
    listening: bool,
    /// Sent `Disconnect` or `Refused`, or killed: it should exit.
    told_to_leave: bool,
    pub(super) killed: bool,
    /// Exited, or could not be spawned.
    gone: bool,
}

/// The probe of an upgrade, as the fake shell knows it.
#[derive(Debug, Default)]
pub(super) struct Probe {
    pub(super) killed: bool,
}

/// A fake of the mio shell: the only code that touches the `Machine` API.
pub(super) struct Shell {
    machine: Machine,
    /// The options of the program the next exec runs (`new-count` changes
    /// them).
    options: Options,
    t0: Instant,
    pub(super) now_ms: u64,
    logs: bool,
    /// With `logs`: log lines at debug level too.
    debug: bool,
    /// What tests compare: actions (without logs unless `logs`) and
    /// `deadline` lines.
    transcript: Vec<String>,
    /// Events and all actions, for the message of a broken invariant.
    history: Vec<String>,
    pub(super) processes: BTreeMap<u32, Process>,
    pub(super) failing_spawns: usize,
    /// Spawns whose `Spawned` answer waits for a `spawned` script line.
    slow_spawns: usize,
    pub(super) exits: usize,
    /// `CloseListeners` was seen: a `Listen` would bind again.
    listeners_closed: bool,
    /// Some worker was started after an event: the master may no longer
    /// give up on its own.
    ever_started: bool,
    /// The probe of an upgrade, from `Probe` until it exited.
    pub(super) probe: Option<Probe>,
    /// The next `Probe` reports `ProbeSpawnFailed`.
    failing_probe_spawn: bool,
    /// `Exec` was seen this turn: the exec happens at its end.
    exec_due: bool,
    /// The next exec fails.
    failing_exec: bool,
    /// Execs done (a machine adopted from a handover).
    pub(super) execs: usize,
    /// `recycle.parallel`: how many replacements a recycle may add.
    parallel: usize,
    /// While set, fewer started workers than this after any event breaks an
    /// invariant (see [`Shell::keep_started`]).
    min_started: Option<usize>,
    /// `worker.watchdog` is set: [`Shell::settle`] has the workers prove
    /// alive before time passes.
    watched: bool,
    /// What each worker's memory samples say, in MiB (`rss` lines);
    /// [`DEFAULT_RSS_MIB`] for the others.
    pub(super) rss: BTreeMap<u32, u64>,
}

/// The resident memory of a worker whose samples no `rss` line set, in MiB.
pub(super) const DEFAULT_RSS_MIB: u64 = 10;

impl Shell {
    pub(super) fn start(options: Options, logs: bool) -> Shell {
        let t0 = Instant::now();
        let parallel = options.recycle.parallel;
        let watched = options.worker.watchdog.is_some();
        let (machine, actions) = Machine::new(options.clone(), t0);
        let mut shell = Shell {
            machine,
            options,
            t0,
            now_ms: 0,
            logs,
            debug: false,
            transcript: Vec::new(),
            history: Vec::new(),
            processes: BTreeMap::new(),
            failing_spawns: 0,
            slow_spawns: 0,
            exits: 0,
            listeners_closed: false,
            ever_started: false,
            probe: None,
            failing_probe_spawn: false,
            exec_due: false,
            failing_exec: false,
            execs: 0,
            parallel,
            min_started: None,
            watched,
            rss: BTreeMap::new(),
        };
        let mut answers = VecDeque::new();
        for action in actions {
            shell.act(action, &mut answers);
        }
        shell.feed_all(answers);
        shell.exec_if_due();
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
            machine.failure().map(ToString::to_string),
        )
    }

    /// Runs one script line (see the module docs).
    pub(super) fn line(&mut self, line: &str) {
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
        let addr: ListenAddr = match others.first() {
            Some(addr) if command != "probe-exited" => addr.parse().unwrap(),
            _ => "127.0.0.1:8080".parse().unwrap(),
        };
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
            "SIGUSR2" => vec![Event::Signal(Signal::Usr2)],
            "probe-exited" => {
                let status = match (values.get("code"), values.get("signal")) {
                    (_, Some(signal)) => ExitStatus::Signal(*signal),
                    (code, None) => ExitStatus::Code(code.copied().unwrap_or(0)),
                };
                // The range a real probe reports, unless one version is given.
                let protocol = values
                    .get("protocol")
                    .map_or((MIN_PROTOCOL_VERSION, PROTOCOL_VERSION), |v| (*v as u32, *v as u32));
                let handover = values
                    .get("handover")
                    .map_or((HANDOVER_VERSION, HANDOVER_VERSION), |v| (*v as u32, *v as u32));
                let report = match others.first().copied().unwrap_or("ready") {
                    "ready" => ProbeReport::Ready { srv: "9.9.9".to_owned(), protocol, handover },
                    "missing" => ProbeReport::Missing,
                    "garbage" => ProbeReport::Garbage("expected value at line 1".to_owned()),
                    "refused" => ProbeReport::Refused(
                        "invalid option worker.count: must be at least 1".to_owned(),
                    ),
                    other => panic!("script line `{line}`: unknown report {other}"),
                };
                let output = if values.contains_key("output") { "boom\n" } else { "" };
                vec![Event::ProbeExited { status, report, output: output.to_owned() }]
            }
            "probe-spawn-fails" => {
                self.failing_probe_spawn = true;
                vec![]
            }
            "exec-fails" => {
                self.failing_exec = true;
                vec![]
            }
            "new-count" => {
                self.options.worker.count = ids[0].0 as usize;
                vec![]
            }
            "new-watchdog" => {
                let ms = u64::from(ids[0].0);
                self.options.worker.watchdog = (ms > 0).then(|| Duration::from_millis(ms));
                vec![]
            }
            "hello" => each(&hello),
            "online" => each(&|worker| message(worker, WorkerMessage::Online)),
            "alive" => each(&|worker| message(worker, WorkerMessage::Alive)),
            "rss" => {
                let mib = values.get("mb").map_or(DEFAULT_RSS_MIB, |mb| *mb as u64);
                for id in &ids {
                    self.rss.insert(id.0, mib);
                }
                vec![]
            }
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
                error: ListenError {
                    errno: Some(98),
                    message: format!("bind {addr}: Address already in use (os error 98)"),
                },
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
        self.exec_if_due();
    }

    /// At the end of a turn (a script line), an `Exec` seen in it happens,
    /// as in the real shell: the machine's handover goes through its
    /// encoding and [`Machine::adopt`] builds the new master's machine,
    /// whose actions are carried out. The processes stay: they are the same
    /// children of the same pid.
    fn exec_if_due(&mut self) {
        if !std::mem::take(&mut self.exec_due) {
            return;
        }
        let Some(handover) = self.machine.handover(self.now()) else { return };
        if std::mem::take(&mut self.failing_exec) {
            let error = "cannot execute /srv/app: Text file busy".to_owned();
            self.feed_all(VecDeque::from([Event::ExecFailed { error }]));
            return;
        }
        let text = serde_json::to_string(&handover).expect("the handover encodes");
        let handover: Handover = serde_json::from_str(&text).expect("the handover decodes");
        self.history.push(format!("{} handover {text}", self.now_ms));
        self.execs += 1;
        let (machine, actions) = Machine::adopt(self.options.clone(), self.now(), handover);
        self.machine = machine;
        let mut answers = VecDeque::new();
        for action in actions {
            self.act(action, &mut answers);
        }
        self.feed_all(answers);
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
            if let Event::ProbeExited { .. } | Event::ProbeSpawnFailed { .. } = &event {
                if self.probe.is_none() {
                    self.broken("a probe exit, and no probe runs");
                }
                self.probe = None;
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
            self.ever_started |= self.machine.started() > 0;
            if let Some(least) = self.min_started
                && self.machine.started() < least
            {
                let started = self.machine.started();
                self.broken(&format!("{started} started workers, fewer than {least}"));
            }
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
        let shown = match &action {
            Action::Log(Level::Debug | Level::Trace, _) => self.logs && self.debug,
            Action::Log(..) => self.logs,
            _ => true,
        };
        if shown {
            self.transcript.push(line);
        }
        if self.exits > 0 {
            self.broken("an action after Exit");
        }
        let worker = match &action {
            Action::Spawn(worker)
            | Action::Send(worker, _)
            | Action::Listen(worker, _)
            | Action::Kill(worker)
            | Action::SampleRss(worker) => *worker,
            Action::Log(..) => return,
            Action::CloseListeners => {
                self.listeners_closed = true;
                return;
            }
            Action::Exit(_) => {
                if self.probe.is_some() {
                    self.broken("Exit while the probe runs");
                }
                self.exits += 1;
                return;
            }
            Action::Probe => {
                if self.probe.is_some() {
                    self.broken("a second Probe while one runs");
                }
                self.probe = Some(Probe::default());
                answers.push_back(if std::mem::take(&mut self.failing_probe_spawn) {
                    let error = "cannot execute /srv/app: Permission denied".to_owned();
                    Event::ProbeSpawnFailed { error }
                } else {
                    Event::ProbeSpawned { pid: PROBE_PID, program: "/srv/app".to_owned() }
                });
                return;
            }
            Action::KillProbe => {
                match &mut self.probe {
                    None => self.broken("KillProbe, and no probe runs"),
                    Some(probe) if probe.killed => self.broken("a second KillProbe"),
                    Some(probe) => probe.killed = true,
                }
                return;
            }
            Action::Exec => {
                if self.probe.is_some() {
                    self.broken("Exec while the probe runs");
                }
                self.exec_due = true;
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
            Action::Send(_, MasterMessage::Disconnect { .. }) if process.killed => {
                Some("a Disconnect after Kill")
            }
            Action::Kill(_) if process.killed => Some("a second Kill"),
            Action::SampleRss(_) if process.told_to_leave => Some("a sample of a worker leaving"),
            _ => None,
        };
        match &action {
            Action::Send(_, MasterMessage::Disconnect { .. } | MasterMessage::Refused { .. }) => {
                process.told_to_leave = true;
            }
            Action::Kill(_) => (process.told_to_leave, process.killed) = (true, true),
            Action::SampleRss(_) if !process.gone => {
                let mib = self.rss.get(&worker.0).copied().unwrap_or(DEFAULT_RSS_MIB);
                answers.push_back(Event::Rss { worker, bytes: mib << 20 });
            }
            _ => {}
        }
        if let Some(broken) = broken {
            self.broken(&format!("{broken} for {worker}"));
        }
    }

    pub(super) fn broken(&self, what: &str) -> ! {
        let start = self.history.len().saturating_sub(80);
        let history = self.history[start..].join("\n");
        panic!("broken invariant: {what}; history:\n{history}");
    }

    /// Workers spawned and not gone.
    pub(super) fn live(&self) -> Vec<u32> {
        self.processes.iter().filter(|(_, p)| !p.gone).map(|(id, _)| *id).collect()
    }

    /// Live workers not told to leave.
    pub(super) fn serving(&self) -> Vec<u32> {
        let serving = self.processes.iter().filter(|(_, p)| !p.gone && !p.told_to_leave);
        serving.map(|(id, _)| *id).collect()
    }

    /// Live workers told to leave.
    pub(super) fn leaving(&self) -> Vec<u32> {
        let leaving = self.processes.iter().filter(|(_, p)| !p.gone && p.told_to_leave);
        leaving.map(|(id, _)| *id).collect()
    }

    /// Whether the master stopped on its own (`Machine::failure`), which it
    /// may do only before any worker has started.
    pub(super) fn gave_up(&self) -> bool {
        let failure = self.machine.failure();
        if let Some(failure) = failure
            && self.ever_started
        {
            self.broken(&format!("gave up after a worker started: {failure}"));
        }
        failure.is_some()
    }

    /// From now on, until `None`: after every event at least `least`
    /// workers are started (a recycle in a world without failures never
    /// drops below the target).
    pub(super) fn keep_started(&mut self, least: Option<usize>) {
        self.min_started = least;
    }

    /// While running: the machine wants `target` workers, and at most
    /// `recycle.parallel` more (a recycle's replacements) are starting or
    /// serving.
    pub(super) fn check_running(&self, target: usize) {
        let serving = self.serving();
        let replacing = self.machine.is_recycling() || self.machine.planned_in_flight() > 0;
        let most = target + if replacing { self.parallel } else { 0 };
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
    pub(super) fn check_settled(&self, target: usize) {
        self.check_running(target);
        let (live, started) = (self.live(), self.machine.started());
        let idle = self.quiet() && !self.machine.is_recycling();
        if live.len() != target || started != target || !self.machine.is_ready() || !idle {
            self.broken(&format!(
                "settled with {live:?} live, {started} started, target {target}, next deadline {}",
                self.next_deadline()
            ));
        }
    }

    /// After settling a shutdown: one `Exit`, no worker left.
    pub(super) fn check_exited(&self) {
        let live = self.live();
        if self.exits != 1 || !live.is_empty() {
            self.broken(&format!("shut down with {} exits and {live:?} live", self.exits));
        }
    }

    /// Plays a well-behaved world until nothing is left to do: every worker
    /// says `Hello` and `Listening`, every worker told to leave exits (code 0
    /// after `Disconnect`, signal 9 after `Kill`), and when nobody has
    /// anything to say, time jumps to the next deadline.
    pub(super) fn settle(&mut self) {
        self.settle_until(0);
    }

    /// Whether the machine waits for nothing but time: no deadline, or
    /// only those that come back forever while all is well (planned
    /// recycles', the watchdog's).
    fn quiet(&self) -> bool {
        self.machine.next_deadline().is_none() || self.machine.quiet()
    }

    /// [`Shell::settle`], and until `until_ms` at least: the deadlines of
    /// planned recycles that come before it are played too.
    pub(super) fn settle_until(&mut self, until_ms: u64) {
        for _ in 0..10_000 {
            let mut lines = Vec::new();
            match &self.probe {
                Some(Probe { killed: true }) => {
                    lines.push("probe-exited signal=9 missing".to_owned())
                }
                Some(Probe { killed: false }) => lines.push("probe-exited".to_owned()),
                None => {}
            }
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
                if at > until_ms && self.quiet() {
                    return;
                }
                if self.watched {
                    // Well-behaved workers prove alive as time passes, just
                    // before the deadline.
                    let before = at.saturating_sub(1).max(self.now_ms);
                    let alive: Vec<u32> = self
                        .processes
                        .iter()
                        .filter(|(_, p)| !p.gone && !p.told_to_leave && p.listening)
                        .map(|(id, _)| *id)
                        .collect();
                    for id in alive {
                        self.line(&format!("{before} alive {id}"));
                    }
                }
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

/// A line diff: `  ` before a line in both, `- ` before one only expected,
/// `+ ` before one only in the transcript.
fn diff(expect: &[&str], actual: &[&str]) -> String {
    let mut out = String::new();
    for op in similar::capture_diff_slices(Algorithm::Myers, expect, actual) {
        for change in op.iter_changes(expect, actual) {
            let sign = match change.tag() {
                ChangeTag::Equal => ' ',
                ChangeTag::Delete => '-',
                ChangeTag::Insert => '+',
            };
            writeln!(out, "{sign} {}", change.value()).unwrap();
        }
    }
    out
}
