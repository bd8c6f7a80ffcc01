//! CSV shot lists: a header row naming the columns (the same names as the YAML fields), one shot
//! per row. Empty cells take the defaults; `tags` are `;`-separated.
//!
//! Rows become the same positioned nodes as YAML mappings, so both formats are checked by the
//! same code. Each cell's position is found by re-scanning the record from its byte offset.

use super::diagnostic::{Diagnostic, closest};
use super::fields::{FieldReader, SHOT_FIELDS};
use super::node::Node;
use super::{Defaults, LineIndex, Pos, ShotList, ShotSink, Sp};

/// Parses a CSV list, handing each row's shot to `sink` as soon as it is read; the list returned
/// holds no shots.
pub(crate) fn parse_into(
    path: &str,
    text: &str,
    sink: &mut dyn ShotSink,
) -> (ShotList, Vec<Diagnostic>) {
    let list = ShotList {
        path: path.to_string(),
        project: None,
        defaults: Defaults::default(),
        shots: Vec::new(),
    };
    let index = LineIndex::new(text);
    let mut fields = FieldReader::new(path, text);
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut record = csv::StringRecord::new();
    let mut columns: Option<Vec<Option<Sp<String>>>> = None;
    loop {
        match csv.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(err) => {
                fields.diagnostics.push(csv_error(path, &index, &err));
                break;
            }
        }
        let start = record.position().map_or(0, |p| p.byte() as usize);
        let (cells, unclosed) = cell_positions(text, &index, start, record.len());
        if let Some(quote) = unclosed {
            // The csv crate reads an unclosed quote to the end of the file without complaint.
            fields.help(
                index.pos(quote, 1),
                "invalid CSV: this quote is never closed",
                "close the quote, and write a quote inside a quoted cell as \"\"",
            );
            break;
        }
        match &columns {
            None => columns = Some(header(&mut fields, &record, &cells)),
            Some(columns) => {
                if let Some(shot) = row(&mut fields, columns, &record, &cells) {
                    sink.shot(&list.defaults, shot);
                }
            }
        }
    }
    if columns.is_none() {
        fields.help(
            Pos::NONE,
            "the shot list is empty",
            format!("start with a header row: {}", SHOT_FIELDS.join(",")),
        );
    }
    (list, fields.diagnostics)
}

/// Column names by index; `None` for a column that is reported and ignored.
fn header(
    fields: &mut FieldReader,
    record: &csv::StringRecord,
    cells: &[Pos],
) -> Vec<Option<Sp<String>>> {
    let mut columns: Vec<Option<Sp<String>>> = Vec::with_capacity(record.len());
    for (name, &pos) in record.iter().zip(cells) {
        let name = Sp::new(name.trim().to_string(), pos);
        let known = SHOT_FIELDS.contains(&name.value.as_str());
        let repeated = columns.iter().flatten().find(|c| c.value == name.value);
        if let Some(first) = repeated {
            let first = first.pos;
            let path = fields.path;
            fields
                .error(pos, format!("column `{}` appears twice", name.value))
                .related
                .push(super::fields::related(path, first, "first here"));
            columns.push(None);
        } else if known {
            columns.push(Some(name));
        } else {
            let help = match closest(&name.value, &SHOT_FIELDS) {
                Some(near) => format!("did you mean `{near}`?"),
                None => format!("the columns are: {}", SHOT_FIELDS.join(", ")),
            };
            fields.help(pos, format!("unknown column `{}`", name.value), help);
            columns.push(None);
        }
    }
    let header_line = cells.first().copied().unwrap_or(Pos::NONE);
    for required in ["id", "prompt"] {
        if !columns.iter().flatten().any(|c| c.value == required) {
            match required {
                "id" => fields.require_id = false,
                _ => fields.require_prompt = false,
            }
            fields.help(
                header_line,
                format!("the header has no `{required}` column"),
                format!("the columns are: {}", SHOT_FIELDS.join(", ")),
            );
        }
    }
    columns
}

fn row(
    fields: &mut FieldReader,
    columns: &[Option<Sp<String>>],
    record: &csv::StringRecord,
    cells: &[Pos],
) -> Option<super::Shot> {
    let at = cells.first().copied().unwrap_or(Pos::NONE);
    if record.len() > columns.len() {
        let extra = cells.get(columns.len()).copied().unwrap_or(at);
        fields.help(
            extra,
            format!(
                "the row has {} cells but the header has {} columns",
                record.len(),
                columns.len()
            ),
            "quote cells that contain commas: \"like, this\"",
        );
    }
    let mut entries = Vec::with_capacity(columns.len());
    for ((column, cell), &pos) in columns.iter().zip(record.iter()).zip(cells) {
        let Some(column) = column else { continue };
        if cell.trim().is_empty() {
            continue;
        }
        let value = if column.value == "tags" {
            let tags = cell
                .split(';')
                .map(|t| Sp::new(Node::Str(t.to_string()), pos));
            Node::List(tags.collect())
        } else {
            Node::Str(cell.to_string())
        };
        entries.push((column.clone(), Sp::new(value, pos)));
    }
    fields.shot(Sp::new(Node::Map(entries), at))
}

/// The byte position of each of a record's `count` cells, scanning the source from `start`,
/// and the offset of a quote that is never closed, if any.
fn cell_positions(
    text: &str,
    index: &LineIndex,
    start: usize,
    count: usize,
) -> (Vec<Pos>, Option<usize>) {
    let bytes = text.as_bytes();
    let mut cells = Vec::with_capacity(count);
    let mut i = start;
    for _ in 0..count {
        let cell_start = i;
        if bytes.get(i) == Some(&b'"') {
            i += 1;
            let mut closed = false;
            while i < bytes.len() {
                if bytes[i] == b'"' {
                    if bytes.get(i + 1) == Some(&b'"') {
                        i += 2;
                        continue;
                    }
                    i += 1;
                    closed = true;
                    break;
                }
                i += 1;
            }
            if !closed {
                return (cells, Some(cell_start));
            }
        }
        while i < bytes.len() && !matches!(bytes[i], b',' | b'\n' | b'\r') {
            i += 1;
        }
        cells.push(index.pos(cell_start, i - cell_start));
        if bytes.get(i) == Some(&b',') {
            i += 1;
        }
    }
    (cells, None)
}

fn csv_error(path: &str, index: &LineIndex, err: &csv::Error) -> Diagnostic {
    let pos = err
        .position()
        .map_or(Pos::NONE, |p| index.pos(p.byte() as usize, 1));
    Diagnostic::error(path, pos, format!("invalid CSV: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_positions_follow_quotes_and_doubled_quotes() {
        let text = "id,prompt\ns1,\"a, \"\"quoted\"\" prompt\",x\n";
        let index = LineIndex::new(text);
        let (cells, unclosed) = cell_positions(text, &index, 10, 3);
        assert_eq!(unclosed, None);
        let spans: Vec<(u32, u32, u32)> = cells.iter().map(|p| (p.line, p.col, p.len)).collect();
        assert_eq!(spans, [(2, 1, 2), (2, 4, 22), (2, 27, 1)]);
        let text = "id,prompt\ns1,\"never closed\n";
        let (_, unclosed) = cell_positions(text, &LineIndex::new(text), 10, 2);
        assert_eq!(unclosed, Some(13));
    }
}
