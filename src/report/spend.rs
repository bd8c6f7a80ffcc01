//! The bill for people (a table), spreadsheets (CSV) and scripts (JSON), and the two lines a
//! night says about money: what it is about to spend, and what it spent.

use serde::Serialize;

use super::output::{self, Document, Format};
use super::terminal::escape_controls;
use render_pipeline::ledger::{Estimate, RunSpend};
use render_wire::money::Usd;

/// The bill of a set of runs, with its totals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bill {
    pub runs: Vec<RunSpend>,
}

impl Bill {
    pub fn total_planned(&self) -> Usd {
        self.runs.iter().map(|r| r.planned).sum()
    }

    pub fn total_billed(&self) -> Usd {
        self.runs.iter().map(|r| r.billed).sum()
    }

    pub fn total_saved(&self) -> Usd {
        self.runs.iter().map(RunSpend::saved).sum()
    }
}

/// One run in JSON and CSV. Money is a decimal string ("2.40"), as everywhere in `render`.
#[derive(Serialize)]
struct RunLine<'a> {
    run_id: &'a str,
    project: Option<&'a str>,
    started_at: String,
    requests: u64,
    rendered: u64,
    planned_usd: Usd,
    billed_usd: Usd,
    standard_usd: Usd,
    saved_usd: Usd,
}

impl<'a> From<&'a RunSpend> for RunLine<'a> {
    fn from(run: &'a RunSpend) -> RunLine<'a> {
        RunLine {
            run_id: &run.run_id,
            project: run.project.as_deref(),
            started_at: rfc3339(run.started_at),
            requests: run.requests,
            rendered: run.rendered,
            planned_usd: run.planned,
            billed_usd: run.billed,
            standard_usd: run.standard,
            saved_usd: run.saved(),
        }
    }
}

#[derive(Serialize)]
struct BillJson<'a> {
    runs: Vec<RunLine<'a>>,
    total_planned_usd: Usd,
    total_billed_usd: Usd,
    total_saved_usd: Usd,
}

/// The bill as one JSON document.
pub fn bill_json(bill: &Bill) -> serde_json::Value {
    let doc = BillJson {
        runs: bill.runs.iter().map(RunLine::from).collect(),
        total_planned_usd: bill.total_planned(),
        total_billed_usd: bill.total_billed(),
        total_saved_usd: bill.total_saved(),
    };
    serde_json::to_value(doc).expect("the bill serializes")
}

/// The bill as CSV: a header row, then one row per run (totals are the spreadsheet's to sum).
pub fn bill_csv(bill: &Bill) -> Result<String, csv::Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    if bill.runs.is_empty() {
        // serde writes the header with the first row; an empty bill still has its columns.
        writer.write_record(CSV_HEADER)?;
    }
    for run in &bill.runs {
        writer.serialize(RunLine::from(run))?;
    }
    let bytes = writer.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8(bytes).expect("csv of strings is UTF-8"))
}

const CSV_HEADER: [&str; 9] = [
    "run_id",
    "project",
    "started_at",
    "requests",
    "rendered",
    "planned_usd",
    "billed_usd",
    "standard_usd",
    "saved_usd",
];

/// The bill as a table: a row per run, then the totals.
pub fn bill_table(bill: &Bill) -> String {
    let header = [
        "run",
        "project",
        "started (UTC)",
        "planned",
        "billed",
        "saved",
    ]
    .map(String::from);
    let mut rows: Vec<[String; 6]> = bill
        .runs
        .iter()
        .map(|run| {
            [
                run.run_id.clone(),
                escape_controls(run.project.as_deref().unwrap_or("-")).into_owned(),
                human_time(run.started_at),
                run.planned.to_string(),
                run.billed.to_string(),
                run.saved().to_string(),
            ]
        })
        .collect();
    let runs = match bill.runs.len() {
        1 => "1 run".to_string(),
        n => format!("{n} runs"),
    };
    rows.push([
        format!("total ({runs})"),
        String::new(),
        String::new(),
        bill.total_planned().to_string(),
        bill.total_billed().to_string(),
        bill.total_saved().to_string(),
    ]);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    push_row(&mut out, &header, &widths);
    for row in &rows {
        push_row(&mut out, row, &widths);
    }
    out
}

/// Text columns left-aligned, money right-aligned (the last three), two spaces between.
fn push_row(out: &mut String, cells: &[String; 6], widths: &[usize; 6]) {
    let mut line = String::new();
    for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
        if i > 0 {
            line.push_str("  ");
        }
        if i >= 3 {
            line.push_str(&format!("{cell:>width$}"));
        } else {
            line.push_str(&format!("{cell:<width$}"));
        }
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

/// How `render spend` shows the bill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BillFormat {
    Table,
    Json,
    Csv,
}

pub fn print_bill(bill: &Bill, format: BillFormat) -> anyhow::Result<()> {
    match format {
        BillFormat::Table => output::print_text(&bill_table(bill)),
        BillFormat::Json => output::print_json(&bill_json(bill)),
        BillFormat::Csv => output::print_text(&bill_csv(bill)?),
    }
}

/// Said before a night sends anything (stdout, beside the night's other human lines).
pub fn print_about_to_spend(estimate: &Estimate) -> anyhow::Result<()> {
    output::note(Format::Human, about_to_spend_line(estimate))
}

/// A command's report with the money lines: fields of its one JSON document, or a line after
/// its human summary.
#[derive(Serialize)]
pub struct WithSpend<'a, D> {
    #[serde(flatten)]
    pub report: &'a D,
    #[serde(rename = "about_to_spend_usd")]
    pub about_to_spend: Usd,
    pub about_to_spend_requests: usize,
    pub about_to_spend_cached: usize,
    #[serde(rename = "spent_usd")]
    pub spent: Usd,
}

impl<'a, D: Document> WithSpend<'a, D> {
    pub fn new(report: &'a D, estimate: &Estimate, spent: Usd) -> Self {
        WithSpend {
            report,
            about_to_spend: estimate.cost,
            about_to_spend_requests: estimate.requests,
            about_to_spend_cached: estimate.cached,
            spent,
        }
    }
}

impl<D: Document> Document for WithSpend<'_, D> {
    fn write_human(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        self.report.write_human(out)?;
        writeln!(out, "{}", spent_line(self.spent))
    }
}

/// "about to spend $2.40 on 12 requests (4 cached, $0)": said before anything is sent.
pub fn about_to_spend_line(estimate: &Estimate) -> String {
    let requests = match estimate.requests {
        1 => "1 request".to_string(),
        n => format!("{n} requests"),
    };
    format!(
        "about to spend {} on {requests} ({} cached, $0)",
        estimate.cost, estimate.cached
    )
}

/// "spent $2.40": said at the end.
pub fn spent_line(spent: Usd) -> String {
    format!("spent {spent}")
}

/// Seconds since the epoch as RFC 3339 in UTC ("2026-12-01T23:07:23Z").
pub fn rfc3339(seconds: i64) -> String {
    format_time(seconds, "%Y-%m-%dT%H:%M:%SZ")
}

fn human_time(seconds: i64) -> String {
    format_time(seconds, "%Y-%m-%d %H:%M")
}

fn format_time(seconds: i64, pattern: &str) -> String {
    match chrono::DateTime::from_timestamp(seconds, 0) {
        Some(time) => time.format(pattern).to_string(),
        None => seconds.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str, planned: i64, billed: i64, standard: i64) -> RunSpend {
        RunSpend {
            run_id: id.into(),
            project: Some("demo".into()),
            started_at: 1_764_630_443,
            requests: 3,
            rendered: 2,
            planned: Usd::from_micros(planned),
            billed: Usd::from_micros(billed),
            standard: Usd::from_micros(standard),
        }
    }

    #[test]
    fn totals_are_the_sums_of_their_lines() {
        let bill = Bill {
            runs: vec![run("a", 600_000, 400_000, 800_000), run("b", 0, 0, 0)],
        };
        assert_eq!(bill.total_planned().to_string(), "$0.60");
        assert_eq!(bill.total_billed().to_string(), "$0.40");
        assert_eq!(bill.total_saved().to_string(), "$0.40");
        let json = bill_json(&bill);
        assert_eq!(json["runs"][0]["saved_usd"], "0.40");
        assert_eq!(json["runs"][0]["started_at"], "2025-12-01T23:07:23Z");
        assert_eq!(json["total_billed_usd"], "0.40");
    }

    #[test]
    fn csv_has_a_header_even_when_empty() {
        let empty = bill_csv(&Bill { runs: vec![] }).unwrap();
        assert_eq!(empty.lines().count(), 1);
        assert!(empty.starts_with("run_id,project,started_at,"));
        let one = bill_csv(&Bill {
            runs: vec![run("a", 600_000, 400_000, 800_000)],
        })
        .unwrap();
        let lines: Vec<&str> = one.lines().collect();
        assert_eq!(lines[0], CSV_HEADER.join(","));
        assert_eq!(
            lines[1],
            "a,demo,2025-12-01T23:07:23Z,3,2,0.60,0.40,0.80,0.40"
        );
    }

    #[test]
    fn says_what_a_night_is_about_to_spend() {
        let estimate = Estimate {
            requests: 1,
            cached: 4,
            cost: Usd::from_micros(200_000),
        };
        assert_eq!(
            about_to_spend_line(&estimate),
            "about to spend $0.20 on 1 request (4 cached, $0)"
        );
        assert_eq!(spent_line(Usd::ZERO), "spent $0.00");
    }
}
