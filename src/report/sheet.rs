//! The contact sheet: `index.html` beside `manifest.json`, the night as a supervisor reviews it —
//! a row per shot with its takes side by side, and a header that sums the night and its bill.
//!
//! The page opens offline from the folder: every media path is relative (the manifest's own),
//! and there are no scripts, fonts or anything fetched from elsewhere; the CSS is inline. It is
//! rendered by askama from `templates/sheet.html`, which escapes every value by default:
//! prompts, ids and server messages are other people's text.

use std::path::{Path, PathBuf};

use askama::Template;

use render_pipeline::outputs::{EntryStatus, FailureKind, Manifest, ManifestEntry};
use render_wire::money::Usd;

/// The sheet's file name, beside `manifest.json`.
pub const SHEET_NAME: &str = "index.html";

/// The standard-rate price of an entry (what its work costs outside the Batch lane), where the
/// catalog still knows its model and size: the ledger keeps only the price that was paid.
pub type StandardPrice<'a> = &'a dyn Fn(&ManifestEntry) -> Option<Usd>;

/// Renders the sheet of `manifest` and writes it atomically to `<out_dir>/index.html`.
pub fn write(manifest: &Manifest, standard: StandardPrice) -> std::io::Result<PathBuf> {
    let html = render(manifest, standard);
    let path = manifest.out_dir.join(SHEET_NAME);
    render_pipeline::fsutil::atomic_write(&path, html.as_bytes())?;
    Ok(path)
}

/// The sheet's HTML.
pub fn render(manifest: &Manifest, standard: StandardPrice) -> String {
    Page::of(manifest, standard)
        .render()
        .expect("the sheet's template renders every value it is given")
}

/// What the night adds up to: counts by status, and the bill.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub requests: usize,
    pub harvested: usize,
    pub failed: usize,
    pub lost: usize,
    pub pending: usize,
    /// Harvested work at the price of its lane; refused, failed, lost and cached work is free.
    pub billed: Usd,
    /// The same work at standard rates (where the catalog knows them).
    pub standard: Usd,
}

impl Totals {
    pub fn of(manifest: &Manifest, standard: StandardPrice) -> Totals {
        let mut totals = Totals {
            requests: manifest.requests.len(),
            ..Totals::default()
        };
        for entry in &manifest.requests {
            match entry.status {
                EntryStatus::Harvested => totals.harvested += 1,
                EntryStatus::Failed => totals.failed += 1,
                EntryStatus::Lost => totals.lost += 1,
                _ => totals.pending += 1,
            }
            let Some(billed) = billed(entry) else {
                continue;
            };
            totals.billed += billed;
            // A take laid out from the cache cost nothing tonight, so it saved nothing tonight.
            if billed > Usd::ZERO {
                totals.standard += standard(entry).unwrap_or(billed).max(billed);
            }
        }
        totals
    }

    pub fn saved(&self) -> Usd {
        self.standard.saturating_sub(self.billed)
    }
}

/// What an entry costs tonight: its lane's price once harvested; nothing otherwise.
fn billed(entry: &ManifestEntry) -> Option<Usd> {
    (entry.status == EntryStatus::Harvested).then_some(entry.cost_usd)
}

#[derive(Template)]
#[template(path = "sheet.html")]
struct Page {
    title: String,
    run_id: String,
    created: String,
    tiles: Vec<Tile>,
    bill: Vec<Tile>,
    shots: Vec<ShotRow>,
}

/// One figure of the header.
struct Tile {
    label: &'static str,
    value: String,
    /// A CSS class naming what the figure is about (`ok`, `bad`, …).
    tone: &'static str,
    note: String,
}

struct ShotRow {
    id: String,
    anchor: String,
    prompt: String,
    /// `2 takes · 1 ready`.
    summary: String,
    takes: Vec<TakeCard>,
}

struct TakeCard {
    take: u32,
    status: EntryStatus,
    /// `ready`, `refused`, `failed`, `lost` or `pending`: the badge and the card's CSS class.
    badge: String,
    /// URL-encoded paths relative to the page.
    video: Option<String>,
    thumbnail: Option<String>,
    facts: Vec<(&'static str, String)>,
    reason: Option<Reason>,
}

struct Reason {
    title: String,
    message: String,
    hint: String,
}

impl Page {
    fn of(manifest: &Manifest, standard: StandardPrice) -> Page {
        let totals = Totals::of(manifest, standard);
        Page {
            title: manifest
                .project
                .clone()
                .unwrap_or_else(|| "Untitled night".into()),
            run_id: manifest.run_id.clone(),
            created: created(manifest.created_at),
            tiles: count_tiles(&totals),
            bill: bill_tiles(&totals),
            shots: shot_rows(manifest, standard),
        }
    }
}

fn created(unix: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0) as u64);
    httpdate::fmt_http_date(at).replace("GMT", "UTC")
}

fn count_tiles(t: &Totals) -> Vec<Tile> {
    let tile = |label, n: usize, tone, note: &str| Tile {
        label,
        value: n.to_string(),
        tone: if n == 0 { "quiet" } else { tone },
        note: note.to_string(),
    };
    vec![
        tile("requests", t.requests, "plain", "takes asked for"),
        tile("harvested", t.harvested, "ok", "ready to review"),
        tile("failed", t.failed, "bad", "refused or errored"),
        tile("lost", t.lost, "warn", "expired: render retry"),
        tile("pending", t.pending, "info", "still rendering"),
    ]
}

fn bill_tiles(t: &Totals) -> Vec<Tile> {
    let percent = match t.standard.micros() {
        0 => String::new(),
        standard => format!("{}% ", t.saved().micros() * 100 / standard),
    };
    vec![
        Tile {
            label: "billed",
            value: t.billed.to_string(),
            tone: "plain",
            note: "harvested work, at its lane's price".into(),
        },
        Tile {
            label: "saved",
            value: t.saved().to_string(),
            tone: if t.saved() == Usd::ZERO {
                "quiet"
            } else {
                "ok"
            },
            note: format!("{percent}of {} at standard rates", t.standard),
        },
    ]
}

/// A row per shot, in the manifest's order, its takes in take order.
fn shot_rows(manifest: &Manifest, standard: StandardPrice) -> Vec<ShotRow> {
    let mut rows: Vec<ShotRow> = Vec::new();
    for entry in &manifest.requests {
        let card = take_card(entry, standard);
        match rows.iter_mut().find(|r| r.id == entry.shot_id) {
            Some(row) => row.takes.push(card),
            None => rows.push(ShotRow {
                id: entry.shot_id.clone(),
                anchor: format!("shot-{}", rows.len() + 1),
                prompt: entry.prompt.clone().unwrap_or_default(),
                summary: String::new(),
                takes: vec![card],
            }),
        }
    }
    for row in &mut rows {
        row.takes.sort_by_key(|t| t.take);
        row.summary = summary(&row.takes);
    }
    rows
}

fn summary(takes: &[TakeCard]) -> String {
    let ready = takes
        .iter()
        .filter(|t| t.status == EntryStatus::Harvested)
        .count();
    match takes.len() {
        1 => format!("1 take · {}", takes[0].badge),
        n => format!("{n} takes · {ready} ready"),
    }
}

fn take_card(entry: &ManifestEntry, standard: StandardPrice) -> TakeCard {
    TakeCard {
        take: entry.take,
        status: entry.status,
        badge: badge(entry).into(),
        video: entry.video_path.as_deref().map(url_path),
        thumbnail: entry.thumbnail_path.as_deref().map(url_path),
        facts: facts(entry, standard),
        reason: reason(entry),
    }
}

fn badge(entry: &ManifestEntry) -> &'static str {
    match (entry.status, entry.error.as_ref().map(|e| e.kind)) {
        (EntryStatus::Harvested, _) => "ready",
        (EntryStatus::Failed, Some(FailureKind::Policy)) => "refused",
        (EntryStatus::Failed, _) => "failed",
        (EntryStatus::Lost, _) => "lost",
        (EntryStatus::Pending, _) => "pending",
    }
}

fn facts(entry: &ManifestEntry, standard: StandardPrice) -> Vec<(&'static str, String)> {
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "—".into());
    vec![
        // Two columns, read across: what was rendered on the left, how and for what on the right.
        ("model", or_dash(entry.model.clone())),
        ("provider", or_dash(entry.provider.clone())),
        ("size", or_dash(entry.size.clone())),
        ("lane", entry.lane.to_string()),
        ("seconds", or_dash(entry.seconds.map(|s| format!("{s} s")))),
        ("cost", cost_fact(entry, standard)),
    ]
}

/// What the take cost tonight: its price once harvested (`cached` when it was laid out from
/// the cache at no charge), nothing when it failed, and its planned price while pending.
fn cost_fact(entry: &ManifestEntry, standard: StandardPrice) -> String {
    let cost = entry.cost_usd;
    match entry.status {
        EntryStatus::Harvested
            if cost == Usd::ZERO && standard(entry).is_some_and(|s| s > Usd::ZERO) =>
        {
            "$0.00 (cached)".into()
        }
        EntryStatus::Harvested => cost.to_string(),
        EntryStatus::Pending => format!("{cost} (planned)"),
        EntryStatus::Failed | EntryStatus::Lost => "not billed".into(),
    }
}

fn reason(entry: &ManifestEntry) -> Option<Reason> {
    let error = entry.error.as_ref();
    let message = error.map(|e| e.message.clone()).unwrap_or_default();
    let code = error
        .and_then(|e| e.code.clone())
        .map(|c| format!(" ({c})"))
        .unwrap_or_default();
    let (title, hint) = match (entry.status, error.map(|e| e.kind)) {
        (EntryStatus::Harvested, _) => return None,
        (EntryStatus::Failed, Some(FailureKind::Policy)) => (
            format!("Refused by the content policy{code}"),
            "Not retried: change the prompt.",
        ),
        (EntryStatus::Failed, _) => (
            format!("Server error{code}"),
            "Retryable: render retry sends it again.",
        ),
        (EntryStatus::Lost, _) => (
            format!("Lost: expired before harvest{code}"),
            "render retry sends it again.",
        ),
        (EntryStatus::Pending, _) => (
            "Pending".to_string(),
            "Still rendering or downloading: harvest again.",
        ),
    };
    Some(Reason {
        title,
        message,
        hint: hint.into(),
    })
}

/// A relative path as a URL path: each segment percent-encoded, so a shot id with a space, a
/// `#` or a `?` still names its file.
fn url_path(path: &Path) -> String {
    let mut url = String::new();
    for (i, segment) in path.iter().enumerate() {
        if i > 0 {
            url.push('/');
        }
        for byte in segment.to_string_lossy().bytes() {
            match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    url.push(byte as char)
                }
                _ => url.push_str(&format!("%{byte:02X}")),
            }
        }
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;
    use render_pipeline::outputs::EntryError;
    use render_pipeline::provider::Lane;

    fn entry(shot: &str, take: u32, status: &str, cost: &str) -> ManifestEntry {
        let status: EntryStatus = serde_json::from_value(serde_json::json!(status)).unwrap();
        let stem = if take > 1 {
            format!("{shot}_take{take}")
        } else {
            shot.to_string()
        };
        let harvested = status == EntryStatus::Harvested;
        ManifestEntry {
            shot_id: shot.into(),
            take,
            key: format!("{:064x}", take),
            provider: Some("default".into()),
            lane: Lane::Batch,
            model: Some("sora-2".into()),
            size: Some("1280x720".into()),
            seconds: Some(8),
            prompt: Some(format!("The prompt of {shot}")),
            cost_usd: cost.parse().unwrap(),
            status,
            video_id: Some(format!("video_{shot}_{take}")),
            sha256: None,
            bytes: None,
            video_path: harvested.then(|| PathBuf::from(format!("{stem}.mp4"))),
            thumbnail_path: harvested.then(|| PathBuf::from(format!("{stem}.jpg"))),
            error: None,
        }
    }

    fn refused(mut e: ManifestEntry) -> ManifestEntry {
        e.error = Some(EntryError {
            code: Some("moderation_blocked".into()),
            message: "Your request was blocked by our moderation system.".into(),
            retryable: false,
            kind: FailureKind::Policy,
        });
        e
    }

    /// A night of every kind of take: two harvested takes, a cached one, a direct-lane rush,
    /// a refusal, a server failure, a lost take and a pending one.
    fn night() -> Manifest {
        let mut rush = entry("s03 rush #1", 1, "harvested", "0.80");
        rush.lane = Lane::Direct;
        rush.thumbnail_path = None;
        let mut failed = entry("s05-storm", 1, "failed", "0.40");
        failed.error = Some(EntryError {
            code: Some("server_error".into()),
            message: "The render crashed.".into(),
            retryable: true,
            kind: FailureKind::Server,
        });
        let mut lost = entry("s06-dawn", 1, "lost", "0.40");
        lost.error = Some(EntryError {
            code: Some("video_expired".into()),
            message: "expired before harvest".into(),
            retryable: true,
            kind: FailureKind::Lost,
        });
        Manifest {
            version: 1,
            run_id: "run-20261201-0001".into(),
            project: Some("harbour-night".into()),
            created_at: 1_796_170_000,
            out_dir: PathBuf::from("renders/harbour-night"),
            total_cost_usd: "3.20".parse().unwrap(),
            requests: vec![
                entry("s01-harbour", 1, "harvested", "0.40"),
                entry("s01-harbour", 2, "harvested", "0.40"),
                entry("s02-alley", 1, "harvested", "0.00"),
                rush,
                refused(entry("s04-hero", 1, "failed", "0.40")),
                failed,
                lost,
                entry("s07-ferry", 1, "pending", "0.40"),
            ],
            superseded: vec![],
            newer_run: None,
        }
    }

    /// sora-2 at 1280x720: $0.10 a second standard, $0.05 on Batch.
    fn standard(entry: &ManifestEntry) -> Option<Usd> {
        Some(Usd::from_micros(100_000) * entry.seconds?)
    }

    #[test]
    fn the_bill_counts_harvested_work_at_its_lane_price() {
        let totals = Totals::of(&night(), &standard);
        assert_eq!(
            (totals.harvested, totals.failed, totals.lost, totals.pending),
            (4, 2, 1, 1)
        );
        // 0.40 + 0.40 + 0.00 (cached) + 0.80 (direct): refused, failed, lost, pending are free.
        assert_eq!(totals.billed, "1.60".parse::<Usd>().unwrap());
        // Standard: 0.80 + 0.80 + nothing for the cached take + 0.80 for the rush.
        assert_eq!(totals.standard, "2.40".parse::<Usd>().unwrap());
        assert_eq!(totals.saved(), "0.80".parse::<Usd>().unwrap());
    }

    #[test]
    fn an_unknown_standard_rate_saves_nothing() {
        let totals = Totals::of(&night(), &|_| None);
        assert_eq!(totals.standard, totals.billed);
        assert_eq!(totals.saved(), Usd::ZERO);
    }

    #[test]
    fn prompts_and_messages_are_escaped() {
        let mut manifest = night();
        manifest.requests[0].prompt = Some("<script>alert('x')</script> & \"quotes\"".into());
        manifest.requests[4].error.as_mut().unwrap().message = "<img src=x onerror=1>".into();
        let html = render(&manifest, &standard);
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img src=x"), "{html}");
        assert!(html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;"));
        assert!(html.contains("&#60;img src=x") || html.contains("&lt;img src=x"));
    }

    #[test]
    fn media_paths_are_relative_urls() {
        assert_eq!(
            url_path(Path::new("s03 rush #1.mp4")),
            "s03%20rush%20%231.mp4"
        );
        assert_eq!(url_path(Path::new("a/b_take2.jpg")), "a/b_take2.jpg");
        assert_eq!(url_path(Path::new("ünï.mp4")), "%C3%BCn%C3%AF.mp4");
    }

    #[test]
    fn the_page_fetches_nothing_from_elsewhere() {
        let html = render(&night(), &standard);
        for banned in [
            "http://", "https://", "<script", "@import", "url(", "//fonts",
        ] {
            assert!(!html.contains(banned), "{banned} in the sheet");
        }
    }

    /// The manifest is a contract with scripts: its JSON is snapshotted, and reads back as the
    /// same typed value.
    #[test]
    fn the_manifest_reads_back_as_written() {
        let manifest = night();
        insta::assert_json_snapshot!("manifest", manifest);
        let text = serde_json::to_string(&manifest).unwrap();
        assert_eq!(serde_json::from_str::<Manifest>(&text).unwrap(), manifest);
    }

    #[test]
    fn sheet_html_snapshot() {
        insta::assert_snapshot!(render(&night(), &standard));
    }
}
