//! Errors in the API's own shape: `{"error": {"message", "type", "param", "code"}}` with the
//! status codes and headers the real service uses, so clients (and the SDK) classify them alike.
//!
//! Other dialects write errors their own way: a failure built here in OpenAI's words is
//! rewritten on its way out by [`super::dialect::Profile::reshape`] (FastAPI's `{"detail"}`,
//! LiteLLM's wrapping), and one built with [`ApiFailure::verbatim`] is sent exactly as built.

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use render_wire::api::{ApiError, ErrorBody};

/// An HTTP error answer.
#[derive(Clone, Debug)]
pub struct ApiFailure {
    pub status: StatusCode,
    /// Boxed (as are the headers) so `Result<_, ApiFailure>` stays small.
    pub error: Box<ApiError>,
    pub headers: Box<HeaderMap>,
    /// The exact body to send, in a dialect's own shape (`None`: `{"error": error}`, which a
    /// dialect may reshape).
    pub body: Option<Box<Value>>,
}

/// The message of the real service's content-policy rejections.
pub const MODERATION_MESSAGE: &str = "Your request was blocked by our moderation system.";

fn api_error(kind: &str, code: Option<&str>, param: Option<&str>, message: String) -> ApiError {
    ApiError {
        message,
        kind: Some(kind.to_string()),
        param: param.map(str::to_string),
        code: code.map(str::to_string),
    }
}

impl ApiFailure {
    pub fn new(status: StatusCode, error: ApiError) -> ApiFailure {
        ApiFailure {
            status,
            error: Box::new(error),
            headers: Box::default(),
            body: None,
        }
    }

    /// A failure whose body is sent exactly as given, whatever the dialect (`message` is what
    /// the sandbox's own code and logs see).
    pub fn verbatim(status: StatusCode, message: impl Into<String>, body: Value) -> ApiFailure {
        let mut failure = ApiFailure::new(
            status,
            api_error("invalid_request_error", None, None, message.into()),
        );
        failure.body = Some(Box::new(body));
        failure
    }

    /// FastAPI's `{"detail": "…"}` (what `raise HTTPException(status, detail)` answers).
    pub fn detail(status: StatusCode, detail: impl Into<String>) -> ApiFailure {
        let detail = detail.into();
        let body = json!({ "detail": detail });
        ApiFailure::verbatim(status, detail, body)
    }

    /// FastAPI's 422 for a request that fails validation:
    /// `{"detail": [{"type", "loc", "msg", "input"}]}`.
    pub fn unprocessable(kind: &str, loc: &[&str], msg: &str, input: Value) -> ApiFailure {
        let body = json!({ "detail": [{ "type": kind, "loc": loc, "msg": msg, "input": input }] });
        ApiFailure::verbatim(StatusCode::UNPROCESSABLE_ENTITY, msg.to_string(), body)
    }

    /// 400 `invalid_request_error`.
    pub fn invalid(
        param: Option<&str>,
        code: Option<&str>,
        message: impl Into<String>,
    ) -> ApiFailure {
        ApiFailure::new(
            StatusCode::BAD_REQUEST,
            api_error("invalid_request_error", code, param, message.into()),
        )
    }

    /// 400 for a value outside the accepted set, worded like the real service.
    pub fn invalid_value(param: &str, value: &str, supported: &[String]) -> ApiFailure {
        let supported = supported
            .iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(", ");
        ApiFailure::invalid(
            Some(param),
            Some("invalid_value"),
            format!("Invalid value: '{value}'. Supported values are: {supported}."),
        )
    }

    /// 404 for an id the server does not know (or that was deleted or expired).
    pub fn not_found(object: &str, id: &str) -> ApiFailure {
        ApiFailure::new(
            StatusCode::NOT_FOUND,
            api_error(
                "invalid_request_error",
                None,
                Some("id"),
                format!("No such {object}: '{id}'"),
            ),
        )
    }

    /// 404 for the content of a video whose download window closed. Distinct code so a harvester
    /// can tell "lost for good" from "wrong id".
    pub fn video_expired(id: &str, expired_at: i64) -> ApiFailure {
        ApiFailure::new(
            StatusCode::NOT_FOUND,
            api_error(
                "invalid_request_error",
                Some("video_expired"),
                Some("video_id"),
                format!(
                    "The content of video '{id}' expired at {expired_at} (24 hours after it was \
                     delivered) and can no longer be downloaded. Create the video again."
                ),
            ),
        )
    }

    /// 400 content-policy rejection.
    pub fn moderation_blocked() -> ApiFailure {
        ApiFailure::invalid(None, Some("moderation_blocked"), MODERATION_MESSAGE)
    }

    /// 401 with the body the real service sends for a missing or wrong key.
    pub fn unauthorized(presented: Option<&str>) -> ApiFailure {
        let message = match presented {
            None | Some("") => {
                "You didn't provide an API key. You need to provide your API key in \
                an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
                    .to_string()
            }
            Some(key) => format!(
                "Incorrect API key provided: {}. You can find your API key at \
                 https://platform.openai.com/account/api-keys.",
                mask_key(key)
            ),
        };
        ApiFailure::new(
            StatusCode::UNAUTHORIZED,
            api_error(
                "invalid_request_error",
                Some("invalid_api_key"),
                None,
                message,
            ),
        )
    }

    /// 429 with `Retry-After` (whole seconds, rounded up) and `retry-after-ms`.
    pub fn rate_limited(retry_after_ms: u64) -> ApiFailure {
        ApiFailure::new(
            StatusCode::TOO_MANY_REQUESTS,
            api_error(
                "requests",
                Some("rate_limit_exceeded"),
                None,
                format!("Rate limit reached for requests. Please try again in {retry_after_ms}ms."),
            ),
        )
        .retry_after(retry_after_ms)
    }

    /// 503 `server_error` asking to come back after `retry_after_ms`.
    pub fn unavailable(retry_after_ms: u64) -> ApiFailure {
        ApiFailure::server_error(StatusCode::SERVICE_UNAVAILABLE).retry_after(retry_after_ms)
    }

    /// Adds `Retry-After` (whole seconds, rounded up) and `retry-after-ms`.
    fn retry_after(mut self, retry_after_ms: u64) -> ApiFailure {
        let secs = retry_after_ms.div_ceil(1000);
        self.headers
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        self.headers
            .insert("retry-after-ms", HeaderValue::from(retry_after_ms));
        self
    }

    /// 5xx `server_error`, worded like the real service.
    pub fn server_error(status: StatusCode) -> ApiFailure {
        let message = match status.as_u16() {
            502 => "Bad gateway.",
            503 => "The server is overloaded or not ready yet.",
            _ => "The server had an error while processing your request. Sorry about that!",
        };
        ApiFailure::new(
            status,
            api_error("server_error", None, None, message.to_string()),
        )
    }

    /// 404 for a path the API does not have.
    pub fn invalid_url(method: &str, path: &str) -> ApiFailure {
        ApiFailure::new(
            StatusCode::NOT_FOUND,
            api_error(
                "invalid_request_error",
                None,
                None,
                format!("Invalid URL ({method} {path})"),
            ),
        )
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: (*self.error).clone(),
        }
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let mut response = match &self.body {
            Some(body) => (self.status, Json(body.as_ref().clone())).into_response(),
            None => (self.status, Json(self.body())).into_response(),
        };
        response.headers_mut().extend((*self.headers).clone());
        // The dialect layer finds the failure here and may write it in its own shape.
        response.extensions_mut().insert(self);
        response
    }
}

/// `sk-abc***wxyz`: enough to recognise a key in an error without leaking it.
pub(crate) fn mask_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "***".to_string();
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}***{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_masked_in_errors() {
        let failure = ApiFailure::unauthorized(Some("sk-secret-value-1234"));
        assert!(failure.error.message.contains("sk-***1234"));
        assert!(!failure.error.message.contains("secret"));
        assert_eq!(failure.error.code.as_deref(), Some("invalid_api_key"));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let failure = ApiFailure::rate_limited(1_200);
        assert_eq!(failure.headers[header::RETRY_AFTER], "2");
        assert_eq!(failure.headers["retry-after-ms"], "1200");
    }
}
