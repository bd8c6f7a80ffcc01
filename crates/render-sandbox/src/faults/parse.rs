//! The command line's `--fault` syntax, parsed into a [`FaultRule`].

use super::config::{Fault, FaultConfig, FaultRule, FaultSpecError, Trigger};

/// Parses the CLI's `--fault` syntax: `[ENDPOINT:] KIND [key=value]...`, e.g.
/// `GET /v1/videos/*/content: drop after_bytes=65536 rate=0.1` or `rate_limit nth=1,2`.
/// Keys: `rate`, `nth`, `limit`, and the kind's own (`retry_after_ms`, `status`, `after_bytes`,
/// `delay_ms`, `stall_ms`). Without an endpoint the rule applies to every API request.
/// `not_found` answers 404 in the dialect's shape (`GET /v1/videos/*: not_found rate=0.2`);
/// `server_error` stays 5xx; `unavailable retry_after_ms=2000` is a 503 with `Retry-After`;
/// `stall after_bytes=4096 stall_ms=5000` sends headers and 4 KiB then goes silent;
/// `ignore_range` (also `ignore-range`) answers a `Range:` request whole;
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
            "missing fault kind (rate_limit, server_error, unavailable, not_found, drop, slow, \
             stall, ignore_range, malformed)"
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
    use crate::faults::Malformation;

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
        let rule = parse_rule("POST /v1/videos: unavailable retry_after_ms=2500").unwrap();
        assert_eq!(
            rule.fault,
            Fault::Unavailable {
                retry_after_ms: 2500
            }
        );
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
}
