//! Unit tests of the machine, data-driven (CONTRIBUTING.md, "Where tests go").
//!
//! Each test is a script of timed events and the transcript of what the
//! machine answers. [`Shell`](shell::Shell), a fake of the mio shell, is the only code that
//! touches the `Machine` API: it starts the machine at `t0`, feeds each script
//! line at `t0 + ms`, writes every action as `ms action` (its `Display`; log
//! lines only in [`check_logs`](shell::check_logs), debug ones only in
//! [`check_debug_logs`](shell::check_debug_logs)), and ends the transcript with the machine's
//! next deadline. [`check`](shell::check) compares that transcript with the expected text
//! and prints a diff when they differ.
//!
//! Like the real shell, the fake answers every `Spawn` at once, with
//! `Spawned` and pid `1000 + id` (or `SpawnFailed` after a `spawn-fails`
//! line), and every `Probe` with `ProbeSpawned` and pid 999 (or
//! `ProbeSpawnFailed` after `probe-spawn-fails`), so scripts never spell
//! those answers out. An `Exec` happens at the end of the script line, as
//! the real shell execs at the end of a turn: the machine's
//! [`Handover`](crate::machine::Handover) goes through serde and
//! `Machine::adopt` replaces the machine, with the same processes (the
//! same children of the same pid).
//!
//! # Script lines
//!
//! `MS COMMAND ARGS`, with `MS` the milliseconds since `t0` (never
//! decreasing) and `IDS` one or more worker ids:
//!
//! | command | event(s) |
//! |---|---|
//! | `tick` | `Tick` |
//! | `SIGINT` `SIGTERM` `SIGHUP` `SIGTTIN` `SIGTTOU` `SIGUSR2` | `Signal` |
//! | `hello IDS [version=N]` | `Hello`, with [`PROTOCOL_VERSION`] unless given |
//! | `online IDS` | `Online` |
//! | `alive IDS` | `Alive` |
//! | `rss IDS mb=N` | none: from now on, memory samples of these workers say `N` MiB (10 unless set) |
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
//! | `probe-exited [code=N or signal=N] [REPORT] [protocol=N] [handover=N] [output=1]` | `ProbeExited`: exit code 0 unless given; `REPORT` is `ready` (the default, with the protocol versions from [`MIN_PROTOCOL_VERSION`] to [`PROTOCOL_VERSION`] and [`HANDOVER_VERSION`] unless given), `missing`, `garbage` or `refused`; `output=1` adds some output |
//! | `probe-spawn-fails` | none: the next `Probe` reports `ProbeSpawnFailed` |
//! | `exec-fails` | none: the next exec reports `ExecFailed` |
//! | `new-count N` | none: the program the next exec runs has `worker.count = N` |
//! | `new-watchdog MS` | none: the program the next exec runs has `worker.watchdog = MS` (0: none) |
//! | `deadline` | none: writes `MS next deadline D` into the transcript |
//! | `status` | none: writes `MS status S` (the `STATUS=` line) into the transcript |
//! | `state` | none: writes `MS state phase=P started=N target=N workers=N ready=B recycling=B failure=F` into the transcript |
//!
//! The fake shell also checks every action against what a real shell relies
//! on, and panics with the recent history when one breaks it: one `Spawn` per
//! id; no `Send`, `Listen` or `Kill` for a worker that was never spawned or
//! has exited; no `Disconnect` after a `Kill`, no second `Kill`; nothing
//! after `Exit`; and after a `Tick`, no deadline at or before now (the real
//! shell would spin on a zero poll timeout). For the probe: one at a time,
//! `KillProbe` once and only while it runs, and neither `Exec` nor `Exit`
//! while it runs.
//!
//! # Files
//!
//! `shell.rs` holds the fake shell and the `check` helpers; the tests are
//! grouped by what they drive: `starting.rs`, `messages.rs` (the protocol
//! and its limits), `listen.rs` (listen requests and failures),
//! `crashes.rs` (crashes, exits on purpose, a closed channel),
//! `shutdown.rs`, `recycle.rs`, `scaling.rs`, `status.rs`, `upgrade.rs`,
//! `watchdog.rs`,
//! and `random.rs` (random event sequences against the shell's invariants).
//!
//! [`PROTOCOL_VERSION`]: srv_proto::PROTOCOL_VERSION
//! [`HANDOVER_VERSION`]: crate::machine::HANDOVER_VERSION

mod crashes;
mod listen;
mod messages;
mod planned;
mod random;
mod recycle;
mod scaling;
mod shell;
mod shutdown;
mod starting;
mod status;
mod upgrade;
mod watchdog;
