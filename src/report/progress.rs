//! Progress for long work: indicatif bars on a terminal, plain log lines elsewhere, one JSON
//! object per event on stderr with `--format json` (scripts read the final document on stdout
//! and may follow the night on stderr), and nothing but warnings with `--quiet`.
//!
//! Bars appear only once they have something to count (no `videos 0/0` while submitting),
//! their length is the night's total from the start (it does not grow as passes find more),
//! messages are cut to the terminal's width rather than wrapped, and log lines are written
//! above the bars, never into them ([`LogWriter`]).

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::output::Format;
use super::terminal::escape_controls;
use render_pipeline::events::{Event, EventSink};
use render_pipeline::harvest::human_duration;

/// The log target of the night's events: the log file's record of what the terminal showed.
pub const NIGHT_LOG: &str = "render::night";

/// Renders engine events for people.
pub struct Progress {
    mode: Mode,
}

enum Mode {
    Bars(Bars),
    Lines,
    Json,
    Quiet,
}

struct Bars {
    multi: MultiProgress,
    status: ProgressBar,
    videos: ProgressBar,
    bytes: ProgressBar,
    videos_shown: AtomicBool,
    bytes_shown: AtomicBool,
    nearest_expiry: Mutex<Option<i64>>,
}

/// The bars on screen, if any: log lines go above them.
static ON_SCREEN: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// Where log lines go: stderr, above the progress bars when there are any, so a warning never
/// lands in the middle of a bar.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bars = ON_SCREEN.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match bars {
            Some(multi) => multi.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl Progress {
    /// Bars when stderr is a terminal, lines otherwise; JSON lines for scripts; warnings
    /// alone when `quiet`.
    pub fn new(format: Format, quiet: bool) -> Progress {
        let mode = if quiet {
            Mode::Quiet
        } else if format == Format::Json {
            Mode::Json
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
            // As cargo does: the bars go when the work is done; the command's summary says
            // what they counted.
            bars.videos.finish_and_clear();
            bars.bytes.finish_and_clear();
            bars.multi.clear().ok();
            *ON_SCREEN.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }
}

impl Bars {
    fn new() -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let status = multi.add(ProgressBar::new_spinner());
        status.set_style(
            ProgressStyle::with_template("{spinner} {wide_msg}").expect("valid template"),
        );
        // Not on screen until there is something to count.
        let videos = ProgressBar::new(0);
        videos.set_style(
            ProgressStyle::with_template("videos [{bar:24}] {pos}/{len} {wide_msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        let bytes = ProgressBar::new(0);
        bytes.set_style(
            ProgressStyle::with_template("bytes  {binary_bytes} at {binary_bytes_per_sec}")
                .expect("valid template"),
        );
        *ON_SCREEN.lock().unwrap_or_else(|e| e.into_inner()) = Some(multi.clone());
        Bars {
            multi,
            status,
            videos,
            bytes,
            videos_shown: AtomicBool::new(false),
            bytes_shown: AtomicBool::new(false),
            nearest_expiry: Mutex::new(None),
        }
    }

    fn show_once(&self, bar: &ProgressBar, shown: &AtomicBool) {
        if !shown.swap(true, Ordering::Relaxed) {
            self.multi.add(bar.clone());
        }
    }

    /// The videos bar's length: the night's total when harvest starts, grown only if the
    /// downloads planned outrun it (a request settled elsewhere meanwhile, say).
    fn expect_videos(&self, at_least: u64) {
        if at_least == 0 {
            return;
        }
        self.show_once(&self.videos, &self.videos_shown);
        if self.videos.length().unwrap_or(0) < at_least {
            self.videos.set_length(at_least);
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
            Event::HarvestStarted { videos } => self.expect_videos(*videos),
            Event::DownloadsPlanned { videos } => {
                self.expect_videos(self.videos.position() + videos)
            }
            Event::DownloadProgress { bytes } => {
                self.show_once(&self.bytes, &self.bytes_shown);
                self.bytes.inc(*bytes)
            }
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
            tracing::info!(target: NIGHT_LOG, "{line}");
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
            Mode::Json => write_json_line(&event),
            Mode::Lines => {
                if let Some(line) = line_for(&event) {
                    eprintln!("{line}");
                }
            }
        }
    }
}

/// One event as one line of JSON on stderr. Byte counts come with every chunk downloaded: too
/// many to write, and `video_harvested` carries each video's size.
fn write_json_line(event: &Event) {
    if matches!(event, Event::DownloadProgress { .. }) {
        return;
    }
    if let Ok(mut line) = serde_json::to_vec(event) {
        line.push(b'\n');
        let _ = LogWriter.write_all(&line);
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
            take,
            video_id,
            adopted,
            ..
        } => {
            let shot = shot_take(shot_id, *take);
            match adopted {
                false => format!("sent {shot} to {provider} as job {video_id}"),
                true => format!(
                    "found job {video_id} of {shot} on {provider}, sent by an interrupted run"
                ),
            }
        }
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
        Event::VideoHarvested {
            shot_id,
            take,
            bytes,
            ..
        } => {
            format!("harvested {} ({bytes} bytes)", shot_take(shot_id, *take))
        }
        Event::RequestFailed {
            shot_id,
            take,
            code,
            message,
            ..
        } => format!(
            "failed {}: {}{message}",
            shot_take(shot_id, *take),
            code.as_deref()
                .map(|c| format!("[{c}] "))
                .unwrap_or_default()
        ),
        Event::RequestLost {
            shot_id,
            take,
            reason,
            ..
        } => format!("lost {}: {reason}", shot_take(shot_id, *take)),
        Event::Warning { message } => format!("warning: {message}"),
        Event::PollStarted { .. }
        | Event::HarvestStarted { .. }
        | Event::DownloadsPlanned { .. }
        | Event::DownloadProgress { .. } => return None,
    })
}

/// `sq010_a take 2`: which take, in every message about one.
fn shot_take(shot_id: &str, take: u32) -> String {
    format!("{shot_id} take {}", take.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_about_a_request_names_its_take() {
        let events = [
            Event::VideoHarvested {
                shot_id: "sq010".into(),
                take: 2,
                key: "k".into(),
                bytes: 10,
            },
            Event::RequestFailed {
                shot_id: "sq010".into(),
                take: 2,
                key: "k".into(),
                code: None,
                message: "no".into(),
            },
            Event::RequestLost {
                shot_id: "sq010".into(),
                take: 2,
                key: "k".into(),
                reason: "expired".into(),
            },
            Event::JobCreated {
                provider: "lab".into(),
                shot_id: "sq010".into(),
                take: 2,
                key: "k".into(),
                video_id: "v".into(),
                adopted: false,
            },
        ];
        for event in &events {
            let line = line_for(event).unwrap();
            assert!(line.contains("sq010 take 2"), "{line}");
        }
    }
}
