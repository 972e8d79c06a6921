//! The upgrade in place (`SIGUSR2`): the decisions, and the machine's half
//! of the handover.
//!
//! # Stages
//!
//! In the master that receives `SIGUSR2`:
//!
//! 1. `Spawning`: [`Action::Probe`] asks the shell to start the program on
//!    disk in probe mode; it answers `ProbeSpawned` (then `Probing`) or
//!    `ProbeSpawnFailed` (the upgrade failed).
//! 2. `Probing`: the probe has [`PROBE_TIMEOUT`] to exit; its exit
//!    (`ProbeExited`, which first makes the stage `Reaped`, so that nothing
//!    else at that instant, a deadline or a shutdown, asks to kill a probe
//!    that is gone) carries its report, which is judged here: an srv
//!    master whose options are valid, which accepts the protocol version the
//!    workers speak ([`PROTOCOL_VERSION`]) and reads the handover format this
//!    master writes ([`HANDOVER_VERSION`]), and which exited 0. Anything
//!    else fails the upgrade. A probe still running at its deadline is
//!    killed (`Killing`).
//! 3. `Exec`: the point of no return is the shell's `execve`, at the end of
//!    the turn, with [`Machine::handover`]. A recycle in progress is
//!    superseded first: its replacement in flight, which is not serving
//!    yet, is retired, so that the workers handed over are exactly the
//!    target. If the exec fails (`ExecFailed`) the upgrade failed, and the
//!    master runs on as it was.
//!
//! In the master the exec starts, [`Machine::adopt`] builds the machine from
//! the handover, in the stage `Recycling`: every live worker is old and is
//! recycled like after `SIGHUP`. The upgrade is over once that recycle is:
//! complete when no worker of the old program (an id below the first one
//! this master gave) serves any more, incomplete otherwise (a replacement
//! failed to start; the old workers keep serving).
//!
//! A failed upgrade changes nothing but the log and the status: the line
//! says why, and the `STATUS=` line keeps saying it until the next upgrade.
//!
//! # Signals during an upgrade
//!
//! - `SIGINT`, `SIGTERM`: the shutdown, as always. A probe still running is
//!   killed (`Killing`), and the master exits only once it is reaped, so
//!   nothing it started outlives the master unnoticed.
//! - `SIGHUP` before the exec: remembered, and done once the upgrade is over
//!   if it failed; if the exec happens, the new master's recycle replaces
//!   every worker after that `SIGHUP` anyway, which is what it asked for.
//!   During the new master's recycle it starts the recycle over, as during
//!   any recycle.
//! - A second `SIGUSR2`: ignored, with a log line.
//! - `SIGTTIN`, `SIGTTOU`: as always; the target is handed over.
//!
//! # The handover
//!
//! [`Handover`] is the machine's state as the new master needs it: the
//! workers (ids, pids, states with what is left of their deadlines, the
//! counts the limits need), the restarts waiting for their delay (what is
//! left of it), the target and the next id. Times are durations relative to
//! the moment of the handover, since an `Instant` means nothing to another
//! process image; the new master adds them to its own `now`, so every
//! deadline is late by at most the time the exec took, in the workers'
//! favour. The shell adds its own half (descriptors, what each channel
//! holds) and the format's framing (`upgrade.rs`).
//!
//! The new master's `worker.count` wins if it differs from the old one's
//! (the operator changed the configuration); if it is the same, the target
//! as `SIGTTIN`/`SIGTTOU` left it is kept.

use std::time::{Duration, Instant};

use log::Level;
use serde::{Deserialize, Serialize};
use srv_proto::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};

use super::failure::Restart;
use super::planned::Plans;
use super::recycle::Recycle;
use super::{
    Action, ExitStatus, Machine, Phase, ProbeReport, State, Upgrading, Worker, WorkerId, log,
};
use crate::options::Options;

/// How long the probe of an upgrade may take to report and exit before it
/// is killed and the upgrade fails. The probe runs the new program only up
/// to its check of the options, which takes milliseconds; the margin is for
/// a machine under load.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_millis(5000);

/// The version of the handover format this master writes and reads: the
/// machine's [`Handover`] and the shell's half around it (`upgrade.rs`).
/// Any change to either is a new version.
///
/// Version 2 added what the watchdog needs of each worker (the period it
/// was told, when it last proved alive). Version 1 was never released.
pub(crate) const HANDOVER_VERSION: u32 = 2;

/// An upgrade in progress.
#[derive(Debug)]
pub(super) struct Upgrade {
    pub(super) stage: Stage,
    pub(super) began: Instant,
    /// A `SIGHUP` arrived before the exec: recycle once the upgrade failed.
    pub(super) hup: bool,
}

/// Where an upgrade is (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Stage {
    Spawning,
    Probing {
        deadline: Instant,
    },
    /// The probe was killed (it timed out, or the master shuts down); the
    /// upgrade is over once it is reaped.
    Killing,
    /// The event being handled reports the probe's end: it is gone, its
    /// report is about to be judged, and there is nothing left to kill.
    Reaped,
    Exec,
    /// In the new master: the old program's workers are being recycled;
    /// `first_new` is the first id this master gave.
    Recycling {
        first_new: u32,
    },
}

/// The machine's state as the new master needs it (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Handover {
    /// The old master's `worker.count` option.
    pub(crate) count: usize,
    pub(crate) target: usize,
    pub(crate) next_id: u32,
    pub(crate) ever_started: bool,
    pub(crate) ever_ready: bool,
    /// How long ago the upgrade began.
    pub(crate) upgrade_age_ms: u64,
    pub(crate) workers: Vec<HandedWorker>,
    pub(crate) restarts: Vec<HandedRestart>,
}

/// One worker of a [`Handover`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HandedWorker {
    pub(crate) id: u32,
    pub(crate) pid: u32,
    pub(crate) state: HandedState,
    /// The protocol version it said `Hello` with; `None` before its `Hello`.
    pub(crate) protocol_version: Option<u32>,
    pub(crate) exit_code: Option<i32>,
    /// How long ago it was spawned.
    pub(crate) age_ms: u64,
    /// How long ago it started, if it did.
    pub(crate) started_ms_ago: Option<u64>,
    pub(crate) streak: u32,
    /// What is left of the grace after it closed its channel, if it did.
    pub(crate) closed_in_ms: Option<u64>,
    pub(crate) listen_requests: u32,
    /// The watchdog period it was told at its spawn, if any.
    pub(crate) watchdog_ms: Option<u64>,
    /// How long ago it last proved alive (its start, or an `Alive`).
    pub(crate) heard_ms_ago: Option<u64>,
    /// It sent at least one `Alive`.
    pub(crate) heartbeat_seen: bool,
}

/// A worker's state in a [`Handover`], deadlines as what is left of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum HandedState {
    Starting { in_ms: u64, online: bool, listening: bool },
    Started,
    Retiring { in_ms: u64 },
    Refused { in_ms: u64 },
    Killed,
}

/// A restart of a [`Handover`], waiting for what is left of its delay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HandedRestart {
    pub(crate) in_ms: u64,
    pub(crate) streak: u32,
}

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// What is left until `deadline`, in milliseconds.
fn left(now: Instant, deadline: Instant) -> u64 {
    ms(deadline.saturating_duration_since(now))
}

/// `now` minus `ago_ms`, or `now` for a time before the clock's start.
fn before(now: Instant, ago_ms: u64) -> Instant {
    now.checked_sub(Duration::from_millis(ago_ms)).unwrap_or(now)
}

/// `now` plus `in_ms`, capped like the options' durations.
fn after(now: Instant, in_ms: u64) -> Instant {
    now + Duration::from_millis(in_ms).min(crate::options::MAX_DURATION)
}

/// Whether a probe's report and exit make the new program one to execute:
/// its srv version if so, why not otherwise.
///
/// `spoken` are the protocol versions the new master must accept: those the
/// workers said `Hello` with, and, while some worker has not said it yet,
/// every version this master accepts (such a worker may still say any).
fn judge(
    status: ExitStatus,
    report: &ProbeReport,
    output: &str,
    spoken: (u32, u32),
) -> Result<String, String> {
    let output = if output.is_empty() {
        String::new()
    } else {
        format!("; its output ends with {output:?}")
    };
    match (status, report) {
        (_, ProbeReport::Refused(why)) => {
            Err(format!("the new program refuses its options: {why}"))
        }
        (_, ProbeReport::Garbage(why)) => {
            Err(format!("the new program's probe report is not one: {why}{output}"))
        }
        (ExitStatus::Code(0), ProbeReport::Missing) => Err(format!(
            "the new program exited without a probe report: it is not an srv master, or one too \
             old to be upgraded to{output}"
        )),
        (status, ProbeReport::Missing) => {
            Err(format!("the new program exited ({status}) without a probe report{output}"))
        }
        (ExitStatus::Code(0), ProbeReport::Ready { srv, protocol, handover }) => {
            if spoken.0 < protocol.0 || protocol.1 < spoken.1 {
                let speak = if spoken.0 == spoken.1 {
                    format!("{}", spoken.0)
                } else {
                    format!("{} to {}", spoken.0, spoken.1)
                };
                return Err(format!(
                    "the new program (srv {srv}) accepts workers of protocol versions {} to {}, \
                     and the workers speak {speak}",
                    protocol.0, protocol.1
                ));
            }
            if !(handover.0..=handover.1).contains(&HANDOVER_VERSION) {
                return Err(format!(
                    "the new program (srv {srv}) reads handover formats {} to {}, and this \
                     master writes {HANDOVER_VERSION}",
                    handover.0, handover.1
                ));
            }
            Ok(srv.clone())
        }
        (status, ProbeReport::Ready { .. }) => {
            Err(format!("the new program reported, then exited ({status}){output}"))
        }
    }
}

impl Machine {
    /// The lowest and highest protocol versions the workers handed over
    /// may speak (see [`judge`]).
    fn spoken_versions(&self) -> (u32, u32) {
        let mut spoken: Option<(u32, u32)> = None;
        for worker in self.workers.values() {
            let (low, high) = match worker.protocol_version {
                Some(version) => (version, version),
                None => (MIN_PROTOCOL_VERSION, PROTOCOL_VERSION),
            };
            spoken = Some(spoken.map_or((low, high), |(lo, hi)| (lo.min(low), hi.max(high))));
        }
        // No worker at all: the new master must at least speak to the
        // workers it will start, which is its own business.
        spoken.unwrap_or((PROTOCOL_VERSION, PROTOCOL_VERSION))
    }

    /// `SIGUSR2`: begin an upgrade, unless one is in progress.
    pub(super) fn begin_upgrade(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if self.upgrade.is_some() {
            log(actions, Level::Warn, "SIGUSR2 ignored: an upgrade is in progress".to_owned());
            return;
        }
        log(actions, Level::Info, "SIGUSR2: upgrading the master in place".to_owned());
        self.upgrade = Some(Upgrade { stage: Stage::Spawning, began: now, hup: false });
        self.upgrade_failure = None;
        actions.push(Action::Probe);
    }

    /// Whether a `SIGHUP` now waits for the upgrade (see the module docs);
    /// if so, it is remembered.
    pub(super) fn defer_hup(&mut self, actions: &mut Vec<Action>) -> bool {
        let Some(upgrade) = &mut self.upgrade else { return false };
        if matches!(upgrade.stage, Stage::Recycling { .. }) {
            return false;
        }
        upgrade.hup = true;
        log(
            actions,
            Level::Info,
            "SIGHUP during the upgrade: recycling once it is over".to_owned(),
        );
        true
    }

    /// The shell started the probe.
    pub(super) fn probe_spawned(
        &mut self,
        now: Instant,
        pid: u32,
        program: &str,
        actions: &mut Vec<Action>,
    ) {
        let Some(upgrade) = &mut self.upgrade else { return };
        if upgrade.stage != Stage::Spawning {
            return;
        }
        upgrade.stage = Stage::Probing { deadline: now + PROBE_TIMEOUT };
        log(
            actions,
            Level::Info,
            format!(
                "upgrade: probing {program} (pid {pid}), for at most {} ms",
                PROBE_TIMEOUT.as_millis()
            ),
        );
    }

    /// The event being handled reports the probe's end (see `Stage::Reaped`).
    pub(super) fn probe_gone(&mut self) {
        if let Some(upgrade) = &mut self.upgrade
            && matches!(upgrade.stage, Stage::Spawning | Stage::Probing { .. })
        {
            upgrade.stage = Stage::Reaped;
        }
    }

    /// The shell could not start the probe.
    pub(super) fn probe_spawn_failed(
        &mut self,
        now: Instant,
        error: &str,
        actions: &mut Vec<Action>,
    ) {
        match self.upgrade.as_ref().map(|upgrade| &upgrade.stage) {
            Some(Stage::Reaped) => {
                self.upgrade_failed(error.to_owned(), actions);
                self.end_upgrade(now, actions);
            }
            Some(Stage::Killing) => self.end_upgrade(now, actions),
            _ => {}
        }
    }

    /// The probe was reaped: judge it, or end an upgrade that killed it.
    pub(super) fn probe_exited(
        &mut self,
        now: Instant,
        status: ExitStatus,
        report: &ProbeReport,
        output: &str,
        actions: &mut Vec<Action>,
    ) {
        match self.upgrade.as_ref().map(|upgrade| &upgrade.stage) {
            Some(Stage::Reaped) => match judge(status, report, output, self.spoken_versions()) {
                Ok(srv) => self.exec(now, &srv, actions),
                Err(why) => {
                    self.upgrade_failed(why, actions);
                    self.end_upgrade(now, actions);
                }
            },
            Some(Stage::Killing) => self.end_upgrade(now, actions),
            _ => {}
        }
    }

    /// A probe still running at its deadline is killed.
    pub(super) fn advance_upgrade(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let Some(upgrade) = &mut self.upgrade else { return };
        let Stage::Probing { deadline } = upgrade.stage else { return };
        if deadline > now {
            return;
        }
        upgrade.stage = Stage::Killing;
        let why = format!(
            "the new program did not report within {} ms (a probe that hangs)",
            PROBE_TIMEOUT.as_millis()
        );
        self.upgrade_failed(why, actions);
        actions.push(Action::KillProbe);
    }

    /// The probe's deadline, if it runs.
    pub(super) fn upgrade_deadline(&self) -> Option<Instant> {
        match self.upgrade.as_ref()?.stage {
            Stage::Probing { deadline } => Some(deadline),
            _ => None,
        }
    }

    /// The probe vouched for the new program: supersede a recycle in
    /// progress and ask for the exec.
    fn exec(&mut self, now: Instant, srv: &str, actions: &mut Vec<Action>) {
        self.supersede_planned(now, actions);
        if let Some(recycle) = self.recycle.take() {
            log(
                actions,
                Level::Info,
                "upgrade: the recycle in progress is superseded by the upgrade's own".to_owned(),
            );
            // Replacements still starting that would take an old worker's
            // place are not wanted: the upgrade replaces every worker.
            for pair in recycle.in_flight {
                if pair.old.is_some() {
                    self.retire(now, pair.replacement, self.options.recycle.timeout, actions);
                }
            }
        }
        let Some(upgrade) = &mut self.upgrade else { return };
        if upgrade.hup {
            upgrade.hup = false;
            log(
                actions,
                Level::Info,
                "the SIGHUP received during the upgrade is done by the upgrade's recycle"
                    .to_owned(),
            );
        }
        upgrade.stage = Stage::Exec;
        log(
            actions,
            Level::Info,
            format!(
                "upgrade: the new program is a compatible srv master (srv {srv}); executing it \
                 in place"
            ),
        );
        actions.push(Action::Exec);
    }

    /// The shell could not execute the new program.
    pub(super) fn exec_failed(&mut self, now: Instant, error: &str, actions: &mut Vec<Action>) {
        if self.upgrade.as_ref().is_some_and(|upgrade| upgrade.stage == Stage::Exec) {
            self.upgrade_failed(error.to_owned(), actions);
            self.end_upgrade(now, actions);
        }
    }

    /// Logs why the upgrade failed and keeps it for the status.
    fn upgrade_failed(&mut self, why: String, actions: &mut Vec<Action>) {
        log(
            actions,
            Level::Error,
            format!("upgrade failed: {why}; the master runs on unchanged, and so do its workers"),
        );
        self.upgrade_failure = Some(format!("failed: {why}"));
    }

    /// The upgrade is over without an exec: a `SIGHUP` it held back is done
    /// now, and a shutdown that waited for the probe may complete.
    fn end_upgrade(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let Some(upgrade) = self.upgrade.take() else { return };
        if upgrade.hup && self.phase == Phase::Running {
            self.begin_recycle(now, actions);
        }
        self.check_done(actions);
    }

    /// At a shutdown: a probe still running is killed, and the upgrade ends
    /// once it is reaped; an upgrade past its probe just ends.
    pub(super) fn stop_upgrade(&mut self, cause: &str, actions: &mut Vec<Action>) {
        let Some(upgrade) = &mut self.upgrade else { return };
        match upgrade.stage {
            Stage::Spawning | Stage::Probing { .. } => {
                upgrade.stage = Stage::Killing;
                upgrade.hup = false;
                log(actions, Level::Info, format!("upgrade stopped by {cause}: killing the probe"));
                actions.push(Action::KillProbe);
            }
            Stage::Killing => upgrade.hup = false,
            Stage::Reaped | Stage::Exec | Stage::Recycling { .. } => {
                self.upgrade = None;
                log(actions, Level::Info, format!("upgrade stopped by {cause}"));
            }
        }
    }

    /// In the new master: once its recycle is over, so is the upgrade.
    pub(super) fn finish_upgrade_if_recycled(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let Some(Upgrade { stage: Stage::Recycling { first_new }, began, .. }) = self.upgrade
        else {
            return;
        };
        if self.recycle.is_some() {
            return;
        }
        self.upgrade = None;
        let old = self
            .workers
            .iter()
            .filter(|(id, worker)| id.0 < first_new && worker.state.is_live())
            .count();
        let took = now.saturating_duration_since(began).as_millis();
        if old == 0 {
            self.upgrade_failure = None;
            log(
                actions,
                Level::Info,
                format!(
                    "upgrade complete in {took} ms: the master and its {} workers run the new \
                     program",
                    self.started()
                ),
            );
        } else {
            let why = format!(
                "{old} workers still run the old program (a replacement failed to start); \
                 SIGHUP retries"
            );
            log(actions, Level::Error, format!("upgrade incomplete: {why}"));
            self.upgrade_failure = Some(format!("incomplete: {why}"));
        }
    }

    /// What the status says about the upgrade.
    pub(super) fn upgrading(&self) -> Option<Upgrading> {
        match self.upgrade.as_ref()?.stage {
            Stage::Recycling { .. } => Some(Upgrading::Recycling),
            _ => Some(Upgrading::Probing),
        }
    }

    /// The machine's half of the handover, when the exec is due (the stage
    /// `Exec`); `None` otherwise, and then the shell does not exec.
    pub(crate) fn handover(&self, now: Instant) -> Option<Handover> {
        let upgrade = self.upgrade.as_ref().filter(|upgrade| upgrade.stage == Stage::Exec)?;
        let workers = self
            .workers
            .iter()
            .filter_map(|(id, worker)| {
                let state = match worker.state {
                    State::Starting { deadline, online, listening } => {
                        HandedState::Starting { in_ms: left(now, deadline), online, listening }
                    }
                    State::Started => HandedState::Started,
                    State::Retiring { deadline } => {
                        HandedState::Retiring { in_ms: left(now, deadline) }
                    }
                    State::Refused { deadline } => {
                        HandedState::Refused { in_ms: left(now, deadline) }
                    }
                    State::Killed => HandedState::Killed,
                };
                Some(HandedWorker {
                    id: id.0,
                    // A worker whose spawn was not reported has no process
                    // the shell knows; the real shell reports every spawn at
                    // once.
                    pid: worker.pid?,
                    state,
                    protocol_version: worker.protocol_version,
                    exit_code: worker.exit_code,
                    age_ms: ms(now.saturating_duration_since(worker.spawned_at)),
                    started_ms_ago: worker
                        .started_at
                        .map(|at| ms(now.saturating_duration_since(at))),
                    streak: worker.streak,
                    closed_in_ms: worker.closed_deadline.map(|at| left(now, at)),
                    listen_requests: worker.listen_requests,
                    watchdog_ms: worker.watchdog.map(ms),
                    heard_ms_ago: worker.heard_at.map(|at| ms(now.saturating_duration_since(at))),
                    heartbeat_seen: worker.heartbeat_seen,
                })
            })
            .collect();
        let restarts = self
            .restarts
            .iter()
            .map(|restart| HandedRestart { in_ms: left(now, restart.due), streak: restart.streak })
            .collect();
        Some(Handover {
            count: self.options.worker.count,
            target: self.target,
            next_id: self.next_id,
            ever_started: self.ever_started,
            ever_ready: self.ever_ready,
            upgrade_age_ms: ms(now.saturating_duration_since(upgrade.began)),
            workers,
            restarts,
        })
    }

    /// The machine of a master that an upgrade just executed, from the
    /// previous master's [`Machine::handover`], and its first actions: the
    /// recycle of every worker of the old program (see the module docs).
    ///
    /// `options` must be valid ([`Options::validate`]).
    #[must_use]
    pub(crate) fn adopt(
        options: Options,
        now: Instant,
        handover: Handover,
    ) -> (Machine, Vec<Action>) {
        let mut actions = Vec::new();
        let target = if handover.count == options.worker.count {
            handover.target.clamp(1, crate::options::MAX_WORKERS)
        } else {
            log(
                &mut actions,
                Level::Info,
                format!(
                    "upgrade: worker.count changed from {} to {}",
                    handover.count, options.worker.count
                ),
            );
            options.worker.count
        };
        let first_new = handover.next_id;
        let max_rss = options.worker.max_rss;
        let workers = handover
            .workers
            .into_iter()
            .map(|handed| {
                let state = match handed.state {
                    HandedState::Starting { in_ms, online, listening } => {
                        State::Starting { deadline: after(now, in_ms), online, listening }
                    }
                    HandedState::Started => State::Started,
                    HandedState::Retiring { in_ms } => {
                        State::Retiring { deadline: after(now, in_ms) }
                    }
                    HandedState::Refused { in_ms } => {
                        State::Refused { deadline: after(now, in_ms) }
                    }
                    HandedState::Killed => State::Killed,
                };
                let worker = Worker {
                    pid: Some(handed.pid),
                    state,
                    protocol_version: handed.protocol_version,
                    exit_code: handed.exit_code,
                    spawned_at: before(now, handed.age_ms),
                    started_at: handed.started_ms_ago.map(|ago| before(now, ago)),
                    streak: handed.streak,
                    closed_deadline: handed.closed_in_ms.map(|in_ms| after(now, in_ms)),
                    window_start: now,
                    window_messages: 0,
                    listen_requests: handed.listen_requests,
                    // What came before the handover is not handed over: a
                    // worker adopted while starting shows only what the
                    // new master saw.
                    timeline: Default::default(),
                    // Watched as it was told at its spawn, whatever this
                    // master's options: it sends its heartbeats, or not,
                    // as it learned then.
                    watchdog: handed.watchdog_ms.map(|period| {
                        Duration::from_millis(period).min(crate::options::MAX_DURATION)
                    }),
                    heard_at: handed.heard_ms_ago.map(|ago| before(now, ago)),
                    heartbeat_seen: handed.heartbeat_seen,
                    // Every adopted worker is recycled anyway.
                    over_rss: None,
                };
                (WorkerId(handed.id), worker)
            })
            .collect();
        let restarts = handover
            .restarts
            .iter()
            .map(|restart| Restart { due: after(now, restart.in_ms), streak: restart.streak })
            .collect();
        let mut machine = Machine {
            options,
            target,
            next_id: first_new,
            workers,
            phase: Phase::Running,
            recycle: None,
            unwanted: Vec::new(),
            restarts,
            ever_started: handover.ever_started,
            ever_ready: handover.ever_ready,
            failure: None,
            give_up: None,
            upgrade: Some(Upgrade {
                stage: Stage::Recycling { first_new },
                began: before(now, handover.upgrade_age_ms),
                hup: false,
            }),
            upgrade_failure: None,
            plans: Plans::new(now, max_rss),
            last_handled: now,
        };
        let old = machine.live_workers().len();
        log(
            &mut actions,
            Level::Info,
            format!(
                "upgrade: adopted {} workers from the previous master; recycling the {old} that \
                 serve or start, which run the old program",
                machine.workers.len()
            ),
        );
        machine.match_target(now, &mut actions);
        let queue = machine.live_workers().into_iter().filter(|id| id.0 < first_new).collect();
        machine.recycle = Some(Recycle { queue, in_flight: Vec::new(), began: now, replaced: 0 });
        machine.step_recycle(now, &mut actions);
        machine.finish_upgrade_if_recycled(now, &mut actions);
        if !machine.ever_ready && machine.is_ready() {
            machine.ever_ready = true;
        }
        (machine, actions)
    }

    /// The ids of the live workers, in order.
    fn live_workers(&self) -> Vec<WorkerId> {
        self.workers.iter().filter(|(_, w)| w.state.is_live()).map(|(id, _)| *id).collect()
    }

    /// After an adoption: as many live workers and pending restarts as the
    /// target. Missing ones are spawned; surplus restarts are dropped first,
    /// then the surplus workers retire, those not serving yet first, then
    /// the newest.
    fn match_target(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let live = self.live_workers();
        let have = live.len() + self.restarts.len();
        for _ in have..self.target {
            self.spawn(now, 0, actions);
        }
        let mut surplus = have.saturating_sub(self.target);
        while surplus > 0 && self.restarts.pop().is_some() {
            surplus -= 1;
        }
        let (mut starting, mut started): (Vec<WorkerId>, Vec<WorkerId>) = live
            .into_iter()
            .partition(|id| self.workers.get(id).is_some_and(|w| w.state != State::Started));
        while surplus > 0 {
            let Some(worker) = starting.pop().or_else(|| started.pop()) else { break };
            self.retire(now, worker, self.options.recycle.timeout, actions);
            surplus -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(protocol: (u32, u32), handover: (u32, u32)) -> ProbeReport {
        ProbeReport::Ready { srv: "9.9.9".to_owned(), protocol, handover }
    }

    #[test]
    fn only_a_compatible_master_that_exited_0_is_executed() {
        let v = PROTOCOL_VERSION;
        let h = HANDOVER_VERSION;
        let ok = ExitStatus::Code(0);
        let judge = |status, report: &ProbeReport, output| judge(status, report, output, (v, v));
        assert_eq!(judge(ok, &ready((v, v), (h, h)), ""), Ok("9.9.9".to_owned()));
        assert_eq!(judge(ok, &ready((0, v + 1), (1, h + 5)), ""), Ok("9.9.9".to_owned()));
        let cases = [
            (ok, ready((v + 1, v + 2), (h, h)), "accepts workers of protocol versions"),
            (ok, ready((v, v), (h + 1, h + 1)), "reads handover formats"),
            (ExitStatus::Code(1), ready((v, v), (h, h)), "reported, then exited (exit code 1)"),
            (ExitStatus::Code(0), ProbeReport::Missing, "it is not an srv master"),
            (ExitStatus::Code(2), ProbeReport::Missing, "exited (exit code 2) without"),
            (ExitStatus::Signal(9), ProbeReport::Missing, "exited (signal 9) without"),
            (ok, ProbeReport::Garbage("not JSON".into()), "report is not one: not JSON"),
            (ExitStatus::Code(1), ProbeReport::Refused("bad".into()), "refuses its options: bad"),
        ];
        for (status, report, expected) in cases {
            let why = judge(status, &report, "").unwrap_err();
            assert!(why.contains(expected), "{report:?}: {why}");
        }
        let why = judge(ExitStatus::Code(2), &ProbeReport::Missing, "boom\n").unwrap_err();
        assert!(why.ends_with("; its output ends with \"boom\\n\""), "{why}");
    }

    #[test]
    fn the_new_master_must_accept_every_version_the_workers_speak() {
        let ok = ExitStatus::Code(0);
        let h = HANDOVER_VERSION;
        // Workers of versions 1 and 2: a new master of 2 only would refuse
        // the old ones' messages.
        let why = judge(ok, &ready((2, 3), (h, h)), "", (1, 2)).unwrap_err();
        assert!(why.contains("accepts workers of protocol versions 2 to 3"), "{why}");
        assert!(why.ends_with("and the workers speak 1 to 2"), "{why}");
        assert!(judge(ok, &ready((1, 3), (h, h)), "", (1, 2)).is_ok());
        let why = judge(ok, &ready((1, 1), (h, h)), "", (2, 2)).unwrap_err();
        assert!(why.ends_with("and the workers speak 2"), "{why}");
    }
}
