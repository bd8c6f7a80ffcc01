//! The one streaming download, resumed by `Range` after drops.

use super::*;

impl ApiClient {
    /// Streams a video's content into `dest`, starting at byte `resume_from` of the content
    /// (the caller has the bytes before it). Asks `Range: bytes=N-` when `N > 0`, checks the
    /// server's `Content-Range`, and resumes the same way after a connection drops mid-body.
    /// A server that ignores the range gets its first `N` bytes skipped. Memory stays flat.
    pub async fn download_content<W>(
        &self,
        video_id: &str,
        variant: ContentVariant,
        dest: &mut W,
        resume_from: u64,
    ) -> Result<DownloadOutcome, ApiError>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        // Each server names variants its own way (or not at all): ask the way it understands.
        let query = match variant {
            ContentVariant::Video => self.facts.video_variant(),
            ContentVariant::Thumbnail => {
                Some(self.facts.thumbnail_variant().unwrap_or("thumbnail"))
            }
            ContentVariant::Spritesheet => Some("spritesheet"),
        };
        let segments = ["videos", video_id, "content"];
        self.download(&segments, query, dest, resume_from, self.max_download_bytes)
            .await
    }

    /// The one streaming download: `segments` (with `variant` when given) into `dest` from
    /// byte `resume_from`, resuming by Range after drops, refusing more than `max_bytes`.
    pub(super) async fn download<W>(
        &self,
        segments: &[&str],
        variant: Option<&str>,
        dest: &mut W,
        resume_from: u64,
        max_bytes: u64,
    ) -> Result<DownloadOutcome, ApiError>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let endpoint = self.endpoint(&Method::GET, segments);
        let mut url = self.url(segments);
        if let Some(variant) = variant {
            url.query_pairs_mut().append_pair("variant", variant);
        }
        let mut progress = Progress {
            offset: resume_from,
            written: 0,
            total: None,
            max: max_bytes,
        };
        let mut retries = RetryState::new(self.retry.clone());
        loop {
            let attempts = retries.attempts();
            let before = progress.offset;
            let failure = match self
                .download_attempt(&endpoint, url.clone(), &mut progress, dest, attempts)
                .await
            {
                Ok(()) => {
                    return Ok(DownloadOutcome {
                        bytes: progress.written,
                        total_len: progress.total,
                    });
                }
                Err(failure) => failure,
            };
            if progress.offset > before {
                // A long download that keeps moving is not failing: only stalls use the budget.
                retries.progressed();
            }
            self.pause_or_fail(&endpoint, failure, &mut retries).await?;
        }
    }

    pub(super) async fn download_attempt<W>(
        &self,
        endpoint: &str,
        url: Url,
        progress: &mut Progress,
        dest: &mut W,
        attempts: u32,
    ) -> Result<(), Failure>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let mut req = self
            .request(Method::GET, url, false)
            .header(header::ACCEPT, "application/binary");
        if progress.offset > 0 {
            req = req.header(header::RANGE, format!("bytes={}-", progress.offset));
        }
        let resp = req.send().await.map_err(Failure::Transport)?;
        self.note_date(resp.headers());
        let mut skip = match resp.status() {
            StatusCode::PARTIAL_CONTENT => {
                let range = content_range(resp.headers())
                    .filter(|r| r.start == Some(progress.offset))
                    .ok_or_else(|| {
                        protocol(
                            endpoint,
                            attempts,
                            format!(
                                "asked for bytes {}- but got Content-Range {:?}",
                                progress.offset,
                                resp.headers().get(header::CONTENT_RANGE)
                            ),
                        )
                    })?;
                progress.total = range.total.or(progress.total);
                0
            }
            StatusCode::RANGE_NOT_SATISFIABLE => {
                // Asking for bytes past the end is fine when we already have them all.
                let total = content_range(resp.headers()).and_then(|r| r.total);
                return match total {
                    Some(total) if total == progress.offset => {
                        progress.total = Some(total);
                        Ok(())
                    }
                    _ => Err(protocol(
                        endpoint,
                        attempts,
                        format!(
                            "range from byte {} not satisfiable (content length {total:?})",
                            progress.offset
                        ),
                    )),
                };
            }
            status if status.is_success() => {
                if progress.offset > 0 {
                    tracing::warn!(
                        endpoint,
                        offset = progress.offset,
                        "server ignored the Range header; skipping bytes already held"
                    );
                }
                progress.total = resp.content_length().or(progress.total);
                progress.offset
            }
            _ => return Err(self.status_failure(resp).await),
        };
        if progress.total.is_some_and(|total| total > progress.max) {
            return Err(too_large(endpoint, progress.max));
        }
        let mut resp = resp;
        while let Some(chunk) = resp.chunk().await.map_err(Failure::Transport)? {
            let mut chunk = &chunk[..];
            if skip > 0 {
                let n = skip.min(chunk.len() as u64);
                skip -= n;
                chunk = &chunk[n as usize..];
            }
            dest.write_all(chunk)
                .await
                .map_err(|source| write_failure(endpoint, source))?;
            progress.offset += chunk.len() as u64;
            progress.written += chunk.len() as u64;
            if progress.offset > progress.max {
                return Err(too_large(endpoint, progress.max));
            }
        }
        dest.flush()
            .await
            .map_err(|source| write_failure(endpoint, source))?;
        match progress.total {
            Some(total) if progress.offset < total => Err(Failure::ShortBody(format!(
                "the body ended at byte {} of {total}",
                progress.offset
            ))),
            Some(total) if progress.offset > total => Err(protocol(
                endpoint,
                attempts,
                format!(
                    "received {} bytes of a {total}-byte content",
                    progress.offset
                ),
            )),
            _ => Ok(()),
        }
    }
}
