//! `render submit --dry-run`: the JSONL files `submit` would upload, written to a folder, with
//! nothing sent.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::batch::{self, BatchLimits};
use crate::cache::CacheStorage;
use crate::ledger::Ledger;
use crate::plan::{Plan, PlannedRequest};
use crate::provider::Lane;
use render_wire::api::InputReference;

use super::choose::select_requests;
use super::{SubmitError, SubmitReport};

/// Writes the JSONL files `submit` would upload, choosing the requests the same way, and
/// uploads nothing (`--dry-run`). Reference images not uploaded yet get a placeholder file id.
pub fn dry_run(
    plan: &Plan,
    ledger: &Ledger,
    store: &dyn CacheStorage,
    limits: BatchLimits,
    out_dir: &Path,
) -> Result<Vec<(PathBuf, usize)>, SubmitError> {
    let selected = select_requests(plan, ledger, store, &mut SubmitReport::default())?;
    // Only the Batch lane has files to write; direct jobs are sent one by one.
    let outgoing: Vec<&PlannedRequest> = selected
        .into_iter()
        .filter(|r| r.lane == Lane::Batch)
        .collect();
    let mut file_ids = HashMap::new();
    for sha256 in outgoing
        .iter()
        .filter_map(|r| r.reference.as_ref().map(|f| &f.sha256))
    {
        if !file_ids.contains_key(sha256) {
            let known = ledger.asset(sha256)?.map(|a| a.file_id);
            let placeholder = || format!("file-pending-{}", &sha256.hex()[..16]);
            file_ids.insert(*sha256, known.unwrap_or_else(placeholder));
        }
    }
    // The bodies `submit` sends (`Outgoing::body`), built from the plan without the ledger's
    // rows in between.
    let bodies = outgoing.iter().map(|r| {
        let mut body = batch::video_body(&r.served_as, &r.size.to_string(), r.seconds.0, &r.prompt);
        body.input_reference = r
            .reference
            .as_ref()
            .and_then(|f| file_ids.get(&f.sha256))
            .map(|id| InputReference::FileId {
                file_id: id.clone(),
            });
        (r.key, body)
    });
    let parts = batch::compile(bodies, limits)?;
    std::fs::create_dir_all(out_dir).map_err(|source| SubmitError::Write {
        path: out_dir.display().to_string(),
        source,
    })?;
    let mut written = Vec::new();
    for (index, part) in parts.iter().enumerate() {
        let path = out_dir.join(format!("batch-{:03}.jsonl", index + 1));
        crate::fsutil::atomic_write(&path, &part.jsonl).map_err(|source| SubmitError::Write {
            path: path.display().to_string(),
            source,
        })?;
        written.push((path, part.keys.len()));
    }
    Ok(written)
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::lanes::batch::Outgoing;
    use crate::plan::{PlanOptions, build};
    use crate::shotlist::{Format, ShotListInput};
    use crate::submit::choose::request_row;
    use render_wire::catalog::Catalog;
    use render_wire::key::Sha256Hex;

    /// `dry_run` builds its bodies straight from the plan; they must be the bodies `submit`
    /// sends, which go through the ledger's rows (`request_row`, `Outgoing`).
    #[test]
    fn dry_run_writes_the_lines_submit_would_send() {
        let dir = tempfile::tempdir().unwrap();
        let refs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shotlists/refs");
        let list = "defaults: {model: sora-2, takes: 2}\nshots:\n  \
                    - {id: a, prompt: \"Harbour \\\"at\\\" dusk\", reference: harbour.png}\n  \
                    - {id: b, prompt: Skyline, model: sora-2-pro, size: 1920x1080}\n  \
                    - {id: c, prompt: Alley, reference: alley.jpg, priority: rush}\n";
        let input = ShotListInput::new("t.yaml", &refs, list.into(), Format::Yaml);
        let opts = PlanOptions::single("127.0.0.1", Catalog::builtin());
        let (plan, _) = build(&[input], &opts, &|_| false).unwrap();
        let ledger = Ledger::open(&dir.path().join("ledger.sqlite")).unwrap();
        let store = crate::cache::LocalStore::open(dir.path()).unwrap();
        let limits = BatchLimits {
            max_requests: 3,
            max_bytes: u64::MAX,
        };
        let written = dry_run(&plan, &ledger, &store, limits, &dir.path().join("out")).unwrap();

        let outgoing: Vec<Outgoing> = plan
            .requests
            .iter()
            .filter(|r| r.lane == Lane::Batch)
            .map(|r| Outgoing::from_row(&request_row(r)))
            .collect();
        let file_ids: HashMap<Sha256Hex, String> = outgoing
            .iter()
            .filter_map(|o| o.reference.as_ref())
            .map(|(sha, _)| (*sha, format!("file-pending-{}", &sha.hex()[..16])))
            .collect();
        let bodies = outgoing.iter().map(|o| (o.key, o.body(&file_ids)));
        let expected = batch::compile(bodies, limits).unwrap();
        assert_eq!(written.len(), expected.len());
        for ((path, requests), part) in written.iter().zip(&expected) {
            assert_eq!(*requests, part.keys.len());
            assert_eq!(std::fs::read(path).unwrap(), part.jsonl);
        }
        assert_eq!(expected.iter().map(|p| p.keys.len()).sum::<usize>(), 4);
    }
}
