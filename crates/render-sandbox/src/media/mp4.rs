//! The ISO-BMFF (MP4) boxes of a single-track H.264 video: `ftyp` and a faststart `moov`.

use super::h264;

/// Writes nested boxes; each box's size is patched in when its body is done.
#[derive(Default)]
pub struct BoxWriter {
    bytes: Vec<u8>,
}

impl BoxWriter {
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    pub fn u8(&mut self, value: u8) {
        self.bytes.push(value);
    }

    pub fn u16(&mut self, value: u16) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    pub fn u32(&mut self, value: u32) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    pub fn bytes(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    pub fn zeros(&mut self, count: usize) {
        self.bytes.resize(self.bytes.len() + count, 0);
    }

    /// A box: 32-bit size, four-character type, body.
    pub fn boxed(&mut self, kind: &[u8; 4], body: impl FnOnce(&mut BoxWriter)) {
        let start = self.bytes.len();
        self.u32(0);
        self.bytes(kind);
        body(self);
        // Our boxes are kilobytes; a size past u32 would be a bug in this module, not input.
        let size =
            u32::try_from(self.bytes.len() - start).expect("moov boxes stay far below 4 GiB");
        self.bytes[start..start + 4].copy_from_slice(&size.to_be_bytes());
    }

    /// A full box: a box whose body starts with a version byte and 24 bits of flags.
    pub fn full_box(
        &mut self,
        kind: &[u8; 4],
        version: u8,
        flags: u32,
        body: impl FnOnce(&mut BoxWriter),
    ) {
        self.boxed(kind, |w| {
            w.u32((u32::from(version) << 24) | (flags & 0x00FF_FFFF));
            body(w);
        });
    }

    /// The identity transformation matrix of `mvhd` and `tkhd` (16.16 and 2.30 fixed point).
    fn unity_matrix(&mut self) {
        for value in [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
            self.u32(value);
        }
    }
}

/// Everything the `moov` box describes.
pub struct Movie<'a> {
    /// Size players show (the requested shot size); the coded picture is scaled to it.
    pub display_width: u32,
    pub display_height: u32,
    pub picture: h264::Picture,
    pub sps: &'a [u8],
    pub pps: &'a [u8],
    /// Media time units per second, and per frame.
    pub timescale: u32,
    pub frame_duration: u32,
    pub sample_sizes: &'a [u32],
    /// Where the first sample starts in the file (the samples are one contiguous chunk).
    pub chunk_offset: u32,
}

/// Movie timescale (`mvhd`, `tkhd`): milliseconds.
const MOVIE_TIMESCALE: u32 = 1000;

impl Movie<'_> {
    fn media_duration(&self) -> u64 {
        self.sample_sizes.len() as u64 * u64::from(self.frame_duration)
    }

    fn movie_duration(&self) -> u32 {
        let ms = self.media_duration() * u64::from(MOVIE_TIMESCALE) / u64::from(self.timescale);
        u32::try_from(ms).unwrap_or(u32::MAX)
    }

    fn sample_count(&self) -> u32 {
        u32::try_from(self.sample_sizes.len()).unwrap_or(u32::MAX)
    }
}

pub fn ftyp() -> Vec<u8> {
    let mut w = BoxWriter::default();
    w.boxed(b"ftyp", |w| {
        w.bytes(b"isom");
        w.u32(0x200);
        for brand in [b"isom", b"iso2", b"avc1", b"mp41"] {
            w.bytes(brand);
        }
    });
    w.into_bytes()
}

pub fn moov(movie: &Movie) -> Vec<u8> {
    let mut w = BoxWriter::default();
    w.boxed(b"moov", |w| {
        mvhd(w, movie);
        w.boxed(b"trak", |w| {
            tkhd(w, movie);
            w.boxed(b"mdia", |w| {
                mdhd(w, movie);
                hdlr(w);
                w.boxed(b"minf", |w| {
                    w.full_box(b"vmhd", 0, 1, |w| w.zeros(8));
                    dinf(w);
                    stbl(w, movie);
                });
            });
        });
    });
    w.into_bytes()
}

fn mvhd(w: &mut BoxWriter, movie: &Movie) {
    w.full_box(b"mvhd", 0, 0, |w| {
        w.u32(0); // creation_time: fixed, so equal specs give equal bytes
        w.u32(0); // modification_time
        w.u32(MOVIE_TIMESCALE);
        w.u32(movie.movie_duration());
        w.u32(0x0001_0000); // rate 1.0
        w.u16(0x0100); // volume 1.0
        w.zeros(10);
        w.unity_matrix();
        w.zeros(24); // pre_defined
        w.u32(2); // next_track_ID
    });
}

fn tkhd(w: &mut BoxWriter, movie: &Movie) {
    // flags: track_enabled | track_in_movie
    w.full_box(b"tkhd", 0, 3, |w| {
        w.u32(0);
        w.u32(0);
        w.u32(1); // track_ID
        w.u32(0);
        w.u32(movie.movie_duration());
        w.zeros(8);
        w.u16(0); // layer
        w.u16(0); // alternate_group
        w.u16(0); // volume: a video track is silent
        w.u16(0);
        w.unity_matrix();
        w.u32(movie.display_width << 16);
        w.u32(movie.display_height << 16);
    });
}

fn mdhd(w: &mut BoxWriter, movie: &Movie) {
    w.full_box(b"mdhd", 0, 0, |w| {
        w.u32(0);
        w.u32(0);
        w.u32(movie.timescale);
        w.u32(u32::try_from(movie.media_duration()).unwrap_or(u32::MAX));
        w.u16(0x55C4); // language "und", packed ISO-639-2/T
        w.u16(0);
    });
}

fn hdlr(w: &mut BoxWriter) {
    w.full_box(b"hdlr", 0, 0, |w| {
        w.u32(0);
        w.bytes(b"vide");
        w.zeros(12);
        w.bytes(b"VideoHandler\0");
    });
}

fn dinf(w: &mut BoxWriter) {
    w.boxed(b"dinf", |w| {
        w.full_box(b"dref", 0, 0, |w| {
            w.u32(1);
            // flags 1: the media data is in this file.
            w.full_box(b"url ", 0, 1, |_| {});
        });
    });
}

fn stbl(w: &mut BoxWriter, movie: &Movie) {
    w.boxed(b"stbl", |w| {
        w.full_box(b"stsd", 0, 0, |w| {
            w.u32(1);
            avc1(w, movie);
        });
        w.full_box(b"stts", 0, 0, |w| {
            w.u32(1);
            w.u32(movie.sample_count());
            w.u32(movie.frame_duration);
        });
        // Only the first picture is an IDR; players seek by decoding from it.
        w.full_box(b"stss", 0, 0, |w| {
            w.u32(1);
            w.u32(1);
        });
        w.full_box(b"stsc", 0, 0, |w| {
            w.u32(1);
            w.u32(1); // first_chunk
            w.u32(movie.sample_count()); // samples_per_chunk: all of them
            w.u32(1); // sample_description_index
        });
        w.full_box(b"stsz", 0, 0, |w| {
            w.u32(0); // sample_size 0: sizes follow
            w.u32(movie.sample_count());
            for &size in movie.sample_sizes {
                w.u32(size);
            }
        });
        w.full_box(b"stco", 0, 0, |w| {
            w.u32(1);
            w.u32(movie.chunk_offset);
        });
    });
}

fn avc1(w: &mut BoxWriter, movie: &Movie) {
    w.boxed(b"avc1", |w| {
        w.zeros(6);
        w.u16(1); // data_reference_index
        w.zeros(16); // pre_defined, reserved
        w.u16(movie.picture.width as u16);
        w.u16(movie.picture.height as u16);
        w.u32(0x0048_0000); // 72 dpi
        w.u32(0x0048_0000);
        w.u32(0);
        w.u16(1); // frame_count per sample
        let mut name = [0u8; 32];
        let label = b"render sandbox";
        name[0] = label.len() as u8;
        name[1..=label.len()].copy_from_slice(label);
        w.bytes(&name);
        w.u16(0x0018); // depth: colour, no alpha
        w.u16(0xFFFF); // pre_defined -1
        w.boxed(b"avcC", |w| {
            w.u8(1); // configurationVersion
            w.u8(h264::PROFILE_IDC);
            w.u8(h264::CONSTRAINT_FLAGS);
            w.u8(h264::LEVEL_IDC);
            w.u8(0xFF); // lengthSizeMinusOne = 3: 4-byte NAL lengths
            w.u8(0xE1); // one SPS
            w.u16(movie.sps.len() as u16);
            w.bytes(movie.sps);
            w.u8(1); // one PPS
            w.u16(movie.pps.len() as u16);
            w.bytes(movie.pps);
        });
    });
}
