//! The probe of an upgrade: the report it writes (in the new program) and
//! reads (in the master), and the pipes the master reads it from, each
//! with a bound on what is kept. [`ProbeRequest::from_env`], which takes
//! the report's descriptor, is in `adopt.rs`.

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;

use nix::errno::Errno;
use serde::{Deserialize, Serialize};
use srv_proto::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};

use super::MAX_REPORT_LEN;
use crate::machine::{HANDOVER_VERSION, ProbeReport};

/// What a probe writes on its report descriptor: one JSON object. Its own
/// format version (`srv_probe`) lets a later srv change it; fields unknown
/// here are ignored, so a later srv may add some.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProbeReportWire {
    /// The version of this report's format: 1.
    pub(crate) srv_probe: u32,
    /// The srv version of the program.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) srv: Option<String>,
    /// The oldest and newest worker protocol versions it accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) protocol: Option<[u32; 2]>,
    /// The oldest and newest handover formats it reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) handover: Option<[u32; 2]>,
    /// Why it refuses to start, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) refused: Option<String>,
}

/// The report a probe of this program writes: ready, or refused for `why`.
pub(crate) fn probe_report(refused: Option<String>) -> ProbeReportWire {
    match refused {
        Some(why) => ProbeReportWire {
            srv_probe: 1,
            srv: Some(env!("CARGO_PKG_VERSION").to_owned()),
            protocol: None,
            handover: None,
            refused: Some(why),
        },
        None => ProbeReportWire {
            srv_probe: 1,
            srv: Some(env!("CARGO_PKG_VERSION").to_owned()),
            // The versions whose `Hello` the machine accepts.
            protocol: Some([MIN_PROTOCOL_VERSION, PROTOCOL_VERSION]),
            handover: Some([HANDOVER_VERSION, HANDOVER_VERSION]),
            refused: None,
        },
    }
}

/// What the master reads from the probe's report descriptor: `bytes`, and
/// whether more than [`MAX_REPORT_LEN`] came.
pub(crate) fn parse_report(bytes: &[u8], overflowed: bool) -> ProbeReport {
    if overflowed {
        return ProbeReport::Garbage(format!("more than {MAX_REPORT_LEN} bytes"));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return ProbeReport::Missing;
    }
    let report: ProbeReportWire = match serde_json::from_slice(bytes) {
        Ok(report) => report,
        Err(error) => return ProbeReport::Garbage(error.to_string()),
    };
    if report.srv_probe != 1 {
        return ProbeReport::Garbage(format!(
            "report format {}, and this master reads 1",
            report.srv_probe
        ));
    }
    let srv = report.srv.unwrap_or_else(|| "of unknown version".to_owned());
    match (report.refused, report.protocol, report.handover) {
        (Some(why), _, _) => ProbeReport::Refused(why),
        (None, Some([lo, hi]), Some([hlo, hhi])) => {
            ProbeReport::Ready { srv, protocol: (lo, hi), handover: (hlo, hhi) }
        }
        (None, _, _) => {
            ProbeReport::Garbage("neither a refusal nor the versions it speaks".to_owned())
        }
    }
}

/// This process runs as the probe of an upgrade: where it reports.
#[derive(Debug)]
pub(crate) struct ProbeRequest {
    pub(super) report: File,
}

impl ProbeRequest {
    /// Writes the report: ready, or refused for `why`.
    pub(crate) fn answer(mut self, refused: Option<String>) {
        let report = probe_report(refused);
        let mut bytes = serde_json::to_vec(&report).expect("a report encodes");
        bytes.push(b'\n');
        if let Err(error) = self.report.write_all(&bytes) {
            log::error!(target: "srv", "cannot write the probe's report: {error}");
        }
    }
}

/// One pipe the master reads from the probe, with a bound on what it keeps.
#[derive(Debug)]
pub(crate) struct ProbePipe {
    pub(crate) fd: OwnedFd,
    bytes: Vec<u8>,
    /// Keep the first `limit` bytes (`false`: the last ones).
    keep_head: bool,
    limit: usize,
    overflowed: bool,
    closed: bool,
}

impl ProbePipe {
    pub(crate) fn new(fd: OwnedFd, keep_head: bool, limit: usize) -> ProbePipe {
        ProbePipe { fd, bytes: Vec::new(), keep_head, limit, overflowed: false, closed: false }
    }

    /// Reads what is there, at most `reads` reads of 4 KiB, keeping within
    /// the limit. Returns whether more may be left to read.
    pub(crate) fn read(&mut self, reads: usize) -> bool {
        let mut buf = [0u8; 4096];
        for _ in 0..reads {
            if self.closed {
                return false;
            }
            match nix::unistd::read(&self.fd, &mut buf) {
                Ok(0) => self.closed = true,
                Ok(n) => self.keep(&buf[..n]),
                Err(Errno::EINTR) => {}
                Err(_) => return false,
            }
        }
        !self.closed
    }

    fn keep(&mut self, bytes: &[u8]) {
        if self.keep_head {
            let room = self.limit.saturating_sub(self.bytes.len());
            self.overflowed |= bytes.len() > room;
            self.bytes.extend_from_slice(&bytes[..bytes.len().min(room)]);
        } else {
            self.bytes.extend_from_slice(bytes);
            if self.bytes.len() > self.limit {
                let excess = self.bytes.len() - self.limit;
                self.bytes.drain(..excess);
                self.overflowed = true;
            }
        }
    }

    /// The report this pipe carried.
    pub(crate) fn report(&self) -> ProbeReport {
        parse_report(&self.bytes, self.overflowed)
    }

    /// The output this pipe carried, as text, its end trimmed.
    pub(crate) fn output(&self) -> String {
        let text = String::from_utf8_lossy(&self.bytes);
        let text = text.trim_end();
        if self.overflowed { format!("...{text}") } else { text.to_owned() }
    }
}

#[cfg(test)]
mod tests {
    use nix::fcntl::OFlag;

    use super::*;

    #[test]
    fn a_report_is_parsed_and_anything_else_is_garbage() {
        let ready = serde_json::to_vec(&probe_report(None)).unwrap();
        assert!(matches!(
            parse_report(&ready, false),
            ProbeReport::Ready { protocol, handover, .. }
                if protocol == (MIN_PROTOCOL_VERSION, PROTOCOL_VERSION)
                    && handover == (HANDOVER_VERSION, HANDOVER_VERSION)
        ));
        let refused = serde_json::to_vec(&probe_report(Some("bad".to_owned()))).unwrap();
        assert_eq!(parse_report(&refused, false), ProbeReport::Refused("bad".to_owned()));
        assert_eq!(parse_report(b"", false), ProbeReport::Missing);
        assert_eq!(parse_report(b" \n", false), ProbeReport::Missing);
        // A later srv may add fields.
        let later = br#"{"srv_probe":1,"srv":"2.0","protocol":[1,3],"handover":[1,2],"new":true}"#;
        assert!(matches!(parse_report(later, false), ProbeReport::Ready { protocol: (1, 3), .. }));
        for garbage in [
            &b"hello"[..],
            br#"{"srv_probe":2,"protocol":[1,1],"handover":[1,1]}"#,
            br#"{"srv_probe":1}"#,
            br#"{"srv_probe":1,"protocol":[1,1]}"#,
        ] {
            assert!(
                matches!(parse_report(garbage, false), ProbeReport::Garbage(_)),
                "{}",
                String::from_utf8_lossy(garbage)
            );
        }
        assert!(
            matches!(parse_report(&ready, true), ProbeReport::Garbage(why) if why.contains("4096"))
        );
    }

    #[test]
    fn a_pipe_keeps_its_head_or_its_tail_within_the_limit() {
        let (read_end, write_end) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        let mut output = ProbePipe::new(read_end, false, 8);
        let mut writer = File::from(write_end);
        writer.write_all(b"0123456789abcdef").unwrap();
        drop(writer);
        assert!(!output.read(16));
        assert_eq!(output.output(), "...89abcdef");
        let (read_end, write_end) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        let mut report = ProbePipe::new(read_end, true, 8);
        File::from(write_end).write_all(b"0123456789").unwrap();
        report.read(16);
        assert_eq!(report.bytes, b"01234567");
        assert!(matches!(report.report(), ProbeReport::Garbage(_)));
    }
}
