//! Files: uploads (streamed from disk, or bytes), lookups, deletion, content.

use super::*;

impl ApiClient {
    // ------------------------------------------------------------ files

    /// Uploads a file from disk, streamed (never held in memory). Retries reopen the file.
    pub async fn upload_file(
        &self,
        path: &Path,
        filename: &str,
        purpose: FilePurpose,
    ) -> Result<FileObject, ApiError> {
        let endpoint = "POST /files";
        self.call_json(Method::POST, &["files"], false, |req| {
            let io_error = |source| ApiError::Io {
                endpoint: endpoint.to_string(),
                action: format!("cannot read {}", path.display()),
                source,
            };
            let file = std::fs::File::open(path).map_err(io_error)?;
            let len = file.metadata().map_err(io_error)?.len();
            let stream = ReaderStream::new(tokio::fs::File::from_std(file));
            let part = reqwest::multipart::Part::stream_with_length(
                reqwest::Body::wrap_stream(stream),
                len,
            );
            Ok(req.multipart(upload_form(part, filename, purpose)?))
        })
        .await
    }

    /// Uploads bytes already in memory (batch JSONL files, small images).
    pub async fn upload_bytes(
        &self,
        bytes: Bytes,
        filename: &str,
        purpose: FilePurpose,
    ) -> Result<FileObject, ApiError> {
        self.call_json(Method::POST, &["files"], false, |req| {
            let part = reqwest::multipart::Part::stream_with_length(
                reqwest::Body::from(bytes.clone()),
                bytes.len() as u64,
            );
            Ok(req.multipart(upload_form(part, filename, purpose)?))
        })
        .await
    }

    pub async fn get_file(&self, id: &str) -> Result<FileObject, ApiError> {
        self.call_json(Method::GET, &["files", id], true, Ok).await
    }

    pub async fn delete_file(&self, id: &str) -> Result<Deleted, ApiError> {
        self.call_json(Method::DELETE, &["files", id], true, Ok)
            .await
    }

    /// Streams a file's content (batch output and error files) into `dest`, resuming by
    /// Range after a drop; at most `max_bytes`. Memory stays flat however large the file.
    pub async fn file_content_to<W>(
        &self,
        id: &str,
        dest: &mut W,
        max_bytes: u64,
    ) -> Result<DownloadOutcome, ApiError>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        self.download(&["files", id, "content"], None, dest, 0, max_bytes)
            .await
    }

    pub async fn list_files(
        &self,
        purpose: Option<FilePurpose>,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<List<FileObject>, ApiError> {
        let mut query: Vec<(&str, String)> = page_query(after, limit);
        if let Some(purpose) = purpose {
            query.push(("purpose", purpose.as_str().to_string()));
        }
        self.call_json(Method::GET, &["files"], true, |req| Ok(req.query(&query)))
            .await
    }
}
