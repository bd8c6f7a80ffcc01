//! Uploaded assets: reference files the provider keeps, by content hash.

use rusqlite::OptionalExtension;

use super::row::ledger_row;
use super::{Ledger, Result};
use render_wire::key::Sha256Hex;

ledger_row! {
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct AssetRow {
        pub sha256: Sha256Hex,
        pub file_id: String,
        pub bytes: u64,
        pub uploaded_at: i64,
        pub expires_at: Option<i64>,
    }
}

impl Ledger {
    pub fn asset(&self, sha256: &Sha256Hex) -> Result<Option<AssetRow>> {
        self.query_one(
            &format!(
                "SELECT {} FROM assets WHERE sha256 = ?1",
                AssetRow::columns()
            ),
            [sha256.hex()],
            AssetRow::read,
        )
        .optional()?
        .transpose()
    }

    pub fn record_asset(&self, asset: &AssetRow) -> Result<()> {
        let mut insert = self.conn.prepare_cached(&format!(
            "INSERT OR REPLACE INTO assets ({}) VALUES ({})",
            AssetRow::names(),
            AssetRow::placeholders()
        ))?;
        asset.execute(&mut insert, &[], &[])?;
        Ok(())
    }
}
