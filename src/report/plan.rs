//! What `render plan` shows: diagnostics with source excerpts, the priced table and totals, or
//! the same facts as one JSON document.
//!
//! Rendering functions return strings (so tests can snapshot them); `print_*` write them.

use std::io::Write;

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
use serde::Serialize;

use render_pipeline::plan::{OverBudget, Plan, PlanRun, PlannedRequest};
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
    let primary = byte_range(source, d.offset, d.len);
    let related: Vec<_> = d
        .related
        .iter()
        .filter(|r| r.path == d.path && r.line > 0)
        .map(|r| (byte_range(source, r.offset, r.len), r.line, &r.label))
        .collect();
    // Only the lines the annotations stand on go to the renderer, not the whole list (which
    // may be megabytes, for a warning on one line).
    let spans = std::iter::once((&primary, d.line)).chain(related.iter().map(|(s, l, _)| (s, *l)));
    let (first, first_line) = spans
        .clone()
        .min_by_key(|(span, _)| span.start)
        .map(|(span, line)| (line_start(source, span.start), line))
        .unwrap_or((0, 1));
    let last = spans
        .map(|(span, _)| line_end(source, span.end))
        .max()
        .unwrap_or(source.len());
    let shift = |span: &std::ops::Range<usize>| span.start - first..span.end - first;
    let mut snippet = Snippet::source(&source[first..last])
        .line_start(first_line as usize)
        .annotation(AnnotationKind::Primary.span(shift(&primary)));
    for (span, _, label) in &related {
        snippet = snippet.annotation(
            AnnotationKind::Context
                .span(shift(span))
                .label(label.as_str()),
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

/// Where the line holding byte `at` starts.
fn line_start(source: &str, at: usize) -> usize {
    source[..at].rfind('\n').map_or(0, |newline| newline + 1)
}

/// Where the line holding byte `at` ends (before its newline).
fn line_end(source: &str, at: usize) -> usize {
    source[at..]
        .find('\n')
        .map_or(source.len(), |newline| at + newline)
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
/// total and the saving, as one string (for tests; [`write_table`] streams it).
pub fn render_table(plan: &Plan, budget: Option<Usd>) -> String {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail, and every cell is UTF-8.
    write_table(plan, budget, &mut out).expect("writing into memory");
    String::from_utf8(out).expect("the table is UTF-8")
}

/// Writes the table of requests, then the totals, into `out` as it goes: a plan of a hundred
/// thousand requests is never held as text.
pub fn write_table(plan: &Plan, budget: Option<Usd>, out: &mut impl Write) -> std::io::Result<()> {
    let requests = Table {
        headings: [
            "shot", "take", "provider", "lane", "model", "size", "seconds", "cost", "batch",
            "cached",
        ],
        right: [
            false, true, false, false, false, false, true, true, true, false,
        ],
    };
    requests.write(out, &plan.requests, |r, row| {
        row.cell(&r.shot_id);
        row.cell_fmt(format_args!("{}/{}", r.take, r.takes));
        row.cell(&r.provider_name);
        row.cell(lane_label(r));
        row.cell(r.model.as_str());
        row.cell_fmt(format_args!("{}", r.size));
        row.cell_fmt(format_args!("{}", r.seconds.0));
        row.cell_fmt(format_args!("{}", r.cost()));
        // The Batch price where the provider offers one, to compare with what applies.
        match r.batch_cost {
            Some(cost) => row.cell_fmt(format_args!("{cost}")),
            None => row.cell("-"),
        }
        row.cell(if r.cached { "cached" } else { "" });
    })?;
    out.write_all(b"\n")?;
    let totals = Table {
        headings: [
            "model", "size", "requests", "cached", "seconds", "batch", "standard",
        ],
        right: [false, false, true, true, true, true, true],
    };
    totals.write(out, &plan.subtotals(), |s, row| {
        row.cell(s.model.as_str());
        row.cell_fmt(format_args!("{}", s.size));
        row.cell_fmt(format_args!("{}", s.requests));
        row.cell_fmt(format_args!("{}", s.cached));
        row.cell_fmt(format_args!("{}", s.seconds));
        row.cell_fmt(format_args!("{}", s.cost));
        row.cell_fmt(format_args!("{}", s.standard_cost));
    })?;
    out.write_all(b"\n")?;
    writeln!(
        out,
        "{} requests, {} cached",
        plan.requests.len(),
        plan.cached_count()
    )?;
    let mut label = |name: &str, value: Usd| writeln!(out, "{name:<22}{value:>12}");
    label("Total", plan.total())?;
    label("At standard rates", plan.standard_total())?;
    label("Saving", plan.saving())?;
    if let Some(budget) = budget {
        label("Budget", budget)?;
    }
    Ok(())
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

/// A table of `N` columns, left- or right-aligned, separated by two spaces, each line without
/// trailing whitespace. Its rows are formatted twice, once to measure the columns and once to
/// write them: nothing of the table is kept, which for a hundred thousand rows (a million
/// cells) would cost more than the shot list itself.
struct Table<const N: usize> {
    headings: [&'static str; N],
    right: [bool; N],
}

impl<const N: usize> Table<N> {
    fn write<T>(
        &self,
        out: &mut impl Write,
        items: &[T],
        fill: impl Fn(&T, &mut Row<N>),
    ) -> std::io::Result<()> {
        let mut widths = self.headings.map(chars);
        let mut row = Row::new();
        for item in items {
            row.refill(item, &fill);
            for (width, cell) in widths.iter_mut().zip(row.cells()) {
                *width = (*width).max(chars(cell));
            }
        }
        let mut line = String::new();
        self.write_line(out, &mut line, self.headings.into_iter(), &widths)?;
        for item in items {
            row.refill(item, &fill);
            self.write_line(out, &mut line, row.cells(), &widths)?;
        }
        Ok(())
    }

    fn write_line<'c>(
        &self,
        out: &mut impl Write,
        line: &mut String,
        cells: impl Iterator<Item = &'c str>,
        widths: &[usize; N],
    ) -> std::io::Result<()> {
        line.clear();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = widths[i] - chars(cell);
            if self.right[i] {
                spaces(line, pad);
                line.push_str(cell);
            } else {
                line.push_str(cell);
                spaces(line, pad);
            }
        }
        out.write_all(line.trim_end().as_bytes())?;
        out.write_all(b"\n")
    }
}

/// One row's cells, formatted into one reused buffer.
struct Row<const N: usize> {
    text: String,
    /// Where each cell ends in `text`.
    ends: [usize; N],
    filled: usize,
}

impl<const N: usize> Row<N> {
    fn new() -> Row<N> {
        Row {
            text: String::new(),
            ends: [0; N],
            filled: 0,
        }
    }

    fn refill<T>(&mut self, item: &T, fill: &impl Fn(&T, &mut Row<N>)) {
        self.text.clear();
        self.filled = 0;
        fill(item, self);
        debug_assert_eq!(self.filled, N, "a row fills every column");
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
        self.ends[self.filled] = self.text.len();
        self.filled += 1;
    }

    fn cells(&self) -> impl Iterator<Item = &str> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(start, end)| &self.text[start..end])
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
    pub shots: ShotsJson<'a>,
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

/// The plan's requests, each turned into its JSON form as it is written: a plan of a hundred
/// thousand requests is not copied first.
#[derive(Debug)]
pub struct ShotsJson<'a>(&'a [PlannedRequest]);

impl Serialize for ShotsJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(RequestJson::of))
    }
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

impl<'a> RequestJson<'a> {
    fn of(r: &'a PlannedRequest) -> RequestJson<'a> {
        RequestJson {
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
            cost_usd: r.cost(),
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
        }
    }
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
        shots: ShotsJson(run.plan.as_ref().map_or(&[], |p| &p.requests)),
        diagnostics: &run.diagnostics,
    }
}

/// Prints a planning run: diagnostics (on stderr) and the table (on stdout), or one JSON
/// document on stdout. Over budget, says so on stderr.
pub fn print_run(run: &PlanRun, budget: Option<Usd>, json: bool) -> std::io::Result<()> {
    if json {
        let doc = plan_json(run, budget);
        let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
        serde_json::to_writer_pretty(&mut stdout, &doc)?;
        writeln!(stdout)?;
        return stdout.flush();
    }
    print_diagnostics(&run.diagnostics, &run.inputs)?;
    let Some(plan) = &run.plan else {
        let errors = run.diagnostics.iter().filter(|d| d.is_error()).count();
        return writeln!(
            std::io::stderr(),
            "error: {errors} problem(s) in the shot lists; nothing was planned"
        );
    };
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    write_table(plan, budget, &mut stdout)?;
    stdout.flush()?;
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
