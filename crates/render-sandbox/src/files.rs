//! `/v1/files`: upload (multipart), retrieve, list, delete, download.

use std::sync::Arc;

use axum::Json;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use serde::Deserialize;

use super::clock::DAY;
use super::error::ApiFailure;
use super::http::{Served, ranged_bytes};
use super::state::{FileRecord, SandboxState, lock, page};
use render_wire::api::{Deleted, FileObject, FilePurpose, List};
use render_wire::key::Sha256Hex;

/// Batch input files expire after 30 days unless told otherwise, like the real ones.
const BATCH_FILE_LIFETIME: i64 = 30 * DAY;

struct Upload {
    filename: String,
    content: Bytes,
    purpose: String,
    anchor: Option<String>,
    seconds: Option<String>,
}

pub async fn create(
    State(state): State<Arc<SandboxState>>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<FileObject>, ApiFailure> {
    let upload = read_upload(multipart?).await?;
    let purpose = parse_purpose(&upload.purpose)?;
    if purpose == FilePurpose::Batch && !upload.filename.ends_with(".jsonl") {
        return Err(ApiFailure::invalid(
            Some("file"),
            None,
            "Invalid file format for Batch API. Must be .jsonl",
        ));
    }
    let now = state.clock.now();
    let lifetime = expires_after(upload.anchor.as_deref(), upload.seconds.as_deref())?
        .or((purpose == FilePurpose::Batch).then_some(BATCH_FILE_LIFETIME));
    let sha = Sha256Hex::of(&upload.content).hex();
    let object = {
        let mut store = lock(&state.store);
        let id = store.new_id("file-");
        let object = FileObject {
            id: id.clone(),
            object: "file".into(),
            bytes: upload.content.len() as u64,
            created_at: now,
            expires_at: lifetime.map(|secs| now + secs),
            filename: upload.filename,
            purpose,
            status: Some("processed".into()),
        };
        store.files.insert(
            id,
            FileRecord {
                object: object.clone(),
                content: upload.content,
                deleted: false,
            },
        );
        object
    };
    let mut stats = lock(&state.stats);
    *stats
        .files_uploaded
        .entry(purpose.as_str().to_string())
        .or_default() += 1;
    stats.uploaded_sha256.push(sha);
    Ok(Json(object))
}

async fn read_upload(mut multipart: Multipart) -> Result<Upload, ApiFailure> {
    let mut file = None;
    let (mut purpose, mut anchor, mut seconds) = (None, None, None);
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "file" => {
                let filename = field.file_name().unwrap_or("upload").to_string();
                file = Some((filename, field.bytes().await.map_err(multipart_error)?));
            }
            "purpose" => purpose = Some(field.text().await.map_err(multipart_error)?),
            "expires_after[anchor]" => anchor = Some(field.text().await.map_err(multipart_error)?),
            "expires_after[seconds]" => {
                seconds = Some(field.text().await.map_err(multipart_error)?)
            }
            _ => {}
        }
    }
    let (filename, content) = file.ok_or_else(|| missing("file"))?;
    Ok(Upload {
        filename,
        content,
        purpose: purpose.ok_or_else(|| missing("purpose"))?,
        anchor,
        seconds,
    })
}

pub fn multipart_error(err: impl std::fmt::Display) -> ApiFailure {
    ApiFailure::invalid(
        None,
        None,
        format!("Invalid multipart/form-data body: {err}"),
    )
}

pub fn missing(param: &str) -> ApiFailure {
    ApiFailure::invalid(
        Some(param),
        Some("missing_required_parameter"),
        format!("Missing required parameter: '{param}'."),
    )
}

impl From<MultipartRejection> for ApiFailure {
    fn from(rejection: MultipartRejection) -> ApiFailure {
        multipart_error(rejection.body_text())
    }
}

fn parse_purpose(text: &str) -> Result<FilePurpose, ApiFailure> {
    let accepted = [
        "assistants",
        "batch",
        "fine-tune",
        "vision",
        "user_data",
        "evals",
    ];
    let purpose: FilePurpose =
        serde_json::from_value(serde_json::Value::from(text)).unwrap_or(FilePurpose::Unknown);
    if matches!(purpose, FilePurpose::Unknown | FilePurpose::BatchOutput) {
        let accepted: Vec<String> = accepted.iter().map(|s| s.to_string()).collect();
        return Err(ApiFailure::invalid_value("purpose", text, &accepted));
    }
    Ok(purpose)
}

/// `expires_after[anchor]=created_at` + `expires_after[seconds]` (one hour to 30 days).
fn expires_after(anchor: Option<&str>, seconds: Option<&str>) -> Result<Option<i64>, ApiFailure> {
    match (anchor, seconds) {
        (None, None) => Ok(None),
        (Some("created_at"), Some(seconds)) => {
            let seconds: i64 = seconds.trim().parse().map_err(|_| {
                ApiFailure::invalid(
                    Some("expires_after[seconds]"),
                    Some("invalid_type"),
                    format!("Invalid 'expires_after[seconds]': '{seconds}' is not an integer."),
                )
            })?;
            if !(3_600..=2_592_000).contains(&seconds) {
                return Err(ApiFailure::invalid(
                    Some("expires_after[seconds]"),
                    Some("invalid_value"),
                    format!(
                        "Invalid 'expires_after[seconds]': {seconds}. Expected a value between \
                         3600 (1 hour) and 2592000 (30 days)."
                    ),
                ));
            }
            Ok(Some(seconds))
        }
        (None, _) => Err(missing("expires_after[anchor]")),
        (Some("created_at"), None) => Err(missing("expires_after[seconds]")),
        (Some(other), _) => Err(ApiFailure::invalid_value(
            "expires_after[anchor]",
            other,
            &["created_at".to_string()],
        )),
    }
}

/// The live record of a file, or 404.
fn live_file<'a>(
    store: &'a super::state::Store,
    id: &str,
    now: i64,
) -> Result<&'a FileRecord, ApiFailure> {
    store
        .files
        .get(id)
        .filter(|f| !f.is_gone(now))
        .ok_or_else(|| ApiFailure::not_found("File", id))
}

pub async fn retrieve(
    State(state): State<Arc<SandboxState>>,
    Path(id): Path<String>,
) -> Result<Json<FileObject>, ApiFailure> {
    let store = lock(&state.store);
    Ok(Json(
        live_file(&store, &id, state.clock.now())?.object.clone(),
    ))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
    order: Option<String>,
    purpose: Option<String>,
}

pub async fn list(
    State(state): State<Arc<SandboxState>>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<List<FileObject>>, ApiFailure> {
    let Query(query) = query.map_err(|e| ApiFailure::invalid(None, None, e.body_text()))?;
    let limit = check_limit(query.limit, 10_000, 10_000)?;
    let ascending = check_order(query.order.as_deref())?;
    let now = state.clock.now();
    let store = lock(&state.store);
    let rows = store.files.iter().filter(|f| {
        !f.is_gone(now)
            && query
                .purpose
                .as_deref()
                .is_none_or(|p| f.object.purpose.as_str() == p)
    });
    let (items, has_more) = page(
        rows,
        |f| &f.object.id,
        query.after.as_deref(),
        limit,
        ascending,
    );
    Ok(Json(list_of(
        items.into_iter().map(|f| f.object.clone()).collect(),
        has_more,
        |f| &f.id,
    )))
}

/// Builds a list answer with `first_id`/`last_id`.
pub fn list_of<T>(data: Vec<T>, has_more: bool, id_of: impl Fn(&T) -> &str) -> List<T> {
    List {
        object: "list".into(),
        first_id: data.first().map(|t| id_of(t).to_string()),
        last_id: data.last().map(|t| id_of(t).to_string()),
        has_more,
        data,
    }
}

/// `limit` within 1..=max, `default` when absent.
pub fn check_limit(limit: Option<usize>, default: usize, max: usize) -> Result<usize, ApiFailure> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiFailure::invalid(
            Some("limit"),
            Some("integer_out_of_range"),
            format!(
                "Invalid 'limit': integer out of range: {n}. Expected a value between 1 and {max}."
            ),
        )),
    }
}

/// `order`: `asc` (true) or `desc` (false, the default).
pub fn check_order(order: Option<&str>) -> Result<bool, ApiFailure> {
    match order {
        None | Some("desc") => Ok(false),
        Some("asc") => Ok(true),
        Some(other) => Err(ApiFailure::invalid_value(
            "order",
            other,
            &["asc".to_string(), "desc".to_string()],
        )),
    }
}

pub async fn delete(
    State(state): State<Arc<SandboxState>>,
    Path(id): Path<String>,
) -> Result<Json<Deleted>, ApiFailure> {
    let now = state.clock.now();
    let mut store = lock(&state.store);
    live_file(&store, &id, now)?;
    if let Some(file) = store.files.get_mut(&id) {
        file.deleted = true;
    }
    Ok(Json(Deleted {
        id,
        object: "file".into(),
        deleted: true,
    }))
}

pub async fn content(
    State(state): State<Arc<SandboxState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiFailure> {
    let content = {
        let store = lock(&state.store);
        live_file(&store, &id, state.clock.now())?.content.clone()
    };
    ranged_bytes(
        content,
        "application/octet-stream",
        &headers,
        Served("file"),
    )
}
