//! `/v1/videos`: create (JSON or multipart with an `input_reference` image), retrieve, list,
//! delete, and content downloads streamed from the synthetic encoder with `Range` support, each
//! the way the configured dialect's server does it (see [`super::dialect::Profile`]).

use std::collections::HashMap;
use std::io;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{Value, json};

use super::create;
use super::dialect::{ErrorStyle, VariantRule, VideoShape};
use super::engine;
use super::error::ApiFailure;
use super::files::{check_limit, check_order, list_of};
use super::http::{Served, ranged_bytes, ranged_stream};
use super::media::{self, RenderedVideo, VideoSpec};
use super::state::{Job, Queued, SandboxState, Store, VideoRecord, lock, page};
use render_wire::api::{ContentVariant, Deleted, Video, VideoStatus};

/// Bytes produced per read of the encoder: large enough to be cheap, small enough to stream.
const CHUNK: usize = 256 * 1024;

pub async fn create(
    State(state): State<Arc<SandboxState>>,
    request: Request,
) -> Result<Response, ApiFailure> {
    let accepted = create::accept(&state, request).await?;
    let now = state.clock.now_f64();
    let mut store = lock(&state.store);
    let id = new_video_id(&state, &mut store);
    let spec = accepted.spec(&state, &id);
    let video = Video {
        id: id.clone(),
        object: "video".into(),
        status: VideoStatus::Queued,
        progress: Some(0),
        model: Some(accepted.model),
        prompt: Some(accepted.prompt),
        size: accepted.size_echo,
        seconds: Some(accepted.seconds_echo),
        created_at: now as i64,
        completed_at: None,
        expires_at: None,
        error: None,
        remixed_from_video_id: None,
    };
    let record = VideoRecord {
        video,
        spec,
        batch_id: None,
        deleted: false,
        started_at: None,
        done_at: None,
    };
    let answer = video_json(&state, &record, now);
    store.videos.insert(id.clone(), record);
    store.queue.push_back(Queued {
        job: Job::Video { video_id: id },
        ready_at: now,
    });
    drop(store);
    lock(&state.stats).videos_created += 1;
    state.note_accepted();
    state.wake.notify_one();
    Ok(Json(answer).into_response())
}

/// A fresh id in the dialect's format (the one a video is kept under).
fn new_video_id(state: &SandboxState, store: &mut Store) -> String {
    use super::dialect::IdStyle;
    match state.profile.ids {
        IdStyle::OpenAi | IdStyle::Litellm => store.new_id("video_"),
        IdStyle::Uuid4 => store.new_uuid(),
        IdStyle::VllmOmni => format!("video_gen_{}", store.new_uuid().replace('-', "")),
    }
}

/// The video as a client sees it now (progress computed from the render's virtual span).
fn current(record: &VideoRecord, now: f64) -> Video {
    let mut video = record.video.clone();
    if video.status == VideoStatus::InProgress
        && let (Some(start), Some(end)) = (record.started_at, record.done_at)
    {
        let share = ((now - start) / (end - start).max(1e-9)).clamp(0.0, 0.99);
        video.progress = Some((share * 100.0) as u32);
    }
    video
}

/// The video object in the dialect's shape.
fn video_json(state: &SandboxState, record: &VideoRecord, now: f64) -> Value {
    let video = current(record, now);
    let id = state.profile.public_id(&video.id, video.model.as_deref());
    let done = matches!(video.status, VideoStatus::Completed);
    let inference_time_s = match (record.started_at, record.done_at) {
        (Some(start), Some(end)) if done || video.status == VideoStatus::Failed => {
            Some(state.clock.real_span(end - start).as_secs_f64())
        }
        _ => None,
    };
    let status = video.status.as_str();
    match state.profile.video {
        VideoShape::OpenAi => {
            let mut value = serde_json::to_value(&video).unwrap_or_default();
            value["id"] = id.into();
            value
        }
        VideoShape::Sglang => {
            let failed = video.status == VideoStatus::Failed;
            let path = format!("/sgl-workspace/outputs/{id}.mp4");
            json!({
                "id": id,
                "object": "video",
                "model": video.model,
                "status": status,
                "progress": video.progress.unwrap_or(0),
                "created_at": video.created_at,
                "size": video.size.unwrap_or_default(),
                "seconds": video.seconds,
                "quality": "standard",
                "url": null,
                "urls": if done { json!([null]) } else { Value::Null },
                "remixed_from_video_id": null,
                "completed_at": video.completed_at,
                "expires_at": null,
                "error": video.error.map(|e| json!({"message": e.message})),
                "file_path": if failed { Value::Null } else { path.clone().into() },
                "file_paths": if done { json!([path]) } else { Value::Null },
                "num_outputs": if done { json!(1) } else { Value::Null },
                "peak_memory_mb": null,
                "inference_time_s": inference_time_s,
                "revised_prompt": null,
            })
        }
        VideoShape::VllmOmni => json!({
            "model": video.model,
            "prompt": video.prompt,
            "id": id,
            "object": "video",
            "status": status,
            "size": video.size,
            "progress": video.progress.unwrap_or(0),
            "seconds": video.seconds,
            "quality": "default",
            "completed_at": video.completed_at,
            "created_at": video.created_at,
            "remixed_from_video_id": null,
            // A failed render is an engine error: code 500, and `GET` answers 500 with it.
            "error": video.error.map(|e| json!({"code": VLLM_FAILURE_STATUS, "message": e.message})),
            "media_type": "video/mp4",
            "expires_at": null,
            "file_name": if done { Value::from(format!("{id}.mp4")) } else { Value::Null },
            "inference_time_s": inference_time_s,
            "fps": null,
            "num_frames": null,
            "duration_s": video.seconds.as_deref().and_then(|s| s.parse::<f64>().ok()),
        }),
    }
}

/// The status of vllm-omni's answer to `GET /v1/videos/{id}` for a failed job (and its
/// `error.code`).
const VLLM_FAILURE_STATUS: u16 = 500;

/// The record a client's id names (deleted ones are gone), or the dialect's 404.
fn live<'a>(
    state: &SandboxState,
    store: &'a Store,
    id: &str,
) -> Result<&'a VideoRecord, ApiFailure> {
    let key = state.profile.stored_id(id)?;
    store
        .videos
        .get(&key)
        .filter(|v| !v.deleted)
        .ok_or_else(|| state.profile.video_not_found(id))
}

pub async fn retrieve(
    State(state): State<Arc<SandboxState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiFailure> {
    engine::tick(&state);
    let store = lock(&state.store);
    let record = live(&state, &store, &id)?;
    let value = video_json(&state, record, state.clock.now_f64());
    let status = match (state.profile.video, record.video.status) {
        (VideoShape::VllmOmni, VideoStatus::Failed) => {
            StatusCode::from_u16(VLLM_FAILURE_STATUS).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        }
        _ => StatusCode::OK,
    };
    Ok((status, Json(value)).into_response())
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
    order: Option<String>,
}

pub async fn list(
    State(state): State<Arc<SandboxState>>,
    uri: Uri,
) -> Result<Response, ApiFailure> {
    if !state.profile.facts.lists_videos {
        return Err(state.profile.cannot_list());
    }
    let (after, limit, ascending) = match state.profile.errors {
        ErrorStyle::FastApi => fastapi_list_query(&state, &uri)?,
        ErrorStyle::OpenAi | ErrorStyle::Litellm => {
            let Query(query) = Query::<ListQuery>::try_from_uri(&uri)
                .map_err(|e| ApiFailure::invalid(None, None, e.body_text()))?;
            let limit = check_limit(query.limit, 20, 100)?;
            let ascending = check_order(query.order.as_deref())?;
            (query.after, Some(limit), ascending)
        }
    };
    engine::tick(&state);
    let now = state.clock.now_f64();
    let store = lock(&state.store);
    let rows = store.videos.iter().filter(|v| !v.deleted);
    let (items, has_more) = page(
        rows,
        |v| &v.video.id,
        after.as_deref(),
        limit.unwrap_or(usize::MAX),
        ascending,
    );
    let data: Vec<Value> = items
        .into_iter()
        .map(|v| video_json(&state, v, now))
        .collect();
    let listed = list_of(data, has_more, |v: &Value| {
        v["id"].as_str().unwrap_or_default()
    });
    Ok(Json(listed).into_response())
}

/// `after`, `limit` and `order` as FastAPI validates them (`Query(20, ge=1, le=100)` in SGLang,
/// `Query(None, ge=0, le=100)` in vllm-omni: no limit lists everything).
fn fastapi_list_query(
    state: &SandboxState,
    uri: &Uri,
) -> Result<(Option<String>, Option<usize>, bool), ApiFailure> {
    let Query(query) = Query::<HashMap<String, String>>::try_from_uri(uri)
        .map_err(|e| ApiFailure::detail(StatusCode::BAD_REQUEST, e.body_text()))?;
    let rule = state.profile.list_limit;
    let mut errors = Vec::new();
    let limit = match query.get("limit") {
        None => rule.default,
        Some(text) => match text.trim().parse::<i64>() {
            Err(_) => {
                errors.push(json!({"type": "int_parsing", "loc": ["query", "limit"],
                    "msg": "Input should be a valid integer, unable to parse string as an integer",
                    "input": text}));
                None
            }
            Ok(n) if n < rule.min as i64 => {
                errors.push(
                    json!({"type": "greater_than_equal", "loc": ["query", "limit"],
                    "msg": format!("Input should be greater than or equal to {}", rule.min),
                    "input": text, "ctx": {"ge": rule.min}}),
                );
                None
            }
            Ok(n) if n > 100 => {
                errors.push(json!({"type": "less_than_equal", "loc": ["query", "limit"],
                    "msg": "Input should be less than or equal to 100",
                    "input": text, "ctx": {"le": 100}}));
                None
            }
            Ok(n) => Some(n as usize),
        },
    };
    let ascending = match query.get("order").map(String::as_str) {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(other) => {
            errors.push(json!({"type": "literal_error", "loc": ["query", "order"],
                "msg": "Input should be 'asc' or 'desc'", "input": other,
                "ctx": {"expected": "'asc' or 'desc'"}}));
            false
        }
    };
    if !errors.is_empty() {
        let message = "invalid list query".to_string();
        return Err(ApiFailure::verbatim(
            StatusCode::UNPROCESSABLE_ENTITY,
            message,
            json!({ "detail": errors }),
        ));
    }
    Ok((query.get("after").cloned(), limit, ascending))
}

pub async fn delete(
    State(state): State<Arc<SandboxState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiFailure> {
    engine::tick(&state);
    let now = state.clock.now_f64();
    let mut store = lock(&state.store);
    let answer = match state.profile.video {
        // SGLang answers the record it dropped, marked deleted.
        VideoShape::Sglang => {
            let mut value = video_json(&state, live(&state, &store, &id)?, now);
            value["status"] = "deleted".into();
            value
        }
        VideoShape::OpenAi | VideoShape::VllmOmni => {
            live(&state, &store, &id)?;
            serde_json::to_value(Deleted {
                id: id.clone(),
                object: "video.deleted".into(),
                deleted: true,
            })
            .unwrap_or_default()
        }
    };
    let key = state.profile.stored_id(&id)?;
    if let Some(record) = store.videos.get_mut(&key) {
        record.deleted = true;
    }
    // Where `DELETE` does not abort (SGLang), the render goes on: the GPU stays busy.
    if state.profile.facts.delete_aborts {
        abort_render(&mut store, &key, now);
        drop(store);
        // A freed slot takes the next job at once.
        state.wake.notify_one();
    }
    Ok(Json(answer).into_response())
}

/// Drops a direct video's render, queued or in progress.
fn abort_render(store: &mut Store, video_id: &str, at: f64) {
    let ours = |job: &Job| matches!(job, Job::Video { video_id: v } if v == video_id);
    store.queue.retain(|q| !ours(&q.job));
    for index in 0..store.slots.len() {
        if store.slots[index]
            .running
            .as_ref()
            .is_some_and(|r| ours(&r.job))
        {
            store.release(index, at);
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ContentQuery {
    variant: Option<String>,
}

pub async fn content(
    State(state): State<Arc<SandboxState>>,
    Path(id): Path<String>,
    Query(query): Query<ContentQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiFailure> {
    let variant = match state.profile.facts.variant {
        VariantRule::Named => parse_variant(query.variant.as_deref())?,
        // Checked against the video's outputs once it is known to be done.
        VariantRule::Index => ContentVariant::Video,
        // Dropped on the way (LiteLLM) or never read (vllm-omni).
        VariantRule::Ignored => ContentVariant::Video,
    };
    engine::tick(&state);
    let spec = downloadable(&state, &id, query.variant.as_deref())?;
    // A server that buffers the file (LiteLLM) answers the whole body whatever `Range` says.
    let no_range = HeaderMap::new();
    let range_headers = if state.profile.facts.honours_range {
        &headers
    } else {
        &no_range
    };
    let mut response = match variant {
        ContentVariant::Video => {
            let video = Arc::new(RenderedVideo::new(spec));
            ranged_stream(
                video.len(),
                "video/mp4",
                range_headers,
                Served("video"),
                |start, end| video_chunks(video, start, end),
            )
        }
        ContentVariant::Thumbnail | ContentVariant::Spritesheet => {
            let key = state.profile.stored_id(&id)?;
            let jpeg = image(&state, &key, variant, spec).await?;
            let served = match variant {
                ContentVariant::Thumbnail => Served("thumbnail"),
                _ => Served("spritesheet"),
            };
            ranged_bytes(jpeg, "image/jpeg", range_headers, served)?
        }
    };
    if !state.profile.facts.honours_range {
        response.headers_mut().remove(header::ACCEPT_RANGES);
        if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=video_{id}.mp4")) {
            response
                .headers_mut()
                .insert(header::CONTENT_DISPOSITION, value);
        }
    }
    Ok(response)
}

/// A video's thumbnail or spritesheet, encoded once, off the async threads (encoding takes
/// tens of milliseconds and would stall every stream sharing the thread).
async fn image(
    state: &Arc<SandboxState>,
    id: &str,
    variant: ContentVariant,
    spec: VideoSpec,
) -> Result<Bytes, ApiFailure> {
    let cache_key = (id.to_string(), variant);
    if let Some(bytes) = lock(&state.images).get(&cache_key) {
        return Ok(bytes.clone());
    }
    let encoded = tokio::task::spawn_blocking(move || match variant {
        ContentVariant::Thumbnail => media::thumbnail_jpeg(spec.seed, &spec.prompt, spec.size),
        _ => media::spritesheet_jpeg(spec.seed, &spec.prompt, spec.size),
    })
    .await
    .map_err(|_| ApiFailure::server_error(axum::http::StatusCode::INTERNAL_SERVER_ERROR))?;
    let bytes = Bytes::from(encoded);
    lock(&state.images).insert(cache_key, bytes.clone());
    Ok(bytes)
}

fn parse_variant(variant: Option<&str>) -> Result<ContentVariant, ApiFailure> {
    match variant.unwrap_or("video") {
        "video" => Ok(ContentVariant::Video),
        "thumbnail" => Ok(ContentVariant::Thumbnail),
        "spritesheet" => Ok(ContentVariant::Spritesheet),
        other => Err(ApiFailure::invalid_value(
            "variant",
            other,
            &["video".into(), "thumbnail".into(), "spritesheet".into()],
        )),
    }
}

/// The spec of a video whose content can be downloaded now, or the error the server answers.
fn downloadable(
    state: &SandboxState,
    id: &str,
    variant: Option<&str>,
) -> Result<VideoSpec, ApiFailure> {
    let now = state.clock.now();
    let store = lock(&state.store);
    let record = live(state, &store, id)?;
    let status = record.video.status;
    let profile = &state.profile;
    if !matches!(status, VideoStatus::Completed | VideoStatus::Failed) {
        return Err(profile.still_rendering(id, status.as_str()));
    }
    match profile.facts.variant {
        // SGLang: only the outputs it wrote, by index (`None` and `0` are the first); a failed
        // job wrote none.
        VariantRule::Index => {
            let index = variant.map_or(Some(0), |v| v.trim().parse::<i64>().ok());
            if status == VideoStatus::Failed || index != Some(0) {
                return Err(ApiFailure::detail(
                    StatusCode::NOT_FOUND,
                    format!("Video variant {} not found", variant.unwrap_or("None")),
                ));
            }
        }
        VariantRule::Named | VariantRule::Ignored if status == VideoStatus::Failed => {
            return Err(match profile.video {
                VideoShape::VllmOmni => ApiFailure::detail(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Video generation failed. Check job status for error details.",
                ),
                VideoShape::OpenAi | VideoShape::Sglang => {
                    profile.still_rendering(id, status.as_str())
                }
            });
        }
        VariantRule::Named | VariantRule::Ignored => {}
    }
    if let Some(expires_at) = record.video.expires_at
        && now >= expires_at
    {
        return Err(ApiFailure::video_expired(id, expires_at));
    }
    Ok(record.spec.clone())
}

/// Streams `[start, end)` of a video, one encoder read per chunk, off the async threads.
pub fn video_chunks(
    video: Arc<RenderedVideo>,
    start: u64,
    end: u64,
) -> impl Stream<Item = Result<Bytes, io::Error>> + Send + 'static {
    futures_util::stream::try_unfold(start, move |offset| {
        let video = video.clone();
        async move {
            if offset >= end {
                return Ok(None);
            }
            let want = (end - offset).min(CHUNK as u64) as usize;
            let chunk = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; want];
                let got = video.read_at(offset, &mut buf);
                buf.truncate(got);
                buf
            })
            .await
            .map_err(io::Error::other)?;
            if chunk.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the encoder produced fewer bytes than the video's length",
                ));
            }
            let next = offset + chunk.len() as u64;
            Ok(Some((Bytes::from(chunk), next)))
        }
    })
}

/// SHA-256 and length of a video's full content, streamed through the encoder.
pub fn digest(state: &SandboxState, id: &str) -> Option<super::VideoDigest> {
    use sha2::{Digest, Sha256};
    let spec = {
        let store = lock(&state.store);
        let key = state
            .profile
            .stored_id(id)
            .unwrap_or_else(|_| id.to_string());
        let record = store.videos.get(&key).or_else(|| store.videos.get(id))?;
        record.spec.clone()
    };
    let video = RenderedVideo::new(spec);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut offset = 0;
    while offset < video.len() {
        let got = video.read_at(offset, &mut buf);
        if got == 0 {
            break;
        }
        hasher.update(&buf[..got]);
        offset += got as u64;
    }
    Some(super::VideoDigest {
        id: id.to_string(),
        sha256: hex::encode(hasher.finalize()),
        bytes: offset,
    })
}
