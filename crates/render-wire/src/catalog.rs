//! The model catalog: which sizes and durations each model accepts, and what a second costs.
//!
//! The matrix is data, not code: a YAML catalog is embedded in the binary, and a user catalog can
//! add models or override prices for OpenAI-compatible servers that serve other models.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::money::Usd;

const BUILTIN: &str = include_str!("../../../catalog/builtin.yaml");

/// A model name as the API knows it (`sora-2`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Model(pub String);

impl Model {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Output size in pixels, written `WIDTHxHEIGHT` as the API does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Size {
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a size (expected WIDTHxHEIGHT, e.g. 1280x720)")]
pub struct ParseSizeError(pub String);

impl FromStr for Size {
    type Err = ParseSizeError;
    fn from_str(text: &str) -> Result<Size, ParseSizeError> {
        let err = || ParseSizeError(text.to_string());
        let (w, h) = text.trim().split_once(['x', 'X']).ok_or_else(err)?;
        let width: u32 = w.parse().map_err(|_| err())?;
        let height: u32 = h.parse().map_err(|_| err())?;
        if width == 0 || height == 0 {
            return Err(err());
        }
        Ok(Size { width, height })
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

impl Serialize for Size {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Size, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Duration of the output in whole seconds. The API carries it as a string ("8").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Seconds(pub u32);

impl Seconds {
    /// The form the API wants on the wire.
    pub fn api_string(self) -> String {
        self.0.to_string()
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.0)
    }
}

/// Price of one second of output at a given size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    pub standard: Usd,
    pub batch: Usd,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SizeEntry {
    size: Size,
    standard: Usd,
    /// When absent, half the standard rate (the Batch discount).
    #[serde(default)]
    batch: Option<Usd>,
}

/// One model as a catalog file writes it (the built-in catalog, `--catalog`, a provider's
/// `models`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    name: Model,
    /// The model string the server wants, when it differs from `name`
    /// (`Wan-AI/Wan2.2-T2V-A14B-Diffusers`).
    #[serde(default)]
    served_as: Option<String>,
    #[serde(default)]
    retired: Option<String>,
    #[serde(default)]
    retired_hosts: Vec<String>,
    #[serde(default = "default_max_prompt_chars")]
    max_prompt_chars: usize,
    seconds: Vec<u32>,
    sizes: Vec<SizeEntry>,
}

fn default_max_prompt_chars() -> usize {
    4000
}

#[derive(Clone, Debug, Deserialize)]
struct CatalogFile {
    models: Vec<ModelEntry>,
}

/// What one model accepts and costs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelSpec {
    pub name: Model,
    /// What goes on the wire as `model` (the name unless the catalog says otherwise).
    pub served_as: Option<String>,
    /// ISO date on which the model was switched off on `retired_hosts`.
    pub retired: Option<String>,
    pub retired_hosts: Vec<String>,
    pub max_prompt_chars: usize,
    pub seconds: Vec<Seconds>,
    pub sizes: BTreeMap<Size, Rate>,
}

impl ModelSpec {
    /// The `model` string sent to the server.
    pub fn wire_name(&self) -> &str {
        self.served_as.as_deref().unwrap_or(self.name.as_str())
    }

    pub fn rate(&self, size: Size) -> Option<Rate> {
        self.sizes.get(&size).copied()
    }

    pub fn accepts_seconds(&self, seconds: Seconds) -> bool {
        self.seconds.contains(&seconds)
    }

    /// Whether the model is retired on the given API host (e.g. `api.openai.com`).
    pub fn retired_on(&self, host: &str) -> bool {
        self.retired.is_some()
            && self
                .retired_hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(host))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read catalog {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid catalog {path}: {message}")]
    Invalid { path: String, message: String },
}

/// The model/size/seconds matrix with prices.
#[derive(Clone, Debug)]
pub struct Catalog {
    models: BTreeMap<Model, ModelSpec>,
}

impl Catalog {
    /// The catalog embedded in the binary.
    pub fn builtin() -> Catalog {
        let mut catalog = Catalog {
            models: BTreeMap::new(),
        };
        catalog
            .merge_str(BUILTIN, "<builtin>")
            .expect("the embedded catalog is valid (checked by a unit test)");
        catalog
    }

    /// The built-in catalog with each existing user catalog merged over it, in order.
    pub fn load(user_catalogs: &[&Path]) -> Result<Catalog, CatalogError> {
        let mut catalog = Catalog::builtin();
        for path in user_catalogs {
            let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Read {
                path: path.display().to_string(),
                source,
            })?;
            catalog.merge_str(&text, &path.display().to_string())?;
        }
        Ok(catalog)
    }

    /// Adds the models of a catalog text; a model of the same name replaces the earlier entry.
    pub fn merge_str(&mut self, text: &str, origin: &str) -> Result<(), CatalogError> {
        let invalid = |message: String| CatalogError::Invalid {
            path: origin.to_string(),
            message,
        };
        let file: CatalogFile = serde_saphyr::from_str(text).map_err(|e| invalid(e.to_string()))?;
        for entry in file.models {
            let spec = model_spec(entry).map_err(invalid)?;
            self.models.insert(spec.name.clone(), spec);
        }
        Ok(())
    }

    /// A catalog of exactly these models (a provider's own `models`).
    pub fn from_entries(entries: Vec<ModelEntry>, origin: &str) -> Result<Catalog, CatalogError> {
        let mut models = BTreeMap::new();
        for entry in entries {
            let spec = model_spec(entry).map_err(|message| CatalogError::Invalid {
                path: origin.to_string(),
                message,
            })?;
            models.insert(spec.name.clone(), spec);
        }
        Ok(Catalog { models })
    }

    /// The same models under the names the server knows them by (`served_as`): what a
    /// rehearsal sandbox of the provider accepts.
    pub fn as_served(&self) -> Catalog {
        let models = self
            .models
            .values()
            .map(|spec| {
                let name = Model(spec.wire_name().to_string());
                let spec = ModelSpec {
                    name: name.clone(),
                    served_as: None,
                    ..spec.clone()
                };
                (name, spec)
            })
            .collect();
        Catalog { models }
    }

    pub fn model(&self, name: &str) -> Option<&ModelSpec> {
        self.models.get(&Model(name.to_string()))
    }

    pub fn models(&self) -> impl Iterator<Item = &ModelSpec> {
        self.models.values()
    }

    /// The known model whose name is closest to `name`, for "did you mean" hints.
    pub fn closest_model(&self, name: &str) -> Option<&Model> {
        self.models
            .keys()
            .map(|m| (strsim::damerau_levenshtein(name, m.as_str()), m))
            .filter(|(distance, _)| *distance <= name.len().max(3) / 2 + 1)
            .min_by_key(|(distance, _)| *distance)
            .map(|(_, m)| m)
    }

    /// Models that offer `size`, for hints like "1920x1080 needs sora-2-pro".
    pub fn models_offering(&self, size: Size) -> Vec<&Model> {
        self.models
            .values()
            .filter(|spec| spec.sizes.contains_key(&size))
            .map(|spec| &spec.name)
            .collect()
    }
}

fn model_spec(entry: ModelEntry) -> Result<ModelSpec, String> {
    if entry.name.0.trim().is_empty() {
        return Err("a model has an empty name".into());
    }
    if entry.seconds.is_empty() || entry.sizes.is_empty() {
        return Err(format!(
            "model {} needs at least one size and one duration",
            entry.name
        ));
    }
    let mut sizes = BTreeMap::new();
    for s in entry.sizes {
        let batch = s.batch.unwrap_or(s.standard.half());
        if s.standard.micros() < 0 || batch.micros() < 0 {
            return Err(format!(
                "model {} has a negative price for {}",
                entry.name, s.size
            ));
        }
        sizes.insert(
            s.size,
            Rate {
                standard: s.standard,
                batch,
            },
        );
    }
    let mut seconds: Vec<Seconds> = entry.seconds.into_iter().map(Seconds).collect();
    seconds.sort();
    seconds.dedup();
    Ok(ModelSpec {
        name: entry.name,
        served_as: entry.served_as.filter(|s| !s.trim().is_empty()),
        retired: entry.retired,
        retired_hosts: entry.retired_hosts,
        max_prompt_chars: entry.max_prompt_chars,
        seconds,
        sizes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(text: &str) -> Usd {
        text.parse().unwrap()
    }

    #[test]
    fn builtin_matrix_matches_the_march_2026_guide() {
        let catalog = Catalog::builtin();
        let sora = catalog.model("sora-2").unwrap();
        let pro = catalog.model("sora-2-pro").unwrap();
        let sizes = |spec: &ModelSpec| spec.sizes.keys().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(sizes(sora), ["720x1280", "1280x720"]);
        assert_eq!(
            sizes(pro),
            [
                "720x1280",
                "1024x1792",
                "1080x1920",
                "1280x720",
                "1792x1024",
                "1920x1080"
            ]
        );
        for spec in [sora, pro] {
            assert_eq!(spec.seconds, [4, 8, 12, 16, 20].map(Seconds));
            assert!(spec.retired_on("api.openai.com"));
            assert!(!spec.retired_on("127.0.0.1"));
        }
    }

    #[test]
    fn builtin_prices_batch_at_half_standard() {
        let catalog = Catalog::builtin();
        let rate = |m: &str, s: &str| catalog.model(m).unwrap().rate(s.parse().unwrap()).unwrap();
        let expected = [
            ("sora-2", "1280x720", "0.10", "0.05"),
            ("sora-2", "720x1280", "0.10", "0.05"),
            ("sora-2-pro", "1280x720", "0.30", "0.15"),
            ("sora-2-pro", "1792x1024", "0.50", "0.25"),
            ("sora-2-pro", "1024x1792", "0.50", "0.25"),
            ("sora-2-pro", "1920x1080", "0.70", "0.35"),
            ("sora-2-pro", "1080x1920", "0.70", "0.35"),
        ];
        for (model, size, standard, batch) in expected {
            let r = rate(model, size);
            assert_eq!(
                (r.standard, r.batch),
                (usd(standard), usd(batch)),
                "{model} {size}"
            );
        }
    }

    #[test]
    fn user_catalog_adds_models_and_overrides_prices() {
        let mut catalog = Catalog::builtin();
        catalog
            .merge_str(
                "models:\n  - name: wan-2.2\n    seconds: [5]\n    sizes:\n      - { size: 832x480, standard: \"0.02\" }\n  - name: sora-2\n    seconds: [4]\n    sizes:\n      - { size: 1280x720, standard: \"0.08\", batch: \"0.03\" }\n",
                "user.yaml",
            )
            .unwrap();
        let wan = catalog.model("wan-2.2").unwrap();
        assert_eq!(
            wan.rate("832x480".parse().unwrap()).unwrap().batch,
            usd("0.01")
        );
        let sora = catalog.model("sora-2").unwrap();
        assert_eq!(
            sora.rate("1280x720".parse().unwrap()).unwrap().batch,
            usd("0.03")
        );
        assert!(sora.rate("720x1280".parse().unwrap()).is_none());
    }

    #[test]
    fn invalid_user_catalog_is_an_error_not_a_panic() {
        let mut catalog = Catalog::builtin();
        let err = catalog
            .merge_str("models: [ {name: x} ]", "bad.yaml")
            .unwrap_err();
        assert!(err.to_string().contains("bad.yaml"), "{err}");
        let err = catalog
            .merge_str(
                "models:\n  - name: x\n    seconds: []\n    sizes: []\n",
                "empty.yaml",
            )
            .unwrap_err();
        assert!(err.to_string().contains("at least one size"), "{err}");
    }

    #[test]
    fn hints_name_the_closest_model_and_who_offers_a_size() {
        let catalog = Catalog::builtin();
        assert_eq!(catalog.closest_model("sora2").unwrap().as_str(), "sora-2");
        assert_eq!(
            catalog.closest_model("sora-2-por").unwrap().as_str(),
            "sora-2-pro"
        );
        assert!(catalog.closest_model("midjourney-video").is_none());
        let offering = catalog.models_offering("1920x1080".parse().unwrap());
        assert_eq!(offering, [&Model("sora-2-pro".into())]);
    }

    #[test]
    fn sizes_parse_and_print_as_the_api_writes_them() {
        assert_eq!("1280x720".parse::<Size>().unwrap().to_string(), "1280x720");
        for bad in ["1280", "x720", "0x720", "1280x", "big"] {
            assert!(bad.parse::<Size>().is_err(), "{bad}");
        }
    }
}
