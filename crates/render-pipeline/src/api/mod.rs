//! OpenAI's Files, Batch and Videos APIs: the one HTTP client, its retries and errors.

pub mod client;
pub mod error;
pub mod retry;
