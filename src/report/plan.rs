//! What `render plan` shows: diagnostics with source excerpts, the priced table and totals, or
//! the same facts as one JSON document.
//!
//! Rendering functions return strings (so tests can snapshot them); `print_*` write them.

use std::io::Write;

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
use serde::Serialize;

use render_pipeline::plan::{OverBudget, Plan, PlanRun, Subtotal};
use render_pipeline::shotlist::{Diagnostic, Severity, ShotListInput};
use render_wire::catalog::{Model, Size};
use render_wire::key::RequestKey;
use render_wire::money::Usd;

/// Renders diagnostics in the order given (already sorted by file and position), each as
/// `path:line:col: error: message`, the offending lines with carets, and `= help: …`.
pub fn render_diagnostics(
    diagnostics: &[Diagnostic],
    sources: &[ShotListInput],
    color: bool,
) -> String {
    let renderer = if color {
        Renderer::styled()
    } else {
        Renderer::plain()
    };
    let mut out = String::new();
    for d in diagnostics {
        let source = sources
            .iter()
            .find(|s| s.path == d.path)
            .map(|s| s.text.as_str());
        out.push_str(&render_one(d, source, &renderer));
        out.push('\n');
    }
    out
}

fn render_one(d: &Diagnostic, source: Option<&str>, renderer: &Renderer) -> String {
    let level = match d.severity {
        Severity::Error => Level::ERROR,
        Severity::Warning => Level::WARNING,
    };
    let word = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let mut out = format!("{}: {word}: {}\n", d.location(), d.message);
    let notes: Vec<String> = d
        .related
        .iter()
        .filter(|r| r.path != d.path || source.is_none())
        .map(|r| format!("{}: {}:{}:{}", r.label, r.path, r.line, r.col))
        .collect();
    let Some(source) = source.filter(|_| d.line > 0) else {
        for note in &notes {
            out.push_str(&format!("  = note: {note}\n"));
        }
        if let Some(help) = &d.help {
            out.push_str(&format!("  = help: {help}\n"));
        }
        return out;
    };
    let mut snippet = Snippet::source(source)
        .annotation(AnnotationKind::Primary.span(byte_range(source, d.offset, d.len)));
    for r in d.related.iter().filter(|r| r.path == d.path && r.line > 0) {
        snippet = snippet.annotation(
            AnnotationKind::Context
                .span(byte_range(source, r.offset, r.len))
                .label(&r.label),
        );
    }
    let mut group = Group::with_level(level).element(snippet);
    for note in &notes {
        group = group.element(Level::NOTE.message(note));
    }
    if let Some(help) = &d.help {
        group = group.element(Level::HELP.message(help));
    }
    out.push_str(&renderer.render(&[group]));
    out.push('\n');
    out
}

/// A byte range on character boundaries inside `source`.
fn byte_range(source: &str, offset: u32, len: u32) -> std::ops::Range<usize> {
    let mut start = (offset as usize).min(source.len());
    while !source.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (start + len as usize).min(source.len());
    while !source.is_char_boundary(end) {
        end += 1;
    }
    start..end
}

/// The table of requests, then totals by model and size, the Batch total, the standard-rate
/// total and the saving.
pub fn render_table(plan: &Plan, budget: Option<Usd>) -> String {
    let mut rows = Columns::new([
        "shot", "take", "provider", "lane", "model", "size", "seconds", "cost", "batch", "cached",
    ]);
    for r in &plan.requests {
        rows.cell(&r.shot_id);
        rows.cell_fmt(format_args!("{}/{}", r.take, r.takes));
        rows.cell(&r.provider_name);
        rows.cell(lane_label(r));
        rows.cell(r.model.as_str());
        rows.cell_fmt(format_args!("{}", r.size));
        rows.cell_fmt(format_args!("{}", r.seconds.0));
        rows.cell_fmt(format_args!("{}", r.cost));
        // The Batch price where the provider offers one, to compare with what applies.
        match r.batch_cost {
            Some(cost) => rows.cell_fmt(format_args!("{cost}")),
            None => rows.cell("-"),
        }
        rows.cell(if r.cached { "cached" } else { "" });
    }
    let mut out = rows.render(&[
        false, true, false, false, false, false, true, true, true, false,
    ]);
    out.push('\n');
    let mut totals = Columns::new([
        "model", "size", "requests", "cached", "seconds", "batch", "standard",
    ]);
    for s in plan.subtotals() {
        for cell in subtotal_row(&s) {
            totals.cell(&cell);
        }
    }
    out.push_str(&totals.render(&[false, false, true, true, true, true, true]));
    out.push('\n');
    let label = |name: &str, value: Usd| format!("{name:<22}{value:>12}\n");
    out.push_str(&format!(
        "{} requests, {} cached\n",
        plan.requests.len(),
        plan.cached_count()
    ));
    out.push_str(&label("Total", plan.total()));
    out.push_str(&label("At standard rates", plan.standard_total()));
    out.push_str(&label("Saving", plan.saving()));
    if let Some(budget) = budget {
        out.push_str(&label("Budget", budget));
    }
    out
}

/// `batch`, `direct`, or `direct (rush)` for a rush shot that could have gone by Batch.
fn lane_label(r: &render_pipeline::plan::PlannedRequest) -> &'static str {
    match (r.lane, r.priority) {
        (render_pipeline::provider::Lane::Direct, render_pipeline::shotlist::Priority::Rush) => {
            "direct (rush)"
        }
        (lane, _) => lane.as_str(),
    }
}

fn subtotal_row(s: &Subtotal) -> [String; 7] {
    [
        s.model.to_string(),
        s.size.to_string(),
        s.requests.to_string(),
        s.cached.to_string(),
        s.seconds.to_string(),
        s.cost.to_string(),
        s.standard_cost.to_string(),
    ]
}

/// A table of `N` columns filled cell by cell, row after row, into one buffer (a table of a
/// hundred thousand rows is a million cells: one string each would cost more than the text).
struct Columns<const N: usize> {
    text: String,
    /// Where each cell ends in `text`.
    ends: Vec<usize>,
    /// The widest cell of each column, in characters.
    widths: [usize; N],
}

impl<const N: usize> Columns<N> {
    /// A table whose first row is the heading.
    fn new(headings: [&str; N]) -> Columns<N> {
        let mut table = Columns {
            text: String::new(),
            ends: Vec::new(),
            widths: [0; N],
        };
        for heading in headings {
            table.cell(heading);
        }
        table
    }

    fn cell(&mut self, text: &str) {
        self.text.push_str(text);
        self.end_cell();
    }

    fn cell_fmt(&mut self, args: std::fmt::Arguments) {
        use std::fmt::Write as _;
        // Writing into a String cannot fail.
        let _ = self.text.write_fmt(args);
        self.end_cell();
    }

    fn end_cell(&mut self) {
        let start = self.ends.last().copied().unwrap_or(0);
        let column = self.ends.len() % N;
        let width = chars(&self.text[start..]);
        self.widths[column] = self.widths[column].max(width);
        self.ends.push(self.text.len());
    }

    /// Left- or right-aligned columns separated by two spaces, each line without trailing
    /// whitespace.
    fn render(&self, right: &[bool; N]) -> String {
        let mut out =
            String::with_capacity(self.widths.iter().sum::<usize>() * self.rows() * 9 / 8);
        let mut line = String::new();
        let mut start = 0;
        for row in self.ends.chunks(N) {
            line.clear();
            for (i, &end) in row.iter().enumerate() {
                let cell = &self.text[start..end];
                start = end;
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = self.widths[i] - chars(cell);
                if right[i] {
                    spaces(&mut line, pad);
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    spaces(&mut line, pad);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    fn rows(&self) -> usize {
        self.ends.len() / N
    }
}

/// Characters, as `format!`'s padding counts them.
fn chars(text: &str) -> usize {
    if text.is_ascii() {
        text.len()
    } else {
        text.chars().count()
    }
}

fn spaces(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// The JSON document of `render plan --format json`. Amounts are exact decimal strings ("0.40").
#[derive(Debug, Serialize)]
pub struct PlanJson<'a> {
    pub valid: bool,
    pub project: Option<&'a str>,
    /// The identities of the providers the plan uses, comma-separated.
    pub provider: String,
    pub requests: usize,
    pub cached: usize,
    /// What is not cached, each request at the price of its lane.
    pub total_usd: Usd,
    /// The same work at standard rates, cached or not.
    pub standard_usd: Usd,
    pub saving_usd: Usd,
    pub budget_usd: Option<Usd>,
    pub over_budget: bool,
    pub by_model_size: Vec<SubtotalJson>,
    pub shots: Vec<RequestJson<'a>>,
    pub diagnostics: &'a [Diagnostic],
}

#[derive(Debug, Serialize)]
pub struct SubtotalJson {
    pub model: Model,
    pub size: Size,
    pub requests: usize,
    pub cached: usize,
    pub seconds: u64,
    pub total_usd: Usd,
    pub standard_usd: Usd,
}

#[derive(Debug, Serialize)]
pub struct RequestJson<'a> {
    pub id: &'a str,
    pub take: u32,
    pub takes: u32,
    /// The provider's name, and the identity its cache key holds.
    pub provider: &'a str,
    pub provider_id: &'a str,
    pub lane: render_pipeline::provider::Lane,
    pub priority: render_pipeline::shotlist::Priority,
    pub model: &'a Model,
    pub size: Size,
    pub seconds: u32,
    pub key: RequestKey,
    /// At the price of its lane; zero when cached.
    pub cost_usd: Usd,
    pub standard_cost_usd: Usd,
    /// At the Batch price, where the provider offers a Batch lane.
    pub batch_cost_usd: Option<Usd>,
    pub cached: bool,
    pub reference: Option<ReferenceJson<'a>>,
    pub tags: &'a [String],
    pub source: String,
}

#[derive(Debug, Serialize)]
pub struct ReferenceJson<'a> {
    pub path: String,
    pub sha256: String,
    pub mime: &'a str,
    pub bytes: u64,
}

pub fn plan_json(run: &PlanRun, budget: Option<Usd>) -> PlanJson<'_> {
    let empty = Plan::default();
    let plan = run.plan.as_ref().unwrap_or(&empty);
    let over_budget = budget.is_some_and(|b| plan.check_budget(b).is_err());
    PlanJson {
        valid: run.is_valid(),
        project: run.plan.as_ref().and_then(|p| p.project.as_deref()),
        provider: plan.provider_summary(),
        requests: plan.requests.len(),
        cached: plan.cached_count(),
        total_usd: plan.total(),
        standard_usd: plan.standard_total(),
        saving_usd: plan.saving(),
        budget_usd: budget,
        over_budget,
        by_model_size: plan
            .subtotals()
            .into_iter()
            .map(|s| SubtotalJson {
                model: s.model,
                size: s.size,
                requests: s.requests,
                cached: s.cached,
                seconds: s.seconds,
                total_usd: s.cost,
                standard_usd: s.standard_cost,
            })
            .collect(),
        shots: run
            .plan
            .iter()
            .flat_map(|p| &p.requests)
            .map(|r| RequestJson {
                id: &r.shot_id,
                take: r.take,
                takes: r.takes,
                provider: &r.provider_name,
                provider_id: &r.provider,
                lane: r.lane,
                priority: r.priority,
                model: &r.model,
                size: r.size,
                seconds: r.seconds.0,
                key: r.key,
                cost_usd: r.cost,
                standard_cost_usd: r.standard_cost,
                batch_cost_usd: r.batch_cost,
                cached: r.cached,
                reference: r.reference.as_ref().map(|f| ReferenceJson {
                    path: f.path.display().to_string(),
                    sha256: f.sha256.hex(),
                    mime: f.mime,
                    bytes: f.bytes,
                }),
                tags: &r.tags,
                source: r.source.display().to_string(),
            })
            .collect(),
        diagnostics: &run.diagnostics,
    }
}

/// Prints a planning run: diagnostics (on stderr) and the table (on stdout), or one JSON
/// document on stdout. Over budget, says so on stderr.
pub fn print_run(run: &PlanRun, budget: Option<Usd>, json: bool) -> std::io::Result<()> {
    if json {
        let doc = plan_json(run, budget);
        let mut stdout = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut stdout, &doc)?;
        return writeln!(stdout);
    }
    print_diagnostics(&run.diagnostics, &run.inputs)?;
    let Some(plan) = &run.plan else {
        let errors = run.diagnostics.iter().filter(|d| d.is_error()).count();
        return writeln!(
            std::io::stderr(),
            "error: {errors} problem(s) in the shot lists; nothing was planned"
        );
    };
    std::io::stdout()
        .lock()
        .write_all(render_table(plan, budget).as_bytes())?;
    if let Some(Err(over)) = budget.map(|b| plan.check_budget(b)) {
        print_over_budget(&over);
    }
    Ok(())
}

pub fn print_diagnostics(
    diagnostics: &[Diagnostic],
    sources: &[ShotListInput],
) -> std::io::Result<()> {
    let stderr = std::io::stderr();
    let color = super::terminal::color();
    stderr
        .lock()
        .write_all(render_diagnostics(diagnostics, sources, color).as_bytes())
}

/// The refusal of a plan over `--budget`, the one wording `plan`, `submit`, `nightly` and
/// `retry` share.
pub fn print_over_budget(over: &OverBudget) {
    super::output::error(format_args!(
        "{over}\n  = help: raise --budget, cut takes or shots, or use cheaper sizes"
    ));
}
