//! The sandbox's memory: files, videos and batches, plus the shared pieces every handler uses
//! (clock, faults, stats). One `std::sync::Mutex` guards the store; no lock is held across an
//! `.await`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use super::SandboxConfig;
use super::clock::Clock;
use super::dialect::Profile;
use super::faults::{FaultEngine, FaultSpecError};
use super::media::VideoSpec;
use super::stats::Stats;
use render_wire::api::{ApiError, Batch, ContentVariant, FileObject, Video};

/// Locks a mutex even if a panicking thread poisoned it: counters and stores stay usable.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Everything a request handler or the engine needs.
pub struct SandboxState {
    pub config: SandboxConfig,
    /// How the configured dialect behaves.
    pub profile: Profile,
    pub clock: Clock,
    pub faults: Mutex<FaultEngine>,
    pub stats: Mutex<Stats>,
    pub store: Mutex<Store>,
    /// Wakes the engine when work arrives or the clock jumps.
    pub wake: Notify,
    /// Encoded thumbnails and spritesheets by (video id, variant): encoding one costs tens of
    /// milliseconds, and a harvest asks for each at least once.
    pub images: Mutex<HashMap<(String, ContentVariant), Bytes>>,
}

impl SandboxState {
    pub fn new(config: SandboxConfig) -> Result<Arc<SandboxState>, FaultSpecError> {
        let faults = FaultEngine::new(config.faults.clone(), config.seed)?;
        Ok(Arc::new(SandboxState {
            profile: Profile::of(config.dialect),
            clock: Clock::new(config.start_time, config.day),
            faults: Mutex::new(faults),
            stats: Mutex::new(Stats::default()),
            store: Mutex::new(Store {
                hostile_echo: config.hostile_results.then(|| {
                    let key = config.api_key.as_deref().unwrap_or("sk-echoed-key");
                    format!("Bearer {key}")
                }),
                ..Store::new(config.seed, config.concurrency)
            }),
            wake: Notify::new(),
            images: Mutex::new(HashMap::new()),
            config,
        }))
    }

    pub fn count_fault(&self, name: &str) {
        lock(&self.stats).count_fault(name);
    }

    /// Notes that a job (a video or a batch) was accepted now, for the utilisation figures.
    pub fn note_accepted(&self) {
        let now = self.clock.real_ms();
        lock(&self.stats).first_create_ms.get_or_insert(now);
    }

    /// The counters, with the render slots' accounting as of now.
    pub fn stats_snapshot(&self) -> Stats {
        let (busy, last_finish, peak) = {
            let store = lock(&self.store);
            let now = self.clock.now_f64();
            // Renders still running count up to now.
            let running: f64 = store
                .slots
                .iter()
                .filter_map(|s| s.running.as_ref())
                .map(|r| (now.min(r.done_at) - r.started_at).max(0.0))
                .sum();
            (store.busy + running, store.last_finish, store.peak_running)
        };
        let mut stats = lock(&self.stats).clone();
        stats.render_slots = self.config.concurrency.max(1);
        stats.render_busy_ms = self.clock.real_span(busy).as_millis() as u64;
        stats.last_finish_ms = last_finish.map(|at| self.clock.real_ms_at(at));
        stats.peak_renders = peak;
        stats
    }

    /// The names the server serves: the configured one, or every model of the catalog.
    pub fn served_models(&self) -> Vec<String> {
        match &self.config.served_model {
            Some(model) => vec![model.clone()],
            None => self
                .config
                .catalog
                .models()
                .map(|m| m.name.to_string())
                .collect(),
        }
    }
}

/// Rows in creation order, found by id. Deleted rows stay (ids are never reused).
#[derive(Debug)]
pub struct Table<T> {
    rows: Vec<T>,
    index: HashMap<String, usize>,
}

impl<T> Default for Table<T> {
    fn default() -> Table<T> {
        Table {
            rows: Vec::new(),
            index: HashMap::new(),
        }
    }
}

impl<T> Table<T> {
    pub fn insert(&mut self, id: String, row: T) {
        self.index.insert(id, self.rows.len());
        self.rows.push(row);
    }

    pub fn get(&self, id: &str) -> Option<&T> {
        self.index.get(id).map(|&i| &self.rows[i])
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut T> {
        self.index.get(id).map(|&i| &mut self.rows[i])
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> {
        self.rows.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.rows.iter_mut()
    }
}

#[derive(Debug)]
pub struct FileRecord {
    pub object: FileObject,
    pub content: Bytes,
    pub deleted: bool,
}

impl FileRecord {
    /// Deleted or past its `expires_at`: answers as unknown.
    pub fn is_gone(&self, now: i64) -> bool {
        self.deleted || self.object.expires_at.is_some_and(|at| at <= now)
    }
}

#[derive(Debug)]
pub struct VideoRecord {
    pub video: Video,
    pub spec: VideoSpec,
    pub batch_id: Option<String>,
    pub deleted: bool,
    /// Virtual times the render started and ends, for `progress`.
    pub started_at: Option<f64>,
    pub done_at: Option<f64>,
}

/// The fate of one line of a batch.
#[derive(Clone, Debug)]
pub enum LineOutcome {
    /// Rendered: the output file names this video.
    Video { video_id: String },
    /// Answered with a non-2xx response (the error file carries it).
    Failed { status: u16, error: ApiError },
    /// Never ran (the batch expired first): `error` set, `response` null.
    NotRun { code: String, message: String },
}

#[derive(Debug)]
pub struct BatchLine {
    pub custom_id: String,
    pub body: serde_json::Value,
    pub request_id: String,
    pub line_id: String,
    pub outcome: Option<LineOutcome>,
}

#[derive(Debug)]
pub struct BatchRecord {
    pub batch: Batch,
    pub lines: Vec<BatchLine>,
    /// Drawn at creation by the `batch_expire` fault: expires when half its lines are done.
    pub doomed: bool,
    /// Virtual time at which validation ends / finalizing ends.
    pub due: f64,
    /// How long finalizing lasts (virtual seconds).
    pub finalize_span: f64,
}

/// A render waiting for (or holding) one of the `concurrency` slots.
#[derive(Clone, Debug, PartialEq)]
pub enum Job {
    Video { video_id: String },
    BatchLine { batch_id: String, line: usize },
}

impl Job {
    pub fn batch_id(&self) -> Option<&str> {
        match self {
            Job::BatchLine { batch_id, .. } => Some(batch_id),
            Job::Video { .. } => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Queued {
    pub job: Job,
    /// Virtual time from which it may start.
    pub ready_at: f64,
}

#[derive(Clone, Debug)]
pub struct Running {
    pub job: Job,
    pub started_at: f64,
    pub done_at: f64,
    /// What the render produces: a video to create, or the failure it ends in.
    pub result: RenderResult,
}

#[derive(Clone, Debug)]
pub enum RenderResult {
    /// A direct video: its record already exists.
    Existing,
    /// A batch line that passed its checks: the video to create when done.
    NewVideo {
        video_id: String,
        spec: Box<VideoSpec>,
        model: String,
    },
    /// A batch line that failed its checks: ends at once with this answer.
    Rejected { status: u16, error: ApiError },
}

#[derive(Clone, Debug)]
pub struct Slot {
    pub free_since: f64,
    pub running: Option<Running>,
}

#[derive(Debug)]
pub struct Store {
    ids: ChaCha8Rng,
    /// Draws the `x-request-id` of every answer, apart from `ids`: how often a client polls
    /// must not change the ids a seed gives its videos, files and batches.
    request_ids: ChaCha8Rng,
    pub files: Table<FileRecord>,
    pub videos: Table<VideoRecord>,
    pub batches: Table<BatchRecord>,
    pub queue: VecDeque<Queued>,
    pub slots: Vec<Slot>,
    /// Virtual seconds render slots spent rendering, counting finished and aborted renders.
    pub busy: f64,
    /// Virtual time the last render ended.
    pub last_finish: Option<f64>,
    /// Most renders ever in progress at once.
    pub peak_running: usize,
    /// Batch result files written the way a hostile lookalike writes them, echoing this text
    /// (the key it was sent) in every failure ([`super::SandboxConfig::hostile_results`]).
    pub hostile_echo: Option<String>,
}

impl Store {
    pub fn new(seed: u64, concurrency: usize) -> Store {
        Store {
            ids: ChaCha8Rng::seed_from_u64(seed ^ 0x1D5_1D5),
            request_ids: ChaCha8Rng::seed_from_u64(seed ^ 0x5E0_0E5),
            files: Table::default(),
            videos: Table::default(),
            batches: Table::default(),
            queue: VecDeque::new(),
            slots: vec![
                Slot {
                    free_since: 0.0,
                    running: None,
                };
                concurrency.max(1)
            ],
            busy: 0.0,
            last_finish: None,
            peak_running: 0,
            hostile_echo: None,
        }
    }

    /// Puts `running` in slot `index` (its render started at `running.started_at`).
    pub fn occupy(&mut self, index: usize, running: Running) {
        self.slots[index].running = Some(running);
        let busy = self.slots.iter().filter(|s| s.running.is_some()).count();
        self.peak_running = self.peak_running.max(busy);
    }

    /// Frees slot `index` at virtual time `at` (its render's end, or an abort), accounting the
    /// time it rendered.
    pub fn release(&mut self, index: usize, at: f64) -> Option<Running> {
        let slot = &mut self.slots[index];
        let running = slot.running.take()?;
        let end = at.min(running.done_at).max(running.started_at);
        slot.free_since = at;
        if end > running.started_at {
            self.busy += end - running.started_at;
            self.last_finish = Some(self.last_finish.map_or(end, |last| last.max(end)));
        }
        Some(running)
    }

    /// Forgets every video, and every direct render queued or in progress, as a server that
    /// keeps its jobs in memory does when it restarts. Returns how many videos it forgot.
    pub fn forget_videos(&mut self, at: f64) -> usize {
        let forgotten = self.videos.iter().filter(|v| !v.deleted).count();
        self.videos = Table::default();
        self.queue.retain(|q| !matches!(q.job, Job::Video { .. }));
        for index in 0..self.slots.len() {
            let direct = matches!(
                self.slots[index].running.as_ref().map(|r| &r.job),
                Some(Job::Video { .. })
            );
            if direct {
                self.release(index, at);
            }
        }
        forgotten
    }

    /// The `x-request-id` of an answer (`req_…`).
    pub fn new_request_id(&mut self) -> String {
        let bytes: [u8; 16] = self.request_ids.random();
        format!("req_{}", hex::encode(bytes))
    }

    /// A uuid4 drawn from the seed (`xxxxxxxx-xxxx-4xxx-Nxxx-xxxxxxxxxxxx`).
    pub fn new_uuid(&mut self) -> String {
        let mut bytes: [u8; 16] = self.ids.random();
        bytes[6] = (bytes[6] & 0x0F) | 0x40;
        bytes[8] = (bytes[8] & 0x3F) | 0x80;
        let hex = hex::encode(bytes);
        format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        )
    }

    /// A fresh id like the real ones (`file-…`, `batch_…`, `video_…`, `batch_req_…`, `req_…`),
    /// drawn from the seed so a replayed run gets the same ids.
    pub fn new_id(&mut self, prefix: &str) -> String {
        let bytes: [u8; 16] = self.ids.random();
        let digits = if prefix == "file-" { 11 } else { 16 };
        format!("{prefix}{}", hex::encode(&bytes[..digits]))
    }
}

/// The per-video seed: the sandbox seed mixed with the video id, so two takes of one request
/// differ and one seed replays a whole run.
pub fn video_seed(sandbox_seed: u64, video_id: &str) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(sandbox_seed.to_le_bytes());
    hasher.update(video_id.as_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// One page of a list, the way the API pages: `after` an id, at most `limit`, newest first
/// unless `ascending`.
pub fn page<'a, T: 'a>(
    rows: impl DoubleEndedIterator<Item = &'a T>,
    id_of: impl Fn(&T) -> &str,
    after: Option<&str>,
    limit: usize,
    ascending: bool,
) -> (Vec<&'a T>, bool) {
    let ordered: Vec<&T> = if ascending {
        rows.collect()
    } else {
        rows.rev().collect()
    };
    let start = match after {
        Some(after) => match ordered.iter().position(|row| id_of(row) == after) {
            Some(i) => i + 1,
            None => ordered.len(),
        },
        None => 0,
    };
    let rest = &ordered[start.min(ordered.len())..];
    let taken = rest.iter().take(limit).copied().collect();
    (taken, rest.len() > limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_after_and_limit() {
        let ids = ["a", "b", "c", "d", "e"];
        fn id<'a>(s: &&'a str) -> &'a str {
            s
        }
        let (first, more) = page(ids.iter(), |s| id(s), None, 2, false);
        assert_eq!(first, [&"e", &"d"]);
        assert!(more);
        let (next, more) = page(ids.iter(), |s| id(s), Some("d"), 2, false);
        assert_eq!(next, [&"c", &"b"]);
        assert!(more);
        let (last, more) = page(ids.iter(), |s| id(s), Some("b"), 2, false);
        assert_eq!(last, [&"a"]);
        assert!(!more);
        let (asc, _) = page(ids.iter(), |s| id(s), Some("b"), 10, true);
        assert_eq!(asc, [&"c", &"d", &"e"]);
        let (unknown, more) = page(ids.iter(), |s| id(s), Some("zz"), 10, true);
        assert!(unknown.is_empty() && !more);
    }

    #[test]
    fn slots_account_the_time_they_render() {
        let mut store = Store::new(1, 2);
        let running = |at: f64| Running {
            job: Job::Video {
                video_id: "video_a".into(),
            },
            started_at: at,
            done_at: at + 10.0,
            result: RenderResult::Existing,
        };
        store.occupy(0, running(100.0));
        store.occupy(1, running(102.0));
        assert_eq!(store.peak_running, 2);
        assert!(store.release(0, 110.0).is_some());
        // An abort counts the part that ran.
        assert!(store.release(1, 105.0).is_some());
        assert!(store.release(1, 105.0).is_none());
        assert_eq!(store.busy, 13.0);
        assert_eq!(store.last_finish, Some(110.0));
        assert_eq!(store.slots[1].free_since, 105.0);
    }

    #[test]
    fn video_seeds_differ_by_id_and_by_sandbox_seed() {
        assert_ne!(video_seed(1, "video_a"), video_seed(1, "video_b"));
        assert_ne!(video_seed(1, "video_a"), video_seed(2, "video_a"));
        assert_eq!(video_seed(1, "video_a"), video_seed(1, "video_a"));
    }
}
