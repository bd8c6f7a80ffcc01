//! The Batch lane's sending half: upload each distinct reference once, compile the JSONL, and
//! create the batches, exactly once.
//!
//! Exactly-once rests on one rule: the ledger records the *intent* to create a batch (with a
//! random token that also travels in the batch's metadata) before the request is sent. A rerun
//! after a crash finds unconfirmed intents and looks for their token in the provider's batch
//! list (or its own input file, for gateways that drop metadata) before creating anything, so a
//! batch is never created twice. Its polling half is `harvest`'s.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use rand::RngCore;
use serde::Serialize;

use super::{Route, assets};
use crate::api::client::ApiClient;
use crate::api::error::ApiError;
use crate::api::retry::{Next, RetryState};
use crate::batch::{self, BatchLimits, VIDEOS_ENDPOINT};
use crate::events::{Event, EventSink};
use crate::failpoint;
use crate::ledger::{BatchRow, BatchUpdate, Ledger, LedgerError, RequestRow, RunRow};
use render_wire::api::{
    Batch, COMPLETION_WINDOW, CreateBatch, CreateVideo, FilePurpose, InputReference,
};
use render_wire::key::{RequestKey, Sha256Hex};

#[derive(Debug, thiserror::Error)]
pub enum BatchLaneError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Compile(#[from] batch::BatchError),
    #[error(transparent)]
    Asset(#[from] assets::AssetError),
    #[error("the provider refused batch part {part} of run {run}: {message}")]
    Refused {
        run: String,
        part: u32,
        message: String,
    },
}

/// What one invocation sent through the Batch lane.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Tally {
    pub submitted: usize,
    pub uploaded_assets: usize,
    pub reused_assets: usize,
    pub batches: Vec<SubmittedBatch>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SubmittedBatch {
    pub part: u32,
    pub batch_id: String,
    pub requests: u64,
    /// Created by an earlier, interrupted invocation and adopted now.
    pub adopted: bool,
}

/// Metadata keys `render` puts on every batch it creates.
pub const META_RUN: &str = "render_run";
pub const META_INTENT: &str = "render_intent";
pub const META_PART: &str = "render_part";
pub const META_SHOT_LIST: &str = "render_shot_list";

/// A request on its way out: its key, its body before the reference is resolved to a file id,
/// and the image to upload for it.
pub struct Outgoing {
    pub key: RequestKey,
    body: CreateVideo,
    pub reference: Option<(Sha256Hex, PathBuf)>,
}

impl Outgoing {
    pub fn from_row(row: &RequestRow) -> Outgoing {
        Outgoing {
            key: row.key,
            body: batch::video_body(
                row.served_as.as_deref().unwrap_or(&row.model),
                &row.size,
                row.seconds,
                &row.prompt,
            ),
            reference: row
                .reference_sha
                .zip(row.reference_path.as_ref().map(PathBuf::from)),
        }
    }

    /// The body with its reference image named by its uploaded file id.
    pub fn body(&self, file_ids: &HashMap<Sha256Hex, String>) -> CreateVideo {
        let mut body = self.body.clone();
        body.input_reference = self
            .reference
            .as_ref()
            .and_then(|(sha, _)| file_ids.get(sha))
            .map(|id| InputReference::FileId {
                file_id: id.clone(),
            });
        body
    }
}

/// One provider's Batch-lane submission: the ledger and route it works with, and the tally.
pub struct Submitter<'a> {
    pub run: &'a RunRow,
    pub ledger: &'a mut Ledger,
    pub route: &'a Route,
    pub events: &'a dyn EventSink,
    pub report: &'a mut Tally,
}

impl Submitter<'_> {
    fn client(&self) -> &ApiClient {
        &self.route.client
    }

    /// Uploads references, compiles the parts and creates one batch per part.
    pub async fn send(
        &mut self,
        outgoing: &[Outgoing],
        limits: BatchLimits,
    ) -> Result<(), BatchLaneError> {
        if outgoing.is_empty() {
            return Ok(());
        }
        let file_ids = self.upload_references(outgoing).await?;
        let parts = batch::compile(outgoing.iter().map(|o| (o.key, o.body(&file_ids))), limits)?;
        let first_part = self.ledger.next_part(&self.run.id)?;
        for (offset, part) in parts.into_iter().enumerate() {
            let number = first_part + offset as u32;
            let row = self.ledger.record_batch_intent(
                &self.run.id,
                &self.route.provider.id,
                number,
                &new_token(),
                &part.keys,
            )?;
            failpoint::hit("submit-after-intent");
            let intent = self
                .ledger
                .batch(row)?
                .expect("the intent was just recorded");
            let batch = self.create_batch(&intent, part.jsonl).await?;
            self.report.submitted += part.keys.len();
            self.report.batches.push(SubmittedBatch {
                part: number,
                batch_id: batch.id.clone(),
                requests: part.keys.len() as u64,
                adopted: false,
            });
            self.events.emit(Event::BatchCreated {
                run_id: self.run.id.clone(),
                part: number,
                batch_id: batch.id,
                requests: part.keys.len() as u64,
            });
        }
        Ok(())
    }
}

fn new_token() -> String {
    let mut token = [0u8; 12];
    rand::rng().fill_bytes(&mut token);
    hex::encode(token)
}

impl Submitter<'_> {
    /// Uploads each distinct reference image once, reusing earlier uploads that are still valid.
    async fn upload_references(
        &mut self,
        outgoing: &[Outgoing],
    ) -> Result<HashMap<Sha256Hex, String>, BatchLaneError> {
        let mut file_ids = HashMap::new();
        for (sha256, path) in outgoing.iter().filter_map(|o| o.reference.as_ref()) {
            if file_ids.contains_key(sha256) {
                continue;
            }
            let (file_id, uploaded) =
                assets::file_id(self.client(), self.ledger, self.events, *sha256, path).await?;
            if uploaded {
                self.report.uploaded_assets += 1;
            } else {
                self.report.reused_assets += 1;
            }
            file_ids.insert(*sha256, file_id);
        }
        Ok(file_ids)
    }
}

impl Submitter<'_> {
    /// Uploads the batch's input file (unless an earlier attempt did) and creates the batch,
    /// adopting one that an earlier attempt created (found by its intent token) instead of
    /// creating a second.
    async fn create_batch(
        &mut self,
        intent: &BatchRow,
        jsonl: Vec<u8>,
    ) -> Result<Batch, BatchLaneError> {
        let input_file_id = match &intent.input_file_id {
            Some(id) => id.clone(),
            None => {
                let filename = format!(
                    "render-{}-part{}-{}.jsonl",
                    intent.run_id, intent.part, intent.intent
                );
                let file = self
                    .client()
                    .upload_bytes(jsonl.into(), &filename, FilePurpose::Batch)
                    .await?;
                self.ledger.set_batch_input_file(intent.row, &file.id)?;
                file.id
            }
        };
        // File names only: the provider has no business with this machine's folders.
        let shot_list = match self.ledger.run(&intent.run_id)? {
            Some(run) => run
                .sources
                .iter()
                .map(|source| {
                    Path::new(source).file_name().map_or_else(
                        || source.clone(),
                        |name| name.to_string_lossy().into_owned(),
                    )
                })
                .collect::<Vec<_>>()
                .join(","),
            None => String::new(),
        };
        let request = CreateBatch {
            input_file_id,
            endpoint: VIDEOS_ENDPOINT.into(),
            completion_window: COMPLETION_WINDOW.into(),
            metadata: Some(batch_metadata(intent, &shot_list)),
        };
        let batch = match create_or_adopt(self.client(), intent, &request).await? {
            Created::Batch(batch) => *batch,
            Created::Refused(err) => {
                self.ledger
                    .abandon_batch_intent(intent.row, &err.to_string())?;
                return Err(BatchLaneError::Refused {
                    run: intent.run_id.clone(),
                    part: intent.part,
                    message: err.to_string(),
                });
            }
        };
        failpoint::hit("submit-after-create");
        self.ledger
            .record_batch_created(intent.row, &batch.id, &BatchUpdate::from(&batch))?;
        Ok(batch)
    }

    /// Finishes what an interrupted invocation started: every recorded intent ends as exactly
    /// one batch (adopted if the provider has it, created otherwise).
    pub async fn confirm_pending_intents(
        &mut self,
        keys: &HashSet<RequestKey>,
    ) -> Result<(), BatchLaneError> {
        let provider = &self.route.provider.id;
        let mut mine = Vec::new();
        for intent in self.ledger.unconfirmed_batches()? {
            let holds_ours = intent.run_id == self.run.id
                || self
                    .ledger
                    .batch_requests(intent.row)?
                    .iter()
                    .any(|r| keys.contains(&r.key));
            if intent.provider == *provider && holds_ours {
                mine.push(intent);
            }
        }
        for intent in mine {
            let batch = match find_batch_by_intent(self.client(), &intent).await? {
                Some(batch) => {
                    self.ledger.record_batch_created(
                        intent.row,
                        &batch.id,
                        &BatchUpdate::from(&batch),
                    )?;
                    batch
                }
                None => {
                    let jsonl = match intent.input_file_id {
                        Some(_) => Vec::new(),
                        None => self.rebuild_jsonl(&intent).await?,
                    };
                    self.create_batch(&intent, jsonl).await?
                }
            };
            self.events.emit(Event::BatchAdopted {
                run_id: intent.run_id.clone(),
                part: intent.part,
                batch_id: batch.id.clone(),
            });
            self.report.batches.push(SubmittedBatch {
                part: intent.part,
                batch_id: batch.id,
                requests: intent.request_count,
                adopted: true,
            });
        }
        Ok(())
    }

    /// Recompiles an intent's input file from the ledger (same requests, same order).
    async fn rebuild_jsonl(&mut self, intent: &BatchRow) -> Result<Vec<u8>, BatchLaneError> {
        let rows = self.ledger.batch_requests(intent.row)?;
        let outgoing: Vec<Outgoing> = rows.iter().map(Outgoing::from_row).collect();
        let file_ids = self.upload_references(&outgoing).await?;
        let one_file = BatchLimits {
            max_requests: usize::MAX,
            max_bytes: u64::MAX,
        };
        let parts = batch::compile(
            outgoing.iter().map(|o| (o.key, o.body(&file_ids))),
            one_file,
        )?;
        Ok(parts.into_iter().flat_map(|p| p.jsonl).collect())
    }
}

fn batch_metadata(intent: &BatchRow, shot_list: &str) -> BTreeMap<String, String> {
    // The API caps metadata values at 512 characters.
    let shot_list: String = shot_list.chars().take(512).collect();
    BTreeMap::from([
        (META_RUN.to_string(), intent.run_id.clone()),
        (META_INTENT.to_string(), intent.intent.clone()),
        (META_PART.to_string(), intent.part.to_string()),
        (META_SHOT_LIST.to_string(), shot_list),
    ])
}

/// What creating one batch came to.
pub enum Created {
    /// Created now, or found: made by an earlier attempt whose answer was lost.
    Batch(Box<Batch>),
    /// The provider refused it (sending it again unchanged cannot help) and none was found.
    Refused(ApiError),
}

/// Creates the batch of `intent`, never blindly twice: before every try it looks for one an
/// earlier try made. Transient failures are tried again under the client's own retry policy
/// (its delays, its bound on attempts and waiting), in one [`RetryState`].
pub async fn create_or_adopt(
    client: &ApiClient,
    intent: &BatchRow,
    request: &CreateBatch,
) -> Result<Created, BatchLaneError> {
    let mut retries = RetryState::new(client.retry_policy().clone());
    loop {
        if let Some(existing) = find_batch_by_intent(client, intent).await? {
            return Ok(Created::Batch(Box::new(existing)));
        }
        // Never retried blindly: a lost answer may hide a created batch, so look first.
        match client.without_retries().create_batch(request).await {
            Ok(batch) => return Ok(Created::Batch(Box::new(batch))),
            Err(err) if err.is_refusal() => {
                // One last look: an earlier attempt whose answer was lost may have made it.
                return Ok(match find_batch_by_intent(client, intent).await? {
                    Some(existing) => Created::Batch(Box::new(existing)),
                    None => Created::Refused(err),
                });
            }
            Err(err) => match retries.next(err.retry_decision()) {
                Next::Wait(delay) => {
                    tracing::warn!(
                        part = intent.part,
                        attempt = retries.attempts() - 1,
                        "creating batch failed, will check and retry: {err}"
                    );
                    tokio::time::sleep(delay).await;
                }
                Next::GiveUp(_) => return Err(err.into()),
            },
        }
    }
}

/// Looks through the provider's batches created since the intent for one carrying its token.
async fn find_batch_by_intent(
    client: &ApiClient,
    intent: &BatchRow,
) -> Result<Option<Batch>, BatchLaneError> {
    let since = intent.intent_at - super::CLOCK_SLACK_SECS;
    let mut after: Option<String> = None;
    loop {
        // Newest first: stop at the first page that reaches back before the intent.
        let page = client.list_batches(after.as_deref(), Some(100)).await?;
        // The token in the metadata, or the input file uploaded for this intent alone: a
        // gateway that drops metadata must not make `render` create the batch twice.
        let found = page.data.iter().find(|b| {
            let token = b.metadata.as_ref().and_then(|m| m.get(META_INTENT));
            token.is_some_and(|token| *token == intent.intent)
                || intent.input_file_id.as_deref() == Some(b.input_file_id.as_str())
        });
        if let Some(batch) = found {
            return Ok(Some(batch.clone()));
        }
        let reached_older = page.data.iter().any(|b| b.created_at < since);
        let next = page.data.last().map(|b| b.id.clone());
        match next {
            Some(next) if page.has_more && !reached_older && after.as_ref() != Some(&next) => {
                after = Some(next)
            }
            _ => return Ok(None),
        }
    }
}
