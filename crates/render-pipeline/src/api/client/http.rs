//! Plumbing under every call: URLs, requests, the retry loop, errors, redaction.

use super::*;

impl ApiClient {
    // ------------------------------------------------------------ plumbing

    pub(super) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            // Ids are percent-encoded segment by segment: an id cannot escape its path.
            path.pop_if_empty().extend(segments);
        }
        url
    }

    pub(super) fn request(
        &self,
        method: Method,
        url: Url,
        whole_call_timeout: bool,
    ) -> RequestBuilder {
        let mut req = self.http.request(method, url);
        if let Some(key) = &self.key {
            let mut auth = HeaderValue::from_str(&format!("Bearer {}", key.expose()))
                .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid-key-characters"));
            auth.set_sensitive(true);
            req = req.header(header::AUTHORIZATION, auth);
        }
        if whole_call_timeout {
            req.timeout(self.timeouts.request)
        } else {
            req
        }
    }

    /// A JSON call with retries: `build` adds the body to a fresh request for every attempt.
    pub(super) async fn call_json<T, F>(
        &self,
        method: Method,
        segments: &[&str],
        whole_call_timeout: bool,
        build: F,
    ) -> Result<T, ApiError>
    where
        T: DeserializeOwned,
        F: Fn(RequestBuilder) -> Result<RequestBuilder, ApiError>,
    {
        let endpoint = self.endpoint(&method, segments);
        let url = self.url(segments);
        let mut retries = RetryState::new(self.retry.clone());
        loop {
            let attempts = retries.attempts();
            let req = build(self.request(method.clone(), url.clone(), whole_call_timeout))?;
            let failure = match self.send_and_read(req).await {
                // Whatever the server echoes (in a job's error, a batch's errors) is stored
                // and printed: the key goes before anything reads the answer.
                Ok((_, body)) => return self.decode(&endpoint, &body, attempts),
                Err(failure) => failure,
            };
            self.pause_or_fail(&endpoint, failure, &mut retries).await?;
        }
    }

    /// Sends and reads the whole body; a non-success status becomes a failure with its message.
    pub(super) async fn send_and_read(
        &self,
        req: RequestBuilder,
    ) -> Result<(StatusCode, Bytes), Failure> {
        let resp = req.send().await.map_err(Failure::Transport)?;
        self.note_date(resp.headers());
        let status = resp.status();
        if !status.is_success() {
            return Err(self.status_failure(resp).await);
        }
        let endpoint = self.scrub(resp.url().path());
        let body = read_capped(resp, MAX_ANSWER_BYTES, &endpoint).await?;
        Ok((status, body))
    }

    pub(super) async fn status_failure(&self, resp: Response) -> Failure {
        let status = resp.status();
        let headers = resp.headers().clone();
        let (message, body) = match resp.bytes().await {
            Ok(body) => (self.server_message(status, &body), body),
            Err(_) => (status_reason(status), Bytes::new()),
        };
        Failure::Status {
            status,
            headers,
            message,
            body,
        }
    }

    /// Waits before the next attempt, or turns the failure into the final error.
    pub(super) async fn pause_or_fail(
        &self,
        endpoint: &str,
        failure: Failure,
        retries: &mut RetryState,
    ) -> Result<(), ApiError> {
        let attempts = retries.attempts();
        let decision = match &failure {
            Failure::Status {
                status, headers, ..
            } => retry::classify_status(*status, headers),
            Failure::Transport(e) => retry::classify_transport(TransportFailure::of(e)),
            Failure::ShortBody(_) => retry::classify_transport(TransportFailure::Dropped),
            Failure::Fatal(_) => RetryDecision::Stop(retry::StopReason::NotRetryable),
        };
        match retries.next(decision) {
            Next::Wait(delay) => {
                tracing::warn!(
                    endpoint,
                    status = failure_status(&failure),
                    attempt = attempts,
                    delay_ms = delay.as_millis() as u64,
                    "request failed; retrying"
                );
                tokio::time::sleep(delay).await;
                Ok(())
            }
            Next::GiveUp(declined) => Err(self.final_error(endpoint, failure, attempts, declined)),
        }
    }

    pub(super) fn final_error(
        &self,
        endpoint: &str,
        failure: Failure,
        attempts: u32,
        retry_after: Option<Duration>,
    ) -> ApiError {
        match failure {
            Failure::Status {
                status,
                message,
                headers,
                ..
            } => {
                let asked = retry_after
                    .or_else(|| retry::server_delay(&headers, std::time::SystemTime::now()));
                // A LiteLLM proxy without a database answers a key it does not know with a 400
                // "No connected db.": that is a refused key, not a refused request.
                let refused_key = self.facts.dialect == Dialect::Litellm
                    && status == StatusCode::BAD_REQUEST
                    && message.contains("No connected db");
                let status = if refused_key { 401 } else { status.as_u16() };
                ApiError::from_status(endpoint, status, message, attempts, asked)
            }
            Failure::Transport(source) => {
                let source = source.without_url();
                ApiError::Transport {
                    endpoint: endpoint.to_string(),
                    detail: self.scrub(&error_chain(&source)),
                    attempts,
                    source,
                }
            }
            Failure::ShortBody(detail) => protocol_error(endpoint, attempts, detail),
            Failure::Fatal(error) => error,
        }
    }

    /// The server's `{"error":{"message"}}` (or FastAPI's `{"detail"}`), else an excerpt of
    /// the body, else the reason phrase.
    pub(super) fn server_message(&self, status: StatusCode, body: &[u8]) -> String {
        if let Some(message) = error_message_of(body) {
            return self.scrub(&message);
        }
        let excerpt = self.excerpt(body);
        if excerpt.trim().is_empty() {
            status_reason(status)
        } else {
            excerpt
        }
    }

    pub(super) fn excerpt(&self, body: &[u8]) -> String {
        let text = String::from_utf8_lossy(body);
        let mut excerpt: String = text.chars().take(EXCERPT_CHARS).collect();
        if text.chars().count() > EXCERPT_CHARS {
            excerpt.push('…');
        }
        self.scrub(&excerpt)
    }

    /// `bytes` with every occurrence of the key masked (for text read outside `call_json`,
    /// such as batch result files).
    pub fn redact_bytes(&self, bytes: Vec<u8>) -> Vec<u8> {
        let Some(key) = self.key.as_ref().map(|k| k.expose().as_bytes()) else {
            return bytes;
        };
        if key.len() < 4 || !bytes.windows(key.len()).any(|w| w == key) {
            return bytes;
        }
        match String::from_utf8(bytes) {
            Ok(text) => self.scrub(&text).into_bytes(),
            Err(e) => e.into_bytes(),
        }
    }

    /// How errors name a call: `GET /videos/{id}`. Ids are the server's text, and a redirect
    /// chooses the path: scrubbed like any other answer.
    pub(super) fn endpoint(&self, method: &Method, segments: &[&str]) -> String {
        self.scrub(&format!("{method} /{}", segments.join("/")))
    }

    /// Servers sometimes echo the key they were given; it must not reach a log or a terminal.
    pub(super) fn scrub(&self, text: &str) -> String {
        let Some(key) = &self.key else {
            return text.to_string();
        };
        let key = key.expose();
        if key.len() >= 4 && text.contains(key) {
            text.replace(key, "sk-…redacted")
        } else {
            text.to_string()
        }
    }
}
