//! Reference images on their way to a provider: uploaded once per content hash (Batch lane and
//! OpenAI's direct lane name them by file id), or read and checked before they travel inline.

use std::path::Path;

use crate::api::client::ApiClient;
use crate::api::error::ApiError;
use crate::events::{Event, EventSink};
use crate::ledger::{AssetRow, Ledger, LedgerError, unix_now};
use render_wire::api::{FileObject, FilePurpose};
use render_wire::key::Sha256Hex;

/// A reference upload is reused while it has at least this long to live.
const ASSET_MIN_REMAINING_SECS: i64 = 2 * 24 * 3600;

#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("cannot read reference image {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "reference image {path} changed since it was planned; plan and submit the shot list again"
    )]
    Changed { path: String },
}

/// Whether `path` still holds the bytes the request was keyed with: other bytes under this
/// hash would cache a video for the wrong key.
pub fn check_unchanged(path: &Path, sha256: Sha256Hex) -> Result<(), AssetError> {
    let actual = crate::cache::hash_file(path).map_err(|source| AssetError::Read {
        path: path.display().to_string(),
        source,
    })?;
    if actual != sha256 {
        return Err(AssetError::Changed {
            path: path.display().to_string(),
        });
    }
    Ok(())
}

/// The file id of the reference with `sha256`: an earlier upload still valid, or a new one.
pub async fn file_id(
    client: &ApiClient,
    ledger: &Ledger,
    events: &dyn EventSink,
    sha256: Sha256Hex,
    path: &Path,
) -> Result<(String, bool), AssetError> {
    if let Some(asset) = ledger.asset(&sha256)? {
        let fresh = asset
            .expires_at
            .is_none_or(|t| t - unix_now() > ASSET_MIN_REMAINING_SECS);
        // The ledger's word is not enough: a restarted server or an expired file forgets an
        // upload, and every request naming it would fail. Ask before reuse.
        if fresh && still_there(client, &asset.file_id).await? {
            events.emit(Event::AssetReused {
                sha256: sha256.hex(),
                file_id: asset.file_id.clone(),
            });
            return Ok((asset.file_id, false));
        }
    }
    let file = upload(client, path, sha256).await?;
    ledger.record_asset(&AssetRow {
        sha256,
        file_id: file.id.clone(),
        bytes: file.bytes,
        uploaded_at: file.created_at,
        expires_at: file.expires_at,
    })?;
    events.emit(Event::AssetUploaded {
        sha256: sha256.hex(),
        file_id: file.id.clone(),
        bytes: file.bytes,
    });
    Ok((file.id, true))
}

/// Whether the provider still has an upload (a 404 says it does not; other errors are errors).
async fn still_there(client: &ApiClient, file_id: &str) -> Result<bool, AssetError> {
    match client.get_file(file_id).await {
        Ok(file) => Ok(file.status.as_deref() != Some("deleted")),
        Err(err) if matches!(err.status(), Some(404 | 410)) => Ok(false),
        Err(err) => Err(err.into()),
    }
}

async fn upload(
    client: &ApiClient,
    path: &Path,
    sha256: Sha256Hex,
) -> Result<FileObject, AssetError> {
    // The file may have changed since it was planned (or, for a retry, since the night it was
    // first sent).
    check_unchanged(path, sha256)?;
    // Named by content so the provider's file list shows what each upload is.
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("img");
    let filename = format!("{}.{extension}", &sha256.hex()[..16]);
    Ok(client
        .upload_file(path, &filename, FilePurpose::Vision)
        .await?)
}
