//! What the end-to-end tests read from `/proc` about a master: its children
//! and their states (zombies), its open descriptors, its resident memory and
//! the CPU time it used; and the wall clock in the unit of the master's log
//! timestamps.
//!
//! Every reader returns `None` or an empty list for a process that is gone,
//! so a test decides what a missing process means.

use std::time::{SystemTime, UNIX_EPOCH};

use nix::unistd::Pid;

/// The field after `comm` in `/proc/<pid>/stat`: `R`, `S`, `Z`, ...
pub(crate) fn state(pid: Pid) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

/// The fields of `/proc/<pid>/stat` after `(comm)`, which may contain
/// spaces and parentheses.
fn stat_fields(pid: Pid) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// The children of `pid`, zombies included (`/proc/<pid>/task/*/children`).
pub(crate) fn children(pid: Pid) -> Vec<Pid> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    let mut children = Vec::new();
    for task in tasks.filter_map(Result::ok) {
        let Ok(list) = std::fs::read_to_string(task.path().join("children")) else { continue };
        children.extend(list.split_whitespace().filter_map(|n| n.parse().ok()).map(Pid::from_raw));
    }
    children.sort();
    children.dedup();
    children
}

/// The children of `pid` that are zombies: exited, not reaped.
pub(crate) fn zombie_children(pid: Pid) -> Vec<Pid> {
    children(pid).into_iter().filter(|&child| state(child) == Some('Z')).collect()
}

/// `pid`'s descendants, breadth first (at most 10,000: a test's processes
/// are far fewer).
pub(crate) fn descendants(pid: Pid) -> Vec<Pid> {
    let mut found = children(pid);
    let mut next = 0;
    while next < found.len() && found.len() < 10_000 {
        let grandchildren = children(found[next]);
        found.extend(grandchildren);
        next += 1;
    }
    found
}

/// The pid of `pid` in the innermost pid namespace it belongs to (the last
/// field of `NSpid:` in `/proc/<pid>/status`).
pub(crate) fn namespace_pid(pid: Pid) -> Option<i32> {
    status_field(pid, "NSpid:")?.split_whitespace().last()?.parse().ok()
}

/// The number of open descriptors of `pid` (`/proc/<pid>/fd`).
pub(crate) fn fd_count(pid: Pid) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// The resident set of `pid` in KiB (`VmRSS:` in `/proc/<pid>/status`).
pub(crate) fn rss_kib(pid: Pid) -> Option<u64> {
    status_field(pid, "VmRSS:")?.split_whitespace().next()?.parse().ok()
}

/// User plus system CPU time of `pid` so far (`utime` + `stime`, fields 14
/// and 15 of proc(5), in clock ticks of `CLK_TCK`). A zombie keeps its
/// times, so this works until the process is reaped.
pub(crate) fn cpu_time(pid: Pid) -> Option<std::time::Duration> {
    // After `(comm)`: state is field 0, utime 11 and stime 12.
    let fields = stat_fields(pid)?;
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|ticks| u64::try_from(ticks).ok())
        .filter(|&ticks| ticks > 0)
        .unwrap_or(100);
    Some(std::time::Duration::from_millis(ticks * 1000 / per_second))
}

/// The peak resident set of `pid` so far in KiB (`VmHWM:` in
/// `/proc/<pid>/status`).
pub(crate) fn peak_rss_kib(pid: Pid) -> Option<u64> {
    status_field(pid, "VmHWM:")?.split_whitespace().next()?.parse().ok()
}

fn status_field(pid: Pid, name: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| line.strip_prefix(name)).map(str::to_owned)
}

/// The wall clock now in the unit of [`crate::harness::log_millis`]:
/// milliseconds since midnight UTC, truncated like the log's timestamps.
pub(crate) fn wall_millis_now() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis() % (24 * 60 * 60 * 1000)).expect("less than a day")
}

/// Every TCP socket on local port `port` as `state inode` pairs from
/// `/proc/net/tcp` and `tcp6` (state in hex, `0A` listening, `01`
/// established; inode 0 for a connection no process has accepted yet), for
/// the message of a failing test.
pub(crate) fn tcp_sockets_on_port(port: u16) -> Vec<String> {
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let local_port =
                local.rsplit(':').next().and_then(|hex| u16::from_str_radix(hex, 16).ok());
            if local_port == Some(port) {
                found.push(format!("{state} {inode}"));
            }
        }
    }
    found
}

/// How many of the descriptors of the processes `pids` are sockets
/// (`/proc/<pid>/fd` links `socket:[inode]`). A server holds one per
/// connection it accepted, beside the few it holds from its start; this
/// reads no global table (`/proc/net/tcp` holds every TIME_WAIT entry of
/// the tests that ran before, tens of thousands, and is slow to read).
pub(crate) fn socket_fds(pids: &[Pid]) -> usize {
    let mut count = 0;
    for pid in pids {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { continue };
        for fd in fds.filter_map(Result::ok) {
            let link = std::fs::read_link(fd.path()).unwrap_or_default();
            count += usize::from(link.to_string_lossy().starts_with("socket:"));
        }
    }
    count
}
