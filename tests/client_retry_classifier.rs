//! The retry classifier over every status code, header override and transport failure.

use std::time::Duration;

use render_pipeline::api::retry::{
    MAX_SERVER_DELAY, RetryDecision, StopReason, TransportFailure, classify_status,
    classify_transport,
};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(*name, HeaderValue::from_str(value).unwrap());
    }
    map
}

fn is_retryable(code: u16) -> bool {
    matches!(code, 408 | 409 | 429) || code >= 500
}

#[test]
fn every_status_code_is_classified_like_the_sdk() {
    for code in 100..=599u16 {
        let status = StatusCode::from_u16(code).unwrap();
        let decision = classify_status(status, &HeaderMap::new());
        let expected = if is_retryable(code) {
            RetryDecision::Retry { server_delay: None }
        } else {
            RetryDecision::Stop(StopReason::NotRetryable)
        };
        assert_eq!(decision, expected, "status {code}");
    }
}

#[test]
fn x_should_retry_overrides_errors_but_never_successes() {
    let yes = headers(&[("x-should-retry", "true")]);
    let no = headers(&[("x-should-retry", "false")]);
    for code in 100..=599u16 {
        let status = StatusCode::from_u16(code).unwrap();
        let is_error = code >= 400;
        let forced = classify_status(status, &yes);
        let refused = classify_status(status, &no);
        if is_error {
            assert_eq!(
                forced,
                RetryDecision::Retry { server_delay: None },
                "{code}"
            );
            assert_eq!(
                refused,
                RetryDecision::Stop(StopReason::ServerSaidNo),
                "{code}"
            );
        } else {
            assert_eq!(
                forced,
                RetryDecision::Stop(StopReason::NotRetryable),
                "{code}"
            );
            assert_eq!(
                refused,
                RetryDecision::Stop(StopReason::NotRetryable),
                "{code}"
            );
        }
    }
}

#[test]
fn server_delays_up_to_two_minutes_are_used_and_longer_ones_stop() {
    let cases = [
        (
            headers(&[("retry-after", "7")]),
            Some(Duration::from_secs(7)),
        ),
        (
            headers(&[("retry-after-ms", "1500")]),
            Some(Duration::from_millis(1500)),
        ),
        // A LiteLLM proxy renames its upstream's Retry-After.
        (
            headers(&[("llm_provider-retry-after-ms", "3000")]),
            Some(Duration::from_secs(3)),
        ),
        (
            headers(&[("llm_provider-retry-after", "2")]),
            Some(Duration::from_secs(2)),
        ),
        (headers(&[("retry-after", "120")]), Some(MAX_SERVER_DELAY)),
        (headers(&[("retry-after", "not a number")]), None),
    ];
    for code in [408u16, 409, 429, 500, 502, 503, 504, 599] {
        let status = StatusCode::from_u16(code).unwrap();
        for (headers, delay) in &cases {
            assert_eq!(
                classify_status(status, headers),
                RetryDecision::Retry {
                    server_delay: *delay
                },
                "{code} {headers:?}"
            );
        }
        let long = headers(&[("retry-after", "121")]);
        assert_eq!(
            classify_status(status, &long),
            RetryDecision::Stop(StopReason::WaitTooLong(Duration::from_secs(121)))
        );
    }
    // A long wait on a status that is not retried anyway stays "not retryable".
    let long = headers(&[("retry-after", "600")]);
    assert_eq!(
        classify_status(StatusCode::BAD_REQUEST, &long),
        RetryDecision::Stop(StopReason::NotRetryable)
    );
}

#[test]
fn transport_failures_retry_unless_the_request_is_invalid() {
    for failure in [
        TransportFailure::Connect,
        TransportFailure::Timeout,
        TransportFailure::Dropped,
    ] {
        assert_eq!(
            classify_transport(failure),
            RetryDecision::Retry { server_delay: None }
        );
    }
    assert_eq!(
        classify_transport(TransportFailure::Invalid),
        RetryDecision::Stop(StopReason::NotRetryable)
    );
}
