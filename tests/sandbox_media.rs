//! The sandbox's synthetic videos: real MP4s of an exact size, readable at any offset, the same
//! for the same spec, different across seeds and prompts; thumbnails that are real images.
//! `ffmpeg_decodes_every_frame` decodes them for real with PyAV (`pip install av`).

use std::path::Path;
use std::process::Command;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use render_sandbox::media::{
    FPS, RenderedVideo, VideoSpec, frame_jpeg, spritesheet_jpeg, thumbnail_jpeg, thumbnail_rgb,
    thumbnail_webp,
};
use render_wire::catalog::Size;
use sha2::{Digest, Sha256};

const LANDSCAPE: Size = Size {
    width: 1280,
    height: 720,
};
const PORTRAIT: Size = Size {
    width: 720,
    height: 1280,
};
const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

fn spec(seed: u64, prompt: &str, total_bytes: u64) -> VideoSpec {
    VideoSpec {
        seed,
        prompt: prompt.into(),
        size: LANDSCAPE,
        seconds: 4,
        total_bytes,
    }
}

fn read_all(video: &RenderedVideo) -> Vec<u8> {
    let mut out = Vec::with_capacity(video.len() as usize);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = video.read_at(out.len() as u64, &mut buf);
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

fn read_range(video: &RenderedVideo, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    let n = video.read_at(offset, &mut buf);
    buf.truncate(n);
    buf
}

/// A box header: where it starts, its type, its whole size and where its body starts.
#[derive(Debug, Clone, PartialEq)]
struct BoxHeader {
    start: u64,
    kind: [u8; 4],
    size: u64,
    body: u64,
}

/// The top-level boxes, read through `read_at` (so a 5 GiB video is walked without reading it).
fn top_level_boxes(video: &RenderedVideo) -> Vec<BoxHeader> {
    let mut boxes = Vec::new();
    let mut pos = 0;
    while pos < video.len() {
        let header = read_range(video, pos, 16);
        let b = parse_header(&header, pos).expect("a box header at every top-level offset");
        assert!(
            b.size >= b.body - b.start,
            "box {b:?} smaller than its header"
        );
        pos += b.size;
        boxes.push(b);
    }
    assert_eq!(
        pos,
        video.len(),
        "top-level boxes must end exactly at len()"
    );
    boxes
}

fn parse_header(bytes: &[u8], start: u64) -> Option<BoxHeader> {
    let size32 = u32::from_be_bytes(bytes.get(0..4)?.try_into().ok()?);
    let kind: [u8; 4] = bytes.get(4..8)?.try_into().ok()?;
    let (size, header_len) = match size32 {
        1 => (u64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?), 16),
        0 => return None, // "to end of file" boxes are never written
        n => (u64::from(n), 8),
    };
    Some(BoxHeader {
        start,
        kind,
        size,
        body: start + header_len,
    })
}

/// Children of a container box held in `file`.
fn children(file: &[u8], parent: &BoxHeader, skip: u64) -> Vec<BoxHeader> {
    let mut out = Vec::new();
    let mut pos = parent.body + skip;
    let end = parent.start + parent.size;
    while pos < end {
        let b = parse_header(&file[pos as usize..], pos).expect("child box header");
        assert!(pos + b.size <= end, "{} overflows its parent", kinds(&[b]));
        pos += b.size;
        out.push(b);
    }
    assert_eq!(pos, end, "children must fill their parent exactly");
    out
}

fn kinds(boxes: &[BoxHeader]) -> String {
    boxes
        .iter()
        .map(|b| String::from_utf8_lossy(&b.kind).into_owned())
        .collect::<Vec<_>>()
        .join(",")
}

/// Follows a path of box types from the top level; `avc1` and `stsd` have fields before
/// their children.
fn find(file: &[u8], path: &[&str]) -> BoxHeader {
    let mut level = children(
        file,
        &BoxHeader {
            start: 0,
            kind: *b"file",
            size: file.len() as u64,
            body: 0,
        },
        0,
    );
    let mut found = None;
    for name in path {
        let b = level
            .iter()
            .find(|b| b.kind == name.as_bytes())
            .unwrap_or_else(|| panic!("no {name} among {}", kinds(&level)))
            .clone();
        let skip = match *name {
            "stsd" => 8,
            "avc1" => 78,
            _ => 0,
        };
        if !["mdat", "free", "stsz", "stco", "tkhd", "mvhd", "avcC"].contains(name) {
            level = children(file, &b, skip);
        }
        found = Some(b);
    }
    found.expect("a non-empty path")
}

fn u32_at(file: &[u8], pos: u64) -> u32 {
    u32::from_be_bytes(file[pos as usize..pos as usize + 4].try_into().unwrap())
}

fn sample_sizes(file: &[u8]) -> Vec<u32> {
    let stsz = find(file, &["moov", "trak", "mdia", "minf", "stbl", "stsz"]);
    let count = u32_at(file, stsz.body + 8);
    (0..u64::from(count))
        .map(|i| u32_at(file, stsz.body + 12 + 4 * i))
        .collect()
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[test]
fn video_is_exactly_the_requested_size() {
    for total in [64 * KIB, MIB + 3, 4 * MIB, 64 * MIB] {
        let video = RenderedVideo::new(spec(1, "a quiet harbour", total));
        assert_eq!(video.len(), total);
        let boxes = top_level_boxes(&video);
        assert_eq!(kinds(&boxes), "ftyp,moov,mdat,free", "at {total} bytes");
    }
}

#[test]
fn leftovers_too_small_for_a_free_box_pad_the_mdat() {
    let natural = RenderedVideo::new(spec(1, "a quiet harbour", 0)).len();
    for extra in 0..=9 {
        let video = RenderedVideo::new(spec(1, "a quiet harbour", natural + extra));
        assert_eq!(video.len(), natural + extra);
        let expected = if extra >= 8 {
            "ftyp,moov,mdat,free"
        } else {
            "ftyp,moov,mdat"
        };
        assert_eq!(kinds(&top_level_boxes(&video)), expected, "extra {extra}");
    }
}

#[test]
fn videos_past_4_gib_use_a_64_bit_free_box() {
    let total = 5 * 1024 * MIB;
    let video = RenderedVideo::new(spec(1, "a quiet harbour", total));
    assert_eq!(video.len(), total);
    let boxes = top_level_boxes(&video);
    let free = boxes.last().unwrap();
    assert_eq!(&free.kind, b"free");
    assert_eq!(free.body - free.start, 16, "largesize header");
    assert_eq!(
        read_range(&video, total - 10, 100).len(),
        10,
        "reads stop at the end"
    );
    assert_eq!(video.read_at(total, &mut [0u8; 8]), 0);
}

#[test]
fn too_small_a_request_gives_the_smallest_valid_video() {
    let video = RenderedVideo::new(spec(1, "a quiet harbour", 1000));
    assert!(
        video.len() > 1000,
        "len() exceeds a request below the minimum"
    );
    assert!(
        video.len() < 16 * KIB,
        "the minimum is small: {}",
        video.len()
    );
    assert!(!video.is_moving());
    assert_eq!(video.frame_count(), 4 * FPS, "still the full duration");
    assert_eq!(kinds(&top_level_boxes(&video)), "ftyp,moov,mdat");
    assert_eq!(sample_sizes(&read_all(&video)).len() as u32, 4 * FPS);
}

#[test]
fn richer_budgets_get_motion_and_resolution() {
    let still = RenderedVideo::new(spec(1, "a quiet harbour", 64 * KIB));
    let moving = RenderedVideo::new(spec(1, "a quiet harbour", 64 * MIB));
    assert!(!still.is_moving());
    assert!(moving.is_moving());
    assert!(moving.coded_size().width > still.coded_size().width);
    assert_eq!(
        moving.coded_size(),
        Size {
            width: 320,
            height: 180
        }
    );
}

#[test]
fn moov_describes_every_picture_in_mdat() {
    let video = RenderedVideo::new(VideoSpec {
        size: PORTRAIT,
        ..spec(3, "a tall tower", 2 * MIB)
    });
    let file = read_all(&video);
    let stbl = ["moov", "trak", "mdia", "minf", "stbl"];
    let avc_c = find(&file, &[&stbl[..], &["stsd", "avc1", "avcC"]].concat());
    assert_eq!(file[avc_c.body as usize + 1], 66, "Baseline profile");

    let tkhd = find(&file, &["moov", "trak", "tkhd"]);
    assert_eq!(u32_at(&file, tkhd.body + 76) >> 16, PORTRAIT.width);
    assert_eq!(u32_at(&file, tkhd.body + 80) >> 16, PORTRAIT.height);
    let mvhd = find(&file, &["moov", "mvhd"]);
    assert_eq!(u32_at(&file, mvhd.body + 12), 1000, "movie timescale");
    assert_eq!(u32_at(&file, mvhd.body + 16), 4000, "4 s in ms");

    let sizes = sample_sizes(&file);
    assert_eq!(sizes.len() as u32, video.frame_count());
    let stco = find(&file, &[&stbl[..], &["stco"]].concat());
    let mdat = find(&file, &["mdat"]);
    let mut pos = u64::from(u32_at(&file, stco.body + 8));
    assert_eq!(pos, mdat.body, "samples start the mdat");
    for (i, &size) in sizes.iter().enumerate() {
        // Each sample is one length-prefixed NAL: an IDR first, then P pictures.
        assert_eq!(u32_at(&file, pos), size - 4, "sample {i} length prefix");
        let nal_type = file[pos as usize + 4] & 0x1F;
        assert_eq!(nal_type, if i == 0 { 5 } else { 1 }, "sample {i} NAL type");
        pos += u64::from(size);
    }
    assert!(pos <= mdat.start + mdat.size, "samples stay inside mdat");
}

#[test]
fn read_at_any_offset_matches_a_sequential_read() {
    let video = RenderedVideo::new(spec(9, "rain on a window", MIB + 5));
    let file = read_all(&video);
    assert_eq!(file.len() as u64, video.len());
    let mut offsets: Vec<u64> = vec![0, 1, 2, 3, 5, video.len() - 1];
    // Region boundaries: around every box start and every picture start.
    for b in top_level_boxes(&video) {
        offsets.extend([b.start.saturating_sub(1), b.start, b.body, b.body + 1]);
    }
    let sizes = sample_sizes(&file);
    let mut pos = find(&file, &["mdat"]).body;
    for size in sizes {
        offsets.extend([pos.saturating_sub(2), pos, pos + 3]);
        pos += u64::from(size);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    offsets.extend((0..150).map(|_| rng.random_range(0..video.len())));
    for offset in offsets {
        let len = rng.random_range(1..40_000);
        let end = (offset as usize + len).min(file.len());
        assert_eq!(
            read_range(&video, offset, len),
            &file[offset as usize..end],
            "{len} bytes at {offset}"
        );
    }
}

#[test]
fn the_same_spec_gives_the_same_bytes() {
    let a = read_all(&RenderedVideo::new(spec(5, "a red kite", MIB)));
    let b = read_all(&RenderedVideo::new(spec(5, "a red kite", MIB)));
    assert_eq!(sha256(&a), sha256(&b));
    assert_eq!(
        thumbnail_jpeg(5, "a red kite", LANDSCAPE),
        thumbnail_jpeg(5, "a red kite", LANDSCAPE)
    );
}

#[test]
fn another_take_or_prompt_gives_other_pictures() {
    let pictures = |spec: VideoSpec| {
        let video = RenderedVideo::new(spec);
        let file = read_all(&video);
        let mdat = find(&file, &["mdat"]);
        let total: u64 = sample_sizes(&file).iter().map(|&s| u64::from(s)).sum();
        file[mdat.body as usize..(mdat.body + total) as usize].to_vec()
    };
    let base = pictures(spec(5, "a red kite", MIB));
    assert_ne!(base, pictures(spec(6, "a red kite", MIB)), "another seed");
    assert_ne!(
        base,
        pictures(spec(5, "a blue kite", MIB)),
        "another prompt"
    );
    let full = |seed| read_all(&RenderedVideo::new(spec(seed, "a red kite", MIB)));
    assert_ne!(sha256(&full(5)), sha256(&full(6)));
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x.abs_diff(y)))
        .sum::<f64>()
        / a.len() as f64
}

#[test]
fn different_prompts_give_visibly_different_thumbnails() {
    let prompts = [
        "a red fox crossing a snowy field at dawn",
        "a neon city street in the rain",
        "a calm lake under pine trees",
        "a robot cooking pancakes",
        "close-up of a hummingbird",
    ];
    let size = Size {
        width: 160,
        height: 90,
    };
    let images: Vec<_> = prompts.iter().map(|p| thumbnail_rgb(1, p, size)).collect();
    for i in 0..images.len() {
        for j in i + 1..images.len() {
            let diff = mean_abs_diff(&images[i].pixels, &images[j].pixels);
            assert!(
                diff > 20.0,
                "{:?} and {:?} differ by only {diff:.1}/255",
                prompts[i],
                prompts[j]
            );
        }
    }
    // Another take of one prompt is recognisably the same picture, but not the same bytes.
    let take = thumbnail_rgb(2, prompts[0], size);
    let diff = mean_abs_diff(&images[0].pixels, &take.pixels);
    assert!(
        diff > 0.0 && diff < 20.0,
        "another take differs by {diff:.1}"
    );
}

#[test]
fn thumbnails_are_images_of_the_requested_size() {
    for size in [LANDSCAPE, PORTRAIT] {
        let jpeg = thumbnail_jpeg(1, "a red kite", size);
        assert_eq!(&jpeg[..2], b"\xFF\xD8");
        let dims = imagesize::blob_size(&jpeg).expect("a JPEG header");
        assert_eq!(
            (dims.width, dims.height),
            (size.width as usize, size.height as usize)
        );
        assert_eq!(
            imagesize::image_type(&jpeg).unwrap(),
            imagesize::ImageType::Jpeg
        );

        let webp = thumbnail_webp(1, "a red kite", size);
        assert_eq!(
            imagesize::image_type(&webp).unwrap(),
            imagesize::ImageType::Webp
        );
        let dims = imagesize::blob_size(&webp).expect("a WebP header");
        assert_eq!(
            (dims.width, dims.height),
            (size.width as usize, size.height as usize)
        );

        let sheet = spritesheet_jpeg(1, "a red kite", size);
        let dims = imagesize::blob_size(&sheet).expect("a JPEG header");
        assert_eq!(
            (dims.width, dims.height),
            (size.width as usize, size.height as usize)
        );
    }
    let huge = thumbnail_jpeg(
        1,
        "x",
        Size {
            width: 100_000,
            height: 1_000,
        },
    );
    let dims = imagesize::blob_size(&huge).expect("a JPEG header");
    assert_eq!(
        (dims.width, dims.height),
        (4096, 40),
        "capped, in proportion"
    );
}

/// Runs `tests/conformance/decode_media.py` on a video and its thumbnail.
fn decode_with_pyav(dir: &Path, name: &str, video: &RenderedVideo) -> serde_json::Value {
    let spec = video.spec();
    let mp4 = dir.join(format!("{name}.mp4"));
    let jpg = dir.join(format!("{name}.jpg"));
    std::fs::write(&mp4, read_all(video)).unwrap();
    let middle = dir.join(format!("{name}-middle.jpg"));
    std::fs::write(&jpg, thumbnail_jpeg(spec.seed, &spec.prompt, spec.size)).unwrap();
    let middle_time = if video.is_moving() {
        (video.frame_count() / 2) as f32 / FPS as f32
    } else {
        0.0
    };
    // Drawn at the coded size, so only JPEG's own loss separates it from the decoded frame.
    let expected = frame_jpeg(spec.seed, &spec.prompt, video.coded_size(), middle_time);
    std::fs::write(&middle, expected).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/decode_media.py");
    let output = Command::new("python3")
        .arg(script)
        .args([&mp4, &jpg, &middle])
        .output()
        .expect("python3 must be installed to decode the sandbox's videos");
    assert!(
        output.status.success(),
        "decoding {name} with PyAV failed (is `av` installed? pip install av):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the script prints one JSON object")
}

#[test]
fn ffmpeg_decodes_every_frame() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("moving", spec(11, "a paper boat on a stream", 2 * MIB)),
        ("still", spec(12, "a desert at noon", 64 * KIB)),
        (
            "portrait",
            VideoSpec {
                size: PORTRAIT,
                seconds: 2,
                ..spec(13, "a waterfall", 300 * KIB)
            },
        ),
        ("minimal", spec(14, "a single star", 1)),
    ];
    for (name, spec) in cases {
        let video = RenderedVideo::new(spec.clone());
        let seen = decode_with_pyav(dir.path(), name, &video);
        let coded = video.coded_size();
        assert_eq!(seen["codec"], "h264", "{name}: {seen}");
        assert_eq!(
            seen["frames"],
            u64::from(video.frame_count()),
            "{name}: {seen}"
        );
        assert_eq!(
            seen["frames"],
            u64::from(spec.seconds * FPS),
            "{name}: {seen}"
        );
        assert_eq!(seen["width"], coded.width, "{name}: {seen}");
        assert_eq!(seen["height"], coded.height, "{name}: {seen}");
        assert_eq!(seen["duration"], f64::from(spec.seconds), "{name}: {seen}");
        assert_eq!(seen["thumbnail_width"], spec.size.width, "{name}: {seen}");
        let vs_thumbnail = seen["first_frame_vs_thumbnail"].as_f64().unwrap();
        assert!(
            vs_thumbnail < 10.0,
            "{name}: first frame is not the thumbnail: {seen}"
        );
        // Skipped blocks copy the previous picture: any that should have changed would leave
        // a trail of the ball here.
        let vs_expected = seen["middle_frame_vs_reference"].as_f64().unwrap();
        let pixels_off = seen["middle_frame_pixels_off"].as_f64().unwrap();
        eprintln!("{name}: {seen}");
        assert!(
            vs_expected < 10.0 && pixels_off < 0.001,
            "{name}: middle frame is not the scene: {seen}"
        );
        let motion = seen["first_vs_middle_frame"].as_f64().unwrap();
        if video.is_moving() {
            assert!(motion > 0.5, "{name}: the ball should move: {seen}");
        } else {
            assert_eq!(motion, 0.0, "{name}: a still video is still: {seen}");
        }
    }
}
