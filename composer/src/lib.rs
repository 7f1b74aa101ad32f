//! composer
#![forbid(unsafe_code)]
