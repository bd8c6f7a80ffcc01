//! Batches: create, look up, list (every page), cancel.

use super::*;

impl ApiClient {
    // ------------------------------------------------------------ batches

    pub async fn create_batch(&self, body: &CreateBatch) -> Result<Batch, ApiError> {
        self.call_json(Method::POST, &["batches"], true, |req| Ok(req.json(body)))
            .await
    }

    pub async fn get_batch(&self, id: &str) -> Result<Batch, ApiError> {
        self.call_json(Method::GET, &["batches", id], true, Ok)
            .await
    }

    /// One page of batches, newest first.
    pub async fn list_batches(
        &self,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<List<Batch>, ApiError> {
        let query = page_query(after, limit);
        self.call_json(Method::GET, &["batches"], true, |req| Ok(req.query(&query)))
            .await
    }

    /// Every batch, walking the pages until `has_more` is false.
    pub async fn list_all_batches(&self) -> Result<Vec<Batch>, ApiError> {
        let mut all: Vec<Batch> = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.list_batches(after.as_deref(), Some(100)).await?;
            let next = page
                .last_id
                .clone()
                .or_else(|| page.data.last().map(|b| b.id.clone()));
            let progressed = !page.data.is_empty();
            all.extend(page.data);
            // A server that says "more" without moving the cursor would loop forever.
            match next {
                Some(next) if page.has_more && progressed && after.as_ref() != Some(&next) => {
                    after = Some(next)
                }
                _ => return Ok(all),
            }
        }
    }

    pub async fn cancel_batch(&self, id: &str) -> Result<Batch, ApiError> {
        self.call_json(Method::POST, &["batches", id, "cancel"], true, Ok)
            .await
    }
}
