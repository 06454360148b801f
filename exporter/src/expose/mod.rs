//! Ways the snapshot leaves the process.

pub mod prometheus;
