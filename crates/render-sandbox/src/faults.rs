//! Fault injection: which requests fail, how, and when, decided by a seeded ChaCha generator so a
//! run with the same seed and the same request order injects the same faults.
//!
//! HTTP faults are rules scoped to an endpoint pattern (`GET /v1/videos/*/content`); batch faults
//! (requests failing inside a batch, batches expiring, moderation rejections) are triggers drawn
//! once per request or batch. Each trigger fires by `rate` (a probability), by `nth` (1-based
//! positions among matching events) or both, at most `limit` times.

use std::fmt;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

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

    fn is_set(&self) -> bool {
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

/// `METHOD /path/*/pattern`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct EndpointPattern {
    method: Option<String>,
    /// `None`: every path.
    segments: Option<Vec<String>>,
}

impl EndpointPattern {
    fn parse(text: &str) -> Result<EndpointPattern, FaultSpecError> {
        let text = text.trim();
        let (method, path) = match text.split_once(char::is_whitespace) {
            Some((m, p)) => (Some(m), p.trim()),
            None if text.starts_with('/') || text == "*" => (None, text),
            None => (Some(text), "*"),
        };
        let method = method.filter(|m| *m != "*").map(|m| m.to_ascii_uppercase());
        if let Some(m) = &method
            && !["GET", "POST", "DELETE", "PUT", "PATCH", "HEAD"].contains(&m.as_str())
        {
            return Err(FaultSpecError(format!(
                "`{text}`: `{m}` is not an HTTP method (write e.g. `GET /v1/videos/*/content`)"
            )));
        }
        if path == "*" {
            return Ok(EndpointPattern {
                method,
                segments: None,
            });
        }
        if !path.starts_with('/') {
            return Err(FaultSpecError(format!(
                "`{text}`: the path must start with `/` (e.g. `/v1/files`)"
            )));
        }
        Ok(EndpointPattern {
            method,
            segments: Some(split_path(path).map(str::to_string).collect()),
        })
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        if let Some(m) = &self.method
            && !m.eq_ignore_ascii_case(method)
        {
            return false;
        }
        let Some(pattern) = &self.segments else {
            return true;
        };
        let mut actual = split_path(path);
        for (i, want) in pattern.iter().enumerate() {
            if want == "**" && i + 1 == pattern.len() {
                return true;
            }
            match actual.next() {
                Some(got) if want == "*" || want == got => {}
                _ => return false,
            }
        }
        actual.next().is_none()
    }
}

fn split_path(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

/// What the fault layer does to one request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    pub delay: Option<Duration>,
    /// Answer this instead of calling the handler.
    pub respond: Option<Fault>,
    /// Abort the connection after this many body bytes.
    pub drop_after: Option<u64>,
    /// Go silent after this many body bytes, for this long, then abort.
    pub stall: Option<(u64, Duration)>,
    /// Serve the whole body, as if the request had no `Range` header.
    pub ignore_range: bool,
    /// Damage the real answer this way.
    pub malform: Option<Malformation>,
    /// Names of the faults applied, for the stats.
    pub applied: Vec<&'static str>,
}

struct TriggerState {
    seen: u64,
    fired: u64,
}

impl TriggerState {
    fn new() -> TriggerState {
        TriggerState { seen: 0, fired: 0 }
    }

    /// Counts one matching event and says whether the fault fires on it.
    fn fires(&mut self, when: &Trigger, rng: &mut ChaCha8Rng) -> bool {
        if !when.is_set() {
            return false;
        }
        self.seen += 1;
        if when.limit.is_some_and(|limit| self.fired >= limit) {
            return false;
        }
        let by_position = when.nth.contains(&self.seen);
        // Always draw when a rate is set, so later draws do not depend on `nth` hits.
        let by_rate = when
            .rate
            .is_some_and(|rate| rng.random_bool(rate.clamp(0.0, 1.0)));
        let fired = by_position || by_rate;
        if fired {
            self.fired += 1;
        }
        fired
    }
}

/// The live fault state: the configuration plus the generator and per-rule counters.
pub struct FaultEngine {
    config: FaultConfig,
    patterns: Vec<EndpointPattern>,
    rng: ChaCha8Rng,
    rules: Vec<TriggerState>,
    batch_request_failure: TriggerState,
    batch_expire: TriggerState,
    moderation: TriggerState,
}

impl FaultEngine {
    pub fn new(config: FaultConfig, default_seed: u64) -> Result<FaultEngine, FaultSpecError> {
        config.validate()?;
        let patterns = config
            .http
            .iter()
            .map(|r| EndpointPattern::parse(&r.endpoint))
            .collect::<Result<Vec<_>, _>>()?;
        let seed = config.seed.unwrap_or(default_seed) ^ 0xFA17_5EED;
        Ok(FaultEngine {
            rules: config.http.iter().map(|_| TriggerState::new()).collect(),
            patterns,
            rng: ChaCha8Rng::seed_from_u64(seed),
            batch_request_failure: TriggerState::new(),
            batch_expire: TriggerState::new(),
            moderation: TriggerState::new(),
            config,
        })
    }

    pub fn config(&self) -> &FaultConfig {
        &self.config
    }

    /// Decides the HTTP faults of one request.
    pub fn decide(&mut self, method: &str, path: &str) -> Decision {
        let mut decision = Decision::default();
        for (i, rule) in self.config.http.iter().enumerate() {
            if !self.patterns[i].matches(method, path) {
                continue;
            }
            if !self.rules[i].fires(&rule.when, &mut self.rng) {
                continue;
            }
            match &rule.fault {
                Fault::Slow { delay_ms } => {
                    let total =
                        decision.delay.unwrap_or_default() + Duration::from_millis(*delay_ms);
                    decision.delay = Some(total);
                }
                Fault::Drop { after_bytes } if decision.respond.is_none() => {
                    decision.drop_after = Some(
                        decision
                            .drop_after
                            .map_or(*after_bytes, |b| b.min(*after_bytes)),
                    );
                }
                Fault::Stall {
                    after_bytes,
                    stall_ms,
                } if decision.respond.is_none() && decision.stall.is_none() => {
                    decision.stall = Some((*after_bytes, Duration::from_millis(*stall_ms)));
                }
                Fault::IgnoreRange if !decision.ignore_range => decision.ignore_range = true,
                Fault::Malformed { shape }
                    if decision.respond.is_none() && decision.malform.is_none() =>
                {
                    decision.malform = Some(*shape);
                }
                fault @ (Fault::RateLimit { .. }
                | Fault::ServerError { .. }
                | Fault::NotFound
                | Fault::ShouldRetry { .. })
                    if decision.respond.is_none()
                        && decision.drop_after.is_none()
                        && decision.stall.is_none() =>
                {
                    decision.respond = Some(fault.clone());
                }
                _ => continue,
            }
            decision.applied.push(rule.fault.name());
        }
        decision
    }

    /// Whether a rendered batch request fails (drawn once per request).
    pub fn batch_request_fails(&mut self) -> bool {
        let when = self.config.batch_request_failure.clone();
        self.batch_request_failure.fires(&when, &mut self.rng)
    }

    /// Whether a new batch is doomed to expire (drawn once per batch).
    pub fn batch_expires(&mut self) -> bool {
        let when = self.config.batch_expire.clone();
        self.batch_expire.fires(&when, &mut self.rng)
    }

    /// Whether a render is rejected by moderation (drawn once per render).
    pub fn moderation_rejects(&mut self) -> bool {
        let when = self.config.moderation.clone();
        self.moderation.fires(&when, &mut self.rng)
    }
}

impl fmt::Debug for FaultEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultEngine")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Parses the CLI's `--fault` syntax: `[ENDPOINT:] KIND [key=value]...`, e.g.
/// `GET /v1/videos/*/content: drop after_bytes=65536 rate=0.1` or `rate_limit nth=1,2`.
/// Keys: `rate`, `nth`, `limit`, and the kind's own (`retry_after_ms`, `status`, `after_bytes`,
/// `delay_ms`, `stall_ms`). Without an endpoint the rule applies to every API request.
/// `not_found` answers 404 in the dialect's shape (`GET /v1/videos/*: not_found rate=0.2`);
/// `server_error` stays 5xx; `stall after_bytes=4096 stall_ms=5000` sends headers and 4 KiB
/// then goes silent; `ignore_range` (also `ignore-range`) answers a `Range:` request whole;
/// `should_retry status=500 retry=false` answers with `x-should-retry`.
pub fn parse_rule(spec: &str) -> Result<FaultRule, FaultSpecError> {
    let err = |msg: String| FaultSpecError(format!("`{spec}`: {msg}"));
    let (endpoint, rest) = match spec.split_once(':') {
        Some((e, r)) => (e.trim().to_string(), r.trim()),
        None => ("*".to_string(), spec.trim()),
    };
    let mut words = rest.split_whitespace();
    let kind = words.next().ok_or_else(|| {
        err(
            "missing fault kind (rate_limit, server_error, not_found, drop, slow, stall, \
             ignore_range, malformed)"
                .into(),
        )
    })?;
    // The CLI's spelling may use dashes (`ignore-range`); the JSON kinds use underscores.
    let kind = kind.replace('-', "_");
    let mut when = Trigger::default();
    let mut params = serde_json::Map::new();
    params.insert("kind".into(), kind.clone().into());
    for word in words {
        let (key, value) = word
            .split_once('=')
            .ok_or_else(|| err(format!("`{word}` is not key=value")))?;
        let number = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| err(format!("`{key}` wants a whole number, got `{v}`")))
        };
        match key {
            "rate" => {
                when.rate = Some(
                    value
                        .parse()
                        .map_err(|_| err(format!("rate `{value}` is not a number")))?,
                )
            }
            "nth" => {
                when.nth = value
                    .split(',')
                    .map(number)
                    .collect::<Result<Vec<_>, _>>()?
            }
            "limit" => when.limit = Some(number(value)?),
            "retry" => {
                let retry = value
                    .parse::<bool>()
                    .map_err(|_| err(format!("retry `{value}` is not true or false")))?;
                params.insert(key.into(), retry.into());
            }
            "shape" => {
                params.insert(key.into(), value.into());
            }
            _ => {
                params.insert(key.into(), number(value)?.into());
            }
        }
    }
    if !when.is_set() {
        when = Trigger::always();
    }
    let fault: Fault = serde_json::from_value(serde_json::Value::Object(params))
        .map_err(|e| err(e.to_string()))?;
    let rule = FaultRule {
        endpoint,
        fault,
        when,
    };
    FaultConfig::default().rule(rule.clone()).validate()?;
    Ok(rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_methods_and_segments() {
        let cases = [
            (
                "GET /v1/videos/*/content",
                "GET",
                "/v1/videos/video_1/content",
                true,
            ),
            (
                "GET /v1/videos/*/content",
                "GET",
                "/v1/videos/video_1",
                false,
            ),
            (
                "GET /v1/videos/*/content",
                "POST",
                "/v1/videos/video_1/content",
                false,
            ),
            ("/v1/files", "POST", "/v1/files", true),
            ("* /v1/**", "DELETE", "/v1/files/file-1", true),
            ("*", "GET", "/v1/batches", true),
            ("POST", "POST", "/v1/batches", true),
            ("get /v1/batches", "GET", "/v1/batches", true),
        ];
        for (pattern, method, path, expected) in cases {
            let p = EndpointPattern::parse(pattern).unwrap();
            assert_eq!(
                p.matches(method, path),
                expected,
                "{pattern} vs {method} {path}"
            );
        }
        assert!(EndpointPattern::parse("FETCH /v1").is_err());
        assert!(EndpointPattern::parse("GET v1/files").is_err());
    }

    #[test]
    fn nth_and_limit_pick_exact_requests() {
        let config = FaultConfig::default().rule(
            FaultRule::new("GET /v1/files", Fault::ServerError { status: 503 })
                .nth([2, 3])
                .limit(1),
        );
        let mut engine = FaultEngine::new(config, 1).unwrap();
        let hits: Vec<bool> = (0..4)
            .map(|_| engine.decide("GET", "/v1/files").respond.is_some())
            .collect();
        assert_eq!(hits, [false, true, false, false]);
        assert!(engine.decide("GET", "/v1/batches").respond.is_none());
    }

    #[test]
    fn the_same_seed_injects_the_same_faults() {
        let config = FaultConfig::default()
            .rule(FaultRule::new("*", Fault::RateLimit { retry_after_ms: 10 }).rate(0.3));
        let run = |seed| {
            let mut engine = FaultEngine::new(config.clone(), seed).unwrap();
            (0..64)
                .map(|_| engine.decide("GET", "/v1/x").respond.is_some())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        let hits = run(7).into_iter().filter(|h| *h).count();
        assert!((5..=35).contains(&hits), "{hits}");
    }

    #[test]
    fn cli_specs_parse_into_rules() {
        let rule = parse_rule("GET /v1/videos/*/content: drop after_bytes=4096 rate=0.5").unwrap();
        assert_eq!(rule.endpoint, "GET /v1/videos/*/content");
        assert_eq!(rule.fault, Fault::Drop { after_bytes: 4096 });
        assert_eq!(rule.when, Trigger::rate(0.5));
        let rule = parse_rule("server_error status=502 nth=1,3").unwrap();
        assert_eq!(rule.endpoint, "*");
        assert_eq!(rule.fault, Fault::ServerError { status: 502 });
        assert_eq!(rule.when.nth, [1, 3]);
        let rule = parse_rule("GET /v1/batches/*: malformed shape=unknown_status nth=2").unwrap();
        assert_eq!(
            rule.fault,
            Fault::Malformed {
                shape: Malformation::UnknownStatus
            }
        );
        assert_eq!(
            parse_rule("malformed").unwrap().fault,
            Fault::Malformed {
                shape: Malformation::TruncatedJson
            }
        );
        assert!(parse_rule("malformed shape=sideways").is_err());
        assert!(parse_rule("explode").is_err());
        assert!(parse_rule("server_error status=404").is_err());
        assert!(parse_rule("slow delay_ms=10 rate=2").is_err());
    }

    #[test]
    fn not_found_answers_in_place_of_the_handler() {
        let rule = parse_rule("GET /v1/videos/*: not_found rate=0.2").unwrap();
        assert_eq!(rule.fault, Fault::NotFound);
        assert_eq!(rule.when, Trigger::rate(0.2));
        let config = FaultConfig::default().rule(rule.nth([1]));
        let mut engine = FaultEngine::new(config, 1).unwrap();
        let decision = engine.decide("GET", "/v1/videos/video_1");
        assert_eq!(decision.respond, Some(Fault::NotFound));
        assert_eq!(decision.applied, ["not_found"]);
        assert!(
            engine
                .decide("GET", "/v1/videos/video_1/content")
                .respond
                .is_none()
        );
    }

    #[test]
    fn stall_and_ignore_range_parse_and_decide() {
        let rule =
            parse_rule("GET /v1/videos/*/content: stall after_bytes=10 stall_ms=50 nth=1").unwrap();
        assert_eq!(
            rule.fault,
            Fault::Stall {
                after_bytes: 10,
                stall_ms: 50
            }
        );
        let ignore = parse_rule("GET /v1/videos/*/content: ignore-range").unwrap();
        assert_eq!(ignore.fault, Fault::IgnoreRange);
        assert_eq!(
            parse_rule("ignore_range").unwrap().fault,
            Fault::IgnoreRange
        );
        assert_eq!(
            parse_rule("should-retry status=400 retry=true")
                .unwrap()
                .fault,
            Fault::ShouldRetry {
                status: 400,
                retry: true
            }
        );
        assert!(parse_rule("should_retry status=200 retry=true").is_err());
        assert_eq!(
            parse_rule("stall").unwrap().fault,
            Fault::Stall {
                after_bytes: 0,
                stall_ms: 30_000
            }
        );
        let mut engine =
            FaultEngine::new(FaultConfig::default().rule(rule).rule(ignore), 1).unwrap();
        let first = engine.decide("GET", "/v1/videos/v/content");
        assert_eq!(first.stall, Some((10, Duration::from_millis(50))));
        assert!(first.ignore_range);
        assert_eq!(first.applied, ["stall", "ignore_range"]);
        let second = engine.decide("GET", "/v1/videos/v/content");
        assert_eq!(second.stall, None);
        assert!(second.ignore_range);
    }

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
