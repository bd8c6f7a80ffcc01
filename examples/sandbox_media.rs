//! Writes a sample sandbox video with its thumbnails and spritesheet, then measures how fast
//! `RenderedVideo::read_at` streams a 64 MB video.
//!
//! cargo run --release --example sandbox_media -- [OUT_DIR] [TOTAL_BYTES] [PROMPT]

use std::time::Instant;

use render_sandbox::media::{
    RenderedVideo, VideoSpec, spritesheet_jpeg, thumbnail_jpeg, thumbnail_webp,
};
use render_wire::catalog::Size;

const CHUNK: usize = 64 * 1024;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let out_dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| "sandbox-media".into()));
    let total_bytes: u64 = args.next().map_or(Ok(4 << 20), |s| s.parse())?;
    let prompt = args
        .next()
        .unwrap_or_else(|| "a red fox crossing a snowy field at dawn".into());
    let size = Size {
        width: 1280,
        height: 720,
    };
    let spec = VideoSpec {
        seed: 42,
        prompt: prompt.clone(),
        size,
        seconds: 8,
        total_bytes,
    };

    std::fs::create_dir_all(&out_dir)?;
    let started = Instant::now();
    let video = RenderedVideo::new(spec.clone());
    let built = started.elapsed();
    std::fs::write(out_dir.join("video.mp4"), read_all(&video))?;
    std::fs::write(
        out_dir.join("thumbnail.jpg"),
        thumbnail_jpeg(42, &prompt, size),
    )?;
    std::fs::write(
        out_dir.join("thumbnail.webp"),
        thumbnail_webp(42, &prompt, size),
    )?;
    std::fs::write(
        out_dir.join("spritesheet.jpg"),
        spritesheet_jpeg(42, &prompt, size),
    )?;
    println!(
        "wrote {} ({} bytes, coded {}, {} frames, moving: {}, built in {:?})",
        out_dir.display(),
        video.len(),
        video.coded_size(),
        video.frame_count(),
        video.is_moving(),
        built
    );

    let big = RenderedVideo::new(VideoSpec {
        total_bytes: 64 << 20,
        ..spec
    });
    for _ in 0..3 {
        let started = Instant::now();
        let bytes = stream(&big);
        let elapsed = started.elapsed();
        println!(
            "sequential read_at into one {} KiB buffer: {} bytes in {:?} = {:.2} GB/s",
            CHUNK / 1024,
            bytes,
            elapsed,
            bytes as f64 / elapsed.as_secs_f64() / 1e9
        );
    }
    let started = Instant::now();
    let pictures_end = read_pictures(&big);
    println!(
        "of which the head and pictures ({} bytes): {:?}",
        pictures_end,
        started.elapsed()
    );
    let fresh = 20;
    let started = Instant::now();
    for seed in 0..fresh {
        read_pictures(&RenderedVideo::new(VideoSpec {
            seed,
            ..big.spec().clone()
        }));
    }
    println!(
        "a fresh video's head and pictures (what each request for one pays): {:?}",
        started.elapsed() / fresh as u32
    );
    let started = Instant::now();
    let mut buf = vec![0u8; CHUNK];
    let reads = 2000u64;
    for i in 0..reads {
        let offset = (i * 2_654_435_761) % big.len();
        std::hint::black_box(big.read_at(offset, &mut buf));
    }
    println!(
        "random read_at of {} KiB: {:?} each",
        CHUNK / 1024,
        started.elapsed() / reads as u32
    );
    Ok(())
}

/// Reads the whole video through one reused buffer, as a server streaming it would.
fn stream(video: &RenderedVideo) -> u64 {
    let mut buf = vec![0u8; CHUNK];
    let mut offset = 0;
    loop {
        let n = video.read_at(offset, &mut buf);
        if n == 0 {
            return offset;
        }
        std::hint::black_box(&buf);
        offset += n as u64;
    }
}

/// Reads the head and the pictures (the encoded part); returns where they end.
fn read_pictures(video: &RenderedVideo) -> u64 {
    let end = video_pictures_end(video);
    let mut buf = vec![0u8; CHUNK];
    let mut offset = 0;
    while offset < end {
        offset += video.read_at(offset, &mut buf) as u64;
    }
    end
}

/// Where the `free` box starts: the end of the part that is encoded rather than keystream.
fn video_pictures_end(video: &RenderedVideo) -> u64 {
    let mut pos = 0;
    let mut header = [0u8; 8];
    while pos < video.len() {
        video.read_at(pos, &mut header);
        if &header[4..] == b"free" {
            return pos;
        }
        pos += u64::from(u32::from_be_bytes([
            header[0], header[1], header[2], header[3],
        ]));
    }
    pos
}

fn read_all(video: &RenderedVideo) -> Vec<u8> {
    let mut out = Vec::with_capacity(video.len() as usize);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = video.read_at(out.len() as u64, &mut buf);
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}
