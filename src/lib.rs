//! `render`: shot list → plan → batch → submit → harvest → cache, against an OpenAI-compatible
//! Files + Batch + Videos API.
//!
//! Modules are listed lowest layer first; a module only imports from its own layer or below.

// Layer 1: pure values and helpers.
pub mod catalog;
pub mod dialect;
pub mod events;
pub mod failpoint;
pub mod fsutil;
pub mod key;
pub mod money;

// Layer 2: input and wire formats.
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

// Layer 5: the local server of the API.
pub mod sandbox;

// Layer 6: what people and scripts see.
pub mod report;

// Layer 7: the command line.
pub mod cli;
