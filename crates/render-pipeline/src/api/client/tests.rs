use super::*;

#[test]
fn key_never_shows_in_debug_or_display() {
    let config = ClientConfig::new(DEFAULT_BASE_URL, ApiKey::new("sk-live-SECRET123"));
    assert!(!format!("{config:?}").contains("SECRET123"));
    assert_eq!(config.api_key.unwrap().to_string(), "sk-…redacted");
}

#[test]
fn credentials_in_urls_are_masked() {
    let masked = mask_url("https://user:hunter2@example.com/v1?api_key=abc&limit=3");
    assert!(
        !masked.contains("hunter2") && !masked.contains("abc"),
        "{masked}"
    );
    assert!(masked.contains("limit=3"));
}

#[test]
fn from_env_requires_a_key_and_defaults_the_base() {
    let missing = ClientConfig::from_lookup(|_| None).unwrap_err();
    assert!(matches!(missing, ApiError::MissingApiKey));
    assert!(missing.to_string().contains("OPENAI_API_KEY"));
    let config =
        ClientConfig::from_lookup(|name| (name == "OPENAI_API_KEY").then(|| "sk-test".to_string()))
            .unwrap();
    assert_eq!(config.base_url, DEFAULT_BASE_URL);
}

#[test]
fn error_messages_come_out_of_every_servers_shape() {
    let cases: [(&str, &str); 6] = [
        (
            r#"{"error":{"message":"Video not found","code":"not_found"}}"#,
            "Video not found (not_found)",
        ),
        (r#"{"error":{"message":"boom","code":500}}"#, "boom"),
        (r#"{"error":{"message":"no code here"}}"#, "no code here"),
        (
            r#"{"detail":"Generation is still in-progress"}"#,
            "Generation is still in-progress",
        ),
        (
            r#"{"detail":[{"type":"missing","loc":["body","prompt"],"msg":"Field required"}]}"#,
            "body.prompt: Field required",
        ),
        (r#"{"message":"plain"}"#, "plain"),
    ];
    for (body, expected) in cases {
        assert_eq!(
            error_message_of(body.as_bytes()).as_deref(),
            Some(expected),
            "{body}"
        );
    }
    assert_eq!(error_message_of(b"Internal Server Error"), None);
}

#[test]
fn content_range_forms_parse() {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_RANGE,
        HeaderValue::from_static("bytes 10-99/100"),
    );
    let r = content_range(&headers).unwrap();
    assert_eq!((r.start, r.total), (Some(10), Some(100)));
    headers.insert(
        header::CONTENT_RANGE,
        HeaderValue::from_static("bytes */100"),
    );
    let r = content_range(&headers).unwrap();
    assert_eq!((r.start, r.total), (None, Some(100)));
    headers.insert(
        header::CONTENT_RANGE,
        HeaderValue::from_static("items 1-2/3"),
    );
    assert!(content_range(&headers).is_none());
}
