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
        writeln!(
            out,
            "run {}: {} requests submitted in {} batches{jobs} ({} cached, {} already in flight{refused})",
            self.run_id,
            self.submitted,
            self.batches.iter().filter(|b| !b.adopted).count(),
            self.skipped_cached,
            self.skipped_in_flight,
        )?;
        for batch in &self.batches {
            let note = if batch.adopted { " (recovered)" } else { "" };
            writeln!(
                out,
                "  part {}: {} ({} requests){note}",
                batch.part,
                escape_controls(&batch.batch_id),
                batch.requests
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
            writeln!(out, "{} ({} requests)", file.path.display(), file.requests)?;
        }
        Ok(())
    }
}

impl Document for HarvestReport {
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "downloaded {} videos ({} bytes)",
            self.downloaded_videos, self.downloaded_bytes
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
