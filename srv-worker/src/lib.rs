//! srv-worker
