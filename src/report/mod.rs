//! The only module that writes to the terminal: tables, progress and JSON output.

pub mod plan;
pub mod progress;
pub mod sheet;
pub mod spend;
pub mod status;
pub mod terminal;
