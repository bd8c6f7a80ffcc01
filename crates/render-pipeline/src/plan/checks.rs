//! A shot against its provider's catalog: the provider, model, size, seconds and prompt it asks
//! for, each refused with a diagnostic at the value to blame.

use crate::provider::Provider;
use crate::shotlist::{Diagnostic, Shot};
use render_wire::catalog::{Catalog, Model, ModelSpec, Rate, Seconds, Size};

use super::planner::Planner;
use super::resolve::Resolved;

impl<'a> Planner<'a> {
    /// The shot's provider: the shot's own, its list's default, else `--provider`'s.
    pub(super) fn provider(
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

    pub(super) fn model_spec(
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

    pub(super) fn check_size(
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

    pub(super) fn check_seconds(
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

    pub(super) fn check_prompt(&mut self, path: &str, spec: &ModelSpec, shot: &Shot) {
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
}
