//! What every stateful command opens: the ledger, the cache and the API client.

use anyhow::Context;

use crate::api::client::{ApiClient, ApiKey, ClientConfig};
use crate::cache::LocalStore;
use crate::ledger::Ledger;

use super::GlobalArgs;

/// The ledger's file name inside the state directory.
pub const LEDGER_FILE: &str = "ledger.sqlite";

pub struct State {
    pub ledger: Ledger,
    pub store: LocalStore,
    /// Held for the life of the command: one `render` at a time changes a state directory.
    _lock: std::fs::File,
}

/// Opens the state directory for a command that changes it, taking its lock first: two
/// processes selecting requests at once could both send them, and `cache gc` could remove an
/// object a harvest has stored but not yet recorded.
pub fn open_state(global: &GlobalArgs) -> anyhow::Result<State> {
    let dir = global.state_dir.clone();
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the state directory {}", dir.display()))?;
    let lock = lock_state_dir(&dir)?;
    let ledger = Ledger::open(&dir.join(LEDGER_FILE))?;
    let store = LocalStore::open(&dir)
        .with_context(|| format!("cannot open the cache in {}", dir.display()))?;
    Ok(State {
        ledger,
        store,
        _lock: lock,
    })
}

fn lock_state_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another render is working in {} (submit, harvest, retry, nightly or cache gc); \
             wait for it to finish, or use another --state-dir",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(err)) => {
            Err(err).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// The API client from `OPENAI_BASE_URL` and `OPENAI_API_KEY`.
pub fn api_client() -> anyhow::Result<ApiClient> {
    Ok(ApiClient::new(ClientConfig::from_env()?)?)
}

/// The API client for a known server (the in-process sandbox).
pub fn api_client_for(base_url: &str, key: &str) -> anyhow::Result<ApiClient> {
    Ok(ApiClient::new(ClientConfig::new(
        base_url,
        ApiKey::new(key),
    ))?)
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
