//! The header every segment starts with. See the crate docs for the creation / attach protocol.
//! (Implementation: shm-proto helper.)
