//! The `render` binary's library: the reporter (all terminal and file output for people and
//! scripts) and the command line that wires the pipeline (`render-pipeline`) and the sandbox
//! (`render-sandbox`) together. The shared values live in `render-wire`.

// What people and scripts see.
pub mod report;

// The command line.
pub mod cli;
