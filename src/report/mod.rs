//! The only module that writes to the terminal: tables, progress, messages and JSON output
//! ([`output`] is the door to stdout and to stderr's messages).

pub mod cache;
pub mod output;
pub mod plan;
pub mod progress;
pub mod sheet;
pub mod spend;
pub mod status;
pub mod summary;
pub mod terminal;
