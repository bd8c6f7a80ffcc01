//! `/v1/batches`: create, retrieve, list, cancel; the input-file validation the real service
//! runs while a batch is `validating`; and the JSONL shapes of output and error lines.
//! The engine (`engine.rs`) moves batches through their statuses.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::BatchLimits;
use super::engine;
use super::error::ApiFailure;
use super::files::{check_limit, list_of, missing};
use super::state::{BatchLine, BatchRecord, LineOutcome, SandboxState, lock, page};
use render_wire::api::{
    Batch, BatchErrorItem, BatchStatus, COMPLETION_WINDOW, COMPLETION_WINDOW_SECS, FilePurpose,
    List, Video,
};

/// The only endpoint the sandbox batches.
pub const ENDPOINT: &str = "/v1/videos";
const METADATA_MAX_PAIRS: usize = 16;
const METADATA_MAX_KEY: usize = 64;
const METADATA_MAX_VALUE: usize = 512;

/// One valid line of an input file.
#[derive(Clone, Debug, PartialEq)]
pub struct InputLine {
    pub line: u64,
    pub custom_id: String,
    pub body: Value,
}

/// A file-level error (no line).
pub fn file_error(code: &str, message: &str) -> BatchErrorItem {
    BatchErrorItem {
        code: Some(code.into()),
        message: Some(message.into()),
        param: None,
        line: None,
    }
}

fn line_error(line: u64, code: &str, param: Option<&str>, message: String) -> BatchErrorItem {
    BatchErrorItem {
        code: Some(code.into()),
        message: Some(message),
        param: param.map(str::to_string),
        line: Some(line),
    }
}

/// Validates a batch input file the way the real service does while `validating`: every line a
/// JSON object with `custom_id`, `method` POST, `url` equal to the batch endpoint and a JSON
/// object `body`; custom ids unique; within the request-count and byte limits.
pub fn validate_input(
    content: &[u8],
    endpoint: &str,
    limits: &BatchLimits,
) -> Result<Vec<InputLine>, Vec<BatchErrorItem>> {
    if content.len() as u64 > limits.max_bytes {
        return Err(vec![file_error(
            "file_too_large",
            &format!(
                "The input file is {} bytes; a batch input file may be at most {} bytes.",
                content.len(),
                limits.max_bytes
            ),
        )]);
    }
    let Ok(text) = std::str::from_utf8(content) else {
        return Err(vec![file_error(
            "invalid_file",
            "The input file is not UTF-8 text.",
        )]);
    };
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    for (index, raw) in text.lines().enumerate() {
        let number = index as u64 + 1;
        if raw.trim().is_empty() {
            continue;
        }
        match check_line(raw, number, endpoint) {
            Ok(line) if !seen.insert(line.custom_id.clone()) => errors.push(line_error(
                number,
                "duplicate_custom_id",
                Some("custom_id"),
                "The custom_id for this request is a duplicate of another request. The \
                 custom_id parameter must be unique for each request in a batch."
                    .into(),
            )),
            Ok(line) => lines.push(line),
            Err(error) => errors.push(error),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if lines.is_empty() {
        return Err(vec![file_error(
            "empty_file",
            "The batch input file is empty.",
        )]);
    }
    if lines.len() > limits.max_requests {
        return Err(vec![file_error(
            "too_many_tasks",
            &format!(
                "The batch input file has {} requests; a batch may hold at most {}.",
                lines.len(),
                limits.max_requests
            ),
        )]);
    }
    Ok(lines)
}

fn check_line(raw: &str, line: u64, endpoint: &str) -> Result<InputLine, BatchErrorItem> {
    let Ok(Value::Object(object)) = serde_json::from_str::<Value>(raw) else {
        return Err(line_error(
            line,
            "invalid_json_line",
            None,
            "This line is not parseable as valid JSON.".into(),
        ));
    };
    let field = |name: &str| match object.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(line_error(
            line,
            "missing_required_parameter",
            Some(name),
            format!("Missing required parameter: '{name}'."),
        )),
    };
    let custom_id = field("custom_id")?;
    let method = field("method")?;
    if !method.eq_ignore_ascii_case("POST") {
        return Err(line_error(
            line,
            "invalid_method",
            Some("method"),
            format!("The method '{method}' is not supported. Only POST is supported."),
        ));
    }
    let url = field("url")?;
    if url != endpoint {
        return Err(line_error(
            line,
            "invalid_url",
            Some("url"),
            format!("The URL '{url}' does not match the batch endpoint '{endpoint}'."),
        ));
    }
    match object.get("body") {
        Some(body @ Value::Object(_)) => Ok(InputLine {
            line,
            custom_id,
            body: body.clone(),
        }),
        None => Err(line_error(
            line,
            "missing_required_parameter",
            Some("body"),
            "Missing required parameter: 'body'.".into(),
        )),
        Some(_) => Err(line_error(
            line,
            "invalid_request",
            Some("body"),
            "The body must be a JSON object: requests in a batch take JSON bodies only (no \
             multipart); reference images go by file_id."
                .into(),
        )),
    }
}

/// One line of an output (`ok`) or error file.
pub fn output_line(
    line: &BatchLine,
    outcome: &LineOutcome,
    video: Option<&Video>,
) -> (String, bool) {
    let response = |status: u16, body: Value| json!({"status_code": status, "request_id": line.request_id, "body": body});
    let (response, error, ok) = match (outcome, video) {
        (LineOutcome::Video { .. }, Some(video)) => {
            let body = serde_json::to_value(video).unwrap_or(Value::Null);
            (response(200, body), Value::Null, true)
        }
        (LineOutcome::Video { video_id }, None) => {
            let failure = ApiFailure::not_found("Video", video_id);
            let body = serde_json::to_value(failure.body()).unwrap_or(Value::Null);
            (response(404, body), Value::Null, false)
        }
        (LineOutcome::Failed { status, error }, _) => {
            let body = json!({ "error": error });
            (response(*status, body), Value::Null, false)
        }
        (LineOutcome::NotRun { code, message }, _) => (
            Value::Null,
            json!({"code": code, "message": message}),
            false,
        ),
    };
    let line = json!({
        "id": line.line_id,
        "custom_id": line.custom_id,
        "response": response,
        "error": error,
    });
    (line.to_string(), ok)
}

#[derive(Debug, Deserialize)]
struct CreateBody {
    input_file_id: Option<String>,
    endpoint: Option<String>,
    completion_window: Option<String>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
}

pub async fn create(
    State(state): State<Arc<SandboxState>>,
    body: Bytes,
) -> Result<Json<Batch>, ApiFailure> {
    let request: CreateBody = serde_json::from_slice(&body).map_err(|e| {
        ApiFailure::invalid(
            None,
            None,
            format!("We could not parse the JSON body of your request: {e}"),
        )
    })?;
    let input_file_id = request
        .input_file_id
        .ok_or_else(|| missing("input_file_id"))?;
    let endpoint = request.endpoint.ok_or_else(|| missing("endpoint"))?;
    if endpoint != ENDPOINT {
        return Err(ApiFailure::invalid_value(
            "endpoint",
            &endpoint,
            &[ENDPOINT.to_string()],
        ));
    }
    let window = request
        .completion_window
        .ok_or_else(|| missing("completion_window"))?;
    if window != COMPLETION_WINDOW {
        return Err(ApiFailure::invalid_value(
            "completion_window",
            &window,
            &[COMPLETION_WINDOW.to_string()],
        ));
    }
    check_metadata(request.metadata.as_ref())?;
    let doomed = lock(&state.faults).batch_expires();
    if doomed {
        state.count_fault("batch_expire");
    }
    let now_f = state.clock.now_f64();
    let now = now_f as i64;
    let batch = {
        let mut store = lock(&state.store);
        let input = store
            .files
            .get(&input_file_id)
            .filter(|f| !f.is_gone(now))
            .ok_or_else(|| ApiFailure::not_found("File", &input_file_id))?;
        if input.object.purpose != FilePurpose::Batch {
            return Err(ApiFailure::invalid(
                Some("input_file_id"),
                Some("invalid_value"),
                format!(
                    "Invalid 'input_file_id': file '{input_file_id}' has purpose '{}', expected 'batch'.",
                    input.object.purpose.as_str()
                ),
            ));
        }
        let id = store.new_id("batch_");
        let batch = Batch {
            id: id.clone(),
            object: "batch".into(),
            endpoint,
            input_file_id,
            completion_window: window,
            status: BatchStatus::Validating,
            output_file_id: None,
            error_file_id: None,
            request_counts: Some(Default::default()),
            errors: None,
            // Some gateways in front of compatible servers drop metadata; the sandbox can too.
            metadata: request.metadata.filter(|_| !state.config.drop_metadata),
            created_at: now,
            in_progress_at: None,
            expires_at: Some(now + COMPLETION_WINDOW_SECS),
            finalizing_at: None,
            completed_at: None,
            failed_at: None,
            expired_at: None,
            cancelling_at: None,
            cancelled_at: None,
        };
        store.batches.insert(
            id,
            BatchRecord {
                batch: batch.clone(),
                lines: Vec::new(),
                doomed,
                due: now_f + engine::validate_span(&state),
                finalize_span: engine::finalize_span(&state),
            },
        );
        batch
    };
    lock(&state.stats).batches_created += 1;
    state.note_accepted();
    state.wake.notify_one();
    Ok(Json(batch))
}

fn check_metadata(metadata: Option<&BTreeMap<String, String>>) -> Result<(), ApiFailure> {
    let Some(metadata) = metadata else {
        return Ok(());
    };
    let invalid =
        |message: String| ApiFailure::invalid(Some("metadata"), Some("invalid_value"), message);
    if metadata.len() > METADATA_MAX_PAIRS {
        return Err(invalid(format!(
            "Invalid 'metadata': too many properties. Expected an object with at most \
             {METADATA_MAX_PAIRS} properties, but got {}.",
            metadata.len()
        )));
    }
    for (key, value) in metadata {
        if key.chars().count() > METADATA_MAX_KEY {
            return Err(invalid(format!(
                "Invalid 'metadata': key '{key}' is longer than {METADATA_MAX_KEY} characters."
            )));
        }
        if value.chars().count() > METADATA_MAX_VALUE {
            return Err(invalid(format!(
                "Invalid 'metadata.{key}': string too long. Expected at most \
                 {METADATA_MAX_VALUE} characters."
            )));
        }
    }
    Ok(())
}

pub async fn retrieve(
    State(state): State<Arc<SandboxState>>,
    Path(id): Path<String>,
) -> Result<Json<Batch>, ApiFailure> {
    engine::tick(&state);
    let store = lock(&state.store);
    store
        .batches
        .get(&id)
        .map(|b| Json(b.batch.clone()))
        .ok_or_else(|| ApiFailure::not_found("Batch", &id))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
}

pub async fn list(
    State(state): State<Arc<SandboxState>>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<List<Batch>>, ApiFailure> {
    let Query(query) = query.map_err(|e| ApiFailure::invalid(None, None, e.body_text()))?;
    let limit = check_limit(query.limit, 20, 100)?;
    engine::tick(&state);
    let store = lock(&state.store);
    let (items, has_more) = page(
        store.batches.iter(),
        |b| &b.batch.id,
        query.after.as_deref(),
        limit,
        false,
    );
    let data = items.into_iter().map(|b| b.batch.clone()).collect();
    Ok(Json(list_of(data, has_more, |b: &Batch| &b.id)))
}

pub async fn cancel(
    State(state): State<Arc<SandboxState>>,
    Path(id): Path<String>,
) -> Result<Json<Batch>, ApiFailure> {
    engine::tick(&state);
    let now = state.clock.now_f64();
    let mut store = lock(&state.store);
    let record = store
        .batches
        .get_mut(&id)
        .ok_or_else(|| ApiFailure::not_found("Batch", &id))?;
    match record.batch.status {
        BatchStatus::Validating | BatchStatus::InProgress => {
            record.batch.status = BatchStatus::Cancelling;
            record.batch.cancelling_at = Some(now as i64);
        }
        BatchStatus::Cancelling => {}
        other => {
            return Err(ApiFailure::invalid(
                None,
                None,
                format!("Cannot cancel a batch with status '{}'.", other.as_str()),
            ));
        }
    }
    let batch = record.batch.clone();
    engine::drop_jobs_of(&mut store, &id, now, false);
    drop(store);
    state.wake.notify_one();
    Ok(Json(batch))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: BatchLimits = BatchLimits {
        max_requests: 3,
        max_bytes: 10_000,
    };

    fn line(custom_id: &str) -> String {
        format!(
            r#"{{"custom_id":"{custom_id}","method":"POST","url":"/v1/videos","body":{{"prompt":"p"}}}}"#
        )
    }

    fn codes(result: Result<Vec<InputLine>, Vec<BatchErrorItem>>) -> Vec<(Option<u64>, String)> {
        result
            .unwrap_err()
            .into_iter()
            .map(|e| (e.line, e.code.unwrap_or_default()))
            .collect()
    }

    #[test]
    fn valid_files_give_their_lines() {
        let text = format!("{}\n\n{}\n", line("a"), line("b"));
        let lines = validate_input(text.as_bytes(), ENDPOINT, &LIMITS).unwrap();
        assert_eq!(
            lines
                .iter()
                .map(|l| (l.line, l.custom_id.as_str()))
                .collect::<Vec<_>>(),
            [(1, "a"), (3, "b")]
        );
    }

    #[test]
    fn each_bad_line_is_reported_with_its_number() {
        let text = [
            line("a"),
            "not json".into(),
            line("a"),
            r#"{"custom_id":"c","method":"GET","url":"/v1/videos","body":{}}"#.into(),
            r#"{"custom_id":"d","method":"POST","url":"/v1/chat/completions","body":{}}"#.into(),
            r#"{"custom_id":"e","method":"POST","url":"/v1/videos","body":"prompt=x"}"#.into(),
            r#"{"method":"POST","url":"/v1/videos","body":{}}"#.into(),
        ]
        .join("\n");
        let expected = [
            (Some(2), "invalid_json_line"),
            (Some(3), "duplicate_custom_id"),
            (Some(4), "invalid_method"),
            (Some(5), "invalid_url"),
            (Some(6), "invalid_request"),
            (Some(7), "missing_required_parameter"),
        ];
        let got = codes(validate_input(text.as_bytes(), ENDPOINT, &LIMITS));
        let want: Vec<_> = expected.iter().map(|(l, c)| (*l, c.to_string())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn limits_and_empty_files_fail_the_whole_file() {
        let four = (0..4)
            .map(|i| line(&i.to_string()))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(
            codes(validate_input(four.as_bytes(), ENDPOINT, &LIMITS)),
            [(None, "too_many_tasks".into())]
        );
        let small = BatchLimits {
            max_requests: 10,
            max_bytes: 10,
        };
        assert_eq!(
            codes(validate_input(line("a").as_bytes(), ENDPOINT, &small)),
            [(None, "file_too_large".into())]
        );
        assert_eq!(
            codes(validate_input(b"\n\n", ENDPOINT, &LIMITS)),
            [(None, "empty_file".into())]
        );
    }
}
