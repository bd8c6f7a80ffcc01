//! The servers that speak `/v1/videos`, and how each differs from OpenAI's contract.
//!
//! One table of facts per dialect (read from each server's own code; see
//! `shared/docs/providers.md`). The client reads it to decide how to send and fetch; the sandbox
//! reads the same table to behave like each server. Nothing else in the program asks which
//! server it is talking to.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Which server's contract a provider speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dialect {
    /// OpenAI's Videos + Files + Batch API (and servers that copy it whole).
    #[default]
    Openai,
    /// SGLang Diffusion (`sglang` 0.5.x): self-hosted Wan, HunyuanVideo, LTX.
    Sglang,
    /// vllm-omni 0.30.
    VllmOmni,
    /// A LiteLLM proxy (1.108.x) in front of other providers.
    Litellm,
}

pub const ALL_DIALECTS: [Dialect; 4] = [
    Dialect::Openai,
    Dialect::Sglang,
    Dialect::VllmOmni,
    Dialect::Litellm,
];

/// How the body of `POST /v1/videos` travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateBody {
    /// JSON, with a reference as `{"file_id"}` of an uploaded file.
    JsonWithFileId,
    /// `multipart/form-data`, with a reference as the image file itself.
    MultipartWithImage,
}

/// What `GET /v1/videos/{id}/content` does with `variant`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VariantRule {
    /// `video`, `thumbnail`, `spritesheet` by name.
    Named,
    /// An integer index (`0`); a name is a 404.
    Index,
    /// Ignored (or dropped on the way): every variant answers the MP4.
    Ignored,
}

/// The facts of one dialect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DialectFacts {
    pub dialect: Dialect,
    /// `/v1/files` and `/v1/batches` exist and their video batches can be harvested here.
    pub batch_api: bool,
    /// The server checks `Authorization: Bearer <key>`.
    pub requires_key: bool,
    pub create_body: CreateBody,
    pub variant: VariantRule,
    /// `GET /v1/videos` lists jobs (so a job created before a crash can be found again).
    pub lists_videos: bool,
    /// Content honours `Range` (LiteLLM buffers and answers the whole body).
    pub honours_range: bool,
    /// The server keeps `model` as sent (vllm-omni refuses any but the served model).
    pub checks_model: bool,
    /// `DELETE /v1/videos/{id}` aborts a running job.
    pub delete_aborts: bool,
}

impl Dialect {
    pub fn facts(self) -> DialectFacts {
        match self {
            Dialect::Openai => DialectFacts {
                dialect: self,
                batch_api: true,
                requires_key: true,
                create_body: CreateBody::JsonWithFileId,
                variant: VariantRule::Named,
                lists_videos: true,
                honours_range: true,
                checks_model: true,
                delete_aborts: true,
            },
            Dialect::Sglang => DialectFacts {
                dialect: self,
                batch_api: false,
                requires_key: false,
                create_body: CreateBody::MultipartWithImage,
                variant: VariantRule::Index,
                lists_videos: true,
                honours_range: true,
                checks_model: false,
                delete_aborts: false,
            },
            Dialect::VllmOmni => DialectFacts {
                dialect: self,
                batch_api: false,
                requires_key: false,
                create_body: CreateBody::MultipartWithImage,
                variant: VariantRule::Ignored,
                lists_videos: true,
                honours_range: true,
                checks_model: true,
                delete_aborts: true,
            },
            Dialect::Litellm => DialectFacts {
                dialect: self,
                // Batches pass through, but their raw video ids cannot be fetched back through
                // the proxy: for `render` the gateway has no usable Batch lane.
                batch_api: false,
                requires_key: true,
                create_body: CreateBody::MultipartWithImage,
                variant: VariantRule::Ignored,
                lists_videos: false,
                honours_range: false,
                checks_model: true,
                delete_aborts: false,
            },
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Openai => "openai",
            Dialect::Sglang => "sglang",
            Dialect::VllmOmni => "vllm-omni",
            Dialect::Litellm => "litellm",
        }
    }
}

impl DialectFacts {
    /// The `variant` query that fetches the MP4 itself (`None`: send none).
    pub fn video_variant(&self) -> Option<&'static str> {
        match self.variant {
            VariantRule::Named => Some("video"),
            VariantRule::Index | VariantRule::Ignored => None,
        }
    }

    /// The `variant` query of a thumbnail, where the server has one.
    pub fn thumbnail_variant(&self) -> Option<&'static str> {
        match self.variant {
            VariantRule::Named => Some("thumbnail"),
            VariantRule::Index | VariantRule::Ignored => None,
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown dialect `{0}` (expected openai, sglang, vllm-omni or litellm)")]
pub struct ParseDialectError(pub String);

impl FromStr for Dialect {
    type Err = ParseDialectError;
    fn from_str(text: &str) -> Result<Dialect, ParseDialectError> {
        ALL_DIALECTS
            .into_iter()
            .find(|d| d.as_str().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| ParseDialectError(text.to_string()))
    }
}

/// What an image's first bytes say it is: thumbnails are whatever a server sends, so they are
/// checked before they are laid out as pictures.
pub fn image_mime(bytes: &[u8]) -> Option<&'static str> {
    match bytes {
        [0xFF, 0xD8, 0xFF, ..] => Some("image/jpeg"),
        [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => Some("image/png"),
        [
            b'R',
            b'I',
            b'F',
            b'F',
            _,
            _,
            _,
            _,
            b'W',
            b'E',
            b'B',
            b'P',
            ..,
        ] => Some("image/webp"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in ALL_DIALECTS {
            assert_eq!(d.as_str().parse::<Dialect>().unwrap(), d);
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(json, format!("\"{}\"", d.as_str()));
        }
        assert!("vllm".parse::<Dialect>().is_err());
    }

    #[test]
    fn only_openai_has_a_harvestable_batch_lane() {
        let with_batch: Vec<Dialect> = ALL_DIALECTS
            .into_iter()
            .filter(|d| d.facts().batch_api)
            .collect();
        assert_eq!(with_batch, [Dialect::Openai]);
    }

    #[test]
    fn an_mp4_is_not_an_image() {
        let mp4 = b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom";
        assert_eq!(image_mime(mp4), None);
        assert_eq!(image_mime(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("image/jpeg"));
    }
}
