//! Endpoint patterns: `METHOD /path` with `*` for one segment and a trailing `**` for the rest,
//! the scope of an HTTP fault rule.

use super::config::FaultSpecError;

/// `METHOD /path/*/pattern`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct EndpointPattern {
    method: Option<String>,
    /// `None`: every path.
    segments: Option<Vec<String>>,
}

impl EndpointPattern {
    pub(super) fn parse(text: &str) -> Result<EndpointPattern, FaultSpecError> {
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

    pub(super) fn matches(&self, method: &str, path: &str) -> bool {
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
}
