//! The download stage, shared by both lanes: every finished video (and its thumbnail, where
//! the server has one) streamed into the content-addressed store, `jobs` at a time.

use std::sync::Arc;

use crate::api::client::ApiClient;
use crate::api::error::ApiError;
use crate::cache::{CacheStorage, PendingObject};
use crate::events::{Event, EventSink};
use crate::failpoint;
use crate::lanes::Route;
use crate::ledger::{Ledger, OutputRow, RequestRow, RequestStatus, unix_now};
use render_wire::api::ContentVariant;
use render_wire::dialect::image_mime;
use render_wire::key::Sha256Hex;

use super::{HarvestError, HarvestOptions, HarvestReport, warn};

/// Downloads `requests` that are completed and not cached yet, from `route`'s server. A video
/// the server denies having is lost only when it says it expired, or by `missing`'s rule.
pub(super) async fn download(
    requests: Vec<RequestRow>,
    route: &Route,
    ledger: &mut Ledger,
    store: &Arc<dyn CacheStorage>,
    options: &HarvestOptions,
    events: &dyn EventSink,
    report: &mut HarvestReport,
) -> Result<(), HarvestError> {
    let missing = options.missing;
    let mut todo = Vec::new();
    for request in requests {
        if request.status != RequestStatus::Completed {
            continue;
        }
        // Another run may have harvested the same key already.
        match ledger.output(&request.key)? {
            Some(output) if store.has(&output.video_sha) => {
                ledger.record_output(&output)?;
            }
            _ => todo.push(request),
        }
    }
    if todo.is_empty() {
        return Ok(());
    }
    events.emit(Event::DownloadsPlanned {
        videos: todo.len() as u64,
    });
    // Each download is its own task, so hashing and copying spread over every core; they
    // report progress through a channel, and only this task touches the ledger.
    let (progress_tx, mut progress_rx) = tokio::sync::mpsc::unbounded_channel();
    let stages = Stages::new(options.jobs);
    let thumbnails = route.provider.wants_thumbnails();
    let mut downloads = tokio::task::JoinSet::new();
    for request in todo {
        let (client, store) = (route.client.clone(), store.clone());
        let (stages, sink) = (stages.clone(), ChannelSink(progress_tx.clone()));
        downloads.spawn(async move {
            let result =
                download_request(&request, &client, &store, thumbnails, &stages, &sink).await;
            (request, result)
        });
    }
    drop(progress_tx);
    let mut first_error = None;
    loop {
        let joined = tokio::select! {
            Some(event) = progress_rx.recv() => {
                events.emit(event);
                continue;
            }
            joined = downloads.join_next() => joined,
        };
        let Some(joined) = joined else { break };
        let (request, result) = match joined {
            Ok(done) => done,
            Err(err) => {
                first_error.get_or_insert(HarvestError::Task(err.to_string()));
                continue;
            }
        };
        match result {
            Ok(output) => {
                ledger.record_output(&output)?;
                report.downloaded_videos += 1;
                report.downloaded_bytes += output.video_bytes;
                events.emit(Event::VideoHarvested {
                    shot_id: request.shot_id.clone(),
                    take: request.take,
                    key: request.key.hex(),
                    bytes: output.video_bytes,
                });
                failpoint::hit("harvest-after-video");
            }
            Err(DownloadFailure::Expired(reason)) => {
                crate::lanes::record_lost(ledger, events, &request, reason)?
            }
            Err(DownloadFailure::NotFound(err)) => {
                let (polls, for_secs) = ledger.request_missing(&request.key, unix_now())?;
                if polls >= missing.polls && for_secs as u64 >= missing.grace.as_secs() {
                    let reason = format!(
                        "the provider no longer has video {} (not found on {polls} tries over {for_secs} s): {err}",
                        request.video_id.as_deref().unwrap_or("?")
                    );
                    crate::lanes::record_lost(ledger, events, &request, reason)?;
                } else if polls == 1 {
                    warn(
                        events,
                        format!(
                            "shot {}: the server did not find its video ({err}); asking again before concluding anything",
                            request.shot_id
                        ),
                    );
                }
            }
            // Keep harvesting the others: one stubborn download must not cost the rest.
            Err(DownloadFailure::Other(err)) => {
                // Reported once, with the rest of the harvest's outcome.
                tracing::info!(shot = %request.shot_id, "download failed: {err}");
                first_error.get_or_insert(err);
            }
        }
    }
    while let Ok(event) = progress_rx.try_recv() {
        events.emit(event);
    }
    match first_error {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// The two places a download takes in turn, `jobs` of each: one while its video streams in,
/// one while the video is made durable and its thumbnail fetched. A video gives up the first
/// as soon as its bytes are in, so the next one streams while the disk flushes this one. (On
/// issue #13's bench, 40 × 16 MB with `--jobs 4`, the two cores sat idle 0.26–0.30 core-seconds
/// of a one-second harvest while each fsync and thumbnail held a transfer's place; 0.14–0.15
/// after, as much as curl's.) It takes the second place before giving up the first, so a slow
/// disk or a slow thumbnail holds back new transfers instead of piling up open objects.
#[derive(Clone)]
struct Stages {
    transfers: Arc<tokio::sync::Semaphore>,
    finishes: Arc<tokio::sync::Semaphore>,
}

impl Stages {
    fn new(jobs: usize) -> Stages {
        let places = || Arc::new(tokio::sync::Semaphore::new(jobs.max(1)));
        Stages {
            transfers: places(),
            finishes: places(),
        }
    }
}

/// Forwards a download task's events to the harvest's own task.
struct ChannelSink(tokio::sync::mpsc::UnboundedSender<Event>);

impl EventSink for ChannelSink {
    fn emit(&self, event: Event) {
        // The receiver outlives every task; a send can only fail once the harvest has ended.
        let _ = self.0.send(event);
    }
}

enum DownloadFailure {
    /// The provider says the video expired: the request is lost.
    Expired(String),
    /// The provider does not find the video (which may be a lagging replica, a variant it
    /// does not know, a restarted server): lost only if it keeps saying so.
    NotFound(ApiError),
    Other(HarvestError),
}

impl<E: Into<HarvestError>> From<E> for DownloadFailure {
    fn from(err: E) -> DownloadFailure {
        DownloadFailure::Other(err.into())
    }
}

async fn download_request(
    request: &RequestRow,
    client: &ApiClient,
    store: &Arc<dyn CacheStorage>,
    thumbnails: bool,
    stages: &Stages,
    events: &dyn EventSink,
) -> Result<OutputRow, DownloadFailure> {
    let video_id = request
        .video_id
        .clone()
        .ok_or_else(|| DownloadFailure::Expired("the result named no video".into()))?;
    // The semaphores are never closed: acquiring only waits.
    let transfer = stages.transfers.acquire().await;
    let (video, expected) =
        fetch_variant(&video_id, ContentVariant::Video, client, store, events).await?;
    let video_bytes = video.len();
    let _finish = stages.finishes.acquire().await;
    drop(transfer);
    // The video is made durable (fsync, then moved into the store) while its thumbnail downloads.
    let (video_sha, thumbnail_sha) = tokio::join!(video.finish(expected), async {
        match thumbnails {
            false => Ok(None),
            true => thumbnail(request, &video_id, client, store, events).await,
        }
    });
    let (video_sha, thumbnail_sha) = (video_sha?, thumbnail_sha?);
    Ok(OutputRow {
        key: request.key,
        video_sha,
        video_bytes,
        thumbnail_sha,
        video_id: Some(video_id),
        harvested_at: unix_now(),
    })
}

/// The video's thumbnail, where the server sends a picture.
async fn thumbnail(
    request: &RequestRow,
    video_id: &str,
    client: &ApiClient,
    store: &Arc<dyn CacheStorage>,
    events: &dyn EventSink,
) -> Result<Option<Sha256Hex>, DownloadFailure> {
    let download = async {
        let (pending, expected) =
            fetch_variant(video_id, ContentVariant::Thumbnail, client, store, events).await?;
        Ok::<_, DownloadFailure>(pending.finish(expected).await?)
    };
    match download.await {
        // A "thumbnail" is whatever the server sends: only a picture is kept as one
        // (vllm-omni and LiteLLM answer the MP4 again).
        Ok(sha) if is_image(&**store, &sha).await => Ok(Some(sha)),
        Ok(_) => {
            events.emit(Event::Warning {
                message: format!(
                    "shot {}: the server's thumbnail is not an image; the night has no thumbnail for it",
                    request.shot_id
                ),
            });
            Ok(None)
        }
        // A missing thumbnail is a pity, not a lost video.
        Err(DownloadFailure::Expired(_) | DownloadFailure::NotFound(_)) => Ok(None),
        Err(other) => Err(other),
    }
}

/// Streams one variant into a pending object of the store, resuming a partial download left by
/// an earlier run; the caller finishes it (with the length the server announced).
async fn fetch_variant(
    video_id: &str,
    variant: ContentVariant,
    client: &ApiClient,
    store: &Arc<dyn CacheStorage>,
    events: &dyn EventSink,
) -> Result<(PendingObject, Option<u64>), DownloadFailure> {
    // Named by the video, not the request: a partial of a video that was lost must never be
    // resumed with the bytes of its re-render. Hashed, because ids are the provider's text.
    let name = format!(
        "{}-{}",
        &Sha256Hex::of(video_id.as_bytes()).hex()[..32],
        variant.as_str()
    );
    let mut pending = store.resume_partial(&name).await?;
    let resume_from = pending.len();
    let outcome = {
        let mut sink = ProgressWriter {
            inner: &mut pending,
            events,
            count: variant == ContentVariant::Video,
            written: 0,
            unreported: 0,
        };
        client
            .download_content(video_id, variant, &mut sink, resume_from)
            .await
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(err) if err.says_expired() => {
            pending.abandon().await?;
            return Err(DownloadFailure::Expired(format!(
                "the provider no longer has video {video_id}: {err}"
            )));
        }
        Err(err) if err.status() == Some(404) => {
            pending.abandon().await?;
            return Err(DownloadFailure::NotFound(err));
        }
        // A body past the bound is no video: what it wrote must not be resumed.
        Err(err @ ApiError::TooLarge { .. }) => {
            pending.abandon().await?;
            return Err(err.into());
        }
        Err(err) => return Err(err.into()),
    };
    Ok((pending, outcome.total_len))
}

/// Whether a stored object begins like a JPEG, PNG or WebP image.
async fn is_image(store: &dyn CacheStorage, sha: &Sha256Hex) -> bool {
    let head = crate::cache::read_head(store, sha, 16).await;
    image_mime(&head).is_some()
}

/// Passes bytes through to the pending object, reporting progress as they go.
struct ProgressWriter<'a, W> {
    inner: &'a mut W,
    events: &'a dyn EventSink,
    count: bool,
    written: u64,
    /// Bytes not yet reported: progress goes out a mebibyte at a time, not per chunk.
    unreported: u64,
}

/// How many bytes a progress event stands for, at most.
const PROGRESS_STEP: u64 = 1 << 20;

impl<W> ProgressWriter<'_, W> {
    fn report(&mut self) {
        if self.unreported > 0 {
            self.events.emit(Event::DownloadProgress {
                bytes: std::mem::take(&mut self.unreported),
            });
        }
    }
}

impl<W> Drop for ProgressWriter<'_, W> {
    fn drop(&mut self) {
        self.report();
    }
}

impl<W: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for ProgressWriter<'_, W> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let poll = std::pin::Pin::new(&mut *self.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = &poll
            && self.count
        {
            self.written += *n as u64;
            self.unreported += *n as u64;
            if self.unreported >= PROGRESS_STEP {
                self.report();
            }
            // Late enough that part of the video has reached the disk (past the pending
            // object's two write blocks), to prove resumption.
            if self.written > 2 << 20 {
                failpoint::hit("harvest-mid-download");
            }
        }
        poll
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}
