//! YAML shot lists: `project`, `defaults` and `shots`.

use serde_saphyr::{Budget, DuplicateKeyPolicy};

use super::diagnostic::Diagnostic;
use super::fields::FieldReader;
use super::node::{Node, SpannedNode, pos_of};
use super::{Defaults, LineIndex, Pos, Shot, ShotList, ShotSink, Sp, to_u32};

const TOP_FIELDS: [&str; 3] = ["project", "defaults", "shots"];

/// Reads the list with the fast reader when the text is plain block-style YAML it knows (the
/// same tree serde-saphyr builds), else with serde-saphyr. Each shot goes to `sink`, in order:
/// with the fast reader as soon as its item ends (after the list's `defaults`, which a shot
/// read before them waits for), else once the whole list is read. The list returned holds no
/// shots.
pub(crate) fn parse_into(
    path: &str,
    text: &str,
    sink: &mut dyn ShotSink,
) -> (ShotList, Vec<Diagnostic>) {
    let mut streaming = Streaming {
        reader: FieldReader::new(path, text),
        sink,
        defaults: None,
        defaults_to_come: has_top_level_key(text, "defaults"),
        waiting: Vec::new(),
        items: false,
        handed_without_defaults: false,
        spoiled: false,
    };
    let fast = super::fast::parse(text, max_events(text), Some(&mut streaming));
    let (root, streamed) = match fast {
        Some(root) if !streaming.spoiled => (Ok(root), streaming.finish()),
        _ => {
            // The fast reader gave up part-way: what it had handed over is read again.
            if streaming.items {
                streaming.sink.restart();
            }
            (serde_saphyr_tree(text), None)
        }
    };
    let (mut list, diagnostics) = read(path, text, root, streamed);
    // The shots that were not streamed: read by serde-saphyr, or a `shots` that is no block list.
    for shot in std::mem::take(&mut list.shots) {
        streaming.sink.shot(&list.defaults, shot);
    }
    (list, diagnostics)
}

/// Whether a line of `text` starts with `key:`: in the block-style YAML the fast reader takes,
/// every top-level key does, and only they.
fn has_top_level_key(text: &str, key: &str) -> bool {
    let line = format!("{key}:");
    text.starts_with(&line) || text.contains(&format!("\n{line}"))
}

/// What the fast reader streams goes here: each shot is read as its item ends, and handed to the
/// sink with the list's defaults.
struct Streaming<'a> {
    /// Reads the streamed shots; its diagnostics are said where the document's `shots` is read.
    reader: FieldReader<'a>,
    sink: &'a mut dyn ShotSink,
    /// The list's defaults, once its (first) `defaults` has been read.
    defaults: Option<Defaults>,
    /// The text has a `defaults` entry not read yet: shots read before it wait for it.
    defaults_to_come: bool,
    waiting: Vec<Shot>,
    /// Some item of `shots` was streamed.
    items: bool,
    /// Some shot went to the sink before any `defaults` was read.
    handed_without_defaults: bool,
    /// A `defaults` came after shots were handed over without it: read again, the slow way.
    spoiled: bool,
}

impl super::fast::Streamed for Streaming<'_> {
    fn shot(&mut self, item: Sp<Node>) {
        self.items = true;
        let Some(shot) = self.reader.shot(item) else {
            return;
        };
        match &self.defaults {
            Some(defaults) => self.sink.shot(defaults, shot),
            None if self.defaults_to_come => self.waiting.push(shot),
            None => {
                self.handed_without_defaults = true;
                self.sink.shot(&Defaults::default(), shot);
            }
        }
    }

    fn entry(&mut self, key: &Sp<String>, value: &Sp<Node>) {
        if key.value != "defaults" || self.defaults.is_some() {
            return;
        }
        self.spoiled |= self.handed_without_defaults;
        // Only its values: its diagnostics are said where the document's `defaults` is read.
        let (path, source) = (self.reader.path, self.reader.source);
        let defaults = FieldReader::new(path, source).defaults(value.clone());
        for shot in std::mem::take(&mut self.waiting) {
            self.sink.shot(&defaults, shot);
        }
        self.defaults = Some(defaults);
    }
}

impl Streaming<'_> {
    /// What reading the streamed shots found (`None` when `shots` streamed nothing), once the
    /// shots still waiting for defaults that never came have gone without them.
    fn finish(&mut self) -> Option<Vec<Diagnostic>> {
        for shot in std::mem::take(&mut self.waiting) {
            self.sink.shot(&Defaults::default(), shot);
        }
        self.items
            .then(|| std::mem::take(&mut self.reader.diagnostics))
    }
}

/// The list with the given reader of the document's tree and no streaming (to compare the two
/// readers), its shots in the list.
#[cfg(test)]
pub(crate) fn parse_with(
    path: &str,
    text: &str,
    tree: fn(&str) -> Result<Sp<Node>, serde_saphyr::Error>,
) -> (ShotList, Vec<Diagnostic>) {
    read(path, text, tree(text), None)
}

/// The list from the document's tree; `streamed` is what reading the shots already streamed
/// from it found (their `shots` the tree then holds empty), said where `shots` is read.
fn read(
    path: &str,
    text: &str,
    root: Result<Sp<Node>, serde_saphyr::Error>,
    mut streamed: Option<Vec<Diagnostic>>,
) -> (ShotList, Vec<Diagnostic>) {
    let mut reader = FieldReader::new(path, text);
    let mut list = ShotList {
        path: path.to_string(),
        project: None,
        defaults: Defaults::default(),
        shots: Vec::new(),
    };
    match root {
        Ok(root) => read_document(&mut reader, &mut list, root, &mut streamed),
        Err(err) => reader.diagnostics.push(syntax_error(path, text, &err)),
    }
    let mut diagnostics = reader.diagnostics;
    fill_missing_offsets(text, &mut diagnostics);
    (list, diagnostics)
}

/// The document's tree as serde-saphyr reads it (what the fast reader must match).
pub(crate) fn serde_saphyr_tree(text: &str) -> Result<Sp<Node>, serde_saphyr::Error> {
    serde_saphyr::from_str_with_options::<SpannedNode>(text, options(text)).map(|n| n.0)
}

fn max_events(text: &str) -> usize {
    (text.len() / 2).max(1_000_000)
}

/// Repeated keys reach us (and are reported with both places) instead of aborting the parse;
/// the node budget grows with the input so a 100,000-shot list is not refused as a bomb.
fn options(text: &str) -> serde_saphyr::Options {
    let events = max_events(text);
    let mut budget = Budget::default();
    budget.max_events = events;
    budget.max_nodes = events;
    budget.max_total_scalar_bytes = text.len().max(64 << 20);
    serde_saphyr::options! {
        duplicate_keys: DuplicateKeyPolicy::PassThrough,
        budget: Some(budget),
    }
}

fn read_document(
    reader: &mut FieldReader,
    list: &mut ShotList,
    root: Sp<Node>,
    streamed: &mut Option<Vec<Diagnostic>>,
) {
    let entries = match root.value {
        Node::Map(entries) => entries,
        Node::Null => {
            reader.help(Pos::NONE, "the shot list is empty", "add a `shots:` list");
            return;
        }
        other => {
            reader.help(
                root.pos,
                format!("a shot list must be a mapping, found {}", other.kind()),
                "start the file with `shots:` followed by `- id: …` entries",
            );
            return;
        }
    };
    let mut saw_shots = false;
    for (key, value) in reader.without_repeats(entries) {
        match key.value.as_str() {
            "project" => list.project = project(reader, value),
            "defaults" => list.defaults = reader.defaults(value),
            "shots" => {
                saw_shots = true;
                // The first `shots` (the one kept) is the one whose items were streamed.
                match streamed.take() {
                    Some(diagnostics) => reader.diagnostics.extend(diagnostics),
                    None => list.shots = shots(reader, value),
                }
            }
            _ => reader.unknown_key(&key, "a shot list", &TOP_FIELDS),
        }
    }
    if !saw_shots {
        reader.help(
            root.pos,
            "the shot list has no `shots`",
            "add `shots:` followed by `- id: …` entries",
        );
    }
}

fn project(reader: &mut FieldReader, value: Sp<Node>) -> Option<Sp<String>> {
    match value.scalar_text(reader.source) {
        Some(text) => Some(Sp::new(text.trim().to_string(), value.pos)),
        None if value.value == Node::Null => None,
        None => {
            let message = format!("`project` must be text, found {}", value.value.kind());
            reader.error(value.pos, message);
            None
        }
    }
}

fn shots(reader: &mut FieldReader, value: Sp<Node>) -> Vec<Shot> {
    match value.value {
        Node::List(items) => {
            // As many shots as items, at most: room for them all at once, not up to twice as
            // much by doubling.
            let mut shots = Vec::with_capacity(items.len());
            shots.extend(items.into_iter().filter_map(|n| reader.shot(n)));
            shots
        }
        Node::Null => Vec::new(),
        other => {
            reader.help(
                value.pos,
                format!("`shots` must be a list, found {}", other.kind()),
                "write each shot on its own line starting with `- id: …`",
            );
            Vec::new()
        }
    }
}

/// A parse error at its place, with the parser's own words (minus its "at line…" suffix).
fn syntax_error(path: &str, text: &str, err: &serde_saphyr::Error) -> Diagnostic {
    let message = err.without_snippet().to_string();
    let Some(location) = err.location() else {
        return Diagnostic::error(path, Pos::NONE, format!("invalid YAML: {message}"));
    };
    let suffix = format!(" at line {}, column {}", location.line(), location.column());
    let message = message
        .strip_suffix(&suffix)
        .unwrap_or(&message)
        .to_string();
    let mut pos = pos_of(&location);
    if pos.offset == u32::MAX {
        let index = LineIndex::new(text);
        let offset = index.offset_of(pos.line, pos.col);
        pos = index.pos(offset, 1);
    }
    Diagnostic::error(
        path,
        whole_characters(text, pos),
        format!("invalid YAML: {message}"),
    )
}

/// The parser's error spans count a character as one byte: widen the range to whole characters,
/// so whoever slices the text with it (an editor, the JSON output's reader) gets valid UTF-8.
fn whole_characters(text: &str, mut pos: Pos) -> Pos {
    let mut start = (pos.offset as usize).min(text.len());
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (pos.offset as usize)
        .saturating_add(pos.len as usize)
        .clamp(start, text.len());
    while !text.is_char_boundary(end) {
        end += 1;
    }
    pos.offset = to_u32(start);
    pos.len = to_u32(end - start);
    pos
}

/// Nodes whose location came without a byte range get one computed from line and column.
fn fill_missing_offsets(text: &str, diagnostics: &mut [Diagnostic]) {
    if !diagnostics.iter().any(|d| d.offset == u32::MAX) {
        return;
    }
    let index = LineIndex::new(text);
    for d in diagnostics.iter_mut().filter(|d| d.offset == u32::MAX) {
        let offset = index.offset_of(d.line, d.col);
        d.offset = to_u32(offset);
        d.len = to_u32(text[offset..].chars().next().map_or(0, char::len_utf8));
    }
}
