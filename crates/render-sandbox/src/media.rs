//! Synthetic media for the sandbox: playable MP4s, thumbnails and spritesheets, generated on the
//! fly from a seed so a 64 MB video is streamed (and ranges served) without being held in memory.
//!
//! A video is `ftyp`, a faststart `moov`, an `mdat` of H.264 pictures (see [`h264`]) and a `free`
//! box of pseudo-random padding that brings the file to exactly [`VideoSpec::total_bytes`].
//! Only `ftyp` + `moov` live in memory; pictures are re-encoded on demand (they are a pure
//! function of the spec) and the padding is a ChaCha8 keystream addressed by file offset, so
//! [`RenderedVideo::read_at`] is cheap at any offset.
//!
//! The pictures are coded small (at most 320 pixels on the long side) and the track header
//! declares the shot's size, so players scale them up; the first frame is the thumbnail.

mod h264;
mod images;
mod mp4;
mod scene;

use std::sync::{Arc, OnceLock};

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

use h264::{MB_SAMPLES, MbSamples, Picture};
pub use images::{
    RgbImage, frame_jpeg, frame_rgb, spritesheet_jpeg, thumbnail_jpeg, thumbnail_rgb,
    thumbnail_webp,
};
use render_wire::catalog::Size;
use scene::Scene;

/// Frames per second of every video.
pub const FPS: u32 = 24;
/// `mdhd` time units per frame; the media timescale is `FPS * FRAME_DURATION`.
const FRAME_DURATION: u32 = 1000;
/// Thumbnails and spritesheets are capped at this many pixels on the long side, which keeps
/// absurd sizes from exhausting memory and within JPEG's 65535-pixel limit.
pub const MAX_IMAGE_SIDE: u32 = 4096;

/// What decides a video's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoSpec {
    /// Per-video seed (sandbox seed mixed with the video id), so two takes differ.
    pub seed: u64,
    pub prompt: String,
    pub size: Size,
    pub seconds: u32,
    /// Exact length of the MP4 in bytes (the sandbox's `--video-bytes`). When it is below the
    /// smallest video this module can make (a few kilobytes), the video is that smallest one
    /// and [`RenderedVideo::len`] exceeds the request.
    pub total_bytes: u64,
}

/// How rich a video is: the richest that fits `total_bytes` is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Profile {
    /// Coded pixels on the picture's long side.
    long_side: u32,
    /// Whether the ball moves (costs a few macroblocks per frame) or the picture is still.
    moving: bool,
}

const PROFILES: [Profile; 4] = [
    Profile {
        long_side: 320,
        moving: true,
    },
    Profile {
        long_side: 160,
        moving: true,
    },
    Profile {
        long_side: 160,
        moving: false,
    },
    Profile {
        long_side: 64,
        moving: false,
    },
];

/// A video whose bytes can be read at any offset, deterministically. Cloning is cheap.
#[derive(Clone, Debug)]
pub struct RenderedVideo {
    spec: VideoSpec,
    layout: Arc<Layout>,
}

/// Where everything sits in the file.
#[derive(Debug)]
struct Layout {
    frames: Frames,
    /// `ftyp`, `moov` and the `mdat` header: bytes `0..head.len()`.
    head: Vec<u8>,
    /// Offset of each picture, plus the end of the last one.
    sample_starts: Vec<u64>,
    /// End of `mdat`. A few padding bytes sit between the last picture and here when the
    /// leftover is too small for a `free` box.
    mdat_end: u64,
    /// The `free` box header at `mdat_end` (empty when there is no `free` box).
    free_header: Vec<u8>,
    len: u64,
    filler_key: [u8; 32],
}

/// The pictures of a video: what to draw and how it is coded.
#[derive(Debug)]
struct Frames {
    scene: Scene,
    picture: Picture,
    moving: bool,
    count: u32,
    /// The still picture (everything but the ball), drawn on first use: re-encoding pictures
    /// on every read then only draws the ball, where it is.
    still: OnceLock<Still>,
}

/// The still picture at coded size, macroblock padding included.
#[derive(Debug)]
struct Still {
    /// Row by row: what the ball is drawn over.
    rgb: Vec<[u8; 3]>,
    /// Every macroblock as coded samples: the picture wherever the ball is not.
    macroblocks: Vec<MbSamples>,
}

impl RenderedVideo {
    pub fn new(spec: VideoSpec) -> RenderedVideo {
        let layout = Arc::new(Layout::for_spec(&spec));
        RenderedVideo { spec, layout }
    }

    pub fn spec(&self) -> &VideoSpec {
        &self.spec
    }

    /// The file's length: `spec.total_bytes`, unless that is below the smallest video.
    pub fn len(&self) -> u64 {
        self.layout.len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Width and height of the coded pictures (the track declares `spec.size` for display).
    pub fn coded_size(&self) -> Size {
        let picture = self.layout.frames.picture;
        Size {
            width: picture.width,
            height: picture.height,
        }
    }

    /// Number of pictures: `FPS` per second of `spec.seconds` (at least one second).
    pub fn frame_count(&self) -> u32 {
        self.layout.frames.count
    }

    /// Whether the pictures move (false when `total_bytes` only affords a still picture).
    pub fn is_moving(&self) -> bool {
        self.layout.frames.moving
    }

    /// Fills `buf` with the bytes at `offset`; returns how many were written (0 at the end).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> usize {
        let mut written = 0;
        while written < buf.len() && offset + (written as u64) < self.len() {
            written += self
                .layout
                .fill_from(offset + written as u64, &mut buf[written..]);
        }
        written
    }
}

impl Layout {
    fn for_spec(spec: &VideoSpec) -> Layout {
        let aspect = spec.size.width.max(1) as f32 / spec.size.height.max(1) as f32;
        let scene = Scene::new(spec.seed, &spec.prompt, aspect);
        let count = spec.seconds.max(1).saturating_mul(FPS);
        let mut chosen = None;
        for profile in PROFILES {
            let frames = Frames {
                scene: scene.clone(),
                picture: coded_picture(spec.size, profile.long_side),
                moving: profile.moving,
                count,
                still: OnceLock::new(),
            };
            let layout = Layout::build(spec, frames);
            let fits = layout.len <= spec.total_bytes;
            chosen = Some(layout);
            if fits {
                break;
            }
        }
        chosen.expect("PROFILES is not empty")
    }

    /// Lays out `frames` in a file of `spec.total_bytes` (or as small as possible).
    fn build(spec: &VideoSpec, frames: Frames) -> Layout {
        let sample_sizes: Vec<u32> = (0..frames.count).map(|k| frames.sample_len(k)).collect();
        let sps = h264::sps(frames.picture);
        let pps = h264::pps();
        let ftyp = mp4::ftyp();
        let movie = |chunk_offset| mp4::Movie {
            display_width: spec.size.width,
            display_height: spec.size.height,
            picture: frames.picture,
            sps: &sps,
            pps: &pps,
            timescale: FPS * FRAME_DURATION,
            frame_duration: FRAME_DURATION,
            sample_sizes: &sample_sizes,
            chunk_offset,
        };
        // The moov's length does not depend on the offset it records, so measure, then write.
        let moov_len = mp4::moov(&movie(0)).len();
        let mdat_payload_start = (ftyp.len() + moov_len + 8) as u64;
        let chunk_offset = u32::try_from(mdat_payload_start).unwrap_or(u32::MAX);
        let moov = mp4::moov(&movie(chunk_offset));

        let mut sample_starts = Vec::with_capacity(sample_sizes.len() + 1);
        let mut end = mdat_payload_start;
        sample_starts.push(end);
        for &size in &sample_sizes {
            end += u64::from(size);
            sample_starts.push(end);
        }
        let leftover = spec.total_bytes.saturating_sub(end);
        let (slack, free_header) = padding(leftover);
        let mdat_end = end + slack;

        let mut head = ftyp;
        head.extend_from_slice(&moov);
        let mdat_len = u32::try_from(mdat_end - (head.len() as u64)).unwrap_or(u32::MAX);
        head.extend_from_slice(&mdat_len.to_be_bytes());
        head.extend_from_slice(b"mdat");
        Layout {
            frames,
            head,
            sample_starts,
            mdat_end,
            free_header,
            len: end + leftover,
            filler_key: filler_key(spec),
        }
    }

    /// Copies bytes from one region starting at `pos` (< len); returns how many.
    fn fill_from(&self, pos: u64, buf: &mut [u8]) -> usize {
        let head_end = self.head.len() as u64;
        let frames_end = *self.sample_starts.last().unwrap_or(&head_end);
        let free_header_end = self.mdat_end + self.free_header.len() as u64;
        if pos < head_end {
            copy_part(&self.head, pos, buf)
        } else if pos < frames_end {
            self.fill_from_pictures(pos, buf)
        } else if pos < self.mdat_end {
            fill_with_keystream(&self.filler_key, pos, limit(buf, self.mdat_end - pos))
        } else if pos < free_header_end {
            copy_part(&self.free_header, pos - self.mdat_end, buf)
        } else {
            fill_with_keystream(&self.filler_key, pos, limit(buf, self.len - pos))
        }
    }

    fn fill_from_pictures(&self, pos: u64, buf: &mut [u8]) -> usize {
        // sample_starts is sorted; the picture holding `pos` is the last one starting at or before it.
        let index = self.sample_starts.partition_point(|&start| start <= pos) - 1;
        let sample = self.frames.sample(index as u32, true);
        copy_part(&sample, pos - self.sample_starts[index], buf)
    }
}

/// Copies `source[from..]` into `buf` as far as both go.
fn copy_part(source: &[u8], from: u64, buf: &mut [u8]) -> usize {
    let source = &source[from as usize..];
    let n = source.len().min(buf.len());
    buf[..n].copy_from_slice(&source[..n]);
    n
}

fn limit(buf: &mut [u8], max: u64) -> &mut [u8] {
    let n = usize::try_from(max).unwrap_or(usize::MAX).min(buf.len());
    &mut buf[..n]
}

/// Splits the bytes left after the pictures into padding inside `mdat` (only when fewer than
/// a `free` box header needs) and the header of a `free` box that takes the rest.
fn padding(leftover: u64) -> (u64, Vec<u8>) {
    if leftover < 8 {
        return (leftover, Vec::new());
    }
    let mut header = Vec::with_capacity(16);
    match u32::try_from(leftover) {
        Ok(size) => header.extend_from_slice(&size.to_be_bytes()),
        Err(_) => {
            // Past 4 GiB: size 1 means a 64-bit size follows the type.
            header.extend_from_slice(&1u32.to_be_bytes());
        }
    }
    header.extend_from_slice(b"free");
    if leftover > u64::from(u32::MAX) {
        header.extend_from_slice(&leftover.to_be_bytes());
    }
    (0, header)
}

/// The padding's key: every field of the spec, so any change gives other bytes.
fn filler_key(spec: &VideoSpec) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"render sandbox video filler v1\0");
    hasher.update(spec.seed.to_le_bytes());
    hasher.update((spec.prompt.len() as u64).to_le_bytes());
    hasher.update(spec.prompt.as_bytes());
    hasher.update(spec.size.width.to_le_bytes());
    hasher.update(spec.size.height.to_le_bytes());
    hasher.update(spec.seconds.to_le_bytes());
    hasher.update(spec.total_bytes.to_le_bytes());
    hasher.finalize().into()
}

/// Fills `buf` with keystream bytes `pos..`: byte `i` of the file's padding is byte `i` of
/// the ChaCha8 stream, so any range is computed directly.
fn fill_with_keystream(key: &[u8; 32], pos: u64, buf: &mut [u8]) -> usize {
    let mut rng = ChaCha8Rng::from_seed(*key);
    rng.set_word_pos(u128::from(pos / 4));
    let skip = (pos % 4) as usize;
    let mut rest = &mut buf[..];
    if skip != 0 {
        let mut word = [0u8; 4];
        rng.fill_bytes(&mut word);
        let n = (4 - skip).min(rest.len());
        rest[..n].copy_from_slice(&word[skip..skip + n]);
        rest = &mut rest[n..];
    }
    rng.fill_bytes(rest);
    buf.len()
}

/// The coded picture for a display size: `long_side` on the long side, the other side in
/// proportion, both even (4:2:0 cropping works in steps of two).
fn coded_picture(display: Size, long_side: u32) -> Picture {
    let (long, short) = if display.width >= display.height {
        (display.width, display.height)
    } else {
        (display.height, display.width)
    };
    let scaled = (u64::from(long_side) * u64::from(short.max(1)) + u64::from(long.max(1)) / 2)
        / u64::from(long.max(1));
    let short_side = ((scaled as u32).div_ceil(2) * 2).clamp(2, long_side);
    if display.width >= display.height {
        Picture {
            width: long_side,
            height: short_side,
        }
    } else {
        Picture {
            width: short_side,
            height: long_side,
        }
    }
}

impl Frames {
    fn time(k: u32) -> f32 {
        k as f32 / FPS as f32
    }

    /// Length of picture `k` as stored (length prefix included), without drawing it.
    fn sample_len(&self, k: u32) -> u32 {
        // Samples are 16..=240, never 0..=3, so they never add emulation-prevention bytes:
        // any stand-in value gives the same length as the real picture.
        self.sample(k, false).len() as u32
    }

    /// Picture `k` as an MP4 sample: a 4-byte length, then the NAL unit. `draw: false` codes
    /// grey instead of the scene, which is enough to measure it.
    fn sample(&self, k: u32, draw: bool) -> Vec<u8> {
        let t = Frames::time(k);
        let samples = |mb| {
            if draw {
                self.macroblock(mb, t)
            } else {
                [128; MB_SAMPLES]
            }
        };
        let nal = if k == 0 {
            h264::idr_picture(self.picture, samples)
        } else {
            h264::p_picture(self.picture, k, &self.changed_macroblocks(k), samples)
        };
        let mut sample = Vec::with_capacity(nal.len() + 4);
        sample.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        sample.extend_from_slice(&nal);
        sample
    }

    /// Macroblocks that differ between pictures `k - 1` and `k`: wherever the ball was or is.
    /// Everything else is the still background and is skipped.
    fn changed_macroblocks(&self, k: u32) -> Vec<u32> {
        if !self.moving {
            return Vec::new();
        }
        let mut mbs = self.ball_macroblocks(Frames::time(k - 1));
        mbs.extend(self.ball_macroblocks(Frames::time(k)));
        mbs.sort_unstable();
        mbs.dedup();
        mbs
    }

    fn ball_macroblocks(&self, t: f32) -> Vec<u32> {
        let (pixel, x_step) = self.pixel_steps();
        let bounds = self.scene.ball_at(t).bounds(pixel);
        let to_mb = |value: f32, step: f32, mbs: u32| -> u32 {
            ((value / step).max(0.0) as u32 / 16).min(mbs - 1)
        };
        let (wide, high) = (self.picture.mbs_wide(), self.picture.mbs_high());
        let (left, right) = (
            to_mb(bounds.left, x_step, wide),
            to_mb(bounds.right, x_step, wide),
        );
        let (top, bottom) = (
            to_mb(bounds.top, pixel, high),
            to_mb(bounds.bottom, pixel, high),
        );
        (top..=bottom)
            .flat_map(|row| (left..=right).map(move |col| row * wide + col))
            .collect()
    }

    /// Picture units per pixel down and across.
    fn pixel_steps(&self) -> (f32, f32) {
        (
            1.0 / self.picture.height as f32,
            self.scene.aspect() / self.picture.width as f32,
        )
    }

    fn still(&self) -> &Still {
        self.still.get_or_init(|| {
            let (pixel, x_step) = self.pixel_steps();
            let (wide, high) = (self.picture.mbs_wide() * 16, self.picture.mbs_high() * 16);
            let rgb: Vec<[u8; 3]> = (0..high)
                .flat_map(|row| (0..wide).map(move |col| (col, row)))
                .map(|(col, row)| {
                    let x = (col as f32 + 0.5) * x_step;
                    let y = (row as f32 + 0.5) * pixel;
                    self.scene.background(x, y, pixel).to_bytes()
                })
                .collect();
            let macroblocks =
                (0..self.picture.mbs_wide() * self.picture.mbs_high())
                    .map(|mb| {
                        samples(self.macroblock_pixels(&rgb, mb, |still, _, _| {
                            scene::Rgb::from_bytes(still)
                        }))
                    })
                    .collect();
            Still { rgb, macroblocks }
        })
    }

    /// The scene inside macroblock `mb` at time `t`, as coded samples.
    fn macroblock(&self, mb: u32, t: f32) -> MbSamples {
        let still = self.still();
        let (pixel, _) = self.pixel_steps();
        let ball = self.scene.ball_at(t);
        if !self.touches(mb, ball.bounds(pixel)) {
            // The ball draws nothing here: the picture is the still one, already coded.
            return still.macroblocks[mb as usize];
        }
        samples(self.macroblock_pixels(&still.rgb, mb, |still, x, y| {
            ball.over(scene::Rgb::from_bytes(still), x, y, pixel)
        }))
    }

    /// The 16 x 16 pixels of macroblock `mb`: `colour` of the still pixel and its centre.
    fn macroblock_pixels(
        &self,
        still: &[[u8; 3]],
        mb: u32,
        colour: impl Fn([u8; 3], f32, f32) -> scene::Rgb,
    ) -> [[f32; 3]; 256] {
        let (pixel, x_step) = self.pixel_steps();
        let wide = self.picture.mbs_wide();
        let (mb_x, mb_y) = (mb % wide, mb / wide);
        let mut rgb = [[0.0f32; 3]; 256];
        for (i, slot) in rgb.iter_mut().enumerate() {
            let col = mb_x * 16 + (i as u32 % 16);
            let row = mb_y * 16 + (i as u32 / 16);
            let x = (col as f32 + 0.5) * x_step;
            let y = (row as f32 + 0.5) * pixel;
            let c = colour(still[(row * wide * 16 + col) as usize], x, y);
            *slot = [c.r, c.g, c.b];
        }
        rgb
    }

    /// Whether any pixel centre of macroblock `mb` falls inside `bounds`.
    fn touches(&self, mb: u32, bounds: scene::Bounds) -> bool {
        let (pixel, x_step) = self.pixel_steps();
        let wide = self.picture.mbs_wide();
        let (mb_x, mb_y) = ((mb % wide) as f32, (mb / wide) as f32);
        let (left, right) = ((mb_x * 16.0 + 0.5) * x_step, (mb_x * 16.0 + 15.5) * x_step);
        let (top, bottom) = ((mb_y * 16.0 + 0.5) * pixel, (mb_y * 16.0 + 15.5) * pixel);
        left <= bounds.right && right >= bounds.left && top <= bounds.bottom && bottom >= bounds.top
    }
}

/// A macroblock's pixels as BT.601 limited-range 4:2:0 samples (the colour space decoders
/// assume when the stream does not say).
fn samples(rgb: [[f32; 3]; 256]) -> MbSamples {
    let mut out = [0u8; MB_SAMPLES];
    for (i, &[r, g, b]) in rgb.iter().enumerate() {
        out[i] = luma(r, g, b);
    }
    for cy in 0..8 {
        for cx in 0..8 {
            let mut sum = [0.0f32; 3];
            for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                let p = rgb[(cy * 2 + dy) * 16 + cx * 2 + dx];
                for c in 0..3 {
                    sum[c] += p[c] / 4.0;
                }
            }
            let (cb, cr) = chroma(sum[0], sum[1], sum[2]);
            out[256 + cy * 8 + cx] = cb;
            out[320 + cy * 8 + cx] = cr;
        }
    }
    out
}

fn luma(r: f32, g: f32, b: f32) -> u8 {
    scene::round(16.0 + 219.0 * (0.299 * r + 0.587 * g + 0.114 * b)).clamp(16.0, 235.0) as u8
}

fn chroma(r: f32, g: f32, b: f32) -> (u8, u8) {
    let cb = 128.0 + 224.0 * (-0.168_736 * r - 0.331_264 * g + 0.5 * b);
    let cr = 128.0 + 224.0 * (0.5 * r - 0.418_688 * g - 0.081_312 * b);
    (
        scene::round(cb).clamp(16.0, 240.0) as u8,
        scene::round(cr).clamp(16.0, 240.0) as u8,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(seconds: u32, total_bytes: u64) -> VideoSpec {
        VideoSpec {
            seed: 7,
            prompt: "a lighthouse at dusk".into(),
            size: Size {
                width: 1280,
                height: 720,
            },
            seconds,
            total_bytes,
        }
    }

    #[test]
    fn measured_sample_lengths_match_drawn_pictures() {
        let video = RenderedVideo::new(spec(2, 8 << 20));
        let frames = &video.layout.frames;
        assert!(frames.moving);
        for k in 0..frames.count {
            assert_eq!(
                frames.sample(k, true).len() as u32,
                frames.sample_len(k),
                "frame {k}"
            );
        }
    }

    /// Replays what a decoder does (skipped blocks keep the previous picture, coded ones are
    /// replaced) and checks every picture equals the scene drawn afresh: nothing the ball
    /// touched is ever skipped.
    #[test]
    fn skipped_macroblocks_already_hold_the_right_picture() {
        let video = RenderedVideo::new(spec(1, 8 << 20));
        let frames = &video.layout.frames;
        assert!(frames.moving);
        let mb_count = frames.picture.mb_count();
        let mut shown: Vec<MbSamples> =
            (0..mb_count).map(|mb| frames.macroblock(mb, 0.0)).collect();
        for k in 1..frames.count {
            let t = Frames::time(k);
            for mb in frames.changed_macroblocks(k) {
                shown[mb as usize] = frames.macroblock(mb, t);
            }
            for mb in 0..mb_count {
                assert!(
                    shown[mb as usize] == drawn_afresh(frames, mb, t),
                    "frame {k}, macroblock {mb}"
                );
            }
        }
    }

    /// Macroblock `mb` at time `t` with every pixel drawn, none copied from the still picture.
    fn drawn_afresh(frames: &Frames, mb: u32, t: f32) -> MbSamples {
        let (pixel, _) = frames.pixel_steps();
        let ball = frames.scene.ball_at(t);
        samples(
            frames.macroblock_pixels(&frames.still().rgb, mb, |still, x, y| {
                ball.over(scene::Rgb::from_bytes(still), x, y, pixel)
            }),
        )
    }

    /// Every macroblock the ball is not drawn in is copied from the still picture: the copy must
    /// be exactly what drawing it would give, also where the ball's soft edge comes close.
    #[test]
    fn macroblocks_copied_from_the_still_picture_are_exact() {
        for size in [(1280, 720), (720, 1280)] {
            let video = RenderedVideo::new(VideoSpec {
                size: Size {
                    width: size.0,
                    height: size.1,
                },
                ..spec(2, 8 << 20)
            });
            let frames = &video.layout.frames;
            let (pixel, _) = frames.pixel_steps();
            let mut copied = 0;
            for k in 0..frames.count {
                let t = Frames::time(k);
                let bounds = frames.scene.ball_at(t).bounds(pixel);
                for mb in 0..frames.picture.mb_count() {
                    copied += usize::from(!frames.touches(mb, bounds));
                    assert!(
                        frames.macroblock(mb, t) == drawn_afresh(frames, mb, t),
                        "{size:?}, frame {k}, macroblock {mb}"
                    );
                }
            }
            assert!(copied > 0, "no macroblock was copied");
        }
    }

    #[test]
    fn coded_pictures_keep_the_aspect_ratio() {
        let size = |w, h| Size {
            width: w,
            height: h,
        };
        let p = |w, h| Picture {
            width: w,
            height: h,
        };
        assert_eq!(coded_picture(size(1280, 720), 160), p(160, 90));
        assert_eq!(coded_picture(size(720, 1280), 320), p(180, 320));
        assert_eq!(coded_picture(size(1792, 1024), 160), p(160, 92));
        assert_eq!(coded_picture(size(100, 1), 64), p(64, 2));
    }

    #[test]
    fn padding_uses_a_free_box_when_it_fits() {
        assert_eq!(padding(0), (0, vec![]));
        assert_eq!(padding(7), (7, vec![]));
        assert_eq!(padding(8), (0, b"\0\0\0\x08free".to_vec()));
        let (slack, header) = padding(5 << 30);
        assert_eq!(slack, 0);
        assert_eq!(&header[..8], b"\0\0\0\x01free");
        assert_eq!(u64::from_be_bytes(header[8..].try_into().unwrap()), 5 << 30);
    }
}
