//! `/v1/videos`: create (JSON or multipart with an `input_reference` image), retrieve, list,
//! delete, and content downloads streamed from the synthetic encoder with `Range` support.

use std::io;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use futures_util::Stream;
use serde::Deserialize;

use super::engine::{self, file_bytes};
use super::error::ApiFailure;
use super::files::{check_limit, check_order, list_of, multipart_error};
use super::http::{Served, ranged_bytes, ranged_stream};
use super::media::{self, RenderedVideo, VideoSpec};
use super::policy;
use super::state::{Job, Queued, SandboxState, VideoRecord, lock, page, video_seed};
use crate::api::types::{
    ContentVariant, CreateVideo, Deleted, InputReference, List, Video, VideoStatus,
};

/// Bytes produced per read of the encoder: large enough to be cheap, small enough to stream.
const CHUNK: usize = 256 * 1024;

/// A create request, with the reference image when it came as a multipart file.
struct Incoming {
    request: CreateVideo,
    image: Option<Bytes>,
}

pub async fn create(
    State(state): State<Arc<SandboxState>>,
    request: Request,
) -> Result<Json<Video>, ApiFailure> {
    let is_multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let incoming = if is_multipart {
        let multipart = Multipart::from_request(request, &state).await?;
        read_multipart(multipart).await?
    } else {
        let body = Bytes::from_request(request, &state)
            .await
            .map_err(|e| ApiFailure::invalid(None, None, e.to_string()))?;
        let request: CreateVideo = serde_json::from_slice(&body).map_err(|e| {
            ApiFailure::invalid(
                None,
                None,
                format!("We could not parse the JSON body of your request: {e}"),
            )
        })?;
        Incoming {
            request,
            image: None,
        }
    };
    let now = state.clock.now_f64();
    let mut store = lock(&state.store);
    let accepted = policy::check_request(&incoming.request, &state.config.catalog, |id| {
        file_bytes(&store, id, now as i64)
    })?;
    if let Some(image) = &incoming.image {
        policy::check_reference_image(image, accepted.size)?;
    }
    let id = store.new_id("video_");
    let video = Video {
        id: id.clone(),
        object: "video".into(),
        status: VideoStatus::Queued,
        progress: Some(0),
        model: Some(accepted.model),
        prompt: Some(accepted.prompt.clone()),
        size: Some(accepted.size.to_string()),
        seconds: Some(accepted.seconds.to_string()),
        created_at: now as i64,
        completed_at: None,
        expires_at: None,
        error: None,
        remixed_from_video_id: None,
    };
    let spec = VideoSpec {
        seed: video_seed(state.config.seed, &id),
        prompt: accepted.prompt,
        size: accepted.size,
        seconds: accepted.seconds,
        total_bytes: state.config.video_bytes,
    };
    store.videos.insert(
        id.clone(),
        VideoRecord {
            video: video.clone(),
            spec,
            batch_id: None,
            deleted: false,
            started_at: None,
            done_at: None,
        },
    );
    store.queue.push_back(Queued {
        job: Job::Video { video_id: id },
        ready_at: now,
    });
    drop(store);
    lock(&state.stats).videos_created += 1;
    state.note_accepted();
    state.wake.notify_one();
    Ok(Json(video))
}

async fn read_multipart(mut multipart: Multipart) -> Result<Incoming, ApiFailure> {
    let mut request = CreateVideo {
        prompt: String::new(),
        model: None,
        size: None,
        seconds: None,
        input_reference: None,
    };
    let mut prompt = None;
    let mut image = None;
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_string();
        if name == "input_reference" && field.file_name().is_some() {
            image = Some(field.bytes().await.map_err(multipart_error)?);
            continue;
        }
        let text = field.text().await.map_err(multipart_error)?;
        match name.as_str() {
            "prompt" => prompt = Some(text),
            "model" => request.model = Some(text),
            "size" => request.size = Some(text),
            "seconds" => request.seconds = Some(text),
            "input_reference[file_id]" => {
                request.input_reference = Some(InputReference::FileId { file_id: text })
            }
            "input_reference[image_url]" => {
                request.input_reference = Some(InputReference::ImageUrl { image_url: text })
            }
            _ => {}
        }
    }
    request.prompt = prompt.ok_or_else(|| super::files::missing("prompt"))?;
    Ok(Incoming { request, image })
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

fn live<'a>(store: &'a super::state::Store, id: &str) -> Result<&'a VideoRecord, ApiFailure> {
    store
        .videos
        .get(id)
        .filter(|v| !v.deleted)
        .ok_or_else(|| ApiFailure::not_found("Video", id))
}

pub async fn retrieve(
    State(state): State<Arc<SandboxState>>,
    Path(id): Path<String>,
) -> Result<Json<Video>, ApiFailure> {
    engine::tick(&state);
    let store = lock(&state.store);
    Ok(Json(current(live(&store, &id)?, state.clock.now_f64())))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
    order: Option<String>,
}

pub async fn list(
    State(state): State<Arc<SandboxState>>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<List<Video>>, ApiFailure> {
    let Query(query) = query.map_err(|e| ApiFailure::invalid(None, None, e.body_text()))?;
    let limit = check_limit(query.limit, 20, 100)?;
    let ascending = check_order(query.order.as_deref())?;
    engine::tick(&state);
    let now = state.clock.now_f64();
    let store = lock(&state.store);
    let rows = store.videos.iter().filter(|v| !v.deleted);
    let (items, has_more) = page(
        rows,
        |v| &v.video.id,
        query.after.as_deref(),
        limit,
        ascending,
    );
    let data = items.into_iter().map(|v| current(v, now)).collect();
    Ok(Json(list_of(data, has_more, |v: &Video| &v.id)))
}

pub async fn delete(
    State(state): State<Arc<SandboxState>>,
    Path(id): Path<String>,
) -> Result<Json<Deleted>, ApiFailure> {
    let mut store = lock(&state.store);
    live(&store, &id)?;
    if let Some(record) = store.videos.get_mut(&id) {
        record.deleted = true;
    }
    store
        .queue
        .retain(|q| !matches!(&q.job, Job::Video { video_id } if *video_id == id));
    Ok(Json(Deleted {
        id,
        object: "video.deleted".into(),
        deleted: true,
    }))
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
    let variant = parse_variant(query.variant.as_deref())?;
    engine::tick(&state);
    let spec = downloadable(&state, &id)?;
    Ok(match variant {
        ContentVariant::Video => {
            let video = Arc::new(RenderedVideo::new(spec));
            ranged_stream(
                video.len(),
                "video/mp4",
                &headers,
                Served("video"),
                |start, end| video_chunks(video, start, end),
            )
        }
        ContentVariant::Thumbnail | ContentVariant::Spritesheet => {
            let jpeg = image(&state, &id, variant, spec).await?;
            let served = match variant {
                ContentVariant::Thumbnail => Served("thumbnail"),
                _ => Served("spritesheet"),
            };
            ranged_bytes(jpeg, "image/jpeg", &headers, served)?
        }
    })
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

/// The spec of a completed, unexpired video, or the error the API answers instead.
fn downloadable(state: &SandboxState, id: &str) -> Result<VideoSpec, ApiFailure> {
    let now = state.clock.now();
    let store = lock(&state.store);
    let record = live(&store, id)?;
    if record.video.status != VideoStatus::Completed {
        return Err(ApiFailure::invalid(
            None,
            Some("video_not_ready"),
            format!(
                "Video '{id}' has no content: its status is '{}'.",
                status_name(record.video.status)
            ),
        ));
    }
    if let Some(expires_at) = record.video.expires_at
        && now >= expires_at
    {
        return Err(ApiFailure::video_expired(id, expires_at));
    }
    Ok(record.spec.clone())
}

fn status_name(status: VideoStatus) -> &'static str {
    match status {
        VideoStatus::Queued => "queued",
        VideoStatus::InProgress => "in_progress",
        VideoStatus::Completed => "completed",
        VideoStatus::Failed => "failed",
        VideoStatus::Unknown => "unknown",
    }
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
        let record = store.videos.get(id)?;
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
