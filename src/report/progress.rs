//! Progress for long work: indicatif bars on a terminal, plain log lines elsewhere, nothing
//! with `--format json` (scripts read the final JSON document on stdout).

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::terminal::escape_controls;
use crate::events::{Event, EventSink};
use crate::harvest::human_duration;

/// Renders engine events for people.
pub struct Progress {
    mode: Mode,
}

enum Mode {
    Bars(Bars),
    Lines,
    Quiet,
}

struct Bars {
    _multi: MultiProgress,
    status: ProgressBar,
    videos: ProgressBar,
    bytes: ProgressBar,
    nearest_expiry: Mutex<Option<i64>>,
}

impl Progress {
    /// Bars when stderr is a terminal, lines otherwise; `quiet` for machine-readable runs.
    pub fn new(quiet: bool) -> Progress {
        let mode = if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bars(Bars::new())
        } else {
            Mode::Lines
        };
        Progress { mode }
    }

    pub fn finish(&self) {
        if let Mode::Bars(bars) = &self.mode {
            bars.status.finish_and_clear();
            // Abandon, not finish: finishing jumps the position to the length (0 for bytes).
            bars.videos.abandon();
            bars.bytes.abandon();
        }
    }
}

impl Bars {
    fn new() -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let status = multi.add(ProgressBar::new_spinner());
        status.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("valid template"));
        let videos = multi.add(ProgressBar::new(0));
        videos.set_style(
            ProgressStyle::with_template("videos [{bar:30}] {pos}/{len} {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        let bytes = multi.add(ProgressBar::new(0));
        bytes.set_style(
            ProgressStyle::with_template("bytes  {binary_bytes} at {binary_bytes_per_sec}")
                .expect("valid template"),
        );
        Bars {
            _multi: multi,
            status,
            videos,
            bytes,
            nearest_expiry: Mutex::new(None),
        }
    }

    fn show(&self, event: &Event) {
        match event {
            Event::BatchStatus {
                outputs_expire_in, ..
            } => {
                if let Some(left) = outputs_expire_in {
                    let mut nearest = self
                        .nearest_expiry
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    let left = nearest.map_or(*left, |n| n.min(*left));
                    *nearest = Some(left);
                    self.videos.set_message(format!(
                        "· {} left before the nearest expiry",
                        human_duration(left)
                    ));
                }
                self.status.set_message(line_for(event).unwrap_or_default());
                self.status.tick();
            }
            // Deadlines are per round: a batch harvested since no longer counts.
            Event::PollStarted { .. } => {
                *self
                    .nearest_expiry
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = None;
            }
            Event::DownloadsPlanned { videos } => self.videos.inc_length(*videos),
            Event::DownloadProgress { bytes } => self.bytes.inc(*bytes),
            Event::VideoHarvested { .. } => self.videos.inc(1),
            other => {
                if let Some(line) = line_for(other) {
                    self.status.println(line);
                }
            }
        }
    }
}

impl EventSink for Progress {
    fn emit(&self, event: Event) {
        // The log file keeps the night's story whatever the terminal shows.
        if let Some(line) = line_for(&event) {
            tracing::info!(target: "render::night", "{line}");
        }
        match &self.mode {
            // Stdout is the JSON document; warnings still belong on stderr.
            Mode::Quiet => {
                if let Event::Warning { .. } = &event
                    && let Some(line) = line_for(&event)
                {
                    eprintln!("{line}");
                }
            }
            Mode::Bars(bars) => bars.show(&event),
            Mode::Lines => {
                if let Some(line) = line_for(&event) {
                    eprintln!("{line}");
                }
            }
        }
    }
}

/// The plain-text line for an event, or `None` for events too frequent to log one by one.
/// Ids and messages come from servers: their control characters are shown escaped.
fn line_for(event: &Event) -> Option<String> {
    describe(event).map(|line| escape_controls(&line).into_owned())
}

fn describe(event: &Event) -> Option<String> {
    Some(match event {
        Event::RunStarted {
            run_id,
            resumed,
            requests,
        } => {
            let verb = if *resumed { "continuing" } else { "starting" };
            format!("{verb} run {run_id} ({requests} requests)")
        }
        Event::AssetUploaded {
            sha256,
            file_id,
            bytes,
        } => {
            format!(
                "uploaded reference {} as {file_id} ({bytes} bytes)",
                &sha256[..12]
            )
        }
        Event::AssetReused { sha256, file_id } => {
            format!("reusing reference {} ({file_id})", &sha256[..12])
        }
        Event::BatchCreated {
            part,
            batch_id,
            requests,
            ..
        } => format!("created batch {batch_id} (part {part}, {requests} requests)"),
        Event::JobCreated {
            provider,
            shot_id,
            video_id,
            adopted,
            ..
        } => match adopted {
            false => format!("sent {shot_id} to {provider} as job {video_id}"),
            true => format!(
                "found job {video_id} of {shot_id} on {provider}, sent by an interrupted run"
            ),
        },
        Event::BatchAdopted { part, batch_id, .. } => {
            format!("found batch {batch_id} (part {part}) created by an interrupted run")
        }
        Event::BatchStatus {
            batch_id,
            status,
            completed,
            failed,
            total,
            outputs_expire_in,
        } => {
            let expiry = outputs_expire_in
                .map(|s| format!(", videos deleted in {}", human_duration(s)))
                .unwrap_or_default();
            format!(
                "batch {batch_id}: {status} ({completed} done, {failed} failed of {total}{expiry})"
            )
        }
        Event::VideoHarvested { shot_id, bytes, .. } => {
            format!("harvested {shot_id} ({bytes} bytes)")
        }
        Event::RequestFailed {
            shot_id,
            code,
            message,
            ..
        } => format!(
            "failed {shot_id}: {}{message}",
            code.as_deref()
                .map(|c| format!("[{c}] "))
                .unwrap_or_default()
        ),
        Event::RequestLost {
            shot_id, reason, ..
        } => format!("lost {shot_id}: {reason}"),
        Event::Warning { message } => format!("warning: {message}"),
        Event::PollStarted { .. }
        | Event::DownloadsPlanned { .. }
        | Event::DownloadProgress { .. } => return None,
    })
}
