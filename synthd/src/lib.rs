//! synthd
#![forbid(unsafe_code)]
