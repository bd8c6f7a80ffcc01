//! Videos (jobs): look up, list, delete, create (JSON or multipart).

use super::*;

impl ApiClient {
    // ------------------------------------------------------------ videos

    /// A video (job). A job that failed is a video with status `failed`, even from a server
    /// that tells it as an HTTP error carrying the video object (vllm-omni answers 500).
    pub async fn get_video(&self, id: &str) -> Result<Video, ApiError> {
        let segments = ["videos", id];
        let endpoint = self.endpoint(&Method::GET, &segments);
        let url = self.url(&segments);
        let mut retries = RetryState::new(self.retry.clone());
        loop {
            let attempts = retries.attempts();
            let req = self.request(Method::GET, url.clone(), true);
            let failure = match self.send_and_read(req).await {
                Ok((_, body)) => return self.decode(&endpoint, &body, attempts),
                Err(failure) => failure,
            };
            if let Failure::Status { body, .. } = &failure
                && let Ok(video) = self.decode::<Video>(&endpoint, body, attempts)
                && video.status == render_wire::api::VideoStatus::Failed
            {
                return Ok(video);
            }
            self.pause_or_fail(&endpoint, failure, &mut retries).await?;
        }
    }

    /// An answer's body as `T`, with the key redacted from whatever the server echoed.
    pub(super) fn decode<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        body: &[u8],
        attempts: u32,
    ) -> Result<T, ApiError> {
        let body = self.redact_bytes(body.to_vec());
        serde_json::from_slice(&body).map_err(|e| ApiError::Decode {
            endpoint: endpoint.to_string(),
            detail: e.to_string(),
            excerpt: self.excerpt(&body),
            attempts,
        })
    }

    /// One page of videos (jobs), newest first where the server orders them.
    pub async fn list_videos(
        &self,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<List<Video>, ApiError> {
        let query = page_query(after, limit);
        self.call_json(Method::GET, &["videos"], true, |req| Ok(req.query(&query)))
            .await
    }

    pub async fn delete_video(&self, id: &str) -> Result<serde_json::Value, ApiError> {
        self.call_json(Method::DELETE, &["videos", id], true, Ok)
            .await
    }

    /// `POST /videos`, the way the dialect takes it: JSON with a `file_id` reference, or a
    /// multipart form with the image itself (`image`: path, file name and MIME type).
    /// Retried like any call: use [`ApiClient::without_retries`] where a lost answer must be
    /// reconciled before sending again.
    pub async fn create_video(
        &self,
        body: &CreateVideo,
        image: Option<(&Path, &str, &str)>,
    ) -> Result<Video, ApiError> {
        match self.facts.create_body {
            render_wire::dialect::CreateBody::JsonWithFileId if image.is_none() => {
                self.call_json(Method::POST, &["videos"], true, |req| Ok(req.json(body)))
                    .await
            }
            _ => {
                let endpoint = "POST /videos";
                self.call_json(Method::POST, &["videos"], true, |req| {
                    Ok(req.multipart(video_form(endpoint, body, image)?))
                })
                .await
            }
        }
    }
}
