//! OpenAI's Files, Batch and Videos APIs: wire types and (later) the one HTTP client.

pub mod types;
