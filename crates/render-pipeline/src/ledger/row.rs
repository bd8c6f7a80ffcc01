//! Row types spelled once: [`ledger_row!`] takes a struct whose every field is a column, and
//! gives it the select list, the insert list and its placeholders, `from_row` (reading in the
//! same order) and `execute` (binding in the same order). How each field's type is kept in its
//! column is [`Stored`].

use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Row, Statement, ToSql};

use super::{JobStatus, LedgerError, RequestStatus, Result, parse_lane, parse_sha};
use crate::provider::Lane;
use render_wire::key::Sha256Hex;
use render_wire::money::Usd;

/// How a field is kept in its column: read back from it, written as an SQL value.
pub(super) trait Stored: Sized {
    fn read(row: &Row<'_>, index: usize) -> Result<Self>;
    fn write(&self) -> rusqlite::Result<ToSqlOutput<'_>>;
}

/// Types SQLite keeps as they are.
macro_rules! stored_as_is {
    ($($ty:ty),* $(,)?) => {$(
        impl Stored for $ty {
            fn read(row: &Row<'_>, index: usize) -> Result<Self> {
                Ok(row.get(index)?)
            }
            fn write(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                self.to_sql()
            }
        }
    )*};
}

stored_as_is!(
    String,
    Option<String>,
    i64,
    Option<i64>,
    u32,
    Option<u32>,
    u64,
    bool
);

fn text(word: &str) -> ToSqlOutput<'_> {
    ToSqlOutput::Borrowed(ValueRef::Text(word.as_bytes()))
}

/// A hash as its lowercase hex.
impl Stored for Sha256Hex {
    fn read(row: &Row<'_>, index: usize) -> Result<Self> {
        parse_sha(
            row.get_ref(index)?
                .as_str()
                .map_err(rusqlite::Error::from)?,
        )
    }
    fn write(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Owned(Value::Text(self.hex())))
    }
}

impl Stored for Option<Sha256Hex> {
    fn read(row: &Row<'_>, index: usize) -> Result<Self> {
        match row.get_ref(index)? {
            ValueRef::Null => Ok(None),
            _ => Sha256Hex::read(row, index).map(Some),
        }
    }
    fn write(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        match self {
            Some(sha) => sha.write(),
            None => Ok(ToSqlOutput::Owned(Value::Null)),
        }
    }
}

/// Money in micro-dollars (the `…_micros` columns).
impl Stored for Usd {
    fn read(row: &Row<'_>, index: usize) -> Result<Self> {
        Ok(Usd::from_micros(row.get(index)?))
    }
    fn write(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Owned(Value::Integer(self.micros())))
    }
}

/// A lane by its word; rows from before lanes (NULL) were all Batch.
impl Stored for Lane {
    fn read(row: &Row<'_>, index: usize) -> Result<Self> {
        parse_lane(
            row.get_ref(index)?
                .as_str_or_null()
                .map_err(rusqlite::Error::from)?,
        )
    }
    fn write(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(text(self.as_str()))
    }
}

impl Stored for RequestStatus {
    fn read(row: &Row<'_>, index: usize) -> Result<Self> {
        row.get_ref(index)?
            .as_str()
            .map_err(rusqlite::Error::from)?
            .parse()
    }
    fn write(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(text(self.as_str()))
    }
}

impl Stored for JobStatus {
    fn read(row: &Row<'_>, index: usize) -> Result<Self> {
        row.get_ref(index)?
            .as_str()
            .map_err(rusqlite::Error::from)?
            .parse()
    }
    fn write(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(text(self.as_str()))
    }
}

/// A list of words (tags, sources) as a JSON array.
impl Stored for Vec<String> {
    fn read(row: &Row<'_>, index: usize) -> Result<Self> {
        let json = row
            .get_ref(index)?
            .as_str()
            .map_err(rusqlite::Error::from)?;
        let name = row.as_ref().column_name(index).unwrap_or("list");
        serde_json::from_str(json).map_err(|e| LedgerError::Corrupt(format!("{name}: {e}")))
    }
    fn write(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        let json = serde_json::to_string(self).expect("strings serialize");
        Ok(ToSqlOutput::Owned(Value::Text(json)))
    }
}

/// A field bound as a statement parameter, the way [`Stored`] writes it.
pub(super) struct Param<'a, T>(pub &'a T);

impl<T: Stored> ToSql for Param<'_, T> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        self.0.write()
    }
}

/// Runs `stmt` with `before`, then the fields, then `after` as its parameters.
pub(super) fn execute(
    stmt: &mut Statement<'_>,
    before: &[&dyn ToSql],
    fields: &[&dyn ToSql],
    after: &[&dyn ToSql],
) -> Result<usize> {
    let params = before.iter().chain(fields).chain(after);
    Ok(stmt.execute(rusqlite::params_from_iter(params))?)
}

/// `n` anonymous placeholders: `?, ?, ?`.
pub(super) fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// A row type from one list of fields, each read from the column of its name unless it says
/// otherwise: `= "cost_micros"` (another column's name), `as "COALESCE(…)"` (an expression to
/// read it by; it is still written to its column).
///
/// Generates the struct and, for the ledger's use, `COLUMNS` (the select list), `NAMES` (the
/// insert list), `from_row` and `execute` (binds the fields, in the same order, between other
/// parameters before and after them).
macro_rules! ledger_row {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                pub $field:ident : $ty:ty $(= $column:literal)? $(as $read:literal)?
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        #[allow(dead_code)] // not every row type is inserted whole
        impl $name {
            /// What a `SELECT` lists to read this row (see `from_row`).
            pub(super) fn columns() -> &'static str {
                static COLUMNS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
                    [$($crate::ledger::row::ledger_row!(@read $field $(= $column)? $(as $read)?)),*]
                        .join(", ")
                });
                &COLUMNS
            }

            /// The columns an `INSERT` writes, in `execute`'s order.
            pub(super) fn names() -> &'static str {
                static NAMES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
                    [$($crate::ledger::row::ledger_row!(@name $field $(= $column)?)),*].join(", ")
                });
                &NAMES
            }

            /// `?` for each column of `names`.
            pub(super) fn placeholders() -> &'static str {
                static PLACEHOLDERS: std::sync::LazyLock<String> =
                    std::sync::LazyLock::new(|| {
                        $crate::ledger::row::placeholders([$(stringify!($field)),*].len())
                    });
                &PLACEHOLDERS
            }

            /// Reads a row selected by `columns`.
            pub(super) fn from_row(row: &rusqlite::Row<'_>) -> $crate::ledger::Result<$name> {
                use $crate::ledger::row::Stored;
                let mut index = 0..;
                Ok($name {
                    $( $field: Stored::read(row, index.next().expect("unbounded"))?, )*
                })
            }

            /// `from_row` as `query_map` and `query_row` want it: a malformed value is the
            /// ledger's error, inside SQLite's result.
            pub(super) fn read(
                row: &rusqlite::Row<'_>,
            ) -> rusqlite::Result<$crate::ledger::Result<$name>> {
                Ok($name::from_row(row))
            }

            /// Runs `stmt` with `before`, this row's fields (as `names` lists them) and `after`.
            pub(super) fn execute(
                &self,
                stmt: &mut rusqlite::Statement<'_>,
                before: &[&dyn rusqlite::ToSql],
                after: &[&dyn rusqlite::ToSql],
            ) -> $crate::ledger::Result<usize> {
                use $crate::ledger::row::Param;
                let fields: &[&dyn rusqlite::ToSql] = &[$(&Param(&self.$field)),*];
                $crate::ledger::row::execute(stmt, before, fields, after)
            }
        }
    };
    (@read $field:ident $(= $column:literal)? as $read:literal) => { $read };
    (@read $field:ident = $column:literal) => { $column };
    (@read $field:ident) => { stringify!($field) };
    (@name $field:ident = $column:literal) => { $column };
    (@name $field:ident) => { stringify!($field) };
}

pub(super) use ledger_row;

#[cfg(test)]
mod tests {
    use crate::ledger::{AssetRow, BatchRow, OutputRow, RequestRow};

    #[test]
    fn the_lists_follow_the_fields() {
        assert_eq!(
            AssetRow::columns(),
            "sha256, file_id, bytes, uploaded_at, expires_at"
        );
        assert_eq!(AssetRow::names(), AssetRow::columns());
        assert_eq!(AssetRow::placeholders(), "?, ?, ?, ?, ?");
        assert_eq!(
            OutputRow::names(),
            "key, video_sha, video_bytes, thumbnail_sha, video_id, harvested_at"
        );
        // A renamed column is read and written by its name; a read expression only read by.
        assert!(RequestRow::names().contains(", cost_micros, provider, lane,"));
        assert!(RequestRow::columns().contains(", cost_micros, COALESCE(provider, ''), lane,"));
        assert!(BatchRow::columns().starts_with(
            "row, run_id, COALESCE(provider, (SELECT runs.provider FROM runs WHERE runs.id = \
             batches.run_id), ''), part,"
        ));
        assert_eq!(
            RequestRow::names().split(", ").count(),
            RequestRow::placeholders().split(", ").count()
        );
    }
}
