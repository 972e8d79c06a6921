//! The shell's part in an upgrade (`SIGUSR2`): starting, reading and
//! reaping the probe, the exec with the handover, and the adoption in the
//! master an upgrade executed. What these carry out is decided by the
//! machine; the handover's format and checks are in `crate::upgrade`.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::time::Instant;

use mio::Interest;
use mio::unix::SourceFd;
use nix::unistd::Pid;
use signal_hook::consts::SIGCHLD;
use signal_hook_mio::v1_0::Signals;
use srv_proto::Channel;

use super::{
    Child, PROBE_OUTPUT, PROBE_REPORT, ProbeChild, Queue, READS_PER_TURN, Shell, io_error,
    listen_policy, master_signal, token,
};
use crate::Error;
use crate::listeners::{Listeners, Policy};
use crate::machine::{Event, ExitStatus, Handover, Machine, WorkerId};
use crate::options::Options;
use crate::spawn::spawn_probe;
use crate::upgrade::{
    Adopted, ExecPlan, HandedChannel, HandedFile, HandedListeners, HandedSocket, HandoverFile,
    MAX_OUTPUT_LEN, MAX_REPORT_LEN, ProbePipe,
};

impl Shell {
    /// Starts the probe of an upgrade (see the `upgrade` module): opens the
    /// program's file, which the exec will use too, and spawns it in probe
    /// mode, its pipes watched.
    pub(super) fn start_probe(&mut self, events: &mut Queue) {
        let started = match &self.program {
            Err(why) => Err(why.clone()),
            Ok(program) => program
                .open()
                .and_then(|exe| {
                    let spawned = spawn_probe(&exe, program)?;
                    let registry = self.poll.registry();
                    for (fd, token) in
                        [(&spawned.report, PROBE_REPORT), (&spawned.output, PROBE_OUTPUT)]
                    {
                        // The probe runs: it must be tracked whatever
                        // happens here. Unwatched, its pipes are read when
                        // it is reaped; one that fills them meanwhile waits
                        // for its deadline.
                        let fd = fd.as_raw_fd();
                        if let Err(error) =
                            registry.register(&mut SourceFd(&fd), token, Interest::READABLE)
                        {
                            log::warn!(target: "srv", "cannot watch the probe's pipe: {error}");
                        }
                    }
                    Ok((exe, spawned, program.path.display().to_string()))
                })
                .map_err(|error| error.to_string()),
        };
        match started {
            Ok((exe, spawned, program)) => {
                self.exe = Some(exe);
                self.probe = Some(ProbeChild {
                    pid: Pid::from_raw(spawned.pid as i32),
                    report: ProbePipe::new(spawned.report, true, MAX_REPORT_LEN),
                    output: ProbePipe::new(spawned.output, false, MAX_OUTPUT_LEN),
                });
                events.push_back((Event::ProbeSpawned { pid: spawned.pid, program }, None));
            }
            Err(error) => events.push_back((Event::ProbeSpawnFailed { error }, None)),
        }
    }

    /// Reads what the probe wrote, a bounded amount per turn.
    pub(super) fn read_probe(&mut self) {
        let Some(probe) = &mut self.probe else { return };
        let more_report = probe.report.read(READS_PER_TURN);
        let more_output = probe.output.read(READS_PER_TURN);
        // Not until `WouldBlock`: read again next turn.
        self.probe_unread = more_report || more_output;
    }

    /// The probe was reaped: what it wrote, and how it ended.
    pub(super) fn end_probe(&mut self, status: ExitStatus) -> Event {
        let mut probe = self.probe.take().expect("the caller checked");
        // What it wrote before it exited is there; a child it left holding
        // the pipes cannot make this read wait.
        probe.report.read(READS_PER_TURN);
        probe.output.read(READS_PER_TURN);
        for pipe in [&probe.report, &probe.output] {
            let _ = self.poll.registry().deregister(&mut SourceFd(&pipe.fd.as_raw_fd()));
        }
        self.probe_unread = false;
        Event::ProbeExited { status, report: probe.report.report(), output: probe.output.output() }
    }

    /// Executes the new program with the handover (see the `upgrade`
    /// module); returns only if that failed, with what the machine must
    /// hear (the signals drained for the handover, and `ExecFailed`) and
    /// whether a `SIGCHLD` was drained too (then the caller reaps).
    pub(super) fn exec(&mut self, machine: Handover, signals: &mut Signals) -> (Queue, bool) {
        let mut failed = Queue::new();
        let (Some(exe), Ok(program)) = (&self.exe, &self.program) else {
            let error = "the program's file was not opened".to_owned();
            failed.push_back((Event::ExecFailed { error }, None));
            return (failed, false);
        };
        // Blocked before the signals are drained: from here on a signal stays
        // pending in the kernel, across the exec, until the new master
        // unblocks it with its handlers installed.
        let mut mask = nix::sys::signal::SigSet::empty();
        if let Err(errno) = nix::sys::signal::pthread_sigmask(
            nix::sys::signal::SigmaskHow::SIG_BLOCK,
            Some(&crate::upgrade::handled_signals()),
            Some(&mut mask),
        ) {
            let error = format!("cannot block signals: {errno}");
            failed.push_back((Event::ExecFailed { error }, None));
            return (failed, false);
        }
        // A SIGCHLD among them needs no handing over: the new master reaps
        // first thing anyway.
        let (mut drained, mut chld) = (Vec::new(), false);
        for signal in signals.pending() {
            match master_signal(signal) {
                Some(signal) => drained.push(signal),
                None => chld |= signal == SIGCHLD,
            }
        }
        let mut fds = Vec::new();
        let mut channels = Vec::new();
        let mut ids: Vec<&WorkerId> = self.children.keys().collect();
        ids.sort();
        for id in ids {
            let Some(channel) = &self.children[id].channel else { continue };
            fds.push(channel.stream().as_fd());
            let queued = channel
                .queued()
                .map(|(bytes, queued)| {
                    fds.extend(queued.iter().map(AsFd::as_fd));
                    (bytes.to_vec(), queued.iter().map(AsRawFd::as_raw_fd).collect())
                })
                .collect();
            channels.push(HandedChannel {
                worker: id.0,
                fd: channel.stream().as_raw_fd(),
                unread: channel.unread().to_vec(),
                queued,
            });
        }
        let held = self
            .listeners
            .held()
            .into_iter()
            .map(|view| {
                fds.push(view.socket);
                HandedSocket {
                    requested: view.requested.clone(),
                    actual: view.actual.clone(),
                    fd: view.socket.as_raw_fd(),
                }
            })
            .collect();
        let files = self
            .listeners
            .files()
            .into_iter()
            .map(|view| {
                fds.push(view.dir);
                HandedFile {
                    dir_fd: view.dir.as_raw_fd(),
                    name: view.name.as_bytes().to_vec(),
                    dev: view.dev,
                    ino: view.ino,
                    path: view.path.as_os_str().as_bytes().to_vec(),
                }
            })
            .collect();
        let handover = HandoverFile {
            pid: std::process::id(),
            program: program.path.display().to_string(),
            machine,
            channels,
            listeners: HandedListeners { held, files, bound: self.listeners.bound() },
            signals: drained.iter().copied().map(Into::into).collect(),
        };
        let plan = ExecPlan { exe: exe.as_fd(), program, handover, fds };
        let error = crate::upgrade::exec(plan);
        // Still here: the exec failed, and the master goes on as it was.
        if let Err(errno) = nix::sys::signal::pthread_sigmask(
            nix::sys::signal::SigmaskHow::SIG_SETMASK,
            Some(&mask),
            None,
        ) {
            log::error!(target: "srv", "cannot unblock signals after a failed exec: {errno}");
        }
        failed.extend(drained.into_iter().map(|signal| (Event::Signal(signal), None)));
        failed.push_back((Event::ExecFailed { error: error.to_string() }, None));
        (failed, chld)
    }

    /// Takes over what the previous master handed over (see the `upgrade`
    /// module): its workers, their channels, its listening sockets; returns
    /// the machine built from its half, with its first actions carried
    /// out and the signals it had not handled yet handled.
    pub(super) fn adopt(&mut self, adopted: Adopted, options: Options) -> Result<Machine, Error> {
        let Adopted { program, machine, channels, held, files, bound, signals } = adopted;
        let policy = self.listeners_policy();
        self.listeners = Listeners::restore(policy, held, files, bound);
        let mut channels: HashMap<u32, Channel> = channels.into_iter().collect();
        for handed in &machine.workers {
            let worker = WorkerId(handed.id);
            let pid = Pid::from_raw(handed.pid as i32);
            let channel = channels.remove(&handed.id);
            if let Some(channel) = &channel {
                let interest = if channel.has_outgoing() {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                let fd = channel.stream().as_raw_fd();
                self.poll
                    .registry()
                    .register(&mut SourceFd(&fd), token(worker), interest)
                    .map_err(io_error("cannot watch an adopted channel"))?;
                // Whatever arrived during the exec is read in the first turn.
                self.unread.push(worker);
            }
            let wants_write = channel.as_ref().is_some_and(Channel::has_outgoing);
            self.by_pid.insert(pid, worker);
            self.children.insert(worker, Child { pid, channel, wants_write, statm: None });
        }
        log::info!(
            target: "srv",
            "master {} upgraded in place: now runs {program}, with {} workers and {} listening sockets adopted",
            std::process::id(),
            self.children.len(),
            self.listeners.held().len()
        );
        let (mut machine, actions) = Machine::adopt(options, Instant::now(), machine);
        let signals = signals.into_iter().map(|signal| (Event::Signal(signal), None)).collect();
        self.carry_out(&mut machine, actions, signals);
        for worker in std::mem::take(&mut self.unread) {
            self.flush(worker);
            self.unread.push(worker);
        }
        Ok(machine)
    }

    fn listeners_policy(&self) -> Policy {
        listen_policy(&self.options, self.credentials)
    }
}
