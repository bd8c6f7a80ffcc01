//! The live fault state: a seeded ChaCha generator and per-rule counters that decide, request
//! by request, which faults fire, so the same seed and request order inject the same faults.

use std::fmt;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::config::{Fault, FaultConfig, FaultSpecError, Malformation, Trigger};
use super::pattern::EndpointPattern;

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
                | Fault::Unavailable { .. }
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
#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::{FaultRule, parse_rule};

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
}
