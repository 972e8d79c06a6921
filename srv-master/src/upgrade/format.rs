//! The handover format: what a master that upgrades in place writes for
//! the master it executes ([`HandoverFile`]), and how it is framed: the
//! bytes `srv-handover`, the format's version ([`HANDOVER_VERSION`]) as a
//! little-endian `u32`, then the postcard payload. A change to any type
//! here, or to the machine's [`Handover`], is a new version.

use std::ffi::OsString;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use srv_proto::ListenAddr;

use crate::machine::{HANDOVER_VERSION, Handover, Signal};

/// The first bytes of a handover.
const MAGIC: &[u8; 12] = b"srv-handover";

/// The whole handover: the machine's half and the shell's.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HandoverFile {
    /// The pid of the master, which the exec keeps.
    pub(crate) pid: u32,
    /// The program executed, for log lines.
    pub(crate) program: String,
    pub(crate) machine: Handover,
    pub(crate) channels: Vec<HandedChannel>,
    pub(crate) listeners: HandedListeners,
    /// Signals received and not yet handled when the exec began.
    pub(crate) signals: Vec<HandedSignal>,
}

/// A worker's channel: its socket and what the old `Channel` held.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HandedChannel {
    pub(crate) worker: u32,
    pub(crate) fd: RawFd,
    /// Bytes received and not yet decoded.
    pub(crate) unread: Vec<u8>,
    /// Frames not yet written: bytes, and the descriptors to send with them.
    pub(crate) queued: Vec<(Vec<u8>, Vec<RawFd>)>,
}

/// The listening sockets and the socket files (see `listeners.rs`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HandedListeners {
    pub(crate) held: Vec<HandedSocket>,
    pub(crate) files: Vec<HandedFile>,
    pub(crate) bound: usize,
}

/// One listening socket, by the address asked for.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HandedSocket {
    pub(crate) requested: ListenAddr,
    pub(crate) actual: ListenAddr,
    pub(crate) fd: RawFd,
}

/// One socket file the master created, and how to find exactly it again.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HandedFile {
    pub(crate) dir_fd: RawFd,
    pub(crate) name: Vec<u8>,
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) path: Vec<u8>,
}

/// A signal, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum HandedSignal {
    Int,
    Term,
    Hup,
    Ttin,
    Ttou,
    Usr2,
}

impl From<Signal> for HandedSignal {
    fn from(signal: Signal) -> HandedSignal {
        match signal {
            Signal::Int => HandedSignal::Int,
            Signal::Term => HandedSignal::Term,
            Signal::Hup => HandedSignal::Hup,
            Signal::Ttin => HandedSignal::Ttin,
            Signal::Ttou => HandedSignal::Ttou,
            Signal::Usr2 => HandedSignal::Usr2,
        }
    }
}

impl From<HandedSignal> for Signal {
    fn from(signal: HandedSignal) -> Signal {
        match signal {
            HandedSignal::Int => Signal::Int,
            HandedSignal::Term => Signal::Term,
            HandedSignal::Hup => Signal::Hup,
            HandedSignal::Ttin => Signal::Ttin,
            HandedSignal::Ttou => Signal::Ttou,
            HandedSignal::Usr2 => Signal::Usr2,
        }
    }
}

impl HandoverFile {
    /// The bytes of the handover: [`MAGIC`], the version, the payload.
    pub(crate) fn encode(&self) -> io::Result<Vec<u8>> {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&HANDOVER_VERSION.to_le_bytes());
        let payload = postcard::to_stdvec(self).map_err(|error| {
            io::Error::new(io::ErrorKind::InvalidData, format!("cannot encode it: {error}"))
        })?;
        bytes.extend_from_slice(&payload);
        Ok(bytes)
    }

    /// The handover in `bytes`, or why they are not one this master reads.
    pub(crate) fn decode(bytes: &[u8]) -> Result<HandoverFile, String> {
        let rest = bytes.strip_prefix(MAGIC).ok_or("not a handover (no srv-handover header)")?;
        let (version, payload) = rest.split_first_chunk::<4>().ok_or("truncated header")?;
        let version = u32::from_le_bytes(*version);
        if version != HANDOVER_VERSION {
            return Err(format!(
                "handover format {version}, and this master reads {HANDOVER_VERSION}"
            ));
        }
        match postcard::take_from_bytes::<HandoverFile>(payload) {
            Ok((handover, [])) => Ok(handover),
            Ok((_, rest)) => Err(format!("{} bytes after the handover", rest.len())),
            Err(error) => Err(format!("it does not decode: {error}")),
        }
    }

    /// Every descriptor number the handover names, with what it is for.
    pub(super) fn descriptors(&self) -> Vec<(RawFd, String)> {
        let mut fds = Vec::new();
        for channel in &self.channels {
            fds.push((channel.fd, format!("the channel of worker {}", channel.worker)));
            for (_, queued) in &channel.queued {
                let what = || format!("a socket queued for worker {}", channel.worker);
                fds.extend(queued.iter().map(|fd| (*fd, what())));
            }
        }
        for socket in &self.listeners.held {
            fds.push((socket.fd, format!("the listening socket of {}", socket.actual)));
        }
        for file in &self.listeners.files {
            let path = PathBuf::from(OsString::from_vec(file.path.clone()));
            fds.push((file.dir_fd, format!("the directory of {path:?}")));
        }
        fds
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    fn sample() -> HandoverFile {
        HandoverFile {
            pid: 4242,
            program: "/usr/local/bin/app".to_owned(),
            machine: Handover {
                count: 2,
                target: 3,
                next_id: 9,
                ever_started: true,
                ever_ready: true,
                upgrade_age_ms: 12,
                workers: Vec::new(),
                restarts: Vec::new(),
            },
            channels: vec![HandedChannel {
                worker: 7,
                fd: 11,
                unread: vec![3, 0, 0],
                queued: vec![(vec![1, 2, 3], vec![12])],
            }],
            listeners: HandedListeners {
                held: vec![HandedSocket {
                    requested: "127.0.0.1:0".parse().unwrap(),
                    actual: "127.0.0.1:8080".parse().unwrap(),
                    fd: 13,
                }],
                files: vec![HandedFile {
                    dir_fd: 14,
                    name: b"app.sock".to_vec(),
                    dev: 1,
                    ino: 2,
                    path: b"/run/app.sock".to_vec(),
                }],
                bound: 1,
            },
            signals: vec![HandedSignal::Term],
        }
    }

    #[test]
    fn the_handover_round_trips_and_names_its_descriptors() {
        let bytes = sample().encode().unwrap();
        assert!(bytes.starts_with(b"srv-handover\x02\0\0\0"));
        let decoded = HandoverFile::decode(&bytes).unwrap();
        assert_eq!(decoded.pid, 4242);
        assert_eq!(decoded.machine, sample().machine);
        assert_eq!(decoded.channels[0].queued, vec![(vec![1, 2, 3], vec![12])]);
        assert_eq!(decoded.signals, vec![HandedSignal::Term]);
        let fds: Vec<RawFd> = decoded.descriptors().into_iter().map(|(fd, _)| fd).collect();
        assert_eq!(fds, [11, 12, 13, 14]);
    }

    #[test]
    fn a_handover_that_is_not_one_is_a_clear_error() {
        let bytes = sample().encode().unwrap();
        let mut other_version = bytes.clone();
        other_version[MAGIC.len()] = 1;
        let cases: [(&[u8], &str); 5] = [
            (b"", "not a handover"),
            (b"srv-handover\x01", "truncated header"),
            (&other_version, "handover format 1, and this master reads 2"),
            (&bytes[..bytes.len() - 3], "does not decode"),
            (&[&bytes[..], b"xx"].concat(), "2 bytes after the handover"),
        ];
        for (bytes, expected) in cases {
            let error = HandoverFile::decode(bytes).unwrap_err();
            assert!(error.contains(expected), "{error}");
        }
    }
}
