//! The one place that decides whether a failed request is tried again, and after how long.
//!
//! The rules follow the official OpenAI SDK, with more retries because a night runs unattended:
//! - `x-should-retry: false` never retries; `x-should-retry: true` always does (unless the server
//!   asks for a wait longer than [`MAX_SERVER_DELAY`]).
//! - 408, 409, 429 and every status ≥ 500 are retried, as are dropped connections and timeouts.
//! - The delay is the server's `retry-after-ms`, else its `Retry-After` (seconds or an HTTP date),
//!   when that is at most 120 s. A longer wait is not retried here: the error carries the wait
//!   and the caller (a later run) decides.
//! - Otherwise `min(base × 2^n, max) × jitter` with jitter in [0.75, 1].
//! - At most `max_retries` retries and `max_total_wait` of waiting per operation.
//!
//! Every loop that tries something again (the client's own, creating a batch after looking for
//! it, `harvest --watch` sitting through failing polls) keeps one [`RetryState`]: it asks it for
//! the next wait with the failure's [`RetryDecision`] and stops when the state gives up.
//!
//! Requests that create things (`POST /files`, `POST /batches`) are retried too. A retry after a
//! lost answer may create a second object on the server; `submit` makes that harmless through
//! its ledger (it records what it meant to create before sending and reconciles afterwards).

use std::time::{Duration, SystemTime};

use rand::Rng;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

/// A server-requested delay longer than this is not waited for.
pub const MAX_SERVER_DELAY: Duration = Duration::from_secs(120);

/// How many times and how patiently to retry.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt: `max_retries + 1` attempts in all.
    pub max_retries: u32,
    /// The first backoff delay; doubles per retry.
    pub base_delay: Duration,
    /// The backoff delay never grows past this.
    pub max_delay: Duration,
    /// The most one operation waits in all between its attempts (server delays included).
    pub max_total_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
            max_total_wait: Duration::from_secs(10 * 60),
        }
    }
}

/// What the classifier says about one failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try again; after the server's delay when it gave a usable one, else after backoff.
    Retry { server_delay: Option<Duration> },
    /// Do not try again.
    Stop(StopReason),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The status is a success, a redirect, or a client error that will not change.
    NotRetryable,
    /// The server said `x-should-retry: false`.
    ServerSaidNo,
    /// The server asked to wait longer than [`MAX_SERVER_DELAY`].
    WaitTooLong(Duration),
}

/// A failure that did not come with a status: how the transport broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportFailure {
    /// Could not connect (refused, DNS, TLS).
    Connect,
    /// Connect or read timed out.
    Timeout,
    /// The connection dropped while sending the request or reading the answer.
    Dropped,
    /// The request could not even be built (bad URL, bad header): retrying cannot help.
    Invalid,
}

impl TransportFailure {
    pub fn of(error: &reqwest::Error) -> TransportFailure {
        if error.is_builder() || error.is_redirect() {
            TransportFailure::Invalid
        } else if error.is_timeout() {
            TransportFailure::Timeout
        } else if error.is_connect() {
            TransportFailure::Connect
        } else {
            TransportFailure::Dropped
        }
    }
}

/// Classifies an answer by its status and headers. Successes and redirects are never retried.
pub fn classify_status(status: StatusCode, headers: &HeaderMap) -> RetryDecision {
    if !(status.is_client_error() || status.is_server_error()) {
        return RetryDecision::Stop(StopReason::NotRetryable);
    }
    let wanted = match should_retry_header(headers) {
        Some(false) => return RetryDecision::Stop(StopReason::ServerSaidNo),
        Some(true) => true,
        None => retryable_status(status),
    };
    if !wanted {
        return RetryDecision::Stop(StopReason::NotRetryable);
    }
    match server_delay(headers, SystemTime::now()) {
        Some(delay) if delay > MAX_SERVER_DELAY => {
            RetryDecision::Stop(StopReason::WaitTooLong(delay))
        }
        server_delay => RetryDecision::Retry { server_delay },
    }
}

/// Classifies a failure without an answer.
pub fn classify_transport(failure: TransportFailure) -> RetryDecision {
    match failure {
        TransportFailure::Invalid => RetryDecision::Stop(StopReason::NotRetryable),
        _ => RetryDecision::Retry { server_delay: None },
    }
}

fn retryable_status(status: StatusCode) -> bool {
    is_retryable_status(status.as_u16())
}

/// The statuses worth trying again without the server saying so: 408, 409, 429 and every 5xx.
/// The one list: the lanes' "is this request invalid" reads it too.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 409 | 429) || status >= 500
}

fn should_retry_header(headers: &HeaderMap) -> Option<bool> {
    match headers.get("x-should-retry")?.to_str().ok()?.trim() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// The delay the server asks for: `retry-after-ms`, else `Retry-After` in seconds or as a date.
pub fn server_delay(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    // A LiteLLM proxy passes its upstream's wait on under its own names.
    let ms = header_str(headers, "retry-after-ms")
        .or_else(|| header_str(headers, "llm_provider-retry-after-ms"));
    if let Some(ms) = ms.and_then(|v| v.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(seconds_at_most_max(ms / 1000.0));
    }
    let value = header_str(headers, "retry-after")
        .or_else(|| header_str(headers, "llm_provider-retry-after"))?;
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| seconds_at_most_max(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A wait of `seconds` (finite, not negative); one past what a `Duration` holds is the longest
/// there is, never a panic: the number is the server's.
fn seconds_at_most_max(seconds: f64) -> Duration {
    Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX)
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name)?.to_str().ok().map(str::trim)
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0 for the first retry).
    pub fn delay(&self, retry: u32, server_delay: Option<Duration>) -> Duration {
        if let Some(delay) = server_delay {
            return delay;
        }
        let jitter = rand::rng().random_range(0.75..=1.0);
        self.backoff(retry).mul_f64(jitter)
    }

    /// `min(base × 2^retry, max)`, before jitter.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.min(30));
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// What a [`RetryState`] says after a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Wait this long, then try again.
    Wait(Duration),
    /// Stop; with the wait that was declined when one was asked for (too long, or past the
    /// total budget), for the error to carry.
    GiveUp(Option<Duration>),
}

/// One operation's retries under a policy: how many were made and how long was waited.
#[derive(Clone, Debug)]
pub struct RetryState {
    policy: RetryPolicy,
    /// Retries since the last progress (the budget `max_retries` bounds).
    retries: u32,
    /// Attempts made so far, the first included (never reset).
    attempts: u32,
    waited: Duration,
}

impl RetryState {
    pub fn new(policy: RetryPolicy) -> RetryState {
        RetryState {
            policy,
            retries: 0,
            attempts: 1,
            waited: Duration::ZERO,
        }
    }

    /// After a failed attempt: the wait before the next, or give up.
    pub fn next(&mut self, decision: RetryDecision) -> Next {
        let server_delay = match decision {
            RetryDecision::Retry { server_delay } => server_delay,
            RetryDecision::Stop(StopReason::WaitTooLong(wait)) => return Next::GiveUp(Some(wait)),
            RetryDecision::Stop(_) => return Next::GiveUp(None),
        };
        if self.retries >= self.policy.max_retries {
            return Next::GiveUp(None);
        }
        let delay = self.policy.delay(self.retries, server_delay);
        if self.waited + delay > self.policy.max_total_wait {
            return Next::GiveUp(server_delay);
        }
        self.retries += 1;
        self.attempts += 1;
        self.waited += delay;
        Next::Wait(delay)
    }

    /// The operation moved forward (a download received bytes): the retry budget starts
    /// afresh, the total wait does not.
    pub fn progressed(&mut self) {
        self.retries = 0;
    }

    /// Attempts made so far, the first included.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Time spent waiting between attempts so far.
    pub fn waited(&self) -> Duration {
        self.waited
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn retry_after_accepts_seconds_milliseconds_and_dates() {
        let now = SystemTime::now();
        assert_eq!(
            server_delay(&headers(&[("retry-after", "3")]), now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            server_delay(
                &headers(&[("retry-after-ms", "250"), ("retry-after", "9")]),
                now
            ),
            Some(Duration::from_millis(250))
        );
        let in_ten = httpdate::fmt_http_date(now + Duration::from_secs(10));
        let delay = server_delay(&headers(&[("retry-after", &in_ten)]), now).unwrap();
        assert!(delay > Duration::from_secs(8) && delay <= Duration::from_secs(10));
        assert_eq!(
            server_delay(&headers(&[("retry-after", "soon")]), now),
            None
        );
        // A hostile size is the longest wait, which no caller waits for.
        assert_eq!(
            server_delay(&headers(&[("retry-after-ms", "1e300")]), now),
            Some(Duration::MAX)
        );
        assert_eq!(
            server_delay(&headers(&[("retry-after", "1e30")]), now),
            Some(Duration::MAX)
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let policy = RetryPolicy::default();
        let expected = [500, 1000, 2000, 4000, 8000, 8000];
        for (retry, ms) in expected.iter().enumerate() {
            assert_eq!(policy.backoff(retry as u32), Duration::from_millis(*ms));
        }
        for retry in 0..6 {
            let d = policy.delay(retry, None);
            assert!(d >= policy.backoff(retry).mul_f64(0.75) && d <= policy.backoff(retry));
        }
        assert_eq!(policy.backoff(u32::MAX), Duration::from_secs(8));
    }

    fn retry() -> RetryDecision {
        RetryDecision::Retry { server_delay: None }
    }

    #[test]
    fn state_bounds_attempts_and_honours_the_configured_delay() {
        let policy = RetryPolicy {
            max_retries: 2,
            base_delay: Duration::ZERO,
            ..RetryPolicy::default()
        };
        let mut state = RetryState::new(policy);
        assert_eq!(state.next(retry()), Next::Wait(Duration::ZERO));
        assert_eq!(state.next(retry()), Next::Wait(Duration::ZERO));
        assert_eq!(state.next(retry()), Next::GiveUp(None));
        assert_eq!(state.attempts(), 3);
        state.progressed();
        assert_eq!(state.next(retry()), Next::Wait(Duration::ZERO));
        assert_eq!(state.attempts(), 4);
    }

    #[test]
    fn state_honours_server_delays_and_the_total_budget() {
        let policy = RetryPolicy {
            max_retries: 10,
            max_total_wait: Duration::from_secs(5),
            ..RetryPolicy::default()
        };
        let mut state = RetryState::new(policy);
        let asked = |s| RetryDecision::Retry {
            server_delay: Some(Duration::from_secs(s)),
        };
        assert_eq!(state.next(asked(3)), Next::Wait(Duration::from_secs(3)));
        assert_eq!(
            state.next(asked(3)),
            Next::GiveUp(Some(Duration::from_secs(3)))
        );
        assert_eq!(state.waited(), Duration::from_secs(3));
        let too_long = RetryDecision::Stop(StopReason::WaitTooLong(Duration::from_secs(300)));
        assert_eq!(
            state.next(too_long),
            Next::GiveUp(Some(Duration::from_secs(300)))
        );
        assert_eq!(
            state.next(RetryDecision::Stop(StopReason::NotRetryable)),
            Next::GiveUp(None)
        );
    }
}
