//! `render sandbox`: a faithful local server of the OpenAI Files, Batch and Videos API.
pub mod media;
