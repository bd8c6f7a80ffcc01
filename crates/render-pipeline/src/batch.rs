//! Plan → JSONL batch input files, split so that no file passes the provider's limits.
//!
//! Pure: requests in, bytes out. Uploading is `submit`'s job.

pub use render_wire::api::BatchLimits;
use render_wire::api::{BatchInputLine, CreateVideo};
use render_wire::key::RequestKey;

/// The only endpoint a `render` batch calls.
pub const VIDEOS_ENDPOINT: &str = "/v1/videos";

const CUSTOM_ID_PREFIX: &str = "render-";

/// One batch input file and the requests it carries, in line order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledPart {
    pub keys: Vec<RequestKey>,
    pub jsonl: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error(
        "request {custom_id} alone is {bytes} bytes, over the batch file limit of {max_bytes} bytes"
    )]
    LineTooLarge {
        custom_id: String,
        bytes: u64,
        max_bytes: u64,
    },
    #[error("batch limits must allow at least one request per file")]
    ZeroLimit,
}

/// The `custom_id` of a request: derived from its key, so it is unique, stable across reruns,
/// and maps back to the request without trusting anything else in the line.
pub fn custom_id(key: &RequestKey) -> String {
    format!("{CUSTOM_ID_PREFIX}{}", key.hex())
}

/// The key a `custom_id` names, or `None` when it is not one of ours.
pub fn parse_custom_id(custom_id: &str) -> Option<RequestKey> {
    custom_id.strip_prefix(CUSTOM_ID_PREFIX)?.parse().ok()
}

/// The JSON body of `POST /v1/videos`, before its reference image (if any) is named by the
/// file id it was uploaded as. `seconds` travels as the API's string.
pub fn video_body(model: &str, size: &str, seconds: u32, prompt: &str) -> CreateVideo {
    CreateVideo {
        prompt: prompt.to_string(),
        model: Some(model.to_string()),
        size: Some(size.to_string()),
        seconds: Some(seconds.to_string()),
        input_reference: None,
    }
}

/// Encodes requests as JSONL files, starting a new file before one would pass a limit.
pub fn compile(
    requests: impl IntoIterator<Item = (RequestKey, CreateVideo)>,
    limits: BatchLimits,
) -> Result<Vec<CompiledPart>, BatchError> {
    if limits.max_requests == 0 || limits.max_bytes == 0 {
        return Err(BatchError::ZeroLimit);
    }
    let mut parts = Vec::new();
    let mut current = CompiledPart {
        keys: Vec::new(),
        jsonl: Vec::new(),
    };
    for (key, body) in requests {
        // Encoded in place at the end of the current file, then moved on if it does not fit.
        let start = current.jsonl.len();
        encode_line(&key, body, &mut current.jsonl);
        let line_len = (current.jsonl.len() - start) as u64;
        if line_len > limits.max_bytes {
            return Err(BatchError::LineTooLarge {
                custom_id: custom_id(&key),
                bytes: line_len,
                max_bytes: limits.max_bytes,
            });
        }
        let full =
            current.keys.len() >= limits.max_requests || start as u64 + line_len > limits.max_bytes;
        if full {
            let line = current.jsonl.split_off(start);
            parts.push(std::mem::replace(
                &mut current,
                CompiledPart {
                    keys: Vec::new(),
                    jsonl: line,
                },
            ));
        }
        current.keys.push(key);
    }
    if !current.keys.is_empty() {
        parts.push(current);
    }
    Ok(parts)
}

/// Appends the request's JSONL line (with its newline) to `out`.
fn encode_line(key: &RequestKey, body: CreateVideo, out: &mut Vec<u8>) {
    let line = BatchInputLine {
        custom_id: custom_id(key),
        method: "POST".into(),
        url: VIDEOS_ENDPOINT.into(),
        body,
    };
    serde_json::to_writer(&mut *out, &line).expect("a batch line always serializes");
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use render_wire::key::Sha256Hex;

    fn request(n: u32) -> (RequestKey, CreateVideo) {
        let body = CreateVideo {
            prompt: format!("shot {n}"),
            model: Some("sora-2".into()),
            size: Some("1280x720".into()),
            seconds: Some("8".into()),
            input_reference: None,
        };
        (Sha256Hex::of(&n.to_le_bytes()), body)
    }

    #[test]
    fn custom_ids_round_trip_and_reject_foreign_ids() {
        let key = Sha256Hex::of(b"x");
        assert_eq!(parse_custom_id(&custom_id(&key)), Some(key));
        for foreign in ["", "render-", "render-../../etc", "other-abc", "render-zz"] {
            assert_eq!(parse_custom_id(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn lines_have_the_batch_api_shape() {
        let parts = compile([request(1)], BatchLimits::default()).unwrap();
        let text = String::from_utf8(parts[0].jsonl.clone()).unwrap();
        let value: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(value["method"], "POST");
        assert_eq!(value["url"], "/v1/videos");
        assert_eq!(value["body"]["seconds"], "8");
        assert!(value["body"].get("input_reference").is_none());
        assert!(value["custom_id"].as_str().unwrap().starts_with("render-"));
    }

    /// The line the provider reads, to the byte: a change here changes every batch sent.
    #[test]
    fn a_batch_line_with_a_reference_snapshot() {
        let (key, mut body) = request(7);
        body.input_reference = Some(render_wire::api::InputReference::FileId {
            file_id: "file-abc123".into(),
        });
        let parts = compile([(key, body)], BatchLimits::default()).unwrap();
        insta::assert_snapshot!(String::from_utf8(parts[0].jsonl.clone()).unwrap());
    }

    #[test]
    fn splits_at_the_request_limit() {
        let limits = BatchLimits {
            max_requests: 3,
            max_bytes: u64::MAX,
        };
        let parts = compile((0..7).map(request), limits).unwrap();
        let sizes: Vec<usize> = parts.iter().map(|p| p.keys.len()).collect();
        assert_eq!(sizes, [3, 3, 1]);
    }

    #[test]
    fn splits_at_the_byte_limit_and_never_passes_it() {
        let one_line = compile([request(1)], BatchLimits::default()).unwrap()[0]
            .jsonl
            .len() as u64;
        let limits = BatchLimits {
            max_requests: 1000,
            max_bytes: one_line * 2 + 5,
        };
        let parts = compile((0..5).map(request), limits).unwrap();
        assert_eq!(parts.len(), 3);
        for part in &parts {
            assert!(part.jsonl.len() as u64 <= limits.max_bytes);
            let lines = part
                .jsonl
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .count();
            assert_eq!(lines, part.keys.len());
        }
    }

    #[test]
    fn a_line_over_the_byte_limit_is_an_error() {
        let limits = BatchLimits {
            max_requests: 10,
            max_bytes: 20,
        };
        let err = compile([request(1)], limits).unwrap_err();
        assert!(matches!(err, BatchError::LineTooLarge { .. }), "{err}");
    }
}
