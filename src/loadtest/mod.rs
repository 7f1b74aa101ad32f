//! The load generator's parts, shared by `auralis-loadtest` and the end-to-end reliability tests
//! (`tests/common` includes this folder by path, so both measure with the same client).
//!
//! | module | what it does |
//! |---|---|
//! | [`client`] | one WebSocket listener: start, read, seq gaps, lateness, statuses, resume on drain |
//! | [`http`] | one listener of a plain HTTP stream (streamd's `/stream/...` or an Icecast mount) |
//! | [`procstat`] | CPU, RSS, threads and fds of a process from `/proc`; children of a launcher by role |
//! | [`stats`] | percentiles and least-squares slopes |

pub mod client;
pub mod http;
pub mod procstat;
pub mod stats;
