//! Which outputs the cache holds: recorded in the ledger and present in the store, asked one
//! key at a time or, for a plan's many keys, all at once.

use std::path::Path;

use crate::cache::CacheStorage;
use crate::ledger::{Ledger, LedgerError, OutputRow};
use render_wire::key::Sha256Hex;

/// The output cached for `key`: recorded in the ledger *and* present in the store. A record whose
/// object is gone (removed by `cache gc`) does not count, so the request is rendered again.
pub fn cached_output(
    ledger: &Ledger,
    store: &dyn CacheStorage,
    key: &render_wire::key::RequestKey,
) -> Result<Option<OutputRow>, LedgerError> {
    Ok(ledger.output(key)?.filter(|o| store.has(&o.video_sha)))
}

/// [`cached_output`]'s answer for the many keys of a plan, cheaply: the first keys are asked
/// one query each; past [`POINT_QUERIES`], the keys of every recorded output whose object is
/// present are read at once (one query, and one listing per object folder instead of a `stat`
/// per key) — on another thread, while the shot lists are parsed, when [`prefetch`] was asked.
/// A ledger past [`PREFETCH_LIMIT`] outputs (years of nights) is asked key by key instead, so
/// that a plan's memory follows the plan, not the studio's history.
///
/// [`prefetch`]: CachedOutputs::prefetch
pub struct CachedOutputs<L = Ledger, S = std::sync::Arc<dyn CacheStorage>> {
    ledger: L,
    store: S,
    asked: std::cell::Cell<usize>,
    prefetched: std::cell::RefCell<Option<std::thread::JoinHandle<CachedKeys>>>,
    /// Every cached key, or `None` when the ledger holds too many outputs to read them all.
    cached: std::cell::OnceCell<Option<render_wire::key::KeySet>>,
    limit: u64,
}

type CachedKeys = Result<Option<render_wire::key::KeySet>, LedgerError>;

/// Below this many keys, one query per key is quicker than reading every output.
pub const POINT_QUERIES: usize = 256;

/// Past this many recorded outputs, reading them all (64 bytes each, for a moment) costs more
/// than asking for each of the plan's keys.
pub const PREFETCH_LIMIT: u64 = 1 << 20;

/// A store held or lent: what [`CachedOutputs`] asks (a night lends its store; `plan` owns one).
pub trait StoreHandle {
    fn store(&self) -> &dyn CacheStorage;
}

impl StoreHandle for &dyn CacheStorage {
    fn store(&self) -> &dyn CacheStorage {
        *self
    }
}

impl StoreHandle for std::sync::Arc<dyn CacheStorage> {
    fn store(&self) -> &dyn CacheStorage {
        self.as_ref()
    }
}

impl<L, S> CachedOutputs<L, S>
where
    L: std::borrow::Borrow<Ledger>,
    S: StoreHandle,
{
    /// Over an owned or a borrowed ledger and store.
    pub fn new(ledger: L, store: S) -> CachedOutputs<L, S> {
        CachedOutputs {
            ledger,
            store,
            asked: Default::default(),
            prefetched: Default::default(),
            cached: Default::default(),
            limit: PREFETCH_LIMIT,
        }
    }

    /// Reads every output at once only up to `limit` of them (tests ask for a small one).
    pub fn prefetch_limit(mut self, limit: u64) -> CachedOutputs<L, S> {
        self.limit = limit;
        self
    }

    /// Starts reading every cached key on another thread, through its own connection to the
    /// ledger at `ledger_path`. Unused when the plan turns out small (the thread ends with the
    /// process).
    pub fn prefetch(self, ledger_path: &Path) -> CachedOutputs<L, S>
    where
        S: Clone + Send + 'static,
    {
        let (path, store, limit) = (ledger_path.to_path_buf(), self.store.clone(), self.limit);
        let reader = std::thread::Builder::new()
            .name("cache-index".into())
            .spawn(move || cached_keys(&Ledger::open_reader(&path)?, store.store(), limit));
        *self.prefetched.borrow_mut() = reader.ok();
        self
    }

    /// Whether `key`'s output is recorded and present (a ledger error counts as not cached).
    pub fn contains(&self, key: &render_wire::key::RequestKey) -> bool {
        self.try_contains(key).unwrap_or(false)
    }

    /// Whether `key`'s output is recorded and present.
    pub fn try_contains(&self, key: &render_wire::key::RequestKey) -> Result<bool, LedgerError> {
        let asked = self.asked.get() + 1;
        self.asked.set(asked);
        let (ledger, store) = (self.ledger.borrow(), self.store.store());
        if asked <= POINT_QUERIES {
            return Ok(cached_output(ledger, store, key)?.is_some());
        }
        if self.cached.get().is_none() {
            let prefetched = self.prefetched.borrow_mut().take();
            // A reader that failed to start or panicked: read here instead.
            let keys = match prefetched.map(std::thread::JoinHandle::join) {
                Some(Ok(keys)) => keys?,
                _ => cached_keys(ledger, store, self.limit)?,
            };
            let _ = self.cached.set(keys);
        }
        match self.cached.get() {
            Some(Some(keys)) => Ok(keys.contains(key)),
            _ => Ok(cached_output(ledger, store, key)?.is_some()),
        }
    }
}

/// The keys of every recorded output whose object is in the store; `None` past `limit`
/// outputs.
///
/// The store is asked a folder's worth at a time (objects are foldered by their first byte):
/// the local store lists each folder once either way, and what is asked and answered at once
/// stays a 256th of the outputs instead of a second and third copy of them all.
fn cached_keys(ledger: &Ledger, store: &dyn CacheStorage, limit: u64) -> CachedKeys {
    if ledger.outputs_bound()? > limit {
        return Ok(None);
    }
    let mut outputs = ledger.output_videos()?;
    outputs.sort_unstable_by_key(|(_, sha)| sha.first_byte());
    let mut keys =
        render_wire::key::KeySet::with_capacity_and_hasher(outputs.len(), Default::default());
    let mut shas: Vec<Sha256Hex> = Vec::new();
    for folder in outputs.chunk_by(|(_, a), (_, b)| a.first_byte() == b.first_byte()) {
        shas.clear();
        shas.extend(folder.iter().map(|(_, sha)| *sha));
        let present = store.present(&shas);
        keys.extend(
            folder
                .iter()
                .filter(|(_, sha)| present.contains(sha))
                .map(|(key, _)| *key),
        );
    }
    Ok(Some(keys))
}
