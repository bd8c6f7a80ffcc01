//! `/sandbox/*`: the test harness's side door (no auth): stats, faults, clock, video digests,
//! and a restart that forgets every video.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::VideoDigest;
use super::engine;
use super::error::ApiFailure;
use super::faults::{FaultConfig, FaultEngine};
use super::state::{SandboxState, lock};
use super::stats::Stats;
use super::videos;

pub async fn stats(State(state): State<Arc<SandboxState>>) -> Json<Stats> {
    Json(state.stats_snapshot())
}

#[derive(Debug, Serialize)]
pub struct Restarted {
    /// Videos the restart forgot.
    forgotten: usize,
}

/// Restarts the server as one that keeps its jobs in memory: every video, and every direct
/// render queued or running, is forgotten (their ids then answer 404). Files, batches and the
/// clock stay.
pub async fn restart(State(state): State<Arc<SandboxState>>) -> Json<Restarted> {
    Json(Restarted {
        forgotten: restart_now(&state),
    })
}

pub fn restart_now(state: &SandboxState) -> usize {
    engine::tick(state);
    let now = state.clock.now_f64();
    let forgotten = lock(&state.store).forget_videos(now);
    lock(&state.images).clear();
    lock(&state.stats).restarts += 1;
    state.wake.notify_one();
    forgotten
}

#[derive(Debug, Serialize)]
pub struct Model {
    id: String,
    object: &'static str,
    created: i64,
    owned_by: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Models {
    object: &'static str,
    data: Vec<Model>,
}

/// `GET /v1/models`: the models the server serves, in OpenAI's list shape (every dialect).
pub async fn models(State(state): State<Arc<SandboxState>>) -> Json<Models> {
    let created = state.clock.origin();
    let data = state
        .served_models()
        .into_iter()
        .map(|id| Model {
            id,
            object: "model",
            created,
            owned_by: state.profile.model_owner,
        })
        .collect();
    Json(Models {
        object: "list",
        data,
    })
}

pub async fn get_faults(State(state): State<Arc<SandboxState>>) -> Json<FaultConfig> {
    Json(lock(&state.faults).config().clone())
}

/// Replaces the fault configuration (counters and generator start afresh).
pub async fn set_faults(
    State(state): State<Arc<SandboxState>>,
    body: Bytes,
) -> Result<Json<FaultConfig>, ApiFailure> {
    let config: FaultConfig = serde_json::from_slice(&body).map_err(|e| {
        ApiFailure::invalid(None, None, format!("Invalid fault configuration: {e}"))
    })?;
    replace_faults(&state, config.clone())
        .map_err(|e| ApiFailure::invalid(None, None, e.to_string()))?;
    Ok(Json(config))
}

pub fn replace_faults(
    state: &SandboxState,
    config: FaultConfig,
) -> Result<(), super::faults::FaultSpecError> {
    let engine = FaultEngine::new(config, state.config.seed)?;
    *lock(&state.faults) = engine;
    Ok(())
}

#[derive(Debug, Deserialize)]
pub struct Advance {
    seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct Now {
    now: i64,
}

pub async fn clock(State(state): State<Arc<SandboxState>>) -> Json<Now> {
    Json(Now {
        now: state.clock.now(),
    })
}

/// Jumps virtual time forward, applying every transition due by then.
pub async fn advance(
    State(state): State<Arc<SandboxState>>,
    body: Bytes,
) -> Result<Json<Now>, ApiFailure> {
    let Advance { seconds } = serde_json::from_slice(&body).map_err(|e| {
        ApiFailure::invalid(
            Some("seconds"),
            None,
            format!("Expected {{\"seconds\": N}}: {e}"),
        )
    })?;
    if !(seconds.is_finite() && seconds >= 0.0) {
        return Err(ApiFailure::invalid(
            Some("seconds"),
            None,
            "seconds must be zero or more",
        ));
    }
    state.clock.advance(seconds);
    engine::tick(&state);
    Ok(Json(Now {
        now: state.clock.now(),
    }))
}

pub async fn digest(
    State(state): State<Arc<SandboxState>>,
    Path(id): Path<String>,
) -> Result<Json<VideoDigest>, ApiFailure> {
    let task_state = state.clone();
    let task_id = id.clone();
    let digest = tokio::task::spawn_blocking(move || videos::digest(&task_state, &task_id))
        .await
        .map_err(|_| ApiFailure::server_error(StatusCode::INTERNAL_SERVER_ERROR))?;
    digest
        .map(Json)
        .ok_or_else(|| ApiFailure::not_found("Video", &id))
}
