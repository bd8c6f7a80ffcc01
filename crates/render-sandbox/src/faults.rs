//! Fault injection: which requests fail, how, and when, decided by a seeded ChaCha generator so a
//! run with the same seed and the same request order injects the same faults.
//!
//! HTTP faults are rules scoped to an endpoint pattern (`GET /v1/videos/*/content`); batch faults
//! (requests failing inside a batch, batches expiring, moderation rejections) are triggers drawn
//! once per request or batch. Each trigger fires by `rate` (a probability), by `nth` (1-based
//! positions among matching events) or both, at most `limit` times.
//!
//! One file per part: `config` the knobs (the JSON of `POST /sandbox/faults`), `pattern` the
//! endpoint patterns rules are scoped to, `engine` the seeded draws that decide each request's
//! faults, and `parse` the command line's `--fault` syntax.

mod config;
mod engine;
mod parse;
mod pattern;

pub use config::{Fault, FaultConfig, FaultRule, FaultSpecError, Malformation, Trigger};
pub use engine::{Decision, FaultEngine};
pub use parse::parse_rule;
