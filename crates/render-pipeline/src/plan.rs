//! Shot lists → a priced, validated Plan: one request per take, each with its cache key and cost.
//!
//! The shapes below are the contract the later stages (batch, submit, harvest) consume.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::provider::{Lane, Provider, Providers};
use crate::shotlist::diagnostic::{has_errors, sort_and_dedup};
use crate::shotlist::{Diagnostic, Pos, Priority, Shot, ShotList, ShotListInput, Sp};
use render_wire::catalog::{Catalog, CatalogError, Model, ModelSpec, Rate, Seconds, Size};
use render_wire::key::{KeyInput, RequestKey, Sha256Hex};
use render_wire::money::Usd;

/// A first-frame image, identified by its content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reference {
    /// Where it was read from (resolved against the shot list's folder).
    pub path: PathBuf,
    pub sha256: Sha256Hex,
    /// `image/jpeg`, `image/png` or `image/webp`.
    pub mime: &'static str,
    pub bytes: u64,
}

/// One take of one shot: exactly one `POST /v1/videos`.
///
/// A plan holds a hundred thousand of these: what every take of a shot shares (its text, its
/// reference) and what every request of a provider shares (its names) is shared, not copied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlannedRequest {
    pub shot_id: Arc<str>,
    /// The provider's identity (its name, or the default provider's base URL).
    pub provider: Arc<str>,
    /// What the shot list calls the provider.
    pub provider_name: Arc<str>,
    pub lane: Lane,
    pub priority: Priority,
    /// 1-based take number.
    pub take: u32,
    /// How many takes the shot has (decides whether output names carry the take).
    pub takes: u32,
    pub model: Model,
    /// The `model` string sent (the catalog's `served_as`, else the model's name).
    pub served_as: Arc<str>,
    pub size: Size,
    pub seconds: Seconds,
    pub prompt: Arc<str>,
    pub reference: Option<Arc<Reference>>,
    pub tags: Arc<[String]>,
    pub key: RequestKey,
    /// At the price of its lane (Batch or standard); zero when cached.
    pub cost: Usd,
    /// At the standard (non-Batch) rate, ignoring the cache: what the same work costs elsewhere.
    pub standard_cost: Usd,
    /// At the Batch rate, where the provider offers a Batch lane (ignoring the cache).
    pub batch_cost: Option<Usd>,
    pub cached: bool,
    /// The shot list the shot came from.
    pub source: Arc<Path>,
}

/// A night's work, validated and priced.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The identities of the providers the plan's requests go to, in first-use order.
    pub providers: Vec<String>,
    /// The `project` of the first shot list that names one.
    pub project: Option<String>,
    pub sources: Vec<PathBuf>,
    pub requests: Vec<PlannedRequest>,
    /// Only some of the lists' shots were chosen (`--only`, `--tag`): the night does not speak
    /// for the shots left out, so their earlier outputs stay where they are.
    pub partial: bool,
}

impl Plan {
    /// Batch price of what is not cached.
    pub fn total(&self) -> Usd {
        self.requests.iter().map(|r| r.cost).sum()
    }

    pub fn standard_total(&self) -> Usd {
        self.requests.iter().map(|r| r.standard_cost).sum()
    }

    pub fn cached_count(&self) -> usize {
        self.requests.iter().filter(|r| r.cached).count()
    }

    /// The providers as one line (`wan-farm, default`), for runs and reports.
    pub fn provider_summary(&self) -> String {
        self.providers.join(", ")
    }
}

impl Plan {
    /// What the plan spends beyond `budget`, if it exceeds it.
    pub fn check_budget(&self, budget: Usd) -> Result<(), OverBudget> {
        let total = self.total();
        if total > budget {
            return Err(OverBudget { total, budget });
        }
        Ok(())
    }

    /// What Batch and the cache save over running the same work at standard rates.
    pub fn saving(&self) -> Usd {
        self.standard_total().saturating_sub(self.total())
    }

    /// Totals per model and size, in catalog order.
    pub fn subtotals(&self) -> Vec<Subtotal> {
        let mut groups: BTreeMap<(&Model, Size), Subtotal> = BTreeMap::new();
        for r in &self.requests {
            let group = groups
                .entry((&r.model, r.size))
                .or_insert_with(|| Subtotal {
                    model: r.model.clone(),
                    size: r.size,
                    requests: 0,
                    cached: 0,
                    seconds: 0,
                    cost: Usd::ZERO,
                    standard_cost: Usd::ZERO,
                });
            group.requests += 1;
            group.cached += usize::from(r.cached);
            group.seconds += u64::from(r.seconds.0);
            group.cost += r.cost;
            group.standard_cost += r.standard_cost;
        }
        groups.into_values().collect()
    }
}

/// The requests of one model at one size, summed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Subtotal {
    pub model: Model,
    pub size: Size,
    pub requests: usize,
    pub cached: usize,
    /// Seconds of video asked for (cached or not).
    pub seconds: u64,
    pub cost: Usd,
    pub standard_cost: Usd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the plan costs {total}, over the budget of {budget}; nothing was spent")]
pub struct OverBudget {
    pub total: Usd,
    pub budget: Usd,
}

/// Used when neither the shot, its list's `defaults`, nor a flag names a model.
pub const DEFAULT_MODEL: &str = "sora-2";
pub const DEFAULT_SIZE: Size = Size {
    width: 1280,
    height: 720,
};
pub const DEFAULT_SECONDS: Seconds = Seconds(8);
pub use crate::provider::DEFAULT_BASE_URL;
/// Where diagnostics about flags point.
pub const COMMAND_LINE: &str = "command line";

/// How to plan: who renders, and the defaults from the command line.
///
/// Precedence for each of provider, model, size and seconds: the shot's own value, then its
/// list's `defaults`, then these flags (the providers' default), then the built-in defaults
/// (sora-2, 1280x720, 8 s, or the provider's first offer where it has none of those).
#[derive(Clone, Debug)]
pub struct PlanOptions {
    /// Who can render; shots without a `provider` go to its default.
    pub providers: Providers,
    pub model: Option<Model>,
    pub size: Option<Size>,
    pub seconds: Option<Seconds>,
}

impl PlanOptions {
    pub fn new(providers: Providers) -> PlanOptions {
        PlanOptions {
            providers,
            model: None,
            size: None,
            seconds: None,
        }
    }

    /// One OpenAI-dialect provider whose identity is `id` (a host such as `127.0.0.1`, or a
    /// base URL), rendering the models of `catalog`: what tests and benchmarks plan against.
    pub fn single(id: &str, catalog: Catalog) -> PlanOptions {
        let base_url = if id.contains("://") {
            id.to_string()
        } else {
            format!("http://{id}/v1")
        };
        PlanOptions::new(Providers::of(vec![Provider {
            name: crate::provider::DEFAULT_PROVIDER.into(),
            id: id.to_string(),
            base_url,
            api_key_env: None,
            dialect: render_wire::dialect::Dialect::Openai,
            lane: crate::provider::LaneChoice::Auto,
            max_in_flight: crate::provider::DEFAULT_MAX_IN_FLIGHT,
            catalog,
            thumbnails: None,
        }]))
    }
}

/// The outcome of planning a set of shot lists: the plan when nothing is invalid, every
/// diagnostic (errors and warnings, sorted), and the texts they point into.
#[derive(Clone, Debug)]
pub struct PlanRun {
    pub inputs: Vec<ShotListInput>,
    pub plan: Option<Plan>,
    pub diagnostics: Vec<Diagnostic>,
}

impl PlanRun {
    pub fn is_valid(&self) -> bool {
        self.plan.is_some()
    }
}

/// Reads the shot lists at `paths` (`-` is YAML from `stdin`) and plans them.
pub fn plan_files(
    paths: &[PathBuf],
    stdin: &mut dyn Read,
    opts: &PlanOptions,
    is_cached: &dyn Fn(&RequestKey) -> bool,
) -> PlanRun {
    let (inputs, mut diagnostics) = read_inputs(paths, stdin);
    let plan = match build(&inputs, opts, is_cached) {
        Ok((plan, warnings)) if diagnostics.is_empty() => {
            diagnostics = warnings;
            Some(plan)
        }
        Ok((_, more)) | Err(more) => {
            diagnostics.extend(more);
            None
        }
    };
    sort_and_dedup(&mut diagnostics);
    PlanRun {
        inputs,
        plan,
        diagnostics,
    }
}

/// Reads shot list files; `-` reads YAML from `stdin` (once), resolving references against the
/// current folder. Unreadable files become diagnostics, so every file is still looked at.
pub fn read_inputs(
    paths: &[PathBuf],
    stdin: &mut dyn Read,
) -> (Vec<ShotListInput>, Vec<Diagnostic>) {
    let mut inputs = Vec::with_capacity(paths.len());
    let mut diagnostics = Vec::new();
    let mut stdin_read = false;
    for path in paths {
        let read = if path.as_os_str() == "-" {
            if std::mem::replace(&mut stdin_read, true) {
                let message = "`-` (standard input) is given more than once";
                diagnostics.push(Diagnostic::error(COMMAND_LINE, Pos::NONE, message));
                continue;
            }
            ShotListInput::read_stdin(stdin, Path::new(""))
        } else {
            ShotListInput::read(path)
        };
        match read {
            Ok(input) => inputs.push(input),
            Err(diagnostic) => diagnostics.push(diagnostic),
        }
    }
    (inputs, diagnostics)
}

/// The built-in catalog, then `<state_dir>/catalog.yaml` if it exists, then each `--catalog`
/// file in order: later entries replace earlier ones of the same model.
pub fn load_catalog(state_dir: &Path, extra: &[PathBuf]) -> Result<Catalog, CatalogError> {
    let state_catalog = state_dir.join("catalog.yaml");
    let mut paths: Vec<&Path> = Vec::with_capacity(extra.len() + 1);
    if state_catalog.is_file() {
        paths.push(&state_catalog);
    }
    paths.extend(extra.iter().map(PathBuf::as_path));
    Catalog::load(&paths)
}

/// Validates and prices shot lists: one [`PlannedRequest`] per take of each shot.
///
/// `Ok` holds the plan and its warnings; `Err` every diagnostic (errors and warnings) when
/// anything is invalid. Diagnostics are sorted by file and position. Reference images are read
/// (header and SHA-256) once per distinct path.
pub fn build(
    lists: &[ShotListInput],
    opts: &PlanOptions,
    is_cached: &dyn Fn(&RequestKey) -> bool,
) -> Result<(Plan, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut planner = Planner::new(opts);
    let mut plan = Plan::default();
    for input in lists {
        let (list, diagnostics) = crate::shotlist::parse(input);
        planner.diagnostics.extend(diagnostics);
        plan.sources.push(PathBuf::from(&input.path));
        if plan.project.is_none() {
            plan.project = list.project.as_ref().map(|p| p.value.clone());
        }
        planner.plan_list(input, list, &mut plan.requests);
    }
    // Asked once every request is planned, so that a probe reading its index on another
    // thread (the CLI's) has had the whole parse to do it.
    for request in &mut plan.requests {
        request.cached = is_cached(&request.key);
        if request.cached {
            request.cost = Usd::ZERO;
        }
    }
    for request in &plan.requests {
        if !plan.providers.iter().any(|p| **p == *request.provider) {
            plan.providers.push(request.provider.to_string());
        }
    }
    planner.warn_retired();
    let mut diagnostics = planner.diagnostics;
    sort_and_dedup(&mut diagnostics);
    if has_errors(&diagnostics) {
        return Err(diagnostics);
    }
    Ok((plan, diagnostics))
}

/// Where a shot's effective value came from, for pointing at it and explaining it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Origin {
    Builtin,
    Flag,
    Defaults,
    Shot,
}

#[derive(Clone, Debug)]
struct Resolved<T> {
    value: T,
    origin: Origin,
    pos: Pos,
}

impl<T> Resolved<T> {
    fn pick(shot: Option<&Sp<T>>, defaults: Option<&Sp<T>>, flag: Option<T>, builtin: T) -> Self
    where
        T: Clone,
    {
        if let Some(v) = shot {
            return Resolved {
                value: v.value.clone(),
                origin: Origin::Shot,
                pos: v.pos,
            };
        }
        if let Some(v) = defaults {
            return Resolved {
                value: v.value.clone(),
                origin: Origin::Defaults,
                pos: v.pos,
            };
        }
        match flag {
            Some(value) => Resolved {
                value,
                origin: Origin::Flag,
                pos: Pos::NONE,
            },
            None => Resolved {
                value: builtin,
                origin: Origin::Builtin,
                pos: Pos::NONE,
            },
        }
    }

    /// The file a diagnostic about this value points into.
    fn path<'a>(&self, list_path: &'a str) -> &'a str {
        match self.origin {
            Origin::Shot | Origin::Defaults => list_path,
            Origin::Flag | Origin::Builtin => COMMAND_LINE,
        }
    }

    /// Explains where a value not written on the shot came from.
    fn note(&self, flag: &str) -> String {
        match self.origin {
            Origin::Shot => String::new(),
            Origin::Defaults => " (from `defaults`)".into(),
            Origin::Flag => format!(" (from {flag})"),
            Origin::Builtin => " (the built-in default)".into(),
        }
    }
}

/// The shot list a shot comes from, as planning needs it.
struct ListContext<'a> {
    input: &'a ShotListInput,
    path: &'a str,
    defaults: &'a crate::shotlist::Defaults,
    source: &'a Arc<Path>,
}

/// What a reference image turned out to be: the reference every shot naming it shares, and its
/// pixel size.
#[derive(Clone, Debug)]
struct ImageFacts {
    reference: Arc<Reference>,
    width: u32,
    height: u32,
}

struct Planner<'a> {
    opts: &'a PlanOptions,
    diagnostics: Vec<Diagnostic>,
    /// Each shot id's first use: the list (an index into `paths`) and the place.
    ids: HashMap<String, (usize, Pos)>,
    /// The shot lists seen so far, by their display paths.
    paths: Vec<String>,
    images: HashMap<PathBuf, Result<ImageFacts, String>>,
    /// First use and request count of each model per provider, for the retirement warning.
    models_used: BTreeMap<(String, Model), (String, Pos, usize)>,
    /// Provider and model names, one copy each for every request that carries them.
    names: HashSet<Arc<str>>,
    /// The tags of every shot that has none.
    no_tags: Arc<[String]>,
}

impl<'a> Planner<'a> {
    fn new(opts: &'a PlanOptions) -> Planner<'a> {
        Planner {
            opts,
            diagnostics: Vec::new(),
            ids: HashMap::new(),
            paths: Vec::new(),
            images: HashMap::new(),
            models_used: BTreeMap::new(),
            names: HashSet::new(),
            no_tags: Arc::new([]),
        }
    }

    /// The one shared copy of `name`.
    fn share(&mut self, name: &str) -> Arc<str> {
        if let Some(shared) = self.names.get(name) {
            return shared.clone();
        }
        let shared: Arc<str> = name.into();
        self.names.insert(shared.clone());
        shared
    }

    /// Plans every shot of `list`, which it consumes: each shot's text moves into its last
    /// request instead of being copied.
    fn plan_list(&mut self, input: &ShotListInput, list: ShotList, out: &mut Vec<PlannedRequest>) {
        let ShotList {
            path,
            defaults,
            shots,
            ..
        } = list;
        self.paths.push(path.clone());
        let list_index = self.paths.len() - 1;
        let source: Arc<Path> = Path::new(&input.path).into();
        // At most this many requests: room for them all at once, not twice as much by doubling.
        let takes = |shot: &Shot| {
            shot.takes
                .as_ref()
                .or(defaults.takes.as_ref())
                .map_or(1, |t| t.value)
        };
        out.reserve_exact(shots.iter().map(|s| takes(s) as usize).sum());
        for shot in shots {
            self.check_unique_id(list_index, &shot);
            let list = ListContext {
                input,
                path: &path,
                defaults: &defaults,
                source: &source,
            };
            self.plan_shot(&list, shot, out);
        }
    }

    fn check_unique_id(&mut self, list_index: usize, shot: &Shot) {
        let Some(id) = &shot.id else { return };
        match self.ids.get(&id.value) {
            Some((first_list, first_pos)) => {
                let path = &self.paths[list_index];
                let d =
                    Diagnostic::error(path, id.pos, format!("duplicate shot id `{}`", id.value))
                        .with_related(&self.paths[*first_list], *first_pos, "first used here")
                        .with_help("shot ids name output files, so each must be unique in a run");
                self.diagnostics.push(d);
            }
            None => {
                self.ids.insert(id.value.clone(), (list_index, id.pos));
            }
        }
    }

    /// Appends the shot's requests to `out`, or nothing (with diagnostics) when it cannot be
    /// priced.
    fn plan_shot(&mut self, list: &ListContext, shot: Shot, out: &mut Vec<PlannedRequest>) {
        let (path, defaults) = (list.path, list.defaults);
        let provider = self.provider(path, &shot, defaults);
        let catalog = provider.map(|p| &p.catalog);
        let model_name = Resolved::pick(
            shot.model.as_ref(),
            defaults.model.as_ref(),
            self.opts.model.as_ref().map(|m| m.0.clone()),
            builtin_model(catalog),
        );
        let offers = catalog.and_then(|c| c.model(&model_name.value));
        let size = Resolved::pick(
            shot.size.as_ref(),
            defaults.size.as_ref(),
            self.opts.size,
            builtin_size(offers),
        );
        let seconds = Resolved::pick(
            shot.seconds.as_ref(),
            defaults.seconds.as_ref(),
            self.opts.seconds.map(|s| s.0),
            builtin_seconds(offers),
        );
        let priority = shot
            .priority
            .as_ref()
            .or(defaults.priority.as_ref())
            .map_or(Priority::Normal, |p| p.value);
        let takes = shot
            .takes
            .as_ref()
            .or(defaults.takes.as_ref())
            .map_or(1, |t| t.value);

        let spec = provider.and_then(|p| self.model_spec(path, p, &model_name));
        let checked = spec.and_then(|spec| {
            let catalog = &provider?.catalog;
            let rate = self.check_size(path, catalog, spec, &model_name, &size);
            let secs = self.check_seconds(path, spec, &model_name, &seconds);
            self.check_prompt(path, spec, &shot);
            Some((spec, rate?, secs?))
        });
        let reference = self.reference(list.input, &shot, checked.map(|_| size.value));
        let Some((spec, rate, seconds)) = checked else {
            return;
        };
        let (Some(provider), Some(_), Some(_), Ok(reference)) =
            (provider, &shot.id, &shot.prompt, reference)
        else {
            return;
        };

        let use_at = shot.model.as_ref().map_or(shot.at, |m| m.pos);
        self.count_model_use(provider, spec, path, use_at, takes);

        let Shot {
            id, prompt, tags, ..
        } = shot;
        let (Some(id), Some(prompt)) = (id, prompt) else {
            return;
        };
        let lane = provider.lane_for(priority);
        let price = match lane {
            Lane::Batch => rate.batch * seconds.0,
            Lane::Direct => rate.standard * seconds.0,
        };
        let keys = KeyInput {
            provider: &provider.id,
            model: &spec.name,
            size: size.value,
            seconds,
            prompt: &prompt.value,
            reference: reference.as_ref().map(|r| r.sha256),
            take: 1,
        }
        .take_keys();
        let first = PlannedRequest {
            shot_id: id.value.into(),
            provider: self.share(&provider.id),
            provider_name: self.share(&provider.name),
            lane,
            priority,
            take: 1,
            takes,
            model: spec.name.clone(),
            served_as: self.share(spec.wire_name()),
            size: size.value,
            seconds,
            prompt: prompt.value.into(),
            reference,
            tags: match tags.is_empty() {
                true => self.no_tags.clone(),
                false => tags.into(),
            },
            key: keys.key(1),
            cost: price,
            standard_cost: rate.standard * seconds.0,
            batch_cost: provider.offers_batch().then(|| rate.batch * seconds.0),
            cached: false,
            source: list.source.clone(),
        };
        // Takes differ only in their number and key: the first is the template of the rest.
        let start = out.len();
        out.push(first);
        for take in 2..=takes {
            let mut request = out[start].clone();
            request.take = take;
            request.key = keys.key(take);
            out.push(request);
        }
    }

    /// Counts a model's requests per provider, remembering its first use, for the retirement
    /// warning.
    fn count_model_use(
        &mut self,
        provider: &Provider,
        spec: &ModelSpec,
        path: &str,
        at: Pos,
        takes: u32,
    ) {
        // Looked up before inserting: the names are copied once per model, not once per shot.
        let seen = self
            .models_used
            .iter_mut()
            .find(|((p, m), _)| *p == provider.name && *m == spec.name);
        match seen {
            Some((_, used)) => used.2 += takes as usize,
            None => {
                let first = (path.to_string(), at, takes as usize);
                self.models_used
                    .insert((provider.name.clone(), spec.name.clone()), first);
            }
        }
    }

    /// The shot's provider: the shot's own, its list's default, else `--provider`'s.
    fn provider(
        &mut self,
        path: &str,
        shot: &Shot,
        defaults: &crate::shotlist::Defaults,
    ) -> Option<&'a Provider> {
        let providers = &self.opts.providers;
        let Some(named) = shot.provider.as_ref().or(defaults.provider.as_ref()) else {
            return Some(providers.default_provider());
        };
        if let Some(provider) = providers.get(&named.value) {
            return Some(provider);
        }
        let names = providers.names();
        let help = match crate::shotlist::diagnostic::closest(&named.value, &names) {
            Some(near) => format!("did you mean `{near}`? (providers: {})", names.join(", ")),
            None => format!(
                "known providers: {} (add others to providers.yaml or --providers)",
                names.join(", ")
            ),
        };
        let message = format!("unknown provider `{}`", named.value);
        self.diagnostics
            .push(Diagnostic::error(path, named.pos, message).with_help(help));
        None
    }

    fn model_spec(
        &mut self,
        path: &str,
        provider: &'a Provider,
        model: &Resolved<String>,
    ) -> Option<&'a ModelSpec> {
        let catalog = &provider.catalog;
        if let Some(spec) = catalog.model(&model.value) {
            return Some(spec);
        }
        let help = match catalog.closest_model(&model.value) {
            Some(near) => format!("did you mean `{near}`?"),
            None => {
                let known: Vec<&str> = catalog.models().map(|m| m.name.as_str()).collect();
                format!(
                    "{} renders: {} (add others with --catalog or the provider's `models`)",
                    provider.name,
                    known.join(", ")
                )
            }
        };
        let message = format!("unknown model `{}`{}", model.value, model.note("--model"));
        self.diagnostics
            .push(Diagnostic::error(model.path(path), model.pos, message).with_help(help));
        None
    }

    fn check_size(
        &mut self,
        path: &str,
        catalog: &Catalog,
        spec: &ModelSpec,
        model: &Resolved<String>,
        size: &Resolved<Size>,
    ) -> Option<Rate> {
        if let Some(rate) = spec.rate(size.value) {
            return Some(rate);
        }
        let offering: Vec<&str> = catalog
            .models_offering(size.value)
            .into_iter()
            .map(Model::as_str)
            .collect();
        let help = if offering.is_empty() {
            let sizes: Vec<String> = spec.sizes.keys().map(Size::to_string).collect();
            format!("{} offers {}", spec.name, sizes.join(", "))
        } else {
            format!("{} needs {}", size.value, offering.join(" or "))
        };
        let message = format!(
            "{}{} does not offer {}{}",
            spec.name,
            model.note("--model"),
            size.value,
            size.note("--size")
        );
        self.blame(path, model, size, message, help);
        None
    }

    fn check_seconds(
        &mut self,
        path: &str,
        spec: &ModelSpec,
        model: &Resolved<String>,
        seconds: &Resolved<u32>,
    ) -> Option<Seconds> {
        let wanted = Seconds(seconds.value);
        if spec.accepts_seconds(wanted) {
            return Some(wanted);
        }
        let allowed: Vec<String> = spec.seconds.iter().map(|s| s.0.to_string()).collect();
        let message = format!(
            "{}{} does not offer {} seconds{}",
            spec.name,
            model.note("--model"),
            seconds.value,
            seconds.note("--seconds")
        );
        let help = format!("allowed seconds: {}", allowed.join(", "));
        self.blame(path, model, seconds, message, help);
        None
    }

    /// Reports a clash between the model and another value at the more specific of the two.
    fn blame<T>(
        &mut self,
        path: &str,
        model: &Resolved<String>,
        other: &Resolved<T>,
        message: String,
        help: String,
    ) {
        let (at_path, at) = if model.origin > other.origin {
            (model.path(path), model.pos)
        } else {
            (other.path(path), other.pos)
        };
        self.diagnostics
            .push(Diagnostic::error(at_path, at, message).with_help(help));
    }

    fn check_prompt(&mut self, path: &str, spec: &ModelSpec, shot: &Shot) {
        let Some(prompt) = &shot.prompt else { return };
        // No more characters than bytes: most prompts need no counting.
        if prompt.value.len() <= spec.max_prompt_chars {
            return;
        }
        let chars = prompt.value.chars().count();
        if chars > spec.max_prompt_chars {
            let message = format!(
                "the prompt is {chars} characters; {} accepts at most {}",
                spec.name, spec.max_prompt_chars
            );
            self.diagnostics
                .push(Diagnostic::error(path, prompt.pos, message).with_help("shorten the prompt"));
        }
    }

    /// The shot's reference image, checked against `size` when the size is valid.
    /// `Err` when the image has a problem (already reported).
    fn reference(
        &mut self,
        input: &ShotListInput,
        shot: &Shot,
        size: Option<Size>,
    ) -> Result<Option<Arc<Reference>>, ()> {
        let Some(written) = &shot.reference else {
            return Ok(None);
        };
        let path = input.base_dir.join(&written.value);
        let facts = self
            .images
            .entry(path.clone())
            .or_insert_with(|| inspect_image(&path))
            .clone();
        let report = |message: String, help: &str| {
            Diagnostic::error(&input.path, written.pos, message).with_help(help)
        };
        let facts = match facts {
            Ok(facts) => facts,
            Err(problem) => {
                let help = "reference paths are relative to the shot list's folder; use a JPEG, PNG or WebP";
                self.diagnostics.push(report(problem, help));
                return Err(());
            }
        };
        if let Some(size) = size
            && (facts.width, facts.height) != (size.width, size.height)
        {
            let message = format!(
                "the reference image is {}x{} but the shot is {size}",
                facts.width, facts.height
            );
            let help =
                format!("the first frame must match the output size: resize the image to {size}");
            self.diagnostics.push(report(message, &help));
            return Err(());
        }
        Ok(Some(facts.reference))
    }

    /// One warning per model retired on the target host, at its first use.
    fn warn_retired(&mut self) {
        for ((provider, model), (path, at, count)) in &self.models_used {
            let Some(provider) = self.opts.providers.get(provider) else {
                continue;
            };
            let Some(spec) = provider.catalog.model(model.as_str()) else {
                continue;
            };
            let host = provider.host();
            if !spec.retired_on(&host) {
                continue;
            }
            let date = spec.retired.as_deref().unwrap_or("an earlier date");
            let message = format!(
                "{model} was retired on {host} on {date}; use an OpenAI-compatible server (OPENAI_BASE_URL)"
            );
            let help = format!("{count} request(s) in this plan use {model}");
            self.diagnostics
                .push(Diagnostic::warning(path, *at, message).with_help(help));
        }
    }
}

/// The model a shot names none of: sora-2 where the provider has it, else its first model.
fn builtin_model(catalog: Option<&Catalog>) -> String {
    match catalog {
        Some(c) if c.model(DEFAULT_MODEL).is_none() => c
            .models()
            .next()
            .map_or(DEFAULT_MODEL.to_string(), |m| m.name.0.clone()),
        _ => DEFAULT_MODEL.to_string(),
    }
}

/// 1280x720 where the model offers it, else its first size.
fn builtin_size(spec: Option<&ModelSpec>) -> Size {
    match spec {
        Some(s) if s.rate(DEFAULT_SIZE).is_none() => {
            s.sizes.keys().next().copied().unwrap_or(DEFAULT_SIZE)
        }
        _ => DEFAULT_SIZE,
    }
}

/// 8 seconds where the model offers it, else its shortest.
fn builtin_seconds(spec: Option<&ModelSpec>) -> u32 {
    match spec {
        Some(s) if !s.accepts_seconds(DEFAULT_SECONDS) => {
            s.seconds.first().map_or(DEFAULT_SECONDS.0, |s| s.0)
        }
        _ => DEFAULT_SECONDS.0,
    }
}

/// Reads an image's header (format, pixel size) and streams its bytes through SHA-256.
fn inspect_image(path: &Path) -> Result<ImageFacts, String> {
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("reference image {shown} does not exist"),
        _ => format!("cannot read reference image {shown}: {e}"),
    })?;
    let mut reader = BufReader::new(file);
    let mut header = [0u8; 64];
    let read = read_up_to(&mut reader, &mut header)
        .map_err(|e| format!("cannot read reference image {shown}: {e}"))?;
    let kind = imagesize::image_type(&header[..read])
        .map_err(|_| format!("reference {shown} is not a JPEG, PNG or WebP image"))?;
    let mime = match kind {
        imagesize::ImageType::Jpeg => "image/jpeg",
        imagesize::ImageType::Png => "image/png",
        imagesize::ImageType::Webp => "image/webp",
        other => {
            let name = format!("{other:?}").to_uppercase();
            return Err(format!(
                "reference {shown} is a {name} image; the API takes JPEG, PNG or WebP"
            ));
        }
    };
    let broken = |e: &dyn std::fmt::Display| format!("reference image {shown} is damaged: {e}");
    reader.seek(SeekFrom::Start(0)).map_err(|e| broken(&e))?;
    let dims = imagesize::reader_size(&mut reader).map_err(|e| broken(&e))?;
    reader.seek(SeekFrom::Start(0)).map_err(|e| broken(&e))?;
    let mut hasher = Sha256::new();
    let bytes = std::io::copy(&mut reader, &mut hasher)
        .map_err(|e| format!("cannot read reference image {shown}: {e}"))?;
    Ok(ImageFacts {
        reference: Arc::new(Reference {
            path: path.to_path_buf(),
            sha256: Sha256Hex::from_digest(hasher.finalize().into()),
            mime,
            bytes,
        }),
        width: u32::try_from(dims.width).unwrap_or(u32::MAX),
        height: u32::try_from(dims.height).unwrap_or(u32::MAX),
    })
}

fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}
