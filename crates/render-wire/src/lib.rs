//! The plain values `render`'s pipeline and its sandbox share, and nothing that does I/O: the
//! API's wire types, the model catalog, money, the servers' dialects and the request keys.
//!
//! Both sides of the wire depend on this crate and on nothing of each other, so the compiler
//! holds the sandbox apart from the pipeline it serves.

pub mod api;
pub mod catalog;
pub mod dialect;
pub mod key;
pub mod money;
