"""Drives the official `openai` Python SDK against a running sandbox: if the SDK cannot tell the
sandbox from the real service for the calls the pipeline makes, every step below passes.

Usage: python3 sdk_conformance.py BASE_URL [API_KEY]
  BASE_URL ends with /v1; the sandbox's harness endpoints live at BASE_URL minus /v1.
  Needs `pip install -r tests/conformance/requirements.txt`.
"""

import hashlib
import io
import json
import struct
import sys
import time
import urllib.request
import warnings
import zlib

import openai

# videos.* are marked deprecated in the SDK (the Sora API shutdown notice); that is not our concern.
warnings.simplefilter("ignore", DeprecationWarning)

BASE_URL = sys.argv[1]
API_KEY = sys.argv[2] if len(sys.argv) > 2 else "sk-conformance"
ROOT = BASE_URL[: -len("/v1")] if BASE_URL.endswith("/v1") else BASE_URL
DAY = 86_400


def step(name):
    print(f"ok: {name}", flush=True)


def harness(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(ROOT + path, data=data, method=method)
    request.add_header("content-type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def png(width, height):
    """A real (black) PNG of the given size."""

    def chunk(kind, payload):
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + b"\x00" * (width * 3)
    pixels = zlib.compress(row * height, 9)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def wait_for(fetch, done, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not finish in {timeout}s: {value}")
        time.sleep(0.05)


def main():
    client = openai.OpenAI(api_key=API_KEY, base_url=BASE_URL, max_retries=0)
    stats_before = harness("GET", "/sandbox/stats")

    # Files: an image for references and a JSONL batch input.
    image_bytes = png(1280, 720)
    image = client.files.create(file=("ref.png", image_bytes, "image/png"), purpose="vision")
    assert image.object == "file" and image.purpose == "vision", image
    assert image.bytes == len(image_bytes), image
    assert client.files.retrieve(image.id).id == image.id
    step("files.create (vision) and files.retrieve")

    lines = [
        {"custom_id": "shot-1", "method": "POST", "url": "/v1/videos",
         "body": {"model": "sora-2", "prompt": "a lighthouse at dusk", "size": "1280x720", "seconds": "8",
                  "input_reference": {"file_id": image.id}}},
        {"custom_id": "shot-2", "method": "POST", "url": "/v1/videos",
         "body": {"model": "sora-2-pro", "prompt": "waves on black sand", "size": "1920x1080", "seconds": "4"}},
        {"custom_id": "shot-3", "method": "POST", "url": "/v1/videos",
         "body": {"model": "sora-2", "prompt": "a harbour at night", "size": "1920x1080", "seconds": "4"}},
        {"custom_id": "shot-4", "method": "POST", "url": "/v1/videos",
         "body": {"model": "sora-2", "prompt": "Darth Vader buys bread", "size": "1280x720", "seconds": "4"}},
    ]
    jsonl = "".join(json.dumps(line) + "\n" for line in lines).encode()
    batch_file = client.files.create(
        file=("night.jsonl", io.BytesIO(jsonl)),
        purpose="batch",
        expires_after={"anchor": "created_at", "seconds": 7 * DAY},
    )
    assert batch_file.purpose == "batch", batch_file
    assert batch_file.expires_at == batch_file.created_at + 7 * DAY, batch_file
    assert client.files.content(batch_file.id).content == jsonl
    step("files.create (batch, expires_after) and files.content")

    # Batch: create, poll, read output and error files.
    batch = client.batches.create(
        input_file_id=batch_file.id,
        endpoint="/v1/videos",
        completion_window="24h",
        metadata={"night": "conformance"},
    )
    assert batch.status == "validating" and batch.metadata == {"night": "conformance"}, batch
    batch = wait_for(lambda: client.batches.retrieve(batch.id),
                     lambda b: b.status in ("completed", "failed", "expired", "cancelled"), "batch")
    assert batch.status == "completed", batch
    assert batch.request_counts.total == 4, batch.request_counts
    assert batch.request_counts.completed == 2 and batch.request_counts.failed == 2, batch.request_counts
    assert batch.expires_at == batch.created_at + DAY, batch
    assert batch.created_at <= batch.in_progress_at <= batch.finalizing_at <= batch.completed_at, batch
    assert batch.output_file_id and batch.error_file_id, batch
    step(f"batches.create and poll to completed ({batch.request_counts})")

    output = [json.loads(line) for line in client.files.content(batch.output_file_id).text.splitlines()]
    assert sorted(line["custom_id"] for line in output) == ["shot-1", "shot-2"], output
    videos = {}
    for line in output:
        assert line["id"].startswith("batch_req_") and line["error"] is None, line
        response = line["response"]
        assert response["status_code"] == 200 and response["request_id"], response
        # The SDK builds response models without validation (the newest sizes postdate its enums).
        video = openai.types.Video.construct(**response["body"])
        assert video.object == "video" and video.status == "completed" and video.progress == 100, video
        assert video.expires_at - video.completed_at == DAY, video
        videos[line["custom_id"]] = video
    assert videos["shot-2"].size == "1920x1080" and videos["shot-2"].model == "sora-2-pro"
    errors = {json.loads(line)["custom_id"]: json.loads(line)
              for line in client.files.content(batch.error_file_id).text.splitlines()}
    assert sorted(errors) == ["shot-3", "shot-4"], errors
    bad_size = errors["shot-3"]["response"]
    assert bad_size["status_code"] == 400 and bad_size["body"]["error"]["param"] == "size", bad_size
    assert bad_size["body"]["error"]["type"] == "invalid_request_error", bad_size
    moderated = errors["shot-4"]["response"]["body"]["error"]
    assert moderated["code"] == "moderation_blocked", moderated
    step("batch output and error files in the real line shapes")

    # Downloads of a batch video, every variant, checked against the sandbox's digest.
    video = videos["shot-1"]
    assert client.videos.retrieve(video.id).status == "completed"
    mp4 = client.videos.download_content(video.id).content
    digest = harness("GET", f"/sandbox/videos/{video.id}/digest")
    assert len(mp4) == digest["bytes"] and hashlib.sha256(mp4).hexdigest() == digest["sha256"], digest
    for variant in ("video", "thumbnail", "spritesheet"):
        body = client.videos.download_content(video.id, variant=variant).content
        assert len(body) > 0, variant
        if variant != "video":
            assert body[:2] == b"\xff\xd8", f"{variant} is not a JPEG"
    step(f"videos.download_content for each variant ({len(mp4)} bytes, sha256 matches)")

    # A direct video with a multipart reference image, polled to completion.
    direct = client.videos.create(
        prompt="paper boats in the rain",
        model="sora-2",
        size="1280x720",
        seconds="4",
        input_reference=("first-frame.png", image_bytes, "image/png"),
    )
    assert direct.status in ("queued", "in_progress") and direct.object == "video", direct
    direct = wait_for(lambda: client.videos.retrieve(direct.id),
                      lambda v: v.status in ("completed", "failed"), "video")
    assert direct.status == "completed" and direct.expires_at - direct.completed_at == DAY, direct
    assert client.videos.download_content(direct.id).content[:0] == b""
    plain = client.videos.create(prompt="a red kite over dunes")
    assert (plain.model, plain.size, plain.seconds) == ("sora-2", "720x1280", "4"), plain
    step("videos.create (multipart + defaults) and videos.retrieve")

    # Pagination through every list the pipeline reads.
    listed = [v.id for v in client.videos.list(limit=1)]
    one_page = [v.id for v in client.videos.list(limit=100).data]
    assert listed == one_page and len(listed) == len(set(listed)), (listed, one_page)
    assert set(listed) >= {video.id, videos["shot-2"].id, direct.id, plain.id}, listed
    first_page = client.videos.list(limit=2)
    assert first_page.has_more and len(first_page.data) == 2, first_page
    files = [f.id for f in client.files.list(limit=1)]
    assert {image.id, batch_file.id, batch.output_file_id, batch.error_file_id} <= set(files), files
    assert image.id in [f.id for f in client.files.list(purpose="vision")]
    assert batch_file.id not in [f.id for f in client.files.list(purpose="vision")]
    batches = [b.id for b in client.batches.list(limit=1)]
    assert batch.id in batches and len(batches) == len(set(batches)), batches
    step("list pagination (videos, files, batches)")

    # The SDK's own error types.
    try:
        openai.OpenAI(api_key="sk-wrong-key-000", base_url=BASE_URL, max_retries=0).files.list()
        raise AssertionError("a wrong key was accepted")
    except openai.AuthenticationError as e:
        assert e.status_code == 401 and e.code == "invalid_api_key", e
    try:
        client.videos.retrieve("video_does_not_exist")
        raise AssertionError("an unknown video was found")
    except openai.NotFoundError as e:
        assert e.status_code == 404 and e.type == "invalid_request_error", e
    harness("POST", "/sandbox/faults", {"http": [
        {"endpoint": "GET /v1/videos/*", "fault": {"kind": "rate_limit", "retry_after_ms": 20}, "nth": [1, 2]}]})
    try:
        client.videos.retrieve(video.id)
        raise AssertionError("no 429 was injected")
    except openai.RateLimitError as e:
        assert e.status_code == 429 and e.response.headers["retry-after-ms"] == "20", e
    patient = openai.OpenAI(api_key=API_KEY, base_url=BASE_URL, max_retries=2)
    assert patient.videos.retrieve(video.id).id == video.id  # one more 429, retried by the SDK
    harness("POST", "/sandbox/faults", {})
    step("AuthenticationError, NotFoundError, RateLimitError (and the SDK retrying a 429)")

    # Deletes, then expiry of the 24 h download window.
    assert client.videos.delete(plain.id).deleted
    assert client.files.delete(image.id).deleted
    try:
        client.files.retrieve(image.id)
        raise AssertionError("a deleted file was found")
    except openai.NotFoundError:
        pass
    harness("POST", "/sandbox/clock/advance", {"seconds": DAY + 60})
    try:
        client.videos.download_content(video.id)
        raise AssertionError("expired content was served")
    except openai.NotFoundError as e:
        assert e.code == "video_expired", e
    assert client.videos.retrieve(video.id).status == "completed"
    step("deletes, and content expiry after 24 virtual hours (404 video_expired)")

    stats = harness("GET", "/sandbox/stats")
    assert stats["videos_created"] - stats_before["videos_created"] == 4, stats
    assert stats["faults_injected"].get("rate_limit") == 2, stats
    assert hashlib.sha256(image_bytes).hexdigest() in stats["uploaded_sha256"], stats
    step("stats count what happened")
    print("conformance: all steps passed")


if __name__ == "__main__":
    main()
