//! The sandbox's still images: a video's frames, its thumbnail (JPEG or WebP) and its
//! spritesheet, drawn from the same scene as its pictures.

use render_wire::catalog::Size;

use super::MAX_IMAGE_SIDE;
use super::scene::Scene;

/// JPEG quality of thumbnails and spritesheets.
const JPEG_QUALITY: u8 = 85;
/// Spritesheets are a grid of this many columns and rows, one frame every half second.
const SPRITE_GRID: u32 = 4;
const SPRITE_INTERVAL_SECONDS: f32 = 0.5;

/// A packed RGB picture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    /// `width * height * 3` bytes, rows top to bottom.
    pub pixels: Vec<u8>,
}

/// `size`, shrunk in proportion when a side exceeds [`MAX_IMAGE_SIDE`].
fn image_size(size: Size) -> (u32, u32) {
    let (w, h) = (size.width.max(1), size.height.max(1));
    let long = w.max(h);
    if long <= MAX_IMAGE_SIDE {
        return (w, h);
    }
    let shrink =
        |side: u32| ((u64::from(side) * u64::from(MAX_IMAGE_SIDE)) / u64::from(long)).max(1) as u32;
    (shrink(w), shrink(h))
}

/// The video's picture at `t` seconds, drawn at `size` (see [`MAX_IMAGE_SIDE`]).
pub fn frame_rgb(seed: u64, prompt: &str, size: Size, t: f32) -> RgbImage {
    let (width, height) = image_size(size);
    let scene = Scene::new(seed, prompt, width as f32 / height as f32);
    RgbImage {
        width,
        height,
        pixels: scene.render_rgb(width, height, t),
    }
}

/// The video's picture at `t` seconds as a JPEG.
pub fn frame_jpeg(seed: u64, prompt: &str, size: Size, t: f32) -> Vec<u8> {
    encode_jpeg(&frame_rgb(seed, prompt, size, t))
}

/// The video's first frame at `size`: what [`thumbnail_jpeg`] encodes.
pub fn thumbnail_rgb(seed: u64, prompt: &str, size: Size) -> RgbImage {
    frame_rgb(seed, prompt, size, 0.0)
}

/// A JPEG thumbnail: the video's first frame, visibly different for different prompts.
pub fn thumbnail_jpeg(seed: u64, prompt: &str, size: Size) -> Vec<u8> {
    encode_jpeg(&thumbnail_rgb(seed, prompt, size))
}

/// A lossless WebP of the thumbnail.
pub fn thumbnail_webp(seed: u64, prompt: &str, size: Size) -> Vec<u8> {
    let image = thumbnail_rgb(seed, prompt, size);
    let mut out = Vec::new();
    image_webp::WebPEncoder::new(&mut out)
        .encode(
            &image.pixels,
            image.width,
            image.height,
            image_webp::ColorType::Rgb8,
        )
        .expect("pixels match the dimensions and a Vec accepts every write");
    out
}

/// A JPEG spritesheet: a 4x4 grid of frames half a second apart, each a quarter of `size`
/// on a side (so the sheet is about `size`).
pub fn spritesheet_jpeg(seed: u64, prompt: &str, size: Size) -> Vec<u8> {
    let (width, height) = image_size(size);
    let tile_w = (width / SPRITE_GRID).max(1);
    let tile_h = (height / SPRITE_GRID).max(1);
    let scene = Scene::new(seed, prompt, width as f32 / height as f32);
    let sheet_w = tile_w * SPRITE_GRID;
    let mut pixels = vec![0u8; (sheet_w * tile_h * SPRITE_GRID * 3) as usize];
    for index in 0..SPRITE_GRID * SPRITE_GRID {
        let tile = scene.render_rgb(tile_w, tile_h, index as f32 * SPRITE_INTERVAL_SECONDS);
        let (x0, y0) = (
            (index % SPRITE_GRID) * tile_w,
            (index / SPRITE_GRID) * tile_h,
        );
        for row in 0..tile_h {
            let from = (row * tile_w * 3) as usize;
            let to = (((y0 + row) * sheet_w + x0) * 3) as usize;
            pixels[to..to + (tile_w * 3) as usize]
                .copy_from_slice(&tile[from..from + (tile_w * 3) as usize]);
        }
    }
    encode_jpeg(&RgbImage {
        width: sheet_w,
        height: tile_h * SPRITE_GRID,
        pixels,
    })
}

fn encode_jpeg(image: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    // image_size keeps both sides ≤ MAX_IMAGE_SIDE, well within JPEG's u16 dimensions.
    jpeg_encoder::Encoder::new(&mut out, JPEG_QUALITY)
        .encode(
            &image.pixels,
            image.width as u16,
            image.height as u16,
            jpeg_encoder::ColorType::Rgb,
        )
        .expect("dimensions are capped and a Vec accepts every write");
    out
}
