//! The fault knobs: what fails ([`Fault`]), where ([`FaultRule`]'s endpoint) and when
//! ([`Trigger`]), gathered in [`FaultConfig`], the JSON shape of `POST /sandbox/faults`.

use serde::{Deserialize, Serialize};

use super::pattern::EndpointPattern;

/// When a fault fires.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// Probability in [0, 1] that a matching event gets the fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// 1-based positions among matching events that get the fault (`[1, 2]`: the first two).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nth: Vec<u64>,
    /// Fire at most this many times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

impl Trigger {
    pub fn rate(rate: f64) -> Trigger {
        Trigger {
            rate: Some(rate),
            ..Trigger::default()
        }
    }

    pub fn nth(positions: impl IntoIterator<Item = u64>) -> Trigger {
        Trigger {
            nth: positions.into_iter().collect(),
            ..Trigger::default()
        }
    }

    pub fn always() -> Trigger {
        Trigger::rate(1.0)
    }

    pub fn limit(mut self, limit: u64) -> Trigger {
        self.limit = Some(limit);
        self
    }

    pub(super) fn is_set(&self) -> bool {
        self.rate.is_some_and(|r| r > 0.0) || !self.nth.is_empty()
    }
}

/// What happens to a request a rule fires on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// 429 with `Retry-After` and `retry-after-ms`.
    RateLimit {
        #[serde(default = "default_retry_after_ms")]
        retry_after_ms: u64,
    },
    /// 500, 502 or 503 with a `server_error` body.
    ServerError {
        #[serde(default = "default_status")]
        status: u16,
    },
    /// 503 with `Retry-After` and `retry-after-ms`: an overloaded server, or a gateway whose
    /// upstream is, asking to be left alone that long (unlike a 429, it does not say that
    /// nothing was done).
    Unavailable {
        #[serde(default = "default_retry_after_ms")]
        retry_after_ms: u64,
    },
    /// The real answer's headers, `after_bytes` of its body, then the connection is aborted.
    Drop {
        #[serde(default)]
        after_bytes: u64,
    },
    /// An error answer `status` (4xx or 5xx) with `x-should-retry: retry`: the header with which
    /// the real service overrides a client's retry rules either way.
    ShouldRetry { status: u16, retry: bool },
    /// 404 in the dialect's shape, as if the object at the path were unknown (a live video
    /// the server answers for now and then, a restarted server).
    NotFound,
    /// The real answer, `delay_ms` late.
    Slow { delay_ms: u64 },
    /// The real answer's headers and `after_bytes` of its body, then silence for `stall_ms`
    /// (a hung upstream), then the connection is aborted. A client must time out and retry.
    Stall {
        #[serde(default)]
        after_bytes: u64,
        #[serde(default = "default_stall_ms")]
        stall_ms: u64,
    },
    /// The `Range` header of the request is ignored: the answer is the whole body with 200,
    /// as some servers and proxies do. A resuming client must skip or restart.
    IgnoreRange,
    /// The real answer, damaged in the way of `shape`.
    Malformed {
        #[serde(default)]
        shape: Malformation,
    },
}

/// How a [`Fault::Malformed`] answer is damaged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Malformation {
    /// The body stops halfway (its Content-Length matches the cut body): JSON that does not parse.
    #[default]
    TruncatedJson,
    /// The whole body is sent, but Content-Length announces more bytes than it has.
    LongerContentLength,
    /// Every `status` in the JSON answer (and in its `data` items) becomes one the API never
    /// defined.
    UnknownStatus,
}

impl Malformation {
    /// The status an [`Malformation::UnknownStatus`] answer carries.
    pub const UNKNOWN_STATUS: &'static str = "paused_for_maintenance";
}

fn default_retry_after_ms() -> u64 {
    1_000
}

fn default_stall_ms() -> u64 {
    30_000
}

fn default_status() -> u16 {
    500
}

impl Fault {
    /// The name faults are counted under in the stats.
    pub fn name(&self) -> &'static str {
        match self {
            Fault::RateLimit { .. } => "rate_limit",
            Fault::ServerError { .. } => "server_error",
            Fault::Unavailable { .. } => "unavailable",
            Fault::NotFound => "not_found",
            Fault::ShouldRetry { .. } => "should_retry",
            Fault::Drop { .. } => "drop",
            Fault::Slow { .. } => "slow",
            Fault::Stall { .. } => "stall",
            Fault::IgnoreRange => "ignore_range",
            Fault::Malformed { .. } => "malformed",
        }
    }
}

/// An HTTP fault scoped to an endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    /// `METHOD /path` with `*` for one path segment and a trailing `**` for the rest; the method
    /// may be `*` or left out. `*` alone matches every API request.
    pub endpoint: String,
    pub fault: Fault,
    #[serde(flatten)]
    pub when: Trigger,
}

impl FaultRule {
    /// A rule that fires on every matching request until restricted with `rate`/`nth`/`limit`.
    pub fn new(endpoint: impl Into<String>, fault: Fault) -> FaultRule {
        FaultRule {
            endpoint: endpoint.into(),
            fault,
            when: Trigger::always(),
        }
    }

    pub fn rate(mut self, rate: f64) -> FaultRule {
        self.when.rate = Some(rate);
        self
    }

    pub fn nth(mut self, positions: impl IntoIterator<Item = u64>) -> FaultRule {
        self.when.rate = None;
        self.when.nth = positions.into_iter().collect();
        self
    }

    pub fn limit(mut self, limit: u64) -> FaultRule {
        self.when.limit = Some(limit);
        self
    }
}

/// Every fault knob; the JSON shape of `POST /sandbox/faults`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultConfig {
    /// Reseeds the fault generator (the sandbox seed when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default)]
    pub http: Vec<FaultRule>,
    /// Batch requests that render and then fail with a 500 line in the error file.
    #[serde(default)]
    pub batch_request_failure: Trigger,
    /// Batches (drawn at creation) that expire when half their requests are done.
    #[serde(default)]
    pub batch_expire: Trigger,
    /// Renders rejected by moderation (`moderation_blocked`), on top of the prompt blocklist.
    #[serde(default)]
    pub moderation: Trigger,
}

impl FaultConfig {
    pub fn none() -> FaultConfig {
        FaultConfig::default()
    }

    pub fn seed(mut self, seed: u64) -> FaultConfig {
        self.seed = Some(seed);
        self
    }

    pub fn rule(mut self, rule: FaultRule) -> FaultConfig {
        self.http.push(rule);
        self
    }

    pub fn batch_request_failure(mut self, when: Trigger) -> FaultConfig {
        self.batch_request_failure = when;
        self
    }

    pub fn batch_expire(mut self, when: Trigger) -> FaultConfig {
        self.batch_expire = when;
        self
    }

    pub fn moderation(mut self, when: Trigger) -> FaultConfig {
        self.moderation = when;
        self
    }

    /// Checks patterns, rates and statuses, so a typo fails loudly instead of never firing.
    pub fn validate(&self) -> Result<(), FaultSpecError> {
        let triggers = self.http.iter().map(|r| (&r.endpoint[..], &r.when)).chain([
            ("batch_request_failure", &self.batch_request_failure),
            ("batch_expire", &self.batch_expire),
            ("moderation", &self.moderation),
        ]);
        for (what, when) in triggers {
            if let Some(rate) = when.rate
                && !(0.0..=1.0).contains(&rate)
            {
                return Err(FaultSpecError(format!(
                    "{what}: rate {rate} is not a probability between 0 and 1"
                )));
            }
            if when.nth.contains(&0) {
                return Err(FaultSpecError(format!("{what}: nth positions start at 1")));
            }
        }
        for rule in &self.http {
            EndpointPattern::parse(&rule.endpoint)?;
            if let Fault::ServerError { status } = rule.fault
                && !(500..=599).contains(&status)
            {
                return Err(FaultSpecError(format!(
                    "{}: server_error status {status} is not a 5xx",
                    rule.endpoint
                )));
            }
            if let Fault::ShouldRetry { status, .. } = rule.fault
                && !(400..=599).contains(&status)
            {
                return Err(FaultSpecError(format!(
                    "{}: should_retry status {status} is not an error status",
                    rule.endpoint
                )));
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid fault: {0}")]
pub struct FaultSpecError(pub String);
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_config_json_round_trips() {
        let json = r#"{"http":[{"endpoint":"GET /v1/videos/*/content","fault":{"kind":"rate_limit","retry_after_ms":250},"rate":0.5}],
                       "batch_expire":{"nth":[1]},"moderation":{"rate":0.1,"limit":2}}"#;
        let config: FaultConfig = serde_json::from_str(json).unwrap();
        assert_eq!(
            config.http[0].fault,
            Fault::RateLimit {
                retry_after_ms: 250
            }
        );
        assert_eq!(config.batch_expire.nth, [1]);
        let again: FaultConfig =
            serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
        assert_eq!(again, config);
    }
}
