//! Integration and property tests of `srv-proto`: real kernel objects
//! (socketpairs, pipes, child processes) and proptest properties of the
//! framing.
//!
//! One test binary for the crate (CONTRIBUTING.md, "Where tests go"), `it`, in a folder of its
//! own: Cargo makes a separate binary of every `tests/*.rs`, but of a folder
//! only its `main.rs`. Each other file of this folder is a module of it:
//!
//! - `fd_passing`: descriptors travel with their frame, arrive
//!   close-on-exec, and every mismatch is an error that leaks nothing.
//! - `channel`: non-blocking queueing and flushing, end of file.
//! - `inherit`: the env contract, each case in a child process.
//! - `framing`: encoder edge cases found while writing the properties.
//! - `props`: round trips, arbitrary chunking, garbage, oversized headers.
//! - `versions`: peers of different protocol versions understand each other.
//! - `support`: helpers shared by the modules above.

mod channel;
mod fd_passing;
mod framing;
mod inherit;
mod props;
mod support;
mod versions;
