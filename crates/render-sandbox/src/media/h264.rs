//! A tiny H.264 encoder: Constrained Baseline, CAVLC, every coded macroblock `I_PCM`.
//!
//! `I_PCM` stores raw samples, so there is no transform, prediction or entropy coding to get
//! wrong: the decoded picture is exactly what was rendered, and every decoder (browsers,
//! QuickTime, ffmpeg) plays it. A P picture codes only the macroblocks that changed and skips
//! the rest (`P_Skip` with no intra neighbours' motion copies the block from the previous
//! picture), which is how a moving object costs a few hundred bytes per frame.

/// Bytes of one `I_PCM` macroblock in 4:2:0: 16x16 luma then 8x8 Cb and 8x8 Cr.
pub const MB_SAMPLES: usize = 256 + 64 + 64;

/// The raw samples of one macroblock, in the order `I_PCM` stores them.
pub type MbSamples = [u8; MB_SAMPLES];

/// `profile_idc` 66 (Baseline) with `constraint_set0/1` (Constrained Baseline, the most widely
/// supported profile) at level 3.0, which bounds nothing we produce.
pub const PROFILE_IDC: u8 = 66;
pub const CONSTRAINT_FLAGS: u8 = 0b1100_0000;
pub const LEVEL_IDC: u8 = 30;

/// frame_num is 16 bits; it wraps, which picture order type 2 handles.
const LOG2_MAX_FRAME_NUM: u32 = 16;
/// `mb_type` of `I_PCM` in an I slice; in a P slice intra types come after the 5 P types.
const I_PCM_IN_I_SLICE: u32 = 25;
const I_PCM_IN_P_SLICE: u32 = 5 + I_PCM_IN_I_SLICE;

/// The coded picture: a whole number of macroblocks, cropped to the visible even-sized frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Picture {
    /// Visible width and height in pixels (both even, as 4:2:0 cropping requires).
    pub width: u32,
    pub height: u32,
}

impl Picture {
    pub fn mbs_wide(self) -> u32 {
        self.width.div_ceil(16)
    }

    pub fn mbs_high(self) -> u32 {
        self.height.div_ceil(16)
    }

    pub fn mb_count(self) -> u32 {
        self.mbs_wide() * self.mbs_high()
    }
}

/// Writes the bits of an RBSP, most significant first.
#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    current: u8,
    used: u32,
}

impl BitWriter {
    fn bit(&mut self, bit: bool) {
        self.current = (self.current << 1) | u8::from(bit);
        self.used += 1;
        if self.used == 8 {
            self.bytes.push(self.current);
            self.current = 0;
            self.used = 0;
        }
    }

    /// `u(n)`: the low `n` bits of `value`.
    fn bits(&mut self, n: u32, value: u32) {
        for i in (0..n).rev() {
            self.bit((value >> i) & 1 == 1);
        }
    }

    /// `ue(v)`: unsigned exp-Golomb, `value + 1` in binary after as many zeros as it has bits - 1.
    fn ue(&mut self, value: u32) {
        let code = u64::from(value) + 1;
        let len = 64 - code.leading_zeros();
        for _ in 1..len {
            self.bit(false);
        }
        for i in (0..len).rev() {
            self.bit((code >> i) & 1 == 1);
        }
    }

    /// `se(v)`: signed exp-Golomb, positive values on odd code numbers.
    fn se(&mut self, value: i32) {
        let code = if value > 0 {
            2 * value.unsigned_abs() - 1
        } else {
            2 * value.unsigned_abs()
        };
        self.ue(code);
    }

    fn is_aligned(&self) -> bool {
        self.used == 0
    }

    /// `pcm_alignment_zero_bit`s up to the next byte.
    fn align_with_zeros(&mut self) {
        while !self.is_aligned() {
            self.bit(false);
        }
    }

    /// Whole bytes; only valid on a byte boundary (after `align_with_zeros`).
    fn aligned_bytes(&mut self, bytes: &[u8]) {
        debug_assert!(self.is_aligned());
        self.bytes.extend_from_slice(bytes);
    }

    /// `rbsp_trailing_bits`: a stop bit, then zeros to the byte boundary.
    fn finish(mut self) -> Vec<u8> {
        self.bit(true);
        self.align_with_zeros();
        self.bytes
    }
}

/// Wraps an RBSP in a NAL unit, inserting emulation-prevention bytes so that no `00 00 0x`
/// (x ≤ 3) sequence inside can be mistaken for a start code.
fn nal_unit(nal_ref_idc: u8, nal_unit_type: u8, rbsp: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rbsp.len() + rbsp.len() / 64 + 1);
    out.push((nal_ref_idc << 5) | nal_unit_type);
    let mut zeros = 0;
    for &byte in rbsp {
        if zeros >= 2 && byte <= 3 {
            out.push(3);
            zeros = 0;
        }
        out.push(byte);
        zeros = if byte == 0 { zeros + 1 } else { 0 };
    }
    out
}

/// Sequence parameter set (NAL type 7).
pub fn sps(picture: Picture) -> Vec<u8> {
    let mut w = BitWriter::default();
    w.bits(8, u32::from(PROFILE_IDC));
    w.bits(8, u32::from(CONSTRAINT_FLAGS));
    w.bits(8, u32::from(LEVEL_IDC));
    w.ue(0); // seq_parameter_set_id
    w.ue(LOG2_MAX_FRAME_NUM - 4);
    w.ue(2); // pic_order_cnt_type 2: output order = decoding order, nothing to signal per slice
    w.ue(1); // max_num_ref_frames: a P picture only looks at the previous one
    w.bit(false); // gaps_in_frame_num_value_allowed_flag
    w.ue(picture.mbs_wide() - 1);
    w.ue(picture.mbs_high() - 1);
    w.bit(true); // frame_mbs_only_flag
    w.bit(true); // direct_8x8_inference_flag
    let crop_right = (picture.mbs_wide() * 16 - picture.width) / 2;
    let crop_bottom = (picture.mbs_high() * 16 - picture.height) / 2;
    let cropped = crop_right > 0 || crop_bottom > 0;
    w.bit(cropped);
    if cropped {
        // Offsets count chroma samples (2 luma pixels) in 4:2:0 frames.
        w.ue(0);
        w.ue(crop_right);
        w.ue(0);
        w.ue(crop_bottom);
    }
    w.bit(false); // vui_parameters_present_flag
    nal_unit(3, 7, &w.finish())
}

/// Picture parameter set (NAL type 8). Deblocking is switchable so slices can turn it off:
/// with it off, skipped blocks are exact copies and the picture never drifts.
pub fn pps() -> Vec<u8> {
    let mut w = BitWriter::default();
    w.ue(0); // pic_parameter_set_id
    w.ue(0); // seq_parameter_set_id
    w.bit(false); // entropy_coding_mode_flag: CAVLC
    w.bit(false); // bottom_field_pic_order_in_frame_present_flag
    w.ue(0); // num_slice_groups_minus1
    w.ue(0); // num_ref_idx_l0_default_active_minus1
    w.ue(0); // num_ref_idx_l1_default_active_minus1
    w.bit(false); // weighted_pred_flag
    w.bits(2, 0); // weighted_bipred_idc
    w.se(0); // pic_init_qp_minus26
    w.se(0); // pic_init_qs_minus26
    w.se(0); // chroma_qp_index_offset
    w.bit(true); // deblocking_filter_control_present_flag
    w.bit(false); // constrained_intra_pred_flag
    w.bit(false); // redundant_pic_cnt_present_flag
    nal_unit(3, 8, &w.finish())
}

fn slice_header(w: &mut BitWriter, idr: bool, frame_num: u32) {
    w.ue(0); // first_mb_in_slice
    w.ue(if idr { 7 } else { 5 }); // slice_type I or P, the same for every slice of the picture
    w.ue(0); // pic_parameter_set_id
    w.bits(LOG2_MAX_FRAME_NUM, frame_num % (1 << LOG2_MAX_FRAME_NUM));
    if idr {
        w.ue(0); // idr_pic_id: the stream has a single IDR picture
    } else {
        w.bit(false); // num_ref_idx_active_override_flag
        w.bit(false); // ref_pic_list_modification_flag_l0
    }
    // dec_ref_pic_marking: every picture is a reference, kept by the sliding window.
    if idr {
        w.bit(false); // no_output_of_prior_pics_flag
        w.bit(false); // long_term_reference_flag
    } else {
        w.bit(false); // adaptive_ref_pic_marking_mode_flag
    }
    w.se(0); // slice_qp_delta
    w.ue(1); // disable_deblocking_filter_idc: off
}

fn pcm_macroblock(w: &mut BitWriter, mb_type: u32, samples: &MbSamples) {
    w.ue(mb_type);
    w.align_with_zeros();
    w.aligned_bytes(samples);
}

/// The IDR picture (NAL type 5): every macroblock coded, in raster order.
pub fn idr_picture(picture: Picture, mut samples: impl FnMut(u32) -> MbSamples) -> Vec<u8> {
    let mut w = BitWriter::default();
    slice_header(&mut w, true, 0);
    for mb in 0..picture.mb_count() {
        pcm_macroblock(&mut w, I_PCM_IN_I_SLICE, &samples(mb));
    }
    nal_unit(3, 5, &w.finish())
}

/// A P picture (NAL type 1) that codes `coded_mbs` (raster addresses, ascending) and skips the
/// rest. `frame_num` is the picture's index in decoding order since the IDR.
pub fn p_picture(
    picture: Picture,
    frame_num: u32,
    coded_mbs: &[u32],
    mut samples: impl FnMut(u32) -> MbSamples,
) -> Vec<u8> {
    let mut w = BitWriter::default();
    slice_header(&mut w, false, frame_num);
    let mut next = 0;
    for &mb in coded_mbs {
        w.ue(mb - next); // mb_skip_run before this macroblock
        pcm_macroblock(&mut w, I_PCM_IN_P_SLICE, &samples(mb));
        next = mb + 1;
    }
    // A trailing run is only written when it is not empty: after a coded last macroblock the
    // slice simply ends.
    if next < picture.mb_count() {
        w.ue(picture.mb_count() - next);
    }
    nal_unit(2, 1, &w.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits_of(write: impl FnOnce(&mut BitWriter)) -> String {
        let mut w = BitWriter::default();
        write(&mut w);
        let mut s: String = w.bytes.iter().map(|b| format!("{b:08b}")).collect();
        for i in (0..w.used).rev() {
            s.push(if (w.current >> i) & 1 == 1 { '1' } else { '0' });
        }
        s
    }

    #[test]
    fn exp_golomb_codes_match_the_standard_table() {
        assert_eq!(bits_of(|w| w.ue(0)), "1");
        assert_eq!(bits_of(|w| w.ue(1)), "010");
        assert_eq!(bits_of(|w| w.ue(2)), "011");
        assert_eq!(bits_of(|w| w.ue(7)), "0001000");
        assert_eq!(bits_of(|w| w.ue(30)), "000011111");
        assert_eq!(bits_of(|w| w.se(1)), "010");
        assert_eq!(bits_of(|w| w.se(-1)), "011");
        assert_eq!(bits_of(|w| w.se(0)), "1");
    }

    #[test]
    fn emulation_prevention_breaks_start_codes() {
        assert_eq!(
            nal_unit(0, 1, &[0, 0, 1, 0, 0, 0]),
            [1, 0, 0, 3, 1, 0, 0, 3, 0]
        );
        assert_eq!(nal_unit(0, 1, &[0, 0, 4]), [1, 0, 0, 4]);
    }
}
