//! `render`'s engine: shot list → plan → submit → harvest → cache, over the direct and Batch
//! lanes of OpenAI-compatible video servers. It emits events and writes no terminal output;
//! the binary's reporter does that.
//!
//! Modules are listed lowest layer first; a module only imports from its own layer or below
//! (`tests/layers.rs`).

// Layer 1: helpers.
pub mod events;
pub mod failpoint;
pub mod fsutil;

// Layer 2: input and the wire.
pub mod api;
pub mod provider;
pub mod shotlist;

// Layer 3: stages over values, and the stores.
pub mod batch;
pub mod cache;
pub mod ledger;
pub mod plan;
pub mod select;
pub mod shared;

// Layer 4: the stages that talk to the provider; submit and harvest meet only through the
// ledger and the lanes.
pub mod cancel;
pub mod harvest;
pub mod lanes;
pub mod outputs;
pub mod status;
pub mod submit;
