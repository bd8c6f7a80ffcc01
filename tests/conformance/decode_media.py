"""Decodes a sandbox video and its thumbnail with FFmpeg (through PyAV) and prints what it saw.

    python3 decode_media.py VIDEO.mp4 THUMBNAIL.jpg [MIDDLE.jpg]

Prints one JSON object: the video's codec, coded size, frame count and duration, how far its
first frame is from the thumbnail (mean absolute difference of RGB bytes, 0..255, after scaling
the thumbnail to the video's size), and how much the picture moves (the same measure between
the first frame and the middle one) and, given MIDDLE.jpg (the picture expected at the middle
frame, frame count // 2), how far the middle frame is from it (mean, and the share of pixels whose brightness is clearly off). Exits non-zero when PyAV is missing or FFmpeg rejects the
stream, with the reason on stderr.
"""

import json
import sys

try:
    import av
except ImportError:
    sys.exit("PyAV is not installed: pip install av (it bundles FFmpeg)")


def rgb_bytes(frame, width, height, format="rgb24", channels=3):
    """Packed rows of `frame` scaled to width x height, without the decoder's row padding."""
    plane = frame.reformat(width=width, height=height, format=format).planes[0]
    data = bytes(plane)
    row = width * channels
    return b"".join(data[y * plane.line_size : y * plane.line_size + row] for y in range(height))


def mean_abs_diff(a, b):
    return sum(abs(x - y) for x, y in zip(a, b)) / max(len(a), 1)


def share_of_differing_pixels(a, b, tolerance=32):
    """Share of pixels whose brightness differs by more than `tolerance`: a misplaced object
    shows up here even when it is too small to move the mean. Brightness only, because colour
    is stored at half resolution and so differs along every sharp colour edge."""
    return sum(1 for x, y in zip(a, b) if abs(x - y) > tolerance) / max(len(a), 1)


def decode_video(path):
    with av.open(path) as container:
        stream = container.streams.video[0]
        # Fail on any damaged data instead of concealing it.
        stream.codec_context.options = {"err_detect": "explode"}
        frames = [frame for frame in container.decode(stream)]
        duration = float(container.duration / av.time_base) if container.duration else None
        return stream.codec_context.name, stream.profile, frames, duration


def decode_image(path):
    with av.open(path) as container:
        return next(container.decode(video=0))


def main():
    video_path, thumbnail_path = sys.argv[1], sys.argv[2]
    codec, profile, frames, duration = decode_video(video_path)
    if not frames:
        sys.exit(f"{video_path}: no frame decoded")
    width, height = frames[0].width, frames[0].height
    first = rgb_bytes(frames[0], width, height)
    middle = rgb_bytes(frames[len(frames) // 2], width, height)
    thumbnail = decode_image(thumbnail_path)
    report = {
                "codec": codec,
                "profile": profile,
                "frames": len(frames),
                "width": width,
                "height": height,
                "duration": duration,
                "keyframes": sum(1 for f in frames if f.key_frame),
                "thumbnail_width": thumbnail.width,
                "thumbnail_height": thumbnail.height,
                "first_frame_vs_thumbnail": mean_abs_diff(first, rgb_bytes(thumbnail, width, height)),
                "first_vs_middle_frame": mean_abs_diff(first, middle),
            }
    if len(sys.argv) > 3:
        reference = decode_image(sys.argv[3])
        report["middle_frame_vs_reference"] = mean_abs_diff(middle, rgb_bytes(reference, width, height))
        middle_luma = rgb_bytes(frames[len(frames) // 2], width, height, "gray", 1)
        reference_luma = rgb_bytes(reference, width, height, "gray", 1)
        report["middle_frame_pixels_off"] = share_of_differing_pixels(middle_luma, reference_luma)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
