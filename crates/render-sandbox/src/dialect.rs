//! How the sandbox plays each server that speaks `/v1/videos`.
//!
//! What the client also needs to know lives in [`render_wire::dialect::DialectFacts`] (one table shared
//! with the client): the Batch API, the key, `variant`, listing, `Range`, the model check and
//! whether `DELETE` aborts. The sandbox reads those facts as they are. What only a server needs
//! (how its errors and ids look, how it parses a create request, how its video object is
//! shaped) is the [`Profile`] below: one table, one row per dialect, so no handler ever asks
//! which server it is. Sources: `shared/docs/providers.md` and the servers' own code
//! (sglang 0.5.23, vllm-omni 0.30, litellm 1.108.7).

use axum::http::StatusCode;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::error::ApiFailure;
/// The shared table, the sandbox's one doorway to it.
pub use render_wire::dialect::{ALL_DIALECTS, Dialect, DialectFacts, VariantRule};

/// How errors outside a job are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorStyle {
    /// `{"error": {"message", "type", "param", "code"}}` with OpenAI's codes.
    OpenAi,
    /// FastAPI's `{"detail": "…"}`, and `{"detail": [{"type", "loc", "msg", "input"}]}` for a 422.
    FastApi,
    /// LiteLLM's `{"error": {"message", "type", "param", "code": "<HTTP status>"}}`; an upstream
    /// error's own body (and so its OpenAI `code`, e.g. `video_expired`) is only inside
    /// `message`: `litellm.NotFoundError: OpenAIException - {"error": …}`.
    Litellm,
}

/// How a new video's id looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdStyle {
    /// `video_` and 32 hex digits.
    OpenAi,
    /// A bare uuid4 (`9b2f…-…-4…`), no prefix (SGLang's `generate_request_id`).
    Uuid4,
    /// `video_gen_` and a uuid4's 32 hex digits (vllm-omni's `VideoResponse.id`).
    VllmOmni,
    /// `video_` and URL-safe base64 of
    /// `litellm:custom_llm_provider:openai;model_id:<model>;video_id:<upstream id>;deployment_id:<hash>`
    /// over an upstream OpenAI-style id. LiteLLM itself uses the standard alphabet (`+`, `/`);
    /// the sandbox uses `-` and `_` so an id always survives a URL path, and keeps the `=`
    /// padding the real ids have.
    Litellm,
}

/// How `POST /v1/videos` reads its body (see `create.rs`, one reader per server).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateRules {
    /// JSON (`input_reference: {"file_id"}` or `{"image_url"}`) or multipart with the image.
    OpenAi,
    /// JSON (`input_reference` a string only, `seconds` an integer) or multipart with the image.
    Sglang,
    /// Multipart only; `seconds`/`size` strings checked by regex; `image_reference` as JSON text.
    VllmOmni,
    /// OpenAI's rules behind the proxy, which cannot forward a JSON `input_reference` object.
    Litellm,
}

/// The video object's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoShape {
    /// OpenAI's (also what LiteLLM passes through, with its own id).
    OpenAi,
    /// SGLang's: `seconds` a string, no `prompt`, `expires_at` null, `error` `{"message"}`,
    /// plus `quality`, `url(s)`, `file_path(s)`, `num_outputs`, `inference_time_s`.
    Sglang,
    /// vllm-omni's: `error` `{"code": <int>, "message"}`, `media_type`, `file_name`,
    /// `duration_s`…; a failed job answers `GET` with the HTTP status of its `error.code`.
    VllmOmni,
}

/// The `limit` of `GET /v1/videos` (FastAPI servers; OpenAI's is 1–100, default 20).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListLimit {
    /// Without `limit`: this many (`None`: every video).
    pub default: Option<usize>,
    /// Smallest `limit` accepted (at most 100); below it is a 422.
    pub min: usize,
}

/// What the sandbox plays, for one dialect.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Profile {
    pub facts: DialectFacts,
    pub errors: ErrorStyle,
    pub ids: IdStyle,
    pub create: CreateRules,
    pub video: VideoShape,
    /// `/v1/files` and `/v1/batches` answer: the Batch API itself, or a gateway passing it
    /// through (LiteLLM: metadata intact, but its batches' raw video ids cannot be fetched
    /// back through its `/v1/videos/{id}`, which is why its facts say `batch_api: false`).
    pub files_and_batches: bool,
    /// Renders happen at OpenAI's service (directly or behind a gateway): the catalog's
    /// model × size × seconds matrix, the content policy, `video_not_ready`, and the 24 h
    /// download window apply. A self-hosted server has none of them.
    pub renders_at_openai: bool,
    /// `DELETE /v1/videos/{id}` is routed (LiteLLM has no such route: 405).
    pub deletes: bool,
    /// `owned_by` of the models `GET /v1/models` lists.
    pub model_owner: &'static str,
    pub list_limit: ListLimit,
}

impl Profile {
    pub fn of(dialect: Dialect) -> Profile {
        let facts = dialect.facts();
        let profile = match dialect {
            Dialect::Openai => Profile {
                facts,
                errors: ErrorStyle::OpenAi,
                ids: IdStyle::OpenAi,
                create: CreateRules::OpenAi,
                video: VideoShape::OpenAi,
                files_and_batches: true,
                renders_at_openai: true,
                deletes: true,
                model_owner: "system",
                list_limit: ListLimit {
                    default: Some(20),
                    min: 1,
                },
            },
            Dialect::Sglang => Profile {
                facts,
                errors: ErrorStyle::FastApi,
                ids: IdStyle::Uuid4,
                create: CreateRules::Sglang,
                video: VideoShape::Sglang,
                files_and_batches: false,
                renders_at_openai: false,
                deletes: true,
                model_owner: "sglang",
                list_limit: ListLimit {
                    default: Some(20),
                    min: 1,
                },
            },
            Dialect::VllmOmni => Profile {
                facts,
                errors: ErrorStyle::FastApi,
                ids: IdStyle::VllmOmni,
                create: CreateRules::VllmOmni,
                video: VideoShape::VllmOmni,
                files_and_batches: false,
                renders_at_openai: false,
                deletes: true,
                model_owner: "vllm-omni",
                list_limit: ListLimit {
                    default: None,
                    min: 0,
                },
            },
            Dialect::Litellm => Profile {
                facts,
                errors: ErrorStyle::Litellm,
                ids: IdStyle::Litellm,
                create: CreateRules::Litellm,
                video: VideoShape::OpenAi,
                files_and_batches: true,
                renders_at_openai: true,
                deletes: false,
                model_owner: "openai",
                list_limit: ListLimit {
                    default: Some(20),
                    min: 1,
                },
            },
        };
        debug_assert!(!facts.batch_api || profile.files_and_batches);
        profile
    }

    /// The server sends thumbnails and spritesheets (only where `variant` takes names).
    pub fn thumbnails(&self) -> bool {
        self.facts.variant == VariantRule::Named
    }

    /// The public id of a video kept under `id` (only LiteLLM wraps it).
    pub fn public_id(&self, id: &str, model: Option<&str>) -> String {
        match self.ids {
            IdStyle::Litellm => litellm_id(id, model.unwrap_or_default()),
            IdStyle::OpenAi | IdStyle::Uuid4 | IdStyle::VllmOmni => id.to_string(),
        }
    }

    /// The id a video is kept under, from the id a client sent. LiteLLM finds the upstream by
    /// decoding its own id; a raw upstream id (one from a batch output file) falls through to
    /// a hard-coded api.openai.com and answers 500.
    pub fn stored_id(&self, id: &str) -> Result<String, ApiFailure> {
        match self.ids {
            IdStyle::Litellm => decode_litellm_id(id).ok_or_else(|| litellm_unroutable(id)),
            IdStyle::OpenAi | IdStyle::Uuid4 | IdStyle::VllmOmni => Ok(id.to_string()),
        }
    }

    /// 404 for a video the server does not know (never created, deleted, or forgotten by a
    /// restart).
    pub fn video_not_found(&self, id: &str) -> ApiFailure {
        match self.errors {
            ErrorStyle::FastApi => ApiFailure::detail(StatusCode::NOT_FOUND, "Video not found"),
            ErrorStyle::OpenAi | ErrorStyle::Litellm => ApiFailure::not_found("Video", id),
        }
    }

    /// The answer for the content of a video that is still queued or rendering.
    pub fn still_rendering(&self, id: &str, status: &str) -> ApiFailure {
        if self.renders_at_openai {
            return ApiFailure::invalid(
                None,
                Some("video_not_ready"),
                format!("Video '{id}' has no content: its status is '{status}'."),
            );
        }
        ApiFailure::detail(StatusCode::NOT_FOUND, "Generation is still in-progress")
    }

    /// 404 for a path the server does not have.
    pub fn route_not_found(&self, method: &str, path: &str) -> ApiFailure {
        match self.errors {
            ErrorStyle::OpenAi => ApiFailure::invalid_url(method, path),
            // LiteLLM is a FastAPI app too: unknown routes answer like one.
            ErrorStyle::FastApi | ErrorStyle::Litellm => {
                ApiFailure::detail(StatusCode::NOT_FOUND, "Not Found")
            }
        }
    }

    /// 405 for a method a path does not take.
    pub fn method_not_allowed(&self) -> ApiFailure {
        ApiFailure::detail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
    }

    /// The answer of `GET /v1/videos` on a server that cannot list (LiteLLM: 400).
    pub fn cannot_list(&self) -> ApiFailure {
        litellm_error(
            StatusCode::BAD_REQUEST,
            "litellm.BadRequestError: LLM Provider NOT provided. Pass in the LLM provider you \
             are trying to call. You passed model=None",
            "invalid_request_error",
        )
    }

    /// 401 for a missing or wrong key.
    pub fn unauthorized(&self, presented: Option<&str>) -> ApiFailure {
        match self.errors {
            ErrorStyle::Litellm => {
                let message = match presented {
                    None | Some("") => "Authentication Error, No api key passed in.".to_string(),
                    Some(key) => format!(
                        "Authentication Error, Invalid proxy server token passed. Received API \
                         Key = {}, Key Hash (Token) ={}. Unable to find token in cache or \
                         `LiteLLM_VerificationTokenTable`",
                        super::error::mask_key(key),
                        hex::encode(Sha256::digest(key.as_bytes()))
                    ),
                };
                let mut failure = litellm_error(StatusCode::UNAUTHORIZED, &message, "auth_error");
                // The proxy's auth errors carry the string "None".
                if let Some(body) = failure.body.as_mut() {
                    body["error"]["param"] = "None".into();
                }
                failure
            }
            ErrorStyle::OpenAi | ErrorStyle::FastApi => ApiFailure::unauthorized(presented),
        }
    }

    /// A failure built in OpenAI's words, written in this dialect's shape (`None`: send as is).
    pub fn reshape(&self, failure: &ApiFailure) -> Option<ApiFailure> {
        if failure.body.is_some() {
            return None;
        }
        let reshaped = match self.errors {
            ErrorStyle::OpenAi => return None,
            ErrorStyle::FastApi => ApiFailure::detail(failure.status, &failure.error.message),
            ErrorStyle::Litellm => {
                // What LiteLLM makes of an upstream error: the upstream body inside the message,
                // the HTTP status as the code.
                let upstream = serde_json::to_string(&failure.body()).unwrap_or_default();
                let message = format!(
                    "litellm.{}: OpenAIException - {upstream}",
                    litellm_class(failure.status)
                );
                let kind = failure.error.kind.as_deref().unwrap_or("None");
                let mut wrapped = litellm_error(failure.status, &message, kind);
                if let Some(body) = wrapped.body.as_mut() {
                    body["error"]["param"] = failure.error.param.clone().into();
                }
                wrapped
            }
        };
        let mut reshaped = reshaped;
        reshaped.headers = failure.headers.clone();
        Some(reshaped)
    }
}

/// A LiteLLM proxy error: `{"error": {"message", "type", "param", "code": "<status>"}}`.
fn litellm_error(status: StatusCode, message: &str, kind: &str) -> ApiFailure {
    let body = json!({
        "error": {
            "message": message,
            "type": kind,
            "param": null,
            "code": status.as_u16().to_string(),
        }
    });
    ApiFailure::verbatim(status, message, body)
}

/// LiteLLM's exception class for an upstream status.
fn litellm_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "BadRequestError",
        401 => "AuthenticationError",
        403 => "PermissionDeniedError",
        404 => "NotFoundError",
        408 => "Timeout",
        422 => "UnprocessableEntityError",
        429 => "RateLimitError",
        503 => "ServiceUnavailableError",
        500..=599 => "InternalServerError",
        _ => "APIError",
    }
}

/// 500 for an id LiteLLM cannot route (not one of its own).
fn litellm_unroutable(id: &str) -> ApiFailure {
    litellm_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        &format!(
            "litellm.InternalServerError: OpenAIException - '{id}' is not a LiteLLM video id, \
             so the request went to the default provider (https://api.openai.com), which \
             refused it. Use the id LiteLLM returned when the video was created."
        ),
        "None",
    )
}

/// The deployment LiteLLM names in its ids (a hash of the deployment's settings).
fn litellm_deployment() -> String {
    hex::encode(Sha256::digest(b"render sandbox: openai deployment"))
}

/// LiteLLM's id for upstream video `id` made by `model`.
pub fn litellm_id(id: &str, model: &str) -> String {
    let inner = format!(
        "litellm:custom_llm_provider:openai;model_id:{model};video_id:{id};deployment_id:{}",
        litellm_deployment()
    );
    format!("video_{}", base64_url(inner.as_bytes()))
}

/// The upstream id inside a LiteLLM id (`None`: not one of LiteLLM's ids).
pub fn decode_litellm_id(id: &str) -> Option<String> {
    let encoded = id.strip_prefix("video_")?;
    let text = String::from_utf8(base64_decode(encoded)?).ok()?;
    let parts: Vec<&str> = text.split(';').collect();
    if parts.len() < 3 || !parts[0].starts_with("litellm:custom_llm_provider:") {
        return None;
    }
    let inner = parts[2].strip_prefix("video_id:")?;
    (!inner.is_empty()).then(|| inner.to_string())
}

const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64 with the URL-safe alphabet and `=` padding.
fn base64_url(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(URL_SAFE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes base64 in either alphabet (`+/` or `-_`), padded or not.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let digits = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in digits.bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_without_slashes() {
        for text in ["", "a", "ab", "abc", "abcd", "litellm:?>?>~~~"] {
            let encoded = base64_url(text.as_bytes());
            assert!(
                !encoded.contains('/') && !encoded.contains('+'),
                "{encoded}"
            );
            assert_eq!(base64_decode(&encoded).unwrap(), text.as_bytes());
            let unpadded = encoded.trim_end_matches('=');
            assert_eq!(base64_decode(unpadded).unwrap(), text.as_bytes());
        }
        // The standard alphabet (what LiteLLM itself writes) decodes too.
        assert_eq!(base64_decode("Pz8/Pw==").unwrap(), b"????");
        assert_eq!(base64_decode("a b"), None);
    }

    #[test]
    fn litellm_ids_carry_the_upstream_id() {
        let id = litellm_id("video_0123abcd", "sora-2");
        assert!(id.starts_with("video_") && id.len() > 150, "{id}");
        assert_eq!(decode_litellm_id(&id).as_deref(), Some("video_0123abcd"));
        assert_eq!(decode_litellm_id("video_0123abcd"), None);
        assert_eq!(decode_litellm_id("9b2f"), None);
    }

    #[test]
    fn every_dialect_with_a_batch_lane_routes_files_and_batches() {
        for dialect in ALL_DIALECTS {
            let profile = Profile::of(dialect);
            assert!(!profile.facts.batch_api || profile.files_and_batches);
            assert_eq!(profile.facts.dialect, dialect);
        }
    }
}
