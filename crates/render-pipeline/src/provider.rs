//! Providers: the named servers that render, built once (flags → environment → file) and used
//! for identity everywhere: cache keys, runs, jobs, harvest and retry.
//!
//! A provider's identity is its name when it comes from a providers file, or its whole base URL
//! (scheme, host, port, path) for the one made from `OPENAI_BASE_URL`; two servers on one host
//! are two providers. Its dialect says how it differs from OpenAI's contract, its lane how
//! requests travel (one Batch per night, or one job per request), and its catalog what it
//! renders and what that costs.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::shotlist::Priority;
use render_wire::catalog::{Catalog, ModelEntry};
use render_wire::dialect::{Dialect, DialectFacts};

/// The API `render` talks to unless `OPENAI_BASE_URL` or a providers file says otherwise.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// What shot lists and `--provider` call the provider made from `OPENAI_BASE_URL`.
pub const DEFAULT_PROVIDER: &str = "default";
/// The file in the state directory that lists providers.
pub const PROVIDERS_FILE: &str = "providers.yaml";
/// Direct-lane jobs at once when a provider does not say.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4;

/// How a provider's requests travel, as configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LaneChoice {
    Batch,
    Direct,
    /// Batch where the server has a Batch API that can be harvested, direct elsewhere.
    Auto,
}

/// How one request travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lane {
    /// In a JSONL batch, at the Batch price, within 24 hours.
    Batch,
    /// One `POST /v1/videos` per request, at the standard price.
    Direct,
}

impl Lane {
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Batch => "batch",
            Lane::Direct => "direct",
        }
    }

    pub fn parse(text: &str) -> Option<Lane> {
        match text {
            "batch" => Some(Lane::Batch),
            "direct" => Some(Lane::Direct),
            _ => None,
        }
    }
}

impl fmt::Display for Lane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One server that renders.
#[derive(Clone, Debug)]
pub struct Provider {
    /// What shot lists and `--provider` use.
    pub name: String,
    /// What cache keys, runs and jobs record: the name, or the base URL of the default provider.
    pub id: String,
    pub base_url: String,
    /// The variable holding the key; no `Authorization` header when `None`.
    pub api_key_env: Option<String>,
    pub dialect: Dialect,
    pub lane: LaneChoice,
    /// Direct lane: jobs at once.
    pub max_in_flight: usize,
    pub catalog: Catalog,
    /// Ask for thumbnails even where the dialect is known not to have them (they are checked
    /// to be images before they are kept either way).
    pub thumbnails: Option<bool>,
}

impl Provider {
    pub fn facts(&self) -> DialectFacts {
        self.dialect.facts()
    }

    /// The lane a request of this priority takes. A rush goes direct even where Batch exists.
    pub fn lane_for(&self, priority: Priority) -> Lane {
        match (priority, self.lane) {
            (Priority::Rush, _) | (_, LaneChoice::Direct) => Lane::Direct,
            (_, LaneChoice::Batch) => Lane::Batch,
            (_, LaneChoice::Auto) if self.facts().batch_api => Lane::Batch,
            (_, LaneChoice::Auto) => Lane::Direct,
        }
    }

    /// Whether requests of this provider can go through a Batch at all.
    pub fn offers_batch(&self) -> bool {
        self.lane != LaneChoice::Direct && self.facts().batch_api
    }

    /// The host of the base URL (where model retirements apply).
    pub fn host(&self) -> String {
        reqwest::Url::parse(&self.base_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
            .unwrap_or_default()
    }

    /// Whether to ask the server for a thumbnail of each video.
    pub fn wants_thumbnails(&self) -> bool {
        self.thumbnails
            .unwrap_or_else(|| self.facts().thumbnail_variant().is_some())
    }

    /// The key from the environment: `Ok(None)` when the provider uses none, an error when it
    /// needs one that is not set.
    pub fn api_key(
        &self,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<String>, ProviderError> {
        let Some(var) = &self.api_key_env else {
            return Ok(None);
        };
        match lookup(var).map(|k| k.trim().to_string()) {
            Some(key) if !key.is_empty() => Ok(Some(key)),
            _ if self.facts().requires_key => Err(ProviderError::MissingKey {
                provider: self.name.clone(),
                var: var.clone(),
            }),
            _ => Ok(None),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("provider `{provider}` needs an API key: set {var}")]
    MissingKey { provider: String, var: String },
    #[error("unknown provider `{name}` (known: {known})")]
    Unknown { name: String, known: String },
}

/// Every provider this invocation knows, and which one shots without a `provider` use.
#[derive(Clone, Debug)]
pub struct Providers {
    providers: Vec<Provider>,
    default: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProvidersFile {
    #[serde(default)]
    default: Option<String>,
    #[serde(default)]
    providers: Vec<ProviderEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderEntry {
    name: String,
    base_url: String,
    #[serde(default)]
    api_key_env: Option<String>,
    #[serde(default)]
    dialect: Dialect,
    #[serde(default)]
    lane: Option<LaneChoice>,
    #[serde(default)]
    max_in_flight: Option<usize>,
    #[serde(default)]
    models: Option<Vec<ModelEntry>>,
    #[serde(default)]
    thumbnails: Option<bool>,
}

impl Providers {
    /// The default provider from `OPENAI_BASE_URL`/`OPENAI_API_KEY`, then every provider of
    /// `file` (a provider named `default` replaces it). `catalog` is what providers without
    /// `models` render (the built-in one with user catalogs merged over it).
    pub fn load(
        file: Option<&Path>,
        catalog: &Catalog,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Providers, ProviderError> {
        let mut providers = Providers {
            providers: vec![default_provider(catalog, env)?],
            default: DEFAULT_PROVIDER.to_string(),
        };
        if let Some(path) = file {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| ProviderError::Read {
                path: shown.clone(),
                message: e.to_string(),
            })?;
            providers.merge_str(&text, &shown, catalog)?;
        }
        Ok(providers)
    }

    /// Exactly these providers; the first is the default.
    pub fn of(providers: Vec<Provider>) -> Providers {
        let default = providers
            .first()
            .map(|p| p.name.clone())
            .unwrap_or_default();
        Providers { providers, default }
    }

    fn merge_str(
        &mut self,
        text: &str,
        path: &str,
        catalog: &Catalog,
    ) -> Result<(), ProviderError> {
        let invalid = |message: String| ProviderError::Invalid {
            path: path.to_string(),
            message,
        };
        let file: ProvidersFile =
            serde_saphyr::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let mut seen = BTreeMap::new();
        for entry in file.providers {
            if seen.insert(entry.name.clone(), ()).is_some() {
                return Err(invalid(format!(
                    "provider `{}` is listed twice",
                    entry.name
                )));
            }
            let provider = provider_from(entry, path, catalog).map_err(invalid)?;
            self.providers.retain(|p| p.name != provider.name);
            self.providers.push(provider);
        }
        if let Some(default) = file.default {
            if self.get(&default).is_none() {
                return Err(invalid(format!(
                    "`default: {default}` names no provider (known: {})",
                    self.names().join(", ")
                )));
            }
            self.default = default;
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.name == name)
    }

    /// The provider a name refers to, or an error listing the names that exist.
    pub fn named(&self, name: &str) -> Result<&Provider, ProviderError> {
        self.get(name).ok_or_else(|| ProviderError::Unknown {
            name: name.to_string(),
            known: self.names().join(", "),
        })
    }

    /// The provider a ledger's record names: its identity, or, in ledgers from before
    /// providers, the bare host (the one provider on that host).
    pub fn for_record(&self, recorded: &str) -> Option<&Provider> {
        if let Some(p) = self.providers.iter().find(|p| p.id == recorded) {
            return Some(p);
        }
        if recorded.contains("://") {
            return None;
        }
        let mut on_host = self.providers.iter().filter(|p| p.host() == recorded);
        match (on_host.next(), on_host.next()) {
            (Some(only), None) => Some(only),
            _ => None,
        }
    }

    pub fn default_provider(&self) -> &Provider {
        self.get(&self.default)
            .or(self.providers.first())
            .expect("there is always a default provider")
    }

    pub fn names(&self) -> Vec<&str> {
        self.providers.iter().map(|p| p.name.as_str()).collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Provider> {
        self.providers.iter()
    }

    /// Makes `name` the provider of shots that name none (`--provider`).
    pub fn set_default(&mut self, name: &str) -> Result<(), ProviderError> {
        self.named(name)?;
        self.default = name.to_string();
        Ok(())
    }

    /// Every provider rewritten by `f` (the in-process sandbox replaces each one's server).
    pub fn map(self, f: impl FnMut(Provider) -> Provider) -> Providers {
        Providers {
            providers: self.providers.into_iter().map(f).collect(),
            default: self.default,
        }
    }
}

fn default_provider(
    catalog: &Catalog,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Provider, ProviderError> {
    let base = env("OPENAI_BASE_URL")
        .map(|b| b.trim().to_string())
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
    let id = normalized_url(&base).map_err(|message| ProviderError::Invalid {
        path: "OPENAI_BASE_URL".into(),
        message,
    })?;
    Ok(Provider {
        name: DEFAULT_PROVIDER.to_string(),
        id: id.clone(),
        base_url: id,
        api_key_env: Some("OPENAI_API_KEY".into()),
        dialect: Dialect::Openai,
        lane: LaneChoice::Auto,
        max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        catalog: catalog.clone(),
        thumbnails: None,
    })
}

fn provider_from(entry: ProviderEntry, path: &str, catalog: &Catalog) -> Result<Provider, String> {
    let name = entry.name.trim().to_string();
    if name.is_empty() || name.contains("://") || name.chars().any(char::is_whitespace) {
        return Err(format!(
            "provider name `{}` must be a single word (it is written in shot lists)",
            entry.name
        ));
    }
    let base_url = normalized_url(&entry.base_url)
        .map_err(|message| format!("provider `{name}`: {message}"))?;
    let lane = entry.lane.unwrap_or(match entry.dialect {
        Dialect::Openai => LaneChoice::Auto,
        _ => LaneChoice::Direct,
    });
    if lane == LaneChoice::Batch && !entry.dialect.facts().batch_api {
        return Err(format!(
            "provider `{name}`: a {} server has no Batch API whose videos render can collect; use `lane: direct`",
            entry.dialect
        ));
    }
    let max_in_flight = match entry.max_in_flight {
        Some(0) => {
            return Err(format!(
                "provider `{name}`: `max_in_flight` must be at least 1"
            ));
        }
        Some(n) => n,
        None => DEFAULT_MAX_IN_FLIGHT,
    };
    let catalog = match entry.models {
        Some(models) => Catalog::from_entries(models, &format!("{path}: provider `{name}`"))
            .map_err(|e| e.to_string())?,
        None => catalog.clone(),
    };
    Ok(Provider {
        id: name.clone(),
        name,
        base_url,
        api_key_env: entry.api_key_env.filter(|v| !v.trim().is_empty()),
        dialect: entry.dialect,
        lane,
        max_in_flight,
        catalog,
        thumbnails: entry.thumbnails,
    })
}

/// `scheme://host[:port]/path` without a trailing slash: one spelling per server.
pub fn normalized_url(text: &str) -> Result<String, String> {
    let url =
        reqwest::Url::parse(text.trim()).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("`{text}` must be http(s)://host[:port]/path"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("put credentials in api_key_env, not in the URL".into());
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    fn load(text: &str, vars: &[(&str, &str)]) -> Result<Providers, ProviderError> {
        let mut providers = Providers::load(None, &Catalog::builtin(), &env(vars))?;
        providers.merge_str(text, "providers.yaml", &Catalog::builtin())?;
        Ok(providers)
    }

    #[test]
    fn the_default_provider_is_the_whole_base_url() {
        let a = load("", &[("OPENAI_BASE_URL", "http://127.0.0.1:4000/v1/")]).unwrap();
        let b = load("", &[("OPENAI_BASE_URL", "http://127.0.0.1:4001/v1")]).unwrap();
        assert_eq!(a.default_provider().id, "http://127.0.0.1:4000/v1");
        assert_ne!(a.default_provider().id, b.default_provider().id);
        let none = load("", &[]).unwrap();
        assert_eq!(none.default_provider().id, DEFAULT_BASE_URL);
    }

    #[test]
    fn dialects_choose_the_lane() {
        let text = r#"
providers:
  - { name: wan-farm, base_url: "http://gpu-01:30000/v1", dialect: sglang, max_in_flight: 2 }
  - { name: gateway, base_url: "http://gw:4000", dialect: litellm, api_key_env: GW_KEY }
  - { name: lab, base_url: "http://lab:8000/v1" }
"#;
        let providers = load(text, &[]).unwrap();
        let lane = |n: &str, p| providers.get(n).unwrap().lane_for(p);
        assert_eq!(lane("wan-farm", Priority::Normal), Lane::Direct);
        assert_eq!(lane("gateway", Priority::Normal), Lane::Direct);
        assert_eq!(lane("lab", Priority::Normal), Lane::Batch);
        assert_eq!(lane("lab", Priority::Rush), Lane::Direct);
        assert_eq!(providers.get("wan-farm").unwrap().max_in_flight, 2);
        assert_eq!(providers.get("wan-farm").unwrap().id, "wan-farm");
    }

    #[test]
    fn a_batch_lane_where_none_can_be_harvested_is_refused() {
        let text = "providers:\n  - { name: gw, base_url: 'http://gw:4000', dialect: litellm, lane: batch }\n";
        let err = load(text, &[]).unwrap_err().to_string();
        assert!(err.contains("no Batch API"), "{err}");
    }

    #[test]
    fn keys_come_from_the_named_variable_only_when_needed() {
        let text = r#"
providers:
  - { name: wan, base_url: "http://gpu:30000/v1", dialect: sglang }
  - { name: gw, base_url: "http://gw:4000", dialect: litellm, api_key_env: GW_KEY }
"#;
        let providers = load(text, &[]).unwrap();
        let lookup = env(&[]);
        assert_eq!(providers.get("wan").unwrap().api_key(&lookup), Ok(None));
        let err = providers.get("gw").unwrap().api_key(&lookup).unwrap_err();
        assert!(err.to_string().contains("GW_KEY"));
    }

    #[test]
    fn own_models_replace_the_builtin_catalog() {
        let text = r#"
providers:
  - name: wan-farm
    base_url: http://gpu-01:30000/v1
    dialect: sglang
    models:
      - name: wan2.2-t2v
        served_as: Wan-AI/Wan2.2-T2V-A14B-Diffusers
        seconds: [5]
        sizes:
          - { size: 1280x720, standard: "0.02" }
"#;
        let providers = load(text, &[]).unwrap();
        let wan = providers.get("wan-farm").unwrap();
        let spec = wan.catalog.model("wan2.2-t2v").unwrap();
        assert_eq!(spec.wire_name(), "Wan-AI/Wan2.2-T2V-A14B-Diffusers");
        assert!(wan.catalog.model("sora-2").is_none());
        assert!(
            providers
                .get("default")
                .unwrap()
                .catalog
                .model("sora-2")
                .is_some()
        );
    }

    #[test]
    fn legacy_records_name_the_host() {
        let text = "providers:\n  - { name: a, base_url: 'http://10.0.0.1:1/v1' }\n  - { name: b, base_url: 'http://10.0.0.2:1/v1' }\n  - { name: c, base_url: 'http://10.0.0.2:2/v1' }\n";
        let providers = load(text, &[]).unwrap();
        assert_eq!(providers.for_record("a").unwrap().name, "a");
        assert_eq!(providers.for_record("10.0.0.1").unwrap().name, "a");
        // Two providers on one host: a bare host cannot say which.
        assert!(providers.for_record("10.0.0.2").is_none());
        assert!(providers.for_record("http://10.0.0.9/v1").is_none());
    }

    #[test]
    fn unknown_fields_and_bad_urls_are_refused() {
        for text in [
            "providers:\n  - { name: a, base_url: 'http://x/v1', dialcet: sglang }\n",
            "providers:\n  - { name: a, base_url: 'ftp://x/v1' }\n",
            "providers:\n  - { name: a, base_url: 'http://x/v1', max_in_flight: 0 }\n",
            "providers:\n  - { name: a, base_url: 'http://x/v1', dialect: vllm }\n",
            "default: nope\nproviders: []\n",
        ] {
            assert!(load(text, &[]).is_err(), "{text}");
        }
    }
}
