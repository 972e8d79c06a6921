//! Telling systemd what the master is doing (`sd_notify`), when
//! `NOTIFY_SOCKET` is set.
//!
//! [`notifications`] is pure: from the previous and the current
//! [`Status`] it decides what to send: `READY=1` once every worker first
//! started, `RELOADING=1` (with `MONOTONIC_USEC`, as `Type=notify-reload`
//! requires) when a recycle begins and `READY=1` when it ends, `STOPPING=1`
//! at shutdown, and `STATUS=` whenever the human line changes.
//! [`Notifier`] sends them, and `WATCHDOG=1` at half of `WATCHDOG_USEC`;
//! a `WATCHDOG_USEC` below [`MIN_WATCHDOG`] (0 included) is ignored with a
//! warning, since pinging that often would keep the master busy.
//!
//! # A receiver that never reads
//!
//! The send happens inside the master's loop, so it must never block: the
//! datagram goes out with `MSG_DONTWAIT` semantics (a non-blocking socket),
//! and when the receiver's queue is full (`EAGAIN`) the notification is
//! dropped, with one warning for the master's life. A service manager that
//! reads late misses notifications; one that never reads cannot hang the
//! master. `NOTIFY_SOCKET` may name a path or an abstract socket (`@name`).

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use crate::machine::{ServicePhase, Status};

/// One state change for the service manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Notification {
    Ready,
    Reloading,
    Stopping,
    Status(String),
}

/// What was last sent: the phase and the `STATUS=` line (`None`: not sent
/// by this process yet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Sent {
    pub(crate) phase: Option<ServicePhase>,
    pub(crate) line: Option<String>,
}

/// What to send when the status goes from what was `sent` to `after`.
pub(crate) fn notifications(sent: &Sent, after: &Status) -> Vec<Notification> {
    let mut out = Vec::new();
    if sent.phase != Some(after.phase) {
        match after.phase {
            ServicePhase::Starting => {}
            ServicePhase::Ready => out.push(Notification::Ready),
            ServicePhase::Reloading => out.push(Notification::Reloading),
            ServicePhase::Stopping => out.push(Notification::Stopping),
        }
    }
    let line = after.to_string();
    if sent.line.as_deref() != Some(line.as_str()) {
        out.push(Notification::Status(line));
    }
    out
}

/// The shortest `WATCHDOG_USEC` honoured: the master pings at half of it.
/// Below it, the loop would spend its time pinging (at 0, a busy loop), so
/// the watchdog is ignored, with a warning.
pub(crate) const MIN_WATCHDOG: Duration = Duration::from_millis(100);

/// How often to ping the watchdog for `WATCHDOG_USEC` (`usec`), or why not.
fn ping_interval(usec: Duration) -> Result<Duration, String> {
    if usec < MIN_WATCHDOG {
        return Err(format!(
            "ignoring WATCHDOG_USEC={}: below {} ms, pinging would keep the master busy",
            usec.as_micros(),
            MIN_WATCHDOG.as_millis()
        ));
    }
    Ok(usec / 2)
}

/// Where notifications go: an unbound, non-blocking datagram socket and
/// the address of `NOTIFY_SOCKET`.
#[derive(Debug)]
struct Target {
    socket: UnixDatagram,
    addr: SocketAddr,
}

impl Target {
    /// The target `NOTIFY_SOCKET` names: a path, or `@name` for an abstract
    /// socket.
    fn new(value: &OsStr) -> io::Result<Target> {
        let bytes = value.as_bytes();
        let addr = match bytes.strip_prefix(b"@") {
            Some(name) => SocketAddr::from_abstract_name(name)?,
            None if bytes.starts_with(b"/") => SocketAddr::from_pathname(value)?,
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "neither a path nor an abstract socket (@name)",
                ));
            }
        };
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        Ok(Target { socket, addr })
    }
}

/// Sends notifications to `NOTIFY_SOCKET`, if set.
#[derive(Debug)]
pub(crate) struct Notifier {
    target: Option<Target>,
    last: Sent,
    /// Half of `WATCHDOG_USEC`, and when to ping next.
    watchdog: Option<(Duration, Instant)>,
    /// A failure was logged already; later ones go to debug.
    complained: bool,
    /// A full queue was logged already.
    dropped: bool,
}

impl Notifier {
    pub(crate) fn from_env(now: Instant) -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|value| {
            Target::new(&value)
                .map_err(|error| {
                    log::warn!(target: "srv", "cannot notify the service manager at NOTIFY_SOCKET={value:?}: {error}");
                })
                .ok()
        });
        let watchdog =
            sd_notify::watchdog_enabled().filter(|_| target.is_some()).and_then(|usec| {
                match ping_interval(usec) {
                    Ok(interval) => Some((interval, now)),
                    Err(why) => {
                        log::warn!(target: "srv", "{why}");
                        None
                    }
                }
            });
        Notifier { target, last: Sent::default(), watchdog, complained: false, dropped: false }
    }

    /// When the watchdog must next be pinged.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.watchdog.map(|(_, at)| at)
    }

    /// Takes `phase` as already sent, without sending anything: a master
    /// that an upgrade executed goes on from what its predecessor told the
    /// service manager (`RELOADING=1`), rather than saying it again. Its
    /// `STATUS=` line is sent at the next update.
    pub(crate) fn resume(&mut self, phase: ServicePhase) {
        self.last = Sent { phase: Some(phase), line: None };
    }

    /// Sends what changed since the last call, and the watchdog ping if due.
    pub(crate) fn update(&mut self, now: Instant, status: Status) {
        if self.target.is_none() {
            return;
        }
        let changes = notifications(&self.last, &status);
        self.last = Sent { phase: Some(status.phase), line: Some(status.to_string()) };
        let mut states: Vec<NotifyState<'_>> = Vec::new();
        for change in &changes {
            match change {
                Notification::Ready => states.push(NotifyState::Ready),
                Notification::Reloading => {
                    states.push(NotifyState::Reloading);
                    if let Ok(usec) = NotifyState::monotonic_usec_now() {
                        states.push(usec);
                    }
                }
                Notification::Stopping => states.push(NotifyState::Stopping),
                Notification::Status(line) => states.push(NotifyState::Status(line)),
            }
        }
        if let Some((half, at)) = self.watchdog
            && at <= now
        {
            states.push(NotifyState::Watchdog);
            // A WATCHDOG_USEC too large to add to the clock needs no more pings.
            self.watchdog = now.checked_add(half).map(|next| (half, next));
        }
        if states.is_empty() {
            return;
        }
        let message: String = states.iter().map(|state| format!("{state}\n")).collect();
        self.send(message.as_bytes());
    }

    /// Sends one datagram without blocking; see the module docs.
    fn send(&mut self, message: &[u8]) {
        let Some(target) = &self.target else { return };
        match target.socket.send_to_addr(message, &target.addr) {
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                if self.dropped {
                    log::debug!(target: "srv", "notification dropped: the service manager's queue is full");
                } else {
                    log::warn!(
                        target: "srv",
                        "the service manager does not read its notify socket: dropping notifications until it does"
                    );
                    self.dropped = true;
                }
            }
            Err(error) => {
                if self.complained {
                    log::debug!(target: "srv", "cannot notify the service manager: {error}");
                } else {
                    log::warn!(target: "srv", "cannot notify the service manager: {error}");
                    self.complained = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(phase: ServicePhase, started: usize) -> Status {
        Status {
            phase,
            started,
            target: 4,
            workers: started,
            failure: None,
            upgrading: None,
            upgrade_failure: None,
        }
    }

    fn sent(before: Option<Status>, after: Status) -> Vec<String> {
        let sent = Sent {
            phase: before.as_ref().map(|status| status.phase),
            line: before.as_ref().map(ToString::to_string),
        };
        notifications(&sent, &after)
            .into_iter()
            .map(|notification| match notification {
                Notification::Ready => "READY=1".to_owned(),
                Notification::Reloading => "RELOADING=1".to_owned(),
                Notification::Stopping => "STOPPING=1".to_owned(),
                Notification::Status(line) => format!("STATUS={line}"),
            })
            .collect()
    }

    #[test]
    fn ready_once_all_started_then_only_status_changes() {
        use ServicePhase::*;
        assert_eq!(sent(None, status(Starting, 0)), ["STATUS=starting: 0/4 workers ready"]);
        assert_eq!(
            sent(Some(status(Starting, 3)), status(Ready, 4)),
            ["READY=1", "STATUS=4/4 workers ready"]
        );
        assert_eq!(sent(Some(status(Ready, 4)), status(Ready, 4)), Vec::<String>::new());
        assert_eq!(sent(Some(status(Ready, 4)), status(Ready, 3)), ["STATUS=3/4 workers ready"]);
    }

    #[test]
    fn a_watchdog_below_the_floor_is_ignored() {
        assert_eq!(ping_interval(Duration::from_secs(30)), Ok(Duration::from_secs(15)));
        assert_eq!(ping_interval(MIN_WATCHDOG), Ok(MIN_WATCHDOG / 2));
        for usec in [0, 1, 99_999] {
            let error = ping_interval(Duration::from_micros(usec)).unwrap_err();
            assert!(error.starts_with(&format!("ignoring WATCHDOG_USEC={usec}: ")), "{error}");
        }
    }

    #[test]
    fn notify_socket_is_a_path_or_an_abstract_name() {
        let path = Target::new(OsStr::new("/run/systemd/notify")).unwrap();
        assert_eq!(path.addr.as_pathname(), Some(std::path::Path::new("/run/systemd/notify")));
        let abstract_name = Target::new(OsStr::new("@srv/notify")).unwrap();
        assert_eq!(abstract_name.addr.as_abstract_name(), Some(&b"srv/notify"[..]));
        for unsupported in ["vsock:2:1234", "", "relative/path"] {
            assert!(Target::new(OsStr::new(unsupported)).is_err(), "{unsupported}");
        }
    }

    #[test]
    fn a_resumed_master_does_not_say_reloading_again_but_sends_its_status() {
        let mut sent = Sent { phase: Some(ServicePhase::Reloading), line: None };
        let mut status = status(ServicePhase::Reloading, 2);
        status.upgrading = Some(crate::machine::Upgrading::Recycling);
        let out = notifications(&sent, &status);
        assert_eq!(out, [Notification::Status("upgrading: recycling: 2/4 workers ready".into())]);
        sent.line = Some(status.to_string());
        status.phase = ServicePhase::Ready;
        status.upgrading = None;
        let out = notifications(&sent, &status);
        assert_eq!(out, [Notification::Ready, Notification::Status("2/4 workers ready".into())]);
    }

    #[test]
    fn reload_and_stop() {
        use ServicePhase::*;
        assert_eq!(
            sent(Some(status(Ready, 4)), status(Reloading, 4)),
            ["RELOADING=1", "STATUS=recycling: 4/4 workers ready"]
        );
        assert_eq!(
            sent(Some(status(Reloading, 4)), status(Ready, 4)),
            ["READY=1", "STATUS=4/4 workers ready"]
        );
        assert_eq!(
            sent(Some(status(Ready, 4)), status(Stopping, 0)),
            ["STOPPING=1", "STATUS=stopping: 0 workers left"]
        );
    }
}
