//! The [`Planner`] behind [`super::build`]: plans each shot of each list into its requests,
//! keeping shot ids unique and counting model use for the retirement warning.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::provider::{Lane, Provider};
use crate::shotlist::{
    Defaults, Diagnostic, Pos, Priority, Shot, ShotList, ShotListInput, ShotSink, Sp,
};
use render_wire::catalog::{Model, ModelSpec, Rate, Seconds, Size};
use render_wire::key::KeyInput;

use super::reference::ImageFacts;
use super::resolve::{Resolved, builtin_model, builtin_seconds, builtin_size};
use super::shot_ids::ShotIds;
use super::{PlanOptions, PlannedRequest, PlannedShot, SharedStr, Target};

/// Plans the shots of one list as the list's reader hands them over.
struct ListPlanner<'p, 'a> {
    planner: &'p mut Planner<'a>,
    input: &'p ShotListInput,
    list_index: usize,
    source: Arc<Path>,
    out: &'p mut Vec<PlannedRequest>,
    /// What the planner held before this list, for a reader that starts the list again.
    checkpoint: Checkpoint,
}

/// The planner's state before a list.
struct Checkpoint {
    requests: usize,
    diagnostics: usize,
    models_used: BTreeMap<(String, Model), (String, Pos, usize)>,
}

impl ShotSink for ListPlanner<'_, '_> {
    fn shot(&mut self, defaults: &Defaults, mut shot: Shot) {
        let id = shot.id.take().map(|id| Sp {
            pos: id.pos,
            value: SharedStr::within(&self.input.text, id.pos, id.value),
        });
        if let Some(id) = &id {
            self.planner.check_unique_id(self.list_index, id);
        }
        let list = ListContext {
            input: self.input,
            index: self.list_index,
            defaults,
            source: &self.source,
        };
        self.planner.plan_shot(&list, id, shot, self.out);
    }

    fn restart(&mut self) {
        let (planner, checkpoint) = (&mut *self.planner, &self.checkpoint);
        self.out.truncate(checkpoint.requests);
        planner.diagnostics.truncate(checkpoint.diagnostics);
        planner.models_used.clone_from(&checkpoint.models_used);
        planner.ids.forget_list(self.list_index);
    }
}

/// The shot list a shot comes from, as planning needs it.
struct ListContext<'a> {
    input: &'a ShotListInput,
    /// An index into the planner's `paths`.
    index: usize,
    defaults: &'a Defaults,
    source: &'a Arc<Path>,
}

pub(super) struct Planner<'a> {
    pub(super) opts: &'a PlanOptions,
    pub(super) diagnostics: Vec<Diagnostic>,
    /// Each shot id's first use: the list (an index into `paths`) and the place.
    ids: ShotIds,
    /// The shot lists seen so far, by their display paths.
    paths: Vec<String>,
    pub(super) images: HashMap<PathBuf, Result<ImageFacts, String>>,
    /// First use and request count of each model per provider, for the retirement warning.
    models_used: BTreeMap<(String, Model), (String, Pos, usize)>,
    /// Provider and model names, one copy each for every request that carries them.
    names: HashSet<Arc<str>>,
    /// One copy of each set of tags, for every shot that has it (most lists use a few).
    tag_sets: HashSet<Arc<[String]>>,
    /// One copy of each target, for every shot that has it.
    targets: HashMap<TargetKey, Arc<Target>>,
}

/// What tells [`Target`]s apart, built from shared names (without allocating).
#[derive(PartialEq, Eq, Hash)]
struct TargetKey {
    /// An index into the planner's `paths`.
    list: usize,
    provider: Arc<str>,
    model: Arc<str>,
    lane: Lane,
    size: Size,
    seconds: Seconds,
}

impl<'a> Planner<'a> {
    pub(super) fn new(opts: &'a PlanOptions) -> Planner<'a> {
        Planner {
            opts,
            diagnostics: Vec::new(),
            ids: ShotIds::new(),
            paths: Vec::new(),
            images: HashMap::new(),
            models_used: BTreeMap::new(),
            names: HashSet::new(),
            tag_sets: HashSet::new(),
            targets: HashMap::new(),
        }
    }

    /// The one shared copy of `name`.
    fn share(&mut self, name: &str) -> Arc<str> {
        shared_copy(&mut self.names, name)
    }

    /// Reads the shot list and plans each shot as soon as it is read (a big list is never held
    /// whole, as text, shots and requests at once); returns the list's head and what reading
    /// it found.
    pub(super) fn plan_list(
        &mut self,
        input: &ShotListInput,
        out: &mut Vec<PlannedRequest>,
    ) -> (ShotList, Vec<Diagnostic>) {
        let list_index = self.paths.len();
        self.paths.push(input.path.clone());
        self.ids.start_list(list_index, &input.text);
        let mut list = ListPlanner {
            list_index,
            source: Path::new(&input.path).into(),
            checkpoint: Checkpoint {
                requests: out.len(),
                diagnostics: self.diagnostics.len(),
                models_used: self.models_used.clone(),
            },
            planner: self,
            input,
            out,
        };
        crate::shotlist::parse_into(input, &mut list)
    }

    fn check_unique_id(&mut self, list_index: usize, id: &Sp<SharedStr>) {
        let Some((first_list, first_pos)) = self.ids.first_use(&id.value, id.pos) else {
            return;
        };
        let path = &self.paths[list_index];
        let d = Diagnostic::error(path, id.pos, format!("duplicate shot id `{}`", id.value))
            .with_related(&self.paths[first_list], first_pos, "first used here")
            .with_help("shot ids name output files, so each must be unique in a run");
        self.diagnostics.push(d);
    }

    /// Appends the shot's requests to `out`, or nothing (with diagnostics) when it cannot be
    /// priced.
    fn plan_shot(
        &mut self,
        list: &ListContext,
        id: Option<Sp<SharedStr>>,
        shot: Shot,
        out: &mut Vec<PlannedRequest>,
    ) {
        let (path, defaults) = (list.input.path.as_str(), list.defaults);
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
        let (Some(provider), Some(id), Some(_), Ok(reference)) =
            (provider, id, &shot.prompt, reference)
        else {
            return;
        };

        let use_at = shot.model.as_ref().map_or(shot.at, |m| m.pos);
        self.count_model_use(provider, spec, path, use_at, takes);

        let Shot { prompt, tags, .. } = shot;
        let Some(prompt) = prompt else {
            return;
        };
        let lane = provider.lane_for(priority);
        let prompt = SharedStr::within(&list.input.text, prompt.pos, prompt.value);
        let keys = KeyInput {
            provider: &provider.id,
            model: &spec.name,
            size: size.value,
            seconds,
            prompt: &prompt,
            reference: reference.as_ref().map(|r| r.sha256),
            take: 1,
        }
        .take_keys();
        let target = self.target(list, provider, spec, (lane, size.value, seconds), rate);
        let shot = Arc::new(PlannedShot {
            shot_id: id.value,
            prompt,
            priority,
            takes,
            reference,
            tags: shared_copy(&mut self.tag_sets, tags),
            target,
        });
        out.extend((1..=takes).map(|take| PlannedRequest {
            shot: shot.clone(),
            take,
            key: keys.key(take),
            cached: false,
        }));
    }

    /// The one shared [`Target`] of the list's shots that `provider` renders as `spec`, at
    /// `rate`, with the lane, size and length of `how`.
    fn target(
        &mut self,
        list: &ListContext,
        provider: &Provider,
        spec: &ModelSpec,
        how: (Lane, Size, Seconds),
        rate: Rate,
    ) -> Arc<Target> {
        let (lane, size, seconds) = how;
        let key = TargetKey {
            list: list.index,
            provider: self.share(&provider.id),
            model: self.share(spec.name.as_str()),
            lane,
            size,
            seconds,
        };
        if let Some(target) = self.targets.get(&key) {
            return target.clone();
        }
        let target = Arc::new(Target {
            provider: key.provider.clone(),
            provider_name: self.share(&provider.name),
            lane,
            model: spec.name.clone(),
            served_as: self.share(spec.wire_name()),
            size,
            seconds,
            lane_cost: match lane {
                Lane::Batch => rate.batch * seconds.0,
                Lane::Direct => rate.standard * seconds.0,
            },
            standard_cost: rate.standard * seconds.0,
            batch_cost: provider.offers_batch().then(|| rate.batch * seconds.0),
            source: list.source.clone(),
        });
        self.targets.insert(key, target.clone());
        target
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

    /// One warning per model retired on the target host, at its first use.
    pub(super) fn warn_retired(&mut self) {
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

/// The one copy of `value` in `set`, added on first use: what a hundred thousand requests share
/// instead of holding a copy each.
fn shared_copy<T, V>(set: &mut HashSet<Arc<T>>, value: V) -> Arc<T>
where
    T: Eq + std::hash::Hash + ?Sized,
    V: std::borrow::Borrow<T> + Into<Arc<T>>,
{
    if let Some(shared) = set.get(value.borrow()) {
        return shared.clone();
    }
    let shared: Arc<T> = value.into();
    set.insert(shared.clone());
    shared
}
