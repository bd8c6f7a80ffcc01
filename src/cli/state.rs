//! What every stateful command opens: the ledger, the cache and the API client.

use anyhow::Context;

use render_pipeline::api::client::{ApiClient, ApiKey, ClientConfig};
use std::sync::Arc;

use render_pipeline::cache::CacheStorage;
use render_pipeline::lanes::{Route, Routes};
use render_pipeline::ledger::Ledger;
use render_pipeline::provider::{PROVIDERS_FILE, Provider, ProviderError, Providers};
use render_wire::catalog::Catalog;

use super::GlobalArgs;

/// The ledger's file name inside the state directory.
pub const LEDGER_FILE: &str = "ledger.sqlite";

pub struct State {
    pub ledger: Ledger,
    /// The cache, whatever stands behind it ([`render_pipeline::cache::open`] decides).
    pub store: Arc<dyn CacheStorage>,
    /// The studio's shared cache behind it, from `--cache URL` (keyed by request, not by object:
    /// see `shared.rs`).
    pub shared: Option<render_pipeline::shared::SharedCache>,
    /// Held for the life of the command: one `render` at a time changes a state directory.
    _lock: std::fs::File,
}

/// Opens the state directory for a command that changes it, with its caches (the local store
/// and, given `--cache URL`, the shared one: the one place both are built), taking its lock
/// first: two
/// processes selecting requests at once could both send them, and `cache gc` could remove an
/// object a harvest has stored but not yet recorded.
pub fn open_state(global: &GlobalArgs) -> anyhow::Result<State> {
    let dir = global.state_dir.clone();
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the state directory {}", dir.display()))?;
    let lock = lock_state_dir(&dir)?;
    let ledger = Ledger::open(&dir.join(LEDGER_FILE))?;
    let store = render_pipeline::cache::open(&dir)
        .with_context(|| format!("cannot open the cache in {}", dir.display()))?;
    Ok(State {
        ledger,
        store,
        shared: shared_cache(global)?,
        _lock: lock,
    })
}

/// The studio's shared cache (`--cache URL`, `RENDER_CACHE_URL`), when one is configured.
/// This machine is named in claims by its host name and its state folder.
pub fn shared_cache(
    global: &GlobalArgs,
) -> anyhow::Result<Option<render_pipeline::shared::SharedCache>> {
    let Some(url) = global.cache.as_deref().filter(|u| !u.trim().is_empty()) else {
        return Ok(None);
    };
    let state = std::path::absolute(&global.state_dir).unwrap_or_else(|_| global.state_dir.clone());
    let machine = format!(
        "{}:{}",
        host_name(),
        &render_wire::key::Sha256Hex::of(state.to_string_lossy().as_bytes()).hex()[..12]
    );
    let lease = std::time::Duration::from_secs(global.cache_lease);
    render_pipeline::shared::SharedCache::open(url, &machine, lease)
        .map(Some)
        .map_err(|e| super::UsageError(e.to_string()).into())
}

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "this-machine".into())
}

/// The ledger, when the state directory has one: commands that only look must not create it.
pub fn existing_ledger(global: &GlobalArgs) -> anyhow::Result<Option<Ledger>> {
    let path = global.state_dir.join(LEDGER_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    Ok(Some(Ledger::open(&path)?))
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

/// The providers of this invocation: the default one from `OPENAI_BASE_URL`, then those of
/// `--providers FILE` or, without it, `<state-dir>/providers.yaml` when it exists.
pub fn load_providers(global: &GlobalArgs, catalog: &Catalog) -> Result<Providers, ProviderError> {
    let state_file = global.state_dir.join(PROVIDERS_FILE);
    let file = match &global.providers {
        Some(path) => Some(path.as_path()),
        None => state_file.is_file().then_some(state_file.as_path()),
    };
    Providers::load(file, catalog, &|name| std::env::var(name).ok())
}

/// The providers, for commands that do not plan (their catalogs do not matter there).
pub fn providers(global: &GlobalArgs) -> anyhow::Result<Providers> {
    load_providers(global, &Catalog::builtin()).map_err(|e| super::UsageError(e.to_string()).into())
}

/// How much a client reads and waits before it gives a server up.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// The most bytes one video (or result file) may be.
    pub max_download_bytes: u64,
    /// The longest silence while reading an answer.
    pub stall: std::time::Duration,
}

impl Default for Bounds {
    fn default() -> Bounds {
        Bounds {
            max_download_bytes: render_pipeline::api::client::DEFAULT_MAX_DOWNLOAD_BYTES,
            stall: render_pipeline::api::client::Timeouts::default().read,
        }
    }
}

/// The route (client) of one provider, with its key from the environment.
pub fn route(provider: &Provider, bounds: Bounds) -> anyhow::Result<Route> {
    let key = provider
        .api_key(&|name| std::env::var(name).ok())
        .map_err(|e| super::UsageError(e.to_string()))?;
    route_with_key(provider, key, bounds)
}

/// The route of a provider whose key is known (the in-process sandbox's).
pub fn route_with_key(
    provider: &Provider,
    key: Option<String>,
    bounds: Bounds,
) -> anyhow::Result<Route> {
    let mut config = ClientConfig::new(provider.base_url.clone(), ApiKey::new(""));
    config.api_key = key.map(ApiKey::new);
    config.dialect = provider.dialect;
    config.max_download_bytes = bounds.max_download_bytes;
    config.timeouts.read = bounds.stall;
    Ok(Route {
        provider: provider.clone(),
        client: ApiClient::new(config)?,
    })
}

/// The routes of the providers `ids` names (a plan's): each must be configured, with its key.
pub fn routes_for(providers: &Providers, ids: &[String], bounds: Bounds) -> anyhow::Result<Routes> {
    let mut routes = Vec::new();
    for id in ids {
        let provider = providers
            .for_record(id)
            .ok_or_else(|| super::UsageError(format!("provider {id} is not configured here")))?;
        routes.push(route(provider, bounds)?);
    }
    Ok(Routes::new(routes))
}

/// Routes to every provider that can be reached from here (`only` narrows them to one), for
/// commands that collect what earlier commands sent: a provider whose key is missing is left
/// out with a warning, and its work left alone.
pub fn reachable_routes(
    providers: &Providers,
    only: Option<&str>,
    bounds: Bounds,
) -> anyhow::Result<Routes> {
    if let Some(name) = only {
        let provider = providers
            .named(name)
            .map_err(|e| super::UsageError(e.to_string()))?;
        return Ok(Routes::new(vec![route(provider, bounds)?]));
    }
    let mut routes = Vec::new();
    for provider in providers.iter() {
        match route(provider, bounds) {
            Ok(route) => routes.push(route),
            Err(err) => tracing::debug!("provider {} left out: {err}", provider.name),
        }
    }
    if routes.is_empty() {
        anyhow::bail!(super::UsageError(
            "no provider can be reached: set OPENAI_API_KEY (or the key of a provider in providers.yaml)".into()
        ));
    }
    Ok(Routes::new(routes))
}

/// One worker per core (tokio's default): a harvest hashes every byte it downloads, `--jobs`
/// at a time, and a studio's many-core machine should hash on all of them, not two.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The run a command names: its id, a prefix only it has, or `last` (the newest).
pub fn find_run(ledger: &Ledger, spec: &str) -> anyhow::Result<render_pipeline::ledger::RunRow> {
    if let Some(run) = ledger.run(spec)? {
        return Ok(run);
    }
    let runs = ledger.runs()?;
    if spec == "last" {
        return runs.into_iter().next().ok_or_else(|| {
            super::UsageError("no runs yet (`render submit SHOTLIST` starts one)".into()).into()
        });
    }
    let mut matching: Vec<_> = runs
        .into_iter()
        .filter(|r| r.id.starts_with(spec))
        .collect();
    match matching.len() {
        1 => Ok(matching.remove(0)),
        0 => Err(
            super::UsageError(format!("no run named {spec} (`render status` lists them)")).into(),
        ),
        n => {
            let ids: Vec<&str> = matching.iter().take(5).map(|r| r.id.as_str()).collect();
            Err(super::UsageError(format!(
                "{spec} is the start of {n} runs' ids ({}{}); give more of it",
                ids.join(", "),
                if n > 5 { ", …" } else { "" }
            ))
            .into())
        }
    }
}
