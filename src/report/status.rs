//! `render status` for people: a line per run with its counts and the time left, its batches
//! and jobs, and with `--shots` a table of every request. Everything a server said is shown
//! with its control characters escaped.

use std::fmt::Write as _;

use serde::Serialize;

use super::terminal::escape_controls;
use render_pipeline::harvest::human_duration;
use render_pipeline::status::{Freshness, RunStatus, ShotStatus};

/// The whole text for these runs (`render status`).
pub fn render_runs(runs: &[RunStatus]) -> String {
    if runs.is_empty() {
        return "no runs yet (`render submit SHOTLIST` starts one)\n".into();
    }
    let mut out = String::new();
    for run in runs {
        render_run(&mut out, run);
    }
    out
}

fn render_run(out: &mut String, run: &RunStatus) {
    let c = &run.counts;
    // A finished run with losses is not "done" in the sense a supervisor means.
    let state = match (run.done, run.cancelled) {
        (_, true) => "cancelled".to_string(),
        (true, false) if c.failed + c.lost == 0 => "done".to_string(),
        (true, false) => format!("finished: {} failed, {} lost", c.failed, c.lost),
        (false, false) => "open".to_string(),
    };
    let _ = writeln!(
        out,
        "{}  {}  [{state}]",
        run.run_id,
        escape_controls(run.project.as_deref().unwrap_or("-"))
    );
    let _ = writeln!(
        out,
        "  {} requests: {} harvested, {} failed, {} lost, {} pending",
        run.requests, c.harvested, c.failed, c.lost, c.pending
    );
    if let Some(left) = run.expires_in {
        let line = if left <= 0 {
            "  videos not yet downloaded have expired".to_string()
        } else {
            format!(
                "  videos not yet downloaded are deleted in {} (provider's clock)",
                human_duration(left)
            )
        };
        let _ = writeln!(out, "{line}");
    }
    if run.freshness == Freshness::AsOfLastHarvest {
        let _ = writeln!(out, "  as of the last harvest:");
        for why in &run.not_asked {
            let _ = writeln!(out, "    {}", escape_controls(why));
        }
    }
    for b in &run.batches {
        let expiry = match (b.harvested, b.outputs_expire_in) {
            (true, _) => "harvested".to_string(),
            (false, Some(left)) if left <= 0 => "videos expired".to_string(),
            (false, Some(left)) => format!("deleted in {}", human_duration(left)),
            (false, None) => String::new(),
        };
        let line = format!(
            "  part {} {} {}: {}/{} done, {} failed  {expiry}",
            b.part,
            escape_controls(b.batch_id.as_deref().unwrap_or("(not created)")),
            escape_controls(&b.status),
            b.completed,
            b.requests,
            b.failed,
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    for job in &run.jobs {
        let progress = job.progress.map(|p| format!(" {p}%")).unwrap_or_default();
        let _ = writeln!(
            out,
            "  job  {:<20} {:<12} {} {}{progress}",
            escape_controls(&job.shot_id),
            escape_controls(&job.provider),
            escape_controls(job.video_id.as_deref().unwrap_or("(not confirmed)")),
            escape_controls(&job.status),
        );
    }
    if let Some(shots) = &run.shots {
        out.push_str(&render_shots(shots));
    }
}

/// A row fits an 80-column terminal: a failure's reason is cut to what is left (all of it is in
/// the JSON and the manifest), but never below a readable few words.
const TABLE_WIDTH: usize = 80;
const MIN_REASON_WIDTH: usize = 16;

fn shorten(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut short: String = text.chars().take(width - 1).collect();
    short.push('…');
    short
}

/// The `--shots` table: one row per request, columns as wide as their widest cell.
pub fn render_shots(shots: &[ShotStatus]) -> String {
    const HEADER: [&str; 8] = [
        "SHOT",
        "TAKE",
        "PROVIDER",
        "LANE",
        "STATUS",
        "DONE",
        "COST",
        "DEADLINE / REASON",
    ];
    let rows: Vec<[String; 8]> = shots
        .iter()
        .map(|s| {
            let last = match (&s.reason, s.deadline_in) {
                (Some(reason), _) => escape_controls(reason).into_owned(),
                (None, Some(left)) if left <= 0 => "expired".into(),
                (None, Some(left)) => format!("in {}", human_duration(left)),
                (None, None) => String::new(),
            };
            [
                escape_controls(&s.shot_id).into_owned(),
                s.take.to_string(),
                escape_controls(&s.provider).into_owned(),
                s.lane.as_str().to_string(),
                s.status.to_string(),
                s.progress.map(|p| format!("{p}%")).unwrap_or_default(),
                s.cost_usd.to_string(),
                last,
            ]
        })
        .collect();
    let mut widths = HEADER.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let before_last: usize = 2 + widths[..7].iter().map(|w| w + 2).sum::<usize>();
    let last_width = TABLE_WIDTH
        .saturating_sub(before_last)
        .max(MIN_REASON_WIDTH);
    let rows = rows.into_iter().map(|mut row| {
        row[7] = shorten(&row[7], last_width);
        row
    });
    let mut out = String::new();
    for row in std::iter::once(HEADER.map(String::from)).chain(rows) {
        let mut line = String::from("  ");
        for (i, cell) in row.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            match i {
                // Numbers line up on the right.
                1 | 5 | 6 => {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                }
                7 => line.push_str(cell),
                _ => {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad));
                }
            }
            if i < 7 {
                line.push_str("  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use render_pipeline::provider::Lane;
    use render_pipeline::status::{BatchStatus, Counts, JobStatus};

    fn shot(id: &str, take: u32, status: &'static str) -> ShotStatus {
        ShotStatus {
            shot_id: id.into(),
            take,
            provider: "wan-farm".into(),
            lane: Lane::Direct,
            status,
            progress: None,
            cost_usd: "1.60".parse().unwrap(),
            deadline_in: None,
            reason: None,
        }
    }

    fn night() -> RunStatus {
        let mut shots = vec![
            shot("sq010_a", 1, "harvested"),
            shot("sq010_a", 2, "rendering"),
            shot("sq020_storm", 1, "failed"),
            shot("sq030_b", 1, "rendered"),
        ];
        shots[1].progress = Some(40);
        shots[2].reason = Some("refused by the content policy".into());
        shots[3].deadline_in = Some(5 * 3600 + 120);
        shots[3].lane = Lane::Batch;
        shots[3].provider = "default".into();
        RunStatus {
            run_id: "run-20261201-220000-abcd".into(),
            project: Some("harbour".into()),
            created_at: 1_796_162_400,
            done: false,
            cancelled: false,
            sources: vec!["shots.yaml".into()],
            requests: 4,
            counts: Counts {
                harvested: 1,
                failed: 1,
                lost: 0,
                pending: 2,
            },
            by_status: Default::default(),
            freshness: Freshness::Live,
            not_asked: vec![],
            expires_in: Some(5 * 3600 + 120),
            batches: vec![BatchStatus {
                provider: "default".into(),
                part: 1,
                batch_id: Some("batch_7f3a".into()),
                status: "completed".into(),
                requests: 1,
                completed: 1,
                failed: 0,
                outputs_expire_in: Some(5 * 3600 + 120),
                harvested: false,
                live: true,
            }],
            jobs: vec![JobStatus {
                shot_id: "sq010_a".into(),
                provider: "wan-farm".into(),
                video_id: Some("video_91".into()),
                status: "in_progress".into(),
                progress: Some(40),
                live: true,
            }],
            shots: Some(shots),
        }
    }

    #[test]
    fn the_status_of_a_night_with_every_request() {
        insta::assert_snapshot!(render_runs(&[night()]));
    }

    #[test]
    fn a_provider_that_cannot_be_asked_is_shown_as_of_the_last_harvest() {
        let mut run = night();
        run.shots = None;
        run.freshness = Freshness::AsOfLastHarvest;
        run.not_asked = vec!["wan-farm: not configured here, or no key".into()];
        let text = render_runs(&[run]);
        assert!(
            text.contains("as of the last harvest:\n    wan-farm: not configured"),
            "{text}"
        );
    }

    #[test]
    fn a_finished_run_with_losses_does_not_say_done() {
        let mut run = night();
        run.done = true;
        run.counts = Counts {
            harvested: 2,
            failed: 1,
            lost: 1,
            pending: 0,
        };
        let text = render_runs(&[run]);
        assert!(text.contains("[finished: 1 failed, 1 lost]"), "{text}");
    }

    #[test]
    fn server_text_is_escaped_and_rows_fit_eighty_columns() {
        let mut run = night();
        run.shots.as_mut().unwrap()[2].reason =
            Some("bad\x1b[31m, and a server's long story of why it was refused".into());
        let text = render_runs(&[run]);
        assert!(!text.contains('\x1b'), "{text}");
        assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
    }
}

/// `render status`: every run asked about (a JSON array), or their table.
#[derive(Serialize)]
#[serde(transparent)]
pub struct Statuses<'a>(pub &'a [RunStatus]);

impl super::output::Document for Statuses<'_> {
    fn write_human(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        out.write_all(render_runs(self.0).as_bytes())
    }
}
