//! Uploaded assets: reference files the provider keeps, by content hash.

use rusqlite::{OptionalExtension, params};

use super::{Ledger, Result, parse_sha};
use render_wire::key::Sha256Hex;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssetRow {
    pub sha256: Sha256Hex,
    pub file_id: String,
    pub bytes: u64,
    pub uploaded_at: i64,
    pub expires_at: Option<i64>,
}

impl Ledger {
    pub fn asset(&self, sha256: &Sha256Hex) -> Result<Option<AssetRow>> {
        self.query_one(
            "SELECT sha256, file_id, bytes, uploaded_at, expires_at FROM assets WHERE sha256 = ?1",
            [sha256.hex()],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, u64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                ))
            },
        )
        .optional()?
        .map(|(sha, file_id, bytes, uploaded_at, expires_at)| {
            Ok(AssetRow {
                sha256: parse_sha(&sha)?,
                file_id,
                bytes,
                uploaded_at,
                expires_at,
            })
        })
        .transpose()
    }

    pub fn record_asset(&self, asset: &AssetRow) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO assets (sha256, file_id, bytes, uploaded_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                asset.sha256.hex(),
                asset.file_id,
                asset.bytes,
                asset.uploaded_at,
                asset.expires_at
            ],
        )?;
        Ok(())
    }
}
