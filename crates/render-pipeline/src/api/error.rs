//! What can go wrong talking to the API, as situations a user can act on.
//!
//! Every variant that comes from a request names the endpoint (`GET /batches/batch_1`, never a
//! credentialed URL), the number of attempts made, and, when the server sent one, the server's
//! own `{"error":{"message":…}}` text. The API key never appears: messages echoed by a server
//! are scrubbed of it before they are stored here.

use std::time::Duration;

use reqwest::header::HeaderMap;

use super::retry::{self, RetryDecision, StopReason, TransportFailure};

/// An error from the API client. `attempts` counts every try, the first one included.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("OPENAI_API_KEY is not set: export your API key (or the sandbox's) as OPENAI_API_KEY")]
    MissingApiKey,

    #[error("invalid client configuration: {message}")]
    InvalidConfig { message: String },

    #[error(
        "{endpoint}: the server refused the API key (401 Unauthorized): {message}. \
         Check OPENAI_API_KEY (and OPENAI_BASE_URL) and try again"
    )]
    Unauthorized {
        endpoint: String,
        message: String,
        attempts: u32,
    },

    #[error(
        "{endpoint}: the API key may not do this (403 Forbidden): {message}. \
         Check the key's project and permissions"
    )]
    Forbidden {
        endpoint: String,
        message: String,
        attempts: u32,
    },

    #[error("{endpoint}: not found (404): {message}")]
    NotFound {
        endpoint: String,
        message: String,
        attempts: u32,
    },

    #[error("{endpoint}: no longer available ({status}): {message}")]
    Gone {
        endpoint: String,
        status: u16,
        message: String,
        attempts: u32,
    },

    #[error("{endpoint}: the server rejected the request ({status}): {message}")]
    BadRequest {
        endpoint: String,
        status: u16,
        message: String,
        attempts: u32,
    },

    #[error(
        "{endpoint}: rate limited (429) after {attempts} attempt(s){}: {message}",
        retry_after_hint(.retry_after)
    )]
    RateLimited {
        endpoint: String,
        message: String,
        attempts: u32,
        /// The wait the server asked for, if any (longer than 120 s is never waited for here).
        retry_after: Option<Duration>,
    },

    #[error(
        "{endpoint}: server error ({status}) after {attempts} attempt(s){}: {message}",
        retry_after_hint(.retry_after)
    )]
    Server {
        endpoint: String,
        status: u16,
        message: String,
        attempts: u32,
        /// The wait the server asked for (a 503 from an overloaded server or gateway).
        retry_after: Option<Duration>,
    },

    #[error("{endpoint}: could not talk to the server after {attempts} attempt(s): {detail}")]
    Transport {
        endpoint: String,
        detail: String,
        attempts: u32,
        #[source]
        source: reqwest::Error,
    },

    #[error(
        "{endpoint}: the server's answer is not what the API promises ({detail}); it began: {excerpt:?}"
    )]
    Decode {
        endpoint: String,
        detail: String,
        /// The first few hundred characters of the body, for a bug report.
        excerpt: String,
        attempts: u32,
    },

    #[error("{endpoint}: the server broke the HTTP protocol: {detail}")]
    Protocol {
        endpoint: String,
        detail: String,
        attempts: u32,
    },

    #[error(
        "{endpoint}: the answer is larger than {limit} bytes, more than it can honestly be; \
         abandoned (for a video, raise --max-video-bytes if it really is that large)"
    )]
    TooLarge { endpoint: String, limit: u64 },

    #[error("{endpoint}: {action}: {source}")]
    Io {
        endpoint: String,
        action: String,
        #[source]
        source: std::io::Error,
    },
}

fn retry_after_hint(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!(" (the server asks to wait {} s)", d.as_secs()),
        None => String::new(),
    }
}

impl ApiError {
    /// How many tries were made before giving up (0 when no request was sent).
    pub fn attempts(&self) -> u32 {
        match self {
            ApiError::Unauthorized { attempts, .. }
            | ApiError::Forbidden { attempts, .. }
            | ApiError::NotFound { attempts, .. }
            | ApiError::Gone { attempts, .. }
            | ApiError::BadRequest { attempts, .. }
            | ApiError::RateLimited { attempts, .. }
            | ApiError::Server { attempts, .. }
            | ApiError::Transport { attempts, .. }
            | ApiError::Decode { attempts, .. }
            | ApiError::Protocol { attempts, .. } => *attempts,
            ApiError::MissingApiKey
            | ApiError::InvalidConfig { .. }
            | ApiError::Io { .. }
            | ApiError::TooLarge { .. } => 0,
        }
    }

    /// The server's own message, when it sent one.
    pub fn server_message(&self) -> Option<&str> {
        match self {
            ApiError::Unauthorized { message, .. }
            | ApiError::Forbidden { message, .. }
            | ApiError::NotFound { message, .. }
            | ApiError::Gone { message, .. }
            | ApiError::BadRequest { message, .. }
            | ApiError::RateLimited { message, .. }
            | ApiError::Server { message, .. } => Some(message),
            _ => None,
        }
    }

    /// The wait the server asked for with its final answer (`Retry-After`), if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::RateLimited { retry_after, .. } | ApiError::Server { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// The HTTP status the server answered with, for errors that come from one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Unauthorized { .. } => Some(401),
            ApiError::Forbidden { .. } => Some(403),
            ApiError::NotFound { .. } => Some(404),
            ApiError::RateLimited { .. } => Some(429),
            ApiError::Gone { status, .. }
            | ApiError::BadRequest { status, .. }
            | ApiError::Server { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// What the retry classifier says about this final error, for a loop above the client
    /// that tries again after reconciling: the same statuses and transport failures, and the
    /// server's wait when it asked for one (`Retry-After` on a 429 or a 5xx).
    pub fn retry_decision(&self) -> RetryDecision {
        if let ApiError::Transport { source, .. } = self {
            return retry::classify_transport(TransportFailure::of(source));
        }
        let Some(code) = self
            .status()
            .and_then(|s| reqwest::StatusCode::from_u16(s).ok())
        else {
            return RetryDecision::Stop(StopReason::NotRetryable);
        };
        match (
            retry::classify_status(code, &HeaderMap::new()),
            self.retry_after(),
        ) {
            (RetryDecision::Retry { .. }, Some(wait)) if wait > retry::MAX_SERVER_DELAY => {
                RetryDecision::Stop(StopReason::WaitTooLong(wait))
            }
            (RetryDecision::Retry { .. }, Some(wait)) => RetryDecision::Retry {
                server_delay: Some(wait),
            },
            (decision, _) => decision,
        }
    }

    /// True when waiting and trying again later (another run) may succeed: the statuses the
    /// retry classifier retries (408, 409, 429, 5xx) and dropped connections.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.retry_decision(),
            RetryDecision::Retry { .. } | RetryDecision::Stop(StopReason::WaitTooLong(_))
        )
    }

    /// The server said the content is gone for good: 410, or a 404 whose error names expiry
    /// (`video_expired`). Any other 404 proves nothing on its own.
    pub fn says_expired(&self) -> bool {
        match self.status() {
            Some(410) => true,
            Some(404) => self
                .server_message()
                .is_some_and(|m| m.to_ascii_lowercase().contains("expired")),
            _ => false,
        }
    }

    /// The provider definitely refused the request: sending it again unchanged cannot help,
    /// and nothing was created.
    pub fn is_refusal(&self) -> bool {
        matches!(self.status(), Some(400 | 401 | 403 | 404 | 413 | 422))
    }

    /// Builds the error for a final non-success status.
    pub(crate) fn from_status(
        endpoint: &str,
        status: u16,
        message: String,
        attempts: u32,
        retry_after: Option<Duration>,
    ) -> ApiError {
        let endpoint = endpoint.to_string();
        match status {
            401 => ApiError::Unauthorized {
                endpoint,
                message,
                attempts,
            },
            403 => ApiError::Forbidden {
                endpoint,
                message,
                attempts,
            },
            404 => ApiError::NotFound {
                endpoint,
                message,
                attempts,
            },
            410 => ApiError::Gone {
                endpoint,
                status,
                message,
                attempts,
            },
            429 => ApiError::RateLimited {
                endpoint,
                message,
                attempts,
                retry_after,
            },
            s if s >= 500 => ApiError::Server {
                endpoint,
                status,
                message,
                attempts,
                retry_after,
            },
            _ => ApiError::BadRequest {
                endpoint,
                status,
                message,
                attempts,
            },
        }
    }
}
