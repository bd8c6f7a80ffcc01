//! The studio's shared cache on object storage (S3, GCS, Azure Blob, MinIO, a folder), through
//! the `object_store` crate: what one machine rendered, no other pays for.
//!
//! Under the URL's prefix:
//! - `objects/ab/<sha256>`: videos and thumbnails, content-addressed, as in the local store;
//! - `index/<key>.json`: a request key → the objects it produced. Written after its objects, so
//!   no reader ever sees an entry whose bytes are missing; refreshed (`used_at`) whenever a
//!   machine lays it out, which is what `gc` keeps by;
//! - `claims/<key>.json`: who is rendering a key. Created with a conditional write
//!   (`If-None-Match: *`), so of two machines starting the same night one wins each key; the
//!   other waits for its index entry, and takes a claim over (`If-Match` on the claim it saw)
//!   once its owner has been silent past the lease. The owner renews its claims while its night
//!   runs ([`SharedCache::renew`]), so only a machine that has gone silent loses them.
//!
//! The local cache stays in front: downloads land locally, then are published; a shared hit is
//! fetched once into the local store, verified by its hash, then laid out.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use object_store::path::Path as StorePath;
use object_store::{
    ObjectStore as Bucket, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion,
};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::cache::{CacheError, CacheStorage, LocalStore};
use crate::ledger::{OutputRow, unix_now};
use render_wire::key::{RequestKey, Sha256Hex};

/// Bump when the layout under the prefix changes.
const LAYOUT_VERSION: u32 = 1;
/// How long a claim holds without a word from its owner: longer than a Batch window (24 h) and
/// its grace. A machine whose night is still running renews its claims as it goes
/// ([`SharedCache::renew`]), so only a machine that has gone silent is ever taken over.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(26 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    #[error("shared cache {url}: {message}")]
    Config { url: String, message: String },
    #[error("shared cache {url}: {source}")]
    Store {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(
        "shared cache {url}: object {expected} does not hash to its name (it is {actual}): not laid out"
    )]
    Corrupt {
        url: String,
        expected: Sha256Hex,
        actual: Sha256Hex,
    },
    #[error("shared cache {url}: index entry {key} is damaged: {message}")]
    BadEntry {
        url: String,
        key: String,
        message: String,
    },
}

/// What a request key produced, as every machine of the studio sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub layout: u32,
    pub key: RequestKey,
    pub video_sha: Sha256Hex,
    pub video_bytes: u64,
    pub thumbnail_sha: Option<Sha256Hex>,
    pub video_id: Option<String>,
    /// The machine that rendered it, and when it was written and last used.
    pub machine: String,
    pub written_at: i64,
    pub used_at: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ClaimRecord {
    owner: String,
    claimed_at: i64,
}

/// Who renders a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This machine: send it.
    Ours,
    /// Another machine, heard from `age_secs` ago: wait for its index entry.
    Theirs { owner: String, age_secs: i64 },
}

/// The shared cache of one URL, as this machine uses it.
#[derive(Clone, Debug)]
pub struct SharedCache {
    bucket: Arc<dyn Bucket>,
    url: String,
    machine: String,
    lease: Duration,
}

impl SharedCache {
    /// The store at `url` (`s3://bucket/prefix`, `gs://…`, `az://…`, `file:///…`), with
    /// credentials and endpoint from each store's standard variables (`AWS_ACCESS_KEY_ID`,
    /// `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, …). `machine` names this machine in claims.
    pub fn open(url: &str, machine: &str, lease: Duration) -> Result<SharedCache, SharedError> {
        // reqwest is built without a default crypto provider (see the API client).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = |message: String| SharedError::Config {
            url: url.to_string(),
            message,
        };
        let parsed = reqwest::Url::parse(url).map_err(|e| config(e.to_string()))?;
        let bucket: Arc<dyn Bucket> = match parsed.scheme() {
            "s3" => Arc::new(
                object_store::aws::AmazonS3Builder::from_env()
                    .with_url(url)
                    .build()
                    .map_err(|e| config(e.to_string()))?,
            ),
            "gs" => Arc::new(
                object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_url(url)
                    .build()
                    .map_err(|e| config(e.to_string()))?,
            ),
            "az" | "abfs" | "azure" => Arc::new(
                object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_url(url)
                    .build()
                    .map_err(|e| config(e.to_string()))?,
            ),
            "file" => {
                let path = parsed
                    .to_file_path()
                    .map_err(|_| config("not a local path".into()))?;
                std::fs::create_dir_all(&path).map_err(|e| config(e.to_string()))?;
                Arc::new(
                    object_store::local::LocalFileSystem::new_with_prefix(&path)
                        .map_err(|e| config(e.to_string()))?,
                )
            }
            other => {
                return Err(config(format!(
                    "`{other}://` is not a store render knows (s3://, gs://, az://, file://)"
                )));
            }
        };
        // The prefix inside the bucket (s3://bucket/prefix): object_store's builders take the
        // bucket from the URL; the path goes in front of every key here.
        let prefix = match parsed.scheme() {
            "file" => String::new(),
            _ => parsed.path().trim_matches('/').to_string(),
        };
        let bucket: Arc<dyn Bucket> = if prefix.is_empty() {
            bucket
        } else {
            Arc::new(object_store::prefix::PrefixStore::new(bucket, prefix))
        };
        Ok(SharedCache {
            bucket,
            url: url.to_string(),
            machine: machine.to_string(),
            lease,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn store_error(&self, source: object_store::Error) -> SharedError {
        SharedError::Store {
            url: self.url.clone(),
            source,
        }
    }

    /// Every key the shared index holds (one listing, not one request per key).
    pub async fn keys(&self) -> Result<HashSet<RequestKey>, SharedError> {
        let prefix = StorePath::from("index");
        let mut listing = self.bucket.list(Some(&prefix));
        let mut keys = HashSet::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| self.store_error(e))?;
            let name = meta.location.filename().unwrap_or_default();
            if let Some(key) = name.strip_suffix(".json").and_then(|k| k.parse().ok()) {
                keys.insert(key);
            }
        }
        Ok(keys)
    }

    /// The index entry of `key`, if any machine published one.
    pub async fn entry(&self, key: &RequestKey) -> Result<Option<IndexEntry>, SharedError> {
        let bytes = match self.bucket.get(&index_path(key)).await {
            Ok(got) => got.bytes().await.map_err(|e| self.store_error(e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.store_error(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| SharedError::BadEntry {
                url: self.url.clone(),
                key: key.hex(),
                message: e.to_string(),
            })
    }

    /// Brings an entry's objects into the local store (streamed, verified by hash) and marks
    /// the entry used. The output row the ledger then records.
    pub async fn fetch(
        &self,
        entry: &IndexEntry,
        local: &dyn CacheStorage,
    ) -> Result<OutputRow, SharedError> {
        self.fetch_object(entry.video_sha, local).await?;
        let thumbnail = match entry.thumbnail_sha {
            Some(sha) => self.fetch_object(sha, local).await.ok().map(|_| sha),
            None => None,
        };
        let used = IndexEntry {
            used_at: unix_now(),
            ..entry.clone()
        };
        // Best effort: a failed refresh only makes gc's view of this entry older.
        let _ = self.put_entry(&used).await;
        Ok(OutputRow {
            key: entry.key,
            video_sha: entry.video_sha,
            video_bytes: entry.video_bytes,
            thumbnail_sha: thumbnail,
            video_id: entry.video_id.clone(),
            harvested_at: unix_now(),
        })
    }

    async fn fetch_object(
        &self,
        sha: Sha256Hex,
        local: &dyn CacheStorage,
    ) -> Result<(), SharedError> {
        if local.has(&sha) {
            return Ok(());
        }
        let got = self
            .bucket
            .get(&object_path(&sha))
            .await
            .map_err(|e| self.store_error(e))?;
        let mut pending = local.begin_object().await?;
        let mut stream = got.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.store_error(e))?;
            pending.write_all(&chunk).await.map_err(|source| {
                SharedError::Cache(CacheError::Io {
                    action: "write",
                    path: local.root().to_path_buf(),
                    source,
                })
            })?;
        }
        let actual = pending.finish(None).await?;
        if actual != sha {
            // Correctly named for what it is, but not what was asked for: not kept.
            let _ = local.remove(&actual).await;
            return Err(SharedError::Corrupt {
                url: self.url.clone(),
                expected: sha,
                actual,
            });
        }
        Ok(())
    }

    /// Publishes an output: its objects first (those not there yet), its index entry last.
    pub async fn publish(
        &self,
        output: &OutputRow,
        local: &dyn CacheStorage,
    ) -> Result<(), SharedError> {
        for sha in std::iter::once(output.video_sha).chain(output.thumbnail_sha) {
            self.publish_object(sha, local).await?;
        }
        crate::failpoint::hit("shared-after-objects");
        let now = unix_now();
        let published = self
            .put_entry(&IndexEntry {
                layout: LAYOUT_VERSION,
                key: output.key,
                video_sha: output.video_sha,
                video_bytes: output.video_bytes,
                thumbnail_sha: output.thumbnail_sha,
                video_id: output.video_id.clone(),
                machine: self.machine.clone(),
                written_at: now,
                used_at: now,
            })
            .await;
        // Rendered and shared: the claim has done its work (best effort: a stale claim of a
        // published key holds nobody up, the index entry answers first).
        if published.is_ok() {
            let _ = self.bucket.delete(&claim_path(&output.key)).await;
        }
        published
    }

    /// Drops the index entry of `key` (its objects were found damaged): nobody lays it out, and
    /// the next machine that needs it renders it again.
    pub async fn forget(&self, key: &RequestKey) -> Result<(), SharedError> {
        match self.bucket.delete(&index_path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.store_error(e)),
        }
    }

    async fn publish_object(
        &self,
        sha: Sha256Hex,
        local: &dyn CacheStorage,
    ) -> Result<(), SharedError> {
        let path = object_path(&sha);
        match self.bucket.head(&path).await {
            Ok(_) => return Ok(()),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(self.store_error(e)),
        }
        // Streamed in parts: memory stays flat however large the video.
        let reader = local.read(&sha).await?;
        let mut upload = object_store::buffered::BufWriter::new(self.bucket.clone(), path);
        let mut reader = tokio::io::BufReader::new(reader);
        let copied = tokio::io::copy(&mut reader, &mut upload).await;
        if let Err(source) = copied {
            let _ = upload.abort().await;
            return Err(SharedError::Cache(CacheError::Io {
                action: "upload",
                path: local.root().join(sha.hex()),
                source,
            }));
        }
        upload.shutdown().await.map_err(|source| {
            SharedError::Cache(CacheError::Io {
                action: "finish the upload of",
                path: local.root().join(sha.hex()),
                source,
            })
        })
    }

    async fn put_entry(&self, entry: &IndexEntry) -> Result<(), SharedError> {
        let json = serde_json::to_vec_pretty(entry).expect("an entry serializes");
        self.bucket
            .put(&index_path(&entry.key), PutPayload::from(json))
            .await
            .map(|_| ())
            .map_err(|e| self.store_error(e))
    }

    /// Claims `key` for this machine, unless another machine holds it and has been heard
    /// from within the lease (then its claim stands and this machine waits).
    pub async fn claim(&self, key: &RequestKey) -> Result<Claim, SharedError> {
        // A claim released between our create and our read is tried again, a few times.
        for _ in 0..3 {
            if let Some(claim) = self.try_claim(key).await? {
                return Ok(claim);
            }
        }
        Ok(Claim::Theirs {
            owner: "?".into(),
            age_secs: 0,
        })
    }

    /// One attempt at [`SharedCache::claim`]; `None` when the claim vanished mid-way.
    async fn try_claim(&self, key: &RequestKey) -> Result<Option<Claim>, SharedError> {
        let path = claim_path(key);
        let mine = self.claim_record();
        let create = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self.bucket.put_opts(&path, mine.clone(), create).await {
            Ok(_) => return Ok(Some(Claim::Ours)),
            Err(object_store::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(self.store_error(e)),
        }
        let Some((held, version)) = self.read_claim(&path).await? else {
            return Ok(None);
        };
        let (owner, age) = match &held {
            Some(held) => (held.owner.clone(), unix_now() - held.claimed_at),
            None => (String::from("?"), i64::MAX),
        };
        if owner == self.machine {
            return Ok(Some(Claim::Ours));
        }
        if age < self.lease.as_secs() as i64 {
            return Ok(Some(Claim::Theirs {
                owner,
                age_secs: age,
            }));
        }
        // Silent past the lease: take it over, unless someone else did first.
        let update = PutOptions {
            mode: PutMode::Update(version),
            ..PutOptions::default()
        };
        match self.bucket.put_opts(&path, mine, update).await {
            Ok(_) => Ok(Some(Claim::Ours)),
            Err(object_store::Error::Precondition { .. }) => Ok(Some(Claim::Theirs {
                owner,
                age_secs: age,
            })),
            Err(e) => Err(self.store_error(e)),
        }
    }

    /// How long a claim holds without a word from its owner.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Re-writes this machine's claim on `key` with a fresh time, so nobody takes it over while
    /// this night is alive. Conditional on the claim as it was read (`If-Match` on its e-tag):
    /// a claim another machine took over, or released, is left alone. `true` when renewed.
    pub async fn renew(&self, key: &RequestKey) -> Result<bool, SharedError> {
        let path = claim_path(key);
        let Some((held, version)) = self.read_claim(&path).await? else {
            return Ok(false);
        };
        if held.is_none_or(|held| held.owner != self.machine) {
            return Ok(false);
        }
        let update = PutOptions {
            mode: PutMode::Update(version),
            ..PutOptions::default()
        };
        match self
            .bucket
            .put_opts(&path, self.claim_record(), update)
            .await
        {
            Ok(_) => Ok(true),
            Err(
                object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. },
            ) => Ok(false),
            Err(e) => Err(self.store_error(e)),
        }
    }

    /// Gives up this machine's claim on `key` (its request failed or was lost here), so another
    /// machine may render it now rather than wait out the lease. `true` when released.
    pub async fn release(&self, key: &RequestKey) -> Result<bool, SharedError> {
        let path = claim_path(key);
        let Some((held, _)) = self.read_claim(&path).await? else {
            return Ok(false);
        };
        if held.is_none_or(|held| held.owner != self.machine) {
            return Ok(false);
        }
        // Unconditional: nobody takes a claim over while its owner renews it, and this one's
        // owner is here, releasing it.
        match self.bucket.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(true),
            Err(e) => Err(self.store_error(e)),
        }
    }

    /// The claim at `path` (`None` inside when unreadable: nobody's) with the version a
    /// conditional write must match; `None` when there is no claim.
    async fn read_claim(
        &self,
        path: &StorePath,
    ) -> Result<Option<(Option<ClaimRecord>, UpdateVersion)>, SharedError> {
        let got = match self.bucket.get(path).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.store_error(e)),
        };
        let version = UpdateVersion {
            e_tag: got.meta.e_tag.clone(),
            version: got.meta.version.clone(),
        };
        let bytes = got.bytes().await.map_err(|e| self.store_error(e))?;
        Ok(Some((serde_json::from_slice(&bytes).ok(), version)))
    }

    fn claim_record(&self) -> PutPayload {
        let record = ClaimRecord {
            owner: self.machine.clone(),
            claimed_at: unix_now(),
        };
        PutPayload::from(serde_json::to_vec(&record).expect("a claim serializes"))
    }

    /// Re-hashes every shared object against its name; returns the names that do not match
    /// (and removes them, with the index entries that point at them, so nobody lays them out).
    pub async fn verify(&self, local: &dyn CacheStorage) -> Result<Vec<String>, SharedError> {
        let mut problems = Vec::new();
        let mut listing = self.bucket.list(Some(&StorePath::from("objects")));
        let mut names = Vec::new();
        while let Some(meta) = listing.next().await {
            names.push(meta.map_err(|e| self.store_error(e))?.location);
        }
        for location in names {
            let Some(sha) = location
                .filename()
                .and_then(|n| n.parse::<Sha256Hex>().ok())
            else {
                continue;
            };
            let scratch = tempfile::tempdir().map_err(|source| {
                SharedError::Cache(CacheError::Io {
                    action: "create a scratch folder in",
                    path: local.root().to_path_buf(),
                    source,
                })
            })?;
            let probe = LocalStore::open(scratch.path())?;
            match self.fetch_object(sha, &probe).await {
                Ok(()) => {}
                Err(SharedError::Corrupt { actual, .. }) => {
                    problems.push(format!("corrupt: {location} hashes to {actual} (removed)"));
                    let _ = self.bucket.delete(&location).await;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(problems)
    }

    /// Removes index entries nobody has used for `max_age`, then objects no entry points at.
    pub async fn gc(&self, max_age: Duration) -> Result<(usize, usize), SharedError> {
        let cutoff = unix_now() - max_age.as_secs() as i64;
        let mut keep = HashSet::new();
        let mut entries_removed = 0;
        for key in self.keys().await? {
            let Ok(Some(entry)) = self.entry(&key).await else {
                continue;
            };
            if entry.used_at < cutoff {
                let _ = self.bucket.delete(&index_path(&key)).await;
                entries_removed += 1;
            } else {
                keep.insert(entry.video_sha);
                keep.extend(entry.thumbnail_sha);
            }
        }
        let mut listing = self.bucket.list(Some(&StorePath::from("objects")));
        let mut doomed = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| self.store_error(e))?;
            let named = meta
                .location
                .filename()
                .and_then(|n| n.parse::<Sha256Hex>().ok());
            if named.is_some_and(|sha| !keep.contains(&sha)) {
                doomed.push(meta.location);
            }
        }
        for location in &doomed {
            let _ = self.bucket.delete(location).await;
        }
        Ok((entries_removed, doomed.len()))
    }
}

fn index_path(key: &RequestKey) -> StorePath {
    StorePath::from(format!("index/{}.json", key.hex()))
}

fn claim_path(key: &RequestKey) -> StorePath {
    StorePath::from(format!("claims/{}.json", key.hex()))
}

fn object_path(sha: &Sha256Hex) -> StorePath {
    let hex = sha.hex();
    StorePath::from(format!("objects/{}/{hex}", &hex[..2]))
}
