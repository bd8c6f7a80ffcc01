//! What `render plan` shows: diagnostics with source excerpts, the priced table and totals, or
//! the same facts as one JSON document.
//!
//! Rendering functions return strings (so tests can snapshot them); `print_*` write them.

use std::io::Write;

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
use serde::Serialize;

use crate::catalog::{Model, Size};
use crate::key::RequestKey;
use crate::money::Usd;
use crate::plan::{OverBudget, Plan, PlanRun, Subtotal};
use crate::shotlist::{Diagnostic, Severity, ShotListInput};

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
    let mut rows: Vec<[String; 10]> = vec![
        [
            "shot", "take", "provider", "lane", "model", "size", "seconds", "cost", "batch",
            "cached",
        ]
        .map(String::from),
    ];
    for r in &plan.requests {
        rows.push([
            r.shot_id.clone(),
            format!("{}/{}", r.take, r.takes),
            r.provider_name.clone(),
            lane_label(r),
            r.model.to_string(),
            r.size.to_string(),
            r.seconds.0.to_string(),
            r.cost.to_string(),
            // The Batch price where the provider offers one, to compare with what applies.
            r.batch_cost
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
            if r.cached {
                "cached".into()
            } else {
                String::new()
            },
        ]);
    }
    let mut out = columns(
        &rows,
        &[
            false, true, false, false, false, false, true, true, true, false,
        ],
    );
    out.push('\n');
    let mut totals: Vec<[String; 7]> = vec![
        [
            "model", "size", "requests", "cached", "seconds", "batch", "standard",
        ]
        .map(String::from),
    ];
    for s in plan.subtotals() {
        totals.push(subtotal_row(&s));
    }
    out.push_str(&columns(
        &totals,
        &[false, false, true, true, true, true, true],
    ));
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
fn lane_label(r: &crate::plan::PlannedRequest) -> String {
    match (r.lane, r.priority) {
        (crate::provider::Lane::Direct, crate::shotlist::Priority::Rush) => "direct (rush)".into(),
        (lane, _) => lane.to_string(),
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

/// Left- or right-aligned columns separated by two spaces; the first row is the heading.
fn columns<const N: usize>(rows: &[[String; N]], right: &[bool; N]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            if right[i] {
                line.push_str(&format!("{cell:>width$}", width = widths[i]));
            } else {
                line.push_str(&format!("{cell:<width$}", width = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
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
    pub lane: crate::provider::Lane,
    pub priority: crate::shotlist::Priority,
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
        print_over_budget(&over)?;
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

pub fn print_over_budget(over: &OverBudget) -> std::io::Result<()> {
    writeln!(std::io::stderr(), "error: {over}")?;
    writeln!(
        std::io::stderr(),
        "  = help: raise --budget, cut takes or shots, or use cheaper sizes"
    )
}
