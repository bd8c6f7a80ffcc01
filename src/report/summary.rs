//! What `submit`, `harvest`, `retry`, `cancel` and `report` say when they are done.

use std::io::{self, Write};
use std::path::PathBuf;

use serde::Serialize;

use super::output::Document;
use super::terminal::escape_controls;
use render_pipeline::cancel::Cancellation;
use render_pipeline::harvest::HarvestReport;
use render_pipeline::submit::SubmitReport;
use render_wire::money::Usd;

/// `1 request`, `2 requests`.
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl Document for SubmitReport {
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        let jobs = match (self.jobs_sent, self.jobs_waiting) {
            (0, 0) => String::new(),
            (sent, 0) => format!(", {sent} as direct jobs"),
            (sent, waiting) => format!(
                ", {sent} as direct jobs with {waiting} more waiting for a slot (harvest sends them)"
            ),
        };
        let refused = match self.skipped_rejected {
            0 => String::new(),
            n => format!(", {n} refused before for policy"),
        };
        let created = self.batches.iter().filter(|b| !b.adopted).count();
        writeln!(
            out,
            "run {}: {} submitted in {}{jobs} ({} cached, {} already in flight{refused})",
            self.run_id,
            count(self.submitted as u64, "request", "requests"),
            count(created as u64, "batch", "batches"),
            self.skipped_cached,
            self.skipped_in_flight,
        )?;
        for batch in &self.batches {
            let note = if batch.adopted { " (recovered)" } else { "" };
            writeln!(
                out,
                "  part {}: {} ({}){note}",
                batch.part,
                escape_controls(&batch.batch_id),
                count(batch.requests, "request", "requests")
            )?;
        }
        writeln!(
            out,
            "references: {} uploaded, {} reused",
            self.uploaded_assets, self.reused_assets
        )
    }
}

/// The JSONL files `submit --dry-run` wrote.
#[derive(Serialize)]
pub struct DryRunFiles {
    pub files: Vec<DryRunFile>,
}

#[derive(Serialize)]
pub struct DryRunFile {
    pub path: PathBuf,
    pub requests: usize,
}

impl Document for DryRunFiles {
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        for file in &self.files {
            let requests = count(file.requests as u64, "request", "requests");
            writeln!(out, "{} ({requests})", file.path.display())?;
        }
        Ok(())
    }
}

impl Document for HarvestReport {
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "downloaded {} ({} bytes)",
            count(self.downloaded_videos, "video", "videos"),
            self.downloaded_bytes
        )?;
        for run in &self.runs {
            let manifest = run
                .manifest
                .as_ref()
                .map(|m| format!(" — manifest {}", m.display()))
                .unwrap_or_default();
            writeln!(
                out,
                "{}: {} harvested, {} failed, {} lost, {} pending of {}{manifest}",
                run.run_id, run.harvested, run.failed, run.lost, run.pending, run.requests,
            )?;
        }
        Ok(())
    }
}

impl Document for Cancellation {
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "run {}: cancelled {} batch(es) and {} job(s); {} harvested request(s) kept",
            self.run_id,
            self.batches_cancelled.len(),
            self.jobs_cancelled,
            self.kept
        )?;
        if !self.batches_cancelled.is_empty() || self.jobs_left_running > 0 {
            writeln!(
                out,
                "  `render harvest` downloads what finished before the cancel"
            )?;
        }
        Ok(())
    }
}

/// What `render report` wrote, and the run's totals.
#[derive(Serialize)]
pub struct SheetWritten {
    pub sheet: PathBuf,
    pub manifest: PathBuf,
    pub run_id: String,
    pub requests: usize,
    pub harvested: usize,
    pub failed: usize,
    pub lost: usize,
    pub pending: usize,
    pub billed_usd: Usd,
    pub standard_usd: Usd,
    pub saved_usd: Usd,
}

impl Document for SheetWritten {
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "contact sheet {} — {}: {} harvested, {} failed, {} lost, {} pending of {}; billed {}, saved {}",
            self.sheet.display(),
            self.run_id,
            self.harvested,
            self.failed,
            self.lost,
            self.pending,
            self.requests,
            self.billed_usd,
            self.saved_usd,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use render_pipeline::harvest::RunSummary;
    use render_pipeline::lanes::batch::SubmittedBatch;

    fn human(document: &dyn Fn(&mut dyn Write) -> io::Result<()>) -> String {
        let mut out = Vec::new();
        document(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// What `submit` and `harvest` say, and the JSON document beside it, side by side.
    #[test]
    fn the_summaries_of_a_night() {
        let submitted = SubmitReport {
            run_id: "run-1".into(),
            requests: 12,
            submitted: 7,
            skipped_cached: 4,
            skipped_rejected: 1,
            jobs_sent: 2,
            jobs_waiting: 1,
            uploaded_assets: 2,
            reused_assets: 1,
            batches: vec![
                SubmittedBatch {
                    part: 1,
                    batch_id: "batch_a\u{1b}[2J".into(),
                    requests: 4,
                    adopted: false,
                },
                SubmittedBatch {
                    part: 2,
                    batch_id: "batch_b".into(),
                    requests: 1,
                    adopted: true,
                },
            ],
            ..SubmitReport::default()
        };
        let harvested = HarvestReport {
            downloaded_videos: 7,
            downloaded_bytes: 7 << 20,
            runs: vec![RunSummary {
                run_id: "run-1".into(),
                requests: 12,
                harvested: 10,
                failed: 1,
                lost: 1,
                pending: 0,
                manifest: Some("renders/night/manifest.json".into()),
                laid_out: None,
            }],
        };
        insta::assert_snapshot!(format!(
            "{}---\n{}",
            human(&|out| submitted.write_human(out)),
            human(&|out| harvested.write_human(out))
        ));
        insta::assert_json_snapshot!("harvest_json", harvested);
    }
}
