//! A batch's delivery: its videos' download window starts, and its output and error files
//! are written (with a hostile lookalike's contradictions, when asked for).

use bytes::Bytes;

use crate::batches;
use crate::clock::DAY;
use crate::state::{FileRecord, LineOutcome, Store};
use render_wire::api::{FileObject, FilePurpose, OUTPUTS_LIFETIME_SECS};

/// Batch output files expire 30 days after they are written, like the real ones.
const OUTPUT_FILE_LIFETIME: i64 = 30 * DAY;

/// Writes the output and error files of a finished batch and starts its videos' 24 h download
/// window: a batch's videos are delivered when the batch ends, so their `completed_at` is the
/// batch's end and `expires_at` is a day later.
pub(super) fn deliver(store: &mut Store, batch_id: &str, at: f64) {
    let Some(record) = store.batches.get(batch_id) else {
        return;
    };
    let delivered_at = at as i64;
    let video_ids: Vec<String> = record
        .lines
        .iter()
        .filter_map(|l| match &l.outcome {
            Some(LineOutcome::Video { video_id }) => Some(video_id.clone()),
            _ => None,
        })
        .collect();
    for id in &video_ids {
        if let Some(video) = store.videos.get_mut(id) {
            video.video.completed_at = Some(delivered_at);
            video.video.expires_at = Some(delivered_at + OUTPUTS_LIFETIME_SECS);
        }
    }
    let Some(record) = store.batches.get(batch_id) else {
        return;
    };
    let (mut output, mut errors) = (String::new(), String::new());
    let mut contradicted = false;
    for line in &record.lines {
        let Some(outcome) = &line.outcome else {
            continue;
        };
        let video = match outcome {
            LineOutcome::Video { video_id } => store.videos.get(video_id).map(|v| &v.video),
            _ => None,
        };
        let (mut text, ok) = batches::output_line(line, outcome, video);
        if let Some(echo) = &store.hostile_echo {
            if ok && !std::mem::replace(&mut contradicted, true) {
                errors.push_str(&hostile_contradiction(&line.custom_id, echo));
            }
            if !ok {
                text = text.replace(
                    "\"message\":\"",
                    &format!("\"message\":\"(you sent {echo}) "),
                );
            }
        }
        let target = if ok { &mut output } else { &mut errors };
        target.push_str(&text);
        target.push('\n');
    }
    if store.hostile_echo.is_some() {
        output.push_str("%%% this line is not a batch result %%%\n");
        output.push_str(
            "{\"custom_id\":\"someone-else-1\",\"response\":{\"status_code\":200,\"body\":{}}}\n",
        );
    }
    let output_id = (!output.is_empty())
        .then(|| write_output_file(store, batch_id, "output", output, delivered_at));
    let error_id = (!errors.is_empty())
        .then(|| write_output_file(store, batch_id, "error", errors, delivered_at));
    if let Some(record) = store.batches.get_mut(batch_id) {
        record.batch.output_file_id = output_id;
        record.batch.error_file_id = error_id;
    }
}

/// A failure line for a request that also rendered: a hostile lookalike's contradiction.
fn hostile_contradiction(custom_id: &str, echo: &str) -> String {
    let line = serde_json::json!({
        "custom_id": custom_id,
        "response": {
            "status_code": 500,
            "body": {"error": {"message": format!("(you sent {echo}) this request failed"), "type": "server_error"}},
        },
    });
    format!("{line}\n")
}

fn write_output_file(
    store: &mut Store,
    batch_id: &str,
    kind: &str,
    text: String,
    at: i64,
) -> String {
    let id = store.new_id("file-");
    let content = Bytes::from(text);
    let object = FileObject {
        id: id.clone(),
        object: "file".into(),
        bytes: content.len() as u64,
        created_at: at,
        expires_at: Some(at + OUTPUT_FILE_LIFETIME),
        filename: format!("{batch_id}_{kind}.jsonl"),
        purpose: FilePurpose::BatchOutput,
        status: Some("processed".into()),
    };
    store.files.insert(
        id.clone(),
        FileRecord {
            object,
            content,
            deleted: false,
        },
    );
    id
}
