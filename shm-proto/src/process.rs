//! Process identity: pid plus start time (from `/proc/<pid>/stat`), so a reused pid is never
//! mistaken for the process that registered.
