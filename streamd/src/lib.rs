//! streamd
#![forbid(unsafe_code)]
