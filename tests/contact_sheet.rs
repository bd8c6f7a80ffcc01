//! The contact sheet as a person sees it: a real night against the sandbox (one shot refused by
//! its content policy), then `index.html` opened from the folder in headless Chromium, driven
//! through chromedriver. Every take must be there with its media actually loaded, the refusal
//! shown with its reason, and nothing fetched from anywhere but the folder.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them); without them the
//! test fails, unless RENDER_SKIP_BROWSER=1. RENDER_SHEET_SCREENSHOT=FILE also saves a PNG of
//! the page (that is how `docs/contact-sheet.png` is made).

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Night;
use render_sandbox::{SandboxConfig, SandboxHandle};
use render_wire::dialect::Dialect;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A studio's night on two providers: `studio` (OpenAI's dialect, the Batch lane, JPEG
/// thumbnails) and `wan-farm` (SGLang: the direct lane, no thumbnails, so the sheet shows the
/// video's own first frame). Two takes of one shot, a shot whose id needs URL-encoding, a rush
/// (direct, at the standard price), and one shot the sandbox refuses: it names a copyrighted
/// character, as the real service's moderation would refuse.
const NIGHT: &str = r#"project: sheet-night
defaults: { provider: studio, model: sora-2, size: 1280x720, seconds: 4 }
shots:
  - { id: s01-harbour, prompt: "Wide shot of a fishing harbour at dusk, lamps coming on", takes: 2 }
  - { id: "s02 quay #2", prompt: "Nets drying on the quay <b>in the wind</b>", seconds: 8 }
  - { id: s03-cameo, prompt: "Batman waving from the lighthouse gallery" }
  - { id: s04-tower, prompt: "Climbing the old clock tower, pigeons taking off", provider: wan-farm, size: 720x1280 }
  - { id: s05-ferry, prompt: "The last ferry leaving, wake glowing under the moon", model: sora-2-pro, priority: rush }
"#;

/// The night's two sandboxes (the second is `wan-farm`'s, kept alive as long as the night).
struct StudioNight {
    night: Night,
    _farm: SandboxHandle,
}

impl StudioNight {
    fn new() -> StudioNight {
        let night = Night::new();
        let farm = render_sandbox::spawn(
            SandboxConfig::default()
                .dialect(Dialect::Sglang)
                .video_bytes(64 * 1024)
                .render_time(Duration::from_millis(20)),
        )
        .expect("the farm's sandbox starts");
        night.write(
            "providers.yaml",
            format!(
                "providers:\n  - name: studio\n    base_url: {}\n    api_key_env: OPENAI_API_KEY\n  \
                 - name: wan-farm\n    base_url: {}\n    dialect: sglang\n    max_in_flight: 2\n",
                night.sandbox.base_url(),
                farm.base_url()
            ),
        );
        night.write("night.yaml", NIGHT);
        StudioNight { night, _farm: farm }
    }

    /// `render nightly`: a refusal makes it exit 4.
    fn run(&self) {
        let output = self.night.render(&[
            "--providers",
            "providers.yaml",
            "nightly",
            "night.yaml",
            "--max-poll-interval",
            "1",
        ]);
        assert_eq!(
            output.status.code(),
            Some(4),
            "a night with a refusal exits 4\n{}",
            common::stderr_of(&output)
        );
    }
}

#[test]
fn the_contact_sheet_shows_every_take_in_a_real_browser() {
    let Some(browser) = Browser::required() else {
        return;
    };
    let studio = StudioNight::new();
    studio.run();
    let night = &studio.night;
    let sheet = night.path("renders/sheet-night/index.html");
    assert!(sheet.is_file(), "nightly writes {}", sheet.display());
    let manifest = night.manifest("renders/sheet-night");

    let seen = browser.look_at(&sheet);

    assert_every_take_is_shown(&manifest, &seen);
    assert_media_loaded(&manifest, &seen);
    assert_refusal_explained(&seen);
    assert_nothing_fetched_from_the_web(&seen, &manifest);
    let figures = &seen["figures"];
    for (figure, value) in [
        ("requests", "6"),
        ("harvested", "5"),
        ("failed", "1"),
        ("lost", "0"),
        ("pending", "0"),
        ("billed", "$2.40"),
        ("saved", "$0.80"),
    ] {
        assert_eq!(figures[figure], value, "the header's {figure}: {figures}");
    }
}

#[test]
fn render_report_rewrites_the_sheet_without_the_provider() {
    let studio = StudioNight::new();
    studio.run();
    let night = &studio.night;
    let sheet = night.path("renders/sheet-night/index.html");
    std::fs::remove_file(&sheet).unwrap();
    let asked = answered(&night.sandbox);
    let mut report = night.command(&[
        "--providers",
        "providers.yaml",
        "report",
        "--format",
        "json",
    ]);
    report.env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1");
    let output = report.output().unwrap();
    common::assert_success(&output, &["report"]);
    assert_eq!(
        answered(&night.sandbox),
        asked,
        "the provider was not asked"
    );
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["harvested"], 5);
    assert_eq!(answer["failed"], 1);
    assert_eq!(
        Path::new(answer["sheet"].as_str().unwrap()),
        Path::new("renders/sheet-night/index.html")
    );
    // Batch (half the standard rate): 2 × $0.20 + $0.40 (8 s). Direct, at standard: $0.40 on
    // the farm, $1.20 for the sora-2-pro rush. The refusal is not billed.
    assert_eq!(answer["billed_usd"], "2.40");
    assert_eq!(answer["standard_usd"], "3.20");
    assert_eq!(answer["saved_usd"], "0.80");
    let html = std::fs::read_to_string(&sheet).unwrap();
    assert!(html.contains("Nets drying on the quay &#60;b&#62;in the wind&#60;/b&#62;"));
    assert!(html.contains("src=\"s02%20quay%20%232.mp4\""), "{html}");

    let other = night.command(&["report", "no-such-run"]).output().unwrap();
    assert_eq!(other.status.code(), Some(2));
    assert!(common::stderr_of(&other).contains("no run named no-such-run"));
}

/// Every request the sandbox has answered, on any endpoint.
fn answered(sandbox: &SandboxHandle) -> u64 {
    let stats = sandbox.stats();
    stats
        .requests
        .values()
        .flat_map(|by_status| by_status.values())
        .sum()
}

fn assert_every_take_is_shown(manifest: &Value, seen: &Value) {
    let takes = seen["takes"].as_array().unwrap();
    let requests = manifest["requests"].as_array().unwrap();
    assert_eq!(
        takes.len(),
        requests.len(),
        "one card per request: {takes:#?}"
    );
    for request in requests {
        let card = takes
            .iter()
            .find(|t| {
                t["shot"] == request["shot_id"]
                    && t["take"].as_str() == Some(&request["take"].to_string())
            })
            .unwrap_or_else(|| panic!("a card for {request}"));
        assert_eq!(card["status"], request["status"], "{card}");
        assert!(card["visible"].as_bool().unwrap(), "{card} is on screen");
        let text = card["text"].as_str().unwrap();
        for fact in ["model", "size", "seconds", "provider", "lane", "cost"] {
            assert!(text.contains(fact), "{fact} in {text:?}");
        }
        assert!(text.contains(request["model"].as_str().unwrap()));
    }
}

/// Every harvested take's video was found and its metadata read (Chromium decodes the
/// sandbox's H.264), its thumbnail its poster where it has one (else the player shows the
/// first frame), and every thumbnail decoded to a picture.
fn assert_media_loaded(manifest: &Value, seen: &Value) {
    let mut videos = 0;
    for card in seen["takes"].as_array().unwrap() {
        if card["status"] != "harvested" {
            assert!(card["video"].is_null(), "no player for {card}");
            continue;
        }
        let video = &card["video"];
        assert!(video["readyState"].as_u64().unwrap() >= 1, "{card}");
        assert!(video["duration"].as_f64().unwrap() > 0.0, "{card}");
        assert!(video["error"].is_null(), "{card}");
        let poster = video["poster"].as_str().unwrap();
        if card["shot"] == "s04-tower" {
            assert_eq!(poster, "", "SGLang has no thumbnail: the first frame shows");
        } else {
            assert!(poster.starts_with("file://"), "{card}");
        }
        videos += 1;
    }
    assert_eq!(videos, 5);
    let thumbnails = manifest["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["thumbnail_path"].is_string())
        .count();
    assert_eq!(thumbnails, 4);
    let images = seen["images"].as_array().unwrap();
    assert_eq!(images.len(), thumbnails, "one picture per thumbnail");
    for image in images {
        assert!(image["naturalWidth"].as_u64().unwrap() > 0, "{image}");
    }
}

fn assert_refusal_explained(seen: &Value) {
    let refused = seen["takes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["shot"] == "s03-cameo")
        .unwrap();
    let text = refused["text"].as_str().unwrap();
    assert!(
        text.contains("Refused by the content policy (moderation_blocked)"),
        "{text}"
    );
    assert!(text.contains("blocked by our moderation system"), "{text}");
    assert!(text.contains("not billed"), "{text}");
}

/// Every request the browser made (its own network log, not the page's word for it) was for a
/// file, and among them every video and thumbnail the manifest names.
fn assert_nothing_fetched_from_the_web(seen: &Value, manifest: &Value) {
    let requested: Vec<&str> = seen["requested"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    // `data:` is inline, not fetched: Chromium's own player draws its icons with it.
    for url in &requested {
        assert!(
            url.starts_with("file://") || url.starts_with("data:"),
            "fetched {url}: {requested:#?}"
        );
    }
    assert!(requested.iter().any(|u| u.ends_with("/index.html")));
    for request in manifest["requests"].as_array().unwrap() {
        for media in ["video_path", "thumbnail_path"] {
            let Some(file) = request[media].as_str() else {
                continue;
            };
            let encoded = file.replace(' ', "%20").replace('#', "%23");
            assert!(
                requested
                    .iter()
                    .any(|u| u.ends_with(&format!("/{encoded}"))),
                "the browser fetched {file}: {requested:#?}"
            );
        }
    }
    for url in seen["resources"].as_array().unwrap() {
        assert!(url.as_str().unwrap().starts_with("file://"), "{url}");
    }
    for url in seen["links"].as_array().unwrap() {
        assert!(!url.as_str().unwrap().contains("://"), "relative: {url}");
    }
}

/// What the page shows: each take card, its media's state, the images, and every resource
/// the page fetched.
const LOOK: &str = r#"
const takes = [...document.querySelectorAll('article.take')].map(card => {
  const video = card.querySelector('video');
  const box = card.getBoundingClientRect();
  return {
    shot: card.closest('section').dataset.shot,
    take: card.dataset.take,
    status: card.dataset.status,
    text: card.innerText,
    visible: box.width > 0 && box.height > 0,
    video: video && {
      readyState: video.readyState,
      duration: video.duration,
      error: video.error && video.error.code,
      poster: video.poster,
    },
  };
});
const images = [...document.images].map(i => ({ src: i.src, naturalWidth: i.naturalWidth }));
const resources = performance.getEntriesByType('resource').map(e => e.name);
const links = [...document.querySelectorAll('[src], [href], [poster]')]
  .flatMap(e => ['src', 'href', 'poster'].map(a => e.getAttribute(a)).filter(Boolean));
const figures = Object.fromEntries([...document.querySelectorAll('[data-figure]')]
  .map(t => [t.dataset.figure, t.querySelector('.value').textContent]));
return { takes, images, resources, links, figures };
"#;

/// Whether every video and image is done loading (or has failed).
const SETTLED: &str = r#"
return [...document.querySelectorAll('video')].every(v => v.readyState >= 1 || v.error)
  && [...document.images].every(i => i.complete);
"#;

/// chromedriver on a free port, killed when dropped.
struct Browser {
    driver: Child,
    port: u16,
}

impl Browser {
    /// The browser, or `None` when RENDER_SKIP_BROWSER=1 says to skip; a missing browser
    /// otherwise fails the test: CI installs it, so it must run there.
    fn required() -> Option<Browser> {
        let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
            .into_iter()
            .filter(|p| !Path::new(p).exists())
            .collect();
        if !missing.is_empty() {
            if std::env::var("RENDER_SKIP_BROWSER").as_deref() == Ok("1") {
                eprintln!("skipped: {} not installed", missing.join(", "));
                return None;
            }
            panic!(
                "{} not installed: `apt-get install -y chromium chromium-driver` \
                 (or RENDER_SKIP_BROWSER=1 to skip the browser test)",
                missing.join(" and ")
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver listens on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Browser { driver, port })
    }

    /// Opens the page headless, waits for its media to settle, and reports what it shows.
    fn look_at(&self, page: &Path) -> Value {
        let url = format!("file://{}", std::fs::canonicalize(page).unwrap().display());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let client = self.session().await;
            client.goto(&url).await.expect("the sheet opens");
            let deadline = Instant::now() + Duration::from_secs(20);
            while client.execute(SETTLED, vec![]).await.unwrap() != json!(true) {
                assert!(Instant::now() < deadline, "the page's media settle");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let mut seen = client.execute(LOOK, vec![]).await.unwrap();
            seen["requested"] = self.requested_urls(&client).await.into();
            if let Some(path) = std::env::var_os("RENDER_SHEET_SCREENSHOT") {
                screenshot(&client, &PathBuf::from(path)).await;
            }
            client.close().await.unwrap();
            seen
        })
    }

    /// The URL of every request in chromedriver's performance log (DevTools' network events).
    async fn requested_urls(&self, client: &fantoccini::Client) -> Vec<String> {
        let session = client.session_id().await.unwrap().expect("a session id");
        let _ = rustls::crypto::ring::default_provider().install_default();
        let log: Value = reqwest::Client::new()
            .post(format!(
                "http://127.0.0.1:{}/session/{session}/se/log",
                self.port
            ))
            .json(&json!({ "type": "performance" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let entries = log["value"].as_array().expect("a performance log");
        entries
            .iter()
            .filter_map(|entry| serde_json::from_str::<Value>(entry["message"].as_str()?).ok())
            .filter(|m| m["message"]["method"] == "Network.requestWillBeSent")
            .filter_map(|m| {
                Some(
                    m["message"]["params"]["request"]["url"]
                        .as_str()?
                        .to_string(),
                )
            })
            .collect()
    }

    async fn session(&self) -> fantoccini::Client {
        let mut caps = serde_json::Map::new();
        caps.insert("goog:loggingPrefs".into(), json!({ "performance": "ALL" }));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--hide-scrollbars",
                         "--window-size=1440,1000", "--force-device-scale-factor=1"],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        fantoccini::ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a chromedriver session")
    }
}

/// The whole page, not just the window: the window is made as tall as the page first.
async fn screenshot(client: &fantoccini::Client, path: &Path) {
    let height = client
        .execute("return document.documentElement.scrollHeight;", vec![])
        .await
        .unwrap()
        .as_u64()
        .unwrap();
    client
        .set_window_size(1440, height.min(8000) as u32 + 140)
        .await
        .unwrap();
    // A resized window lays the players out again: let their loading spinners settle.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let png = client.screenshot().await.unwrap();
    std::fs::write(path, png).unwrap();
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
