//! A worker's resident memory, for `worker.max_rss`: the shell's half of a
//! memory sample (`Action::SampleRss`, answered with `Event::Rss`).
//!
//! # Why `statm`
//!
//! `/proc/<pid>/statm` prints the kernel's counters of the process's
//! resident pages (anonymous, file-backed and shared memory: what `ps`
//! calls RSS, the figure PM2's `max_memory_restart` uses too). Reading it
//! takes no lock that the worker can hold and walks nothing: it is a few
//! numbers, however large the worker. `smaps_rollup` would give the
//! proportional set size, but it walks every mapping under the worker's
//! `mmap` lock: its cost grows with the worker, and a worker that keeps
//! that lock busy (mapping and unmapping in a loop) would slow the master's
//! loop. The counters are approximate by a few pages per CPU, which is
//! nothing next to a limit in MiB.
//!
//! # Cheap
//!
//! The file is opened once per worker, at its first sample, and each
//! sample is then one `pread` at offset 0 (which makes procfs print the
//! numbers afresh) into a buffer on the stack: no allocation, one system
//! call. The descriptor belongs to the shell's record of the worker, which
//! goes when the worker is reaped, so a sample never reads a process that
//! merely reuses the pid.

use std::fs::File;
use std::io::{self, Write as _};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::FileExt as _;

use nix::unistd::Pid;

/// Opens `/proc/<pid>/statm` (close-on-exec, as std opens every file).
///
/// # Errors
///
/// The process is gone, or procfs is not mounted.
pub(crate) fn open(pid: Pid) -> io::Result<File> {
    // "/proc/" + at most 10 digits + "/statm": built on the stack.
    let mut path = [0u8; 32];
    let len = {
        let mut rest = &mut path[..];
        write!(rest, "/proc/{pid}/statm")?;
        32 - rest.len()
    };
    File::open(std::ffi::OsStr::from_bytes(&path[..len]))
}

/// The resident memory, in bytes, that the `statm` file `file` says now,
/// with pages of `page_size` bytes.
///
/// # Errors
///
/// The read fails, or what it read is not `statm`'s numbers.
pub(crate) fn resident_bytes(file: &File, page_size: u64) -> io::Result<u64> {
    // Seven numbers of at most 20 digits and their separators.
    let mut buf = [0u8; 192];
    let len = file.read_at(&mut buf, 0)?;
    let pages = parse_resident_pages(&buf[..len]).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, "statm: no resident page count")
    })?;
    Ok(pages.saturating_mul(page_size))
}

/// The second number of a `statm` line (`size resident shared text lib
/// data dt`): the resident pages.
fn parse_resident_pages(statm: &[u8]) -> Option<u64> {
    let field = statm.split(|byte| byte.is_ascii_whitespace()).filter(|f| !f.is_empty()).nth(1)?;
    std::str::from_utf8(field).ok()?.parse().ok()
}

/// The size of a memory page, for [`resident_bytes`].
pub(crate) fn page_size() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE) {
        Ok(Some(size)) if size > 0 => u64::try_from(size).unwrap_or(4096),
        // Every Linux has it; 4 KiB is the common size where it would not.
        _ => 4096,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resident_pages_are_the_second_number() {
        assert_eq!(parse_resident_pages(b"5823 1234 456 120 0 2050 0\n"), Some(1234));
        assert_eq!(parse_resident_pages(b"0 0 0 0 0 0 0\n"), Some(0));
        assert_eq!(parse_resident_pages(b"5823\n"), None);
        assert_eq!(parse_resident_pages(b"5823 x 1\n"), None);
        assert_eq!(parse_resident_pages(b""), None);
    }

    #[test]
    fn each_read_of_an_open_statm_is_fresh() {
        let pid = Pid::this();
        let file = open(pid).unwrap();
        let page_size = page_size();
        let before = resident_bytes(&file, page_size).unwrap();
        assert!(before > 0);
        // 64 MiB touched: resident now, and seen through the same
        // descriptor without reopening it.
        let grown = vec![1u8; 64 << 20];
        let after = resident_bytes(&file, page_size).unwrap();
        assert!(after >= before + (60 << 20), "{before} -> {after}");
        drop(grown);
    }

    #[test]
    fn a_process_that_is_gone_cannot_be_opened() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = Pid::from_raw(child.id() as i32);
        child.wait().unwrap();
        assert!(open(pid).is_err());
    }
}
