//! Synthetic media for the sandbox: playable MP4s, thumbnails and spritesheets, generated on the
//! fly from a seed so a 64 MB video is streamed (and ranges served) without being held in memory.
//!
//! STUB: the real encoder replaces this file; the signatures are the contract.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::catalog::Size;

/// What decides a video's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoSpec {
    /// Per-video seed (sandbox seed mixed with the video id), so two takes differ.
    pub seed: u64,
    pub prompt: String,
    pub size: Size,
    pub seconds: u32,
    /// Exact length of the MP4 in bytes (the sandbox's `--video-bytes`).
    pub total_bytes: u64,
}

/// A video whose bytes can be read at any offset, deterministically.
#[derive(Clone, Debug)]
pub struct RenderedVideo {
    spec: VideoSpec,
}

impl RenderedVideo {
    pub fn new(spec: VideoSpec) -> RenderedVideo {
        RenderedVideo { spec }
    }

    pub fn len(&self) -> u64 {
        self.spec.total_bytes
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buf` with the bytes at `offset`; returns how many were written (0 at the end).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> usize {
        let remaining = self.len().saturating_sub(offset);
        let n = (remaining.min(buf.len() as u64)) as usize;
        let mut rng = ChaCha8Rng::seed_from_u64(self.spec.seed);
        rng.set_word_pos(u128::from(offset / 4));
        let skip = (offset % 4) as usize;
        let mut scratch = vec![0u8; n + skip];
        rng.fill(&mut scratch[..]);
        buf[..n].copy_from_slice(&scratch[skip..skip + n]);
        n
    }
}

/// A JPEG thumbnail: one frame of the video, visibly different for different prompts.
pub fn thumbnail_jpeg(seed: u64, prompt: &str, size: Size) -> Vec<u8> {
    let _ = (seed, prompt, size);
    b"\xFF\xD8\xFF\xD9".to_vec()
}

/// A JPEG spritesheet: a grid of frames.
pub fn spritesheet_jpeg(seed: u64, prompt: &str, size: Size) -> Vec<u8> {
    thumbnail_jpeg(seed, prompt, size)
}
