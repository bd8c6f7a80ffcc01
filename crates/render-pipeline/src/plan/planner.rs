//! The [`Planner`] behind [`super::build`]: plans each shot of each list into its requests,
//! keeping shot ids unique and counting model use for the retirement warning.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::provider::{Lane, Provider};
use crate::shotlist::{Diagnostic, Pos, Priority, Shot, ShotList, ShotListInput};
use render_wire::catalog::{Model, ModelSpec};
use render_wire::key::KeyInput;

use super::reference::ImageFacts;
use super::resolve::{Resolved, builtin_model, builtin_seconds, builtin_size};
use super::{PlanOptions, PlannedRequest};

/// The shot list a shot comes from, as planning needs it.
struct ListContext<'a> {
    input: &'a ShotListInput,
    path: &'a str,
    defaults: &'a crate::shotlist::Defaults,
    source: &'a Arc<Path>,
}

pub(super) struct Planner<'a> {
    pub(super) opts: &'a PlanOptions,
    pub(super) diagnostics: Vec<Diagnostic>,
    /// Each shot id's first use: the list (an index into `paths`) and the place.
    ids: HashMap<String, (usize, Pos)>,
    /// The shot lists seen so far, by their display paths.
    paths: Vec<String>,
    pub(super) images: HashMap<PathBuf, Result<ImageFacts, String>>,
    /// First use and request count of each model per provider, for the retirement warning.
    models_used: BTreeMap<(String, Model), (String, Pos, usize)>,
    /// Provider and model names, one copy each for every request that carries them.
    names: HashSet<Arc<str>>,
    /// The tags of every shot that has none.
    no_tags: Arc<[String]>,
}

impl<'a> Planner<'a> {
    pub(super) fn new(opts: &'a PlanOptions) -> Planner<'a> {
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
    pub(super) fn plan_list(
        &mut self,
        input: &ShotListInput,
        list: ShotList,
        out: &mut Vec<PlannedRequest>,
    ) {
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
