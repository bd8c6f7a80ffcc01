//! Shot lists (YAML and CSV) parsed into shots whose every value keeps its position.
//!
//! Parsing is pure: text in, [`ShotList`] and [`Diagnostic`]s out. Both formats go through the
//! same field interpretation (`fields`), so they accept and reject exactly the same things.
//! Checks that need the catalog or the disk (models, sizes, reference images, duplicate ids across
//! files) belong to `crate::plan`.

mod csv;
pub mod diagnostic;
mod fast;
mod fields;
mod node;
mod yaml;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use render_wire::catalog::Size;

pub use diagnostic::{Diagnostic, Related, Severity};
pub use fields::{MAX_ID_BYTES, MAX_TAKES, SHOT_FIELDS, check_id};

/// Where a value sits in its file: 1-based line and (character) column, and its byte range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
    pub offset: u32,
    pub len: u32,
}

impl Pos {
    /// No position: the problem concerns a whole file or a command-line flag.
    pub const NONE: Pos = Pos {
        line: 0,
        col: 0,
        offset: 0,
        len: 0,
    };
}

/// A value with the position it was written at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Sp<T> {
    pub value: T,
    pub pos: Pos,
}

impl<T> Sp<T> {
    pub fn new(value: T, pos: Pos) -> Sp<T> {
        Sp { value, pos }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Yaml,
    Csv,
}

impl Format {
    /// Recognises `.yaml`, `.yml` and `.csv` (any case).
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "yaml" | "yml" => Some(Format::Yaml),
            "csv" => Some(Format::Csv),
            _ => None,
        }
    }
}

/// One shot list's text, with how to name it and where its reference images are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShotListInput {
    /// As shown in diagnostics and the plan (the path as given, or `<stdin>`).
    pub path: String,
    /// Reference paths are resolved against this folder (the list's own folder).
    pub base_dir: PathBuf,
    /// Shared: a plan's ids and prompts point into it (`plan::SharedStr`).
    pub text: Arc<String>,
    pub format: Format,
}

/// The display path of a shot list read from standard input.
pub const STDIN_PATH: &str = "<stdin>";

impl ShotListInput {
    pub fn new(path: &str, base_dir: &Path, text: String, format: Format) -> ShotListInput {
        ShotListInput {
            path: path.to_string(),
            base_dir: base_dir.to_path_buf(),
            text: Arc::new(text),
            format,
        }
    }

    /// Reads a shot list file, recognising its format by extension. `-` is not handled here.
    pub fn read(path: &Path) -> Result<ShotListInput, Diagnostic> {
        let display = path.display().to_string();
        let format = Format::from_path(path).ok_or_else(|| {
            Diagnostic::error(&display, Pos::NONE, "unknown shot list format")
                .with_help("name shot lists *.yaml, *.yml or *.csv")
        })?;
        let bytes = std::fs::read(path).map_err(|e| {
            Diagnostic::error(
                &display,
                Pos::NONE,
                format!("cannot read the shot list: {e}"),
            )
        })?;
        let text = utf8(&display, bytes)?;
        let base_dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
        Ok(ShotListInput::new(&display, &base_dir, text, format))
    }

    /// Reads a YAML shot list from `reader` (standard input); references resolve against `base_dir`.
    pub fn read_stdin(reader: &mut dyn Read, base_dir: &Path) -> Result<ShotListInput, Diagnostic> {
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).map_err(|e| {
            Diagnostic::error(
                STDIN_PATH,
                Pos::NONE,
                format!("cannot read standard input: {e}"),
            )
        })?;
        let text = utf8(STDIN_PATH, bytes)?;
        Ok(ShotListInput::new(STDIN_PATH, base_dir, text, Format::Yaml))
    }
}

fn utf8(path: &str, bytes: Vec<u8>) -> Result<String, Diagnostic> {
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
        let pos = LineIndex::new(&text).pos(valid, 1);
        Diagnostic::error(path, pos, "the shot list is not valid UTF-8")
            .with_help("save the file as UTF-8")
    })
}

/// Defaults a YAML shot list sets for its shots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Defaults {
    pub provider: Option<Sp<String>>,
    pub model: Option<Sp<String>>,
    pub size: Option<Sp<Size>>,
    pub seconds: Option<Sp<u32>>,
    pub takes: Option<Sp<u32>>,
    pub priority: Option<Sp<Priority>>,
}

/// How soon a shot is wanted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Through the cheapest lane the provider offers (Batch where it has one).
    #[default]
    Normal,
    /// A director's note that cannot wait for a 24-hour batch: the direct lane, at once.
    Rush,
}

/// One shot as written: each field is `None` when absent, empty, or invalid (then a diagnostic
/// says why). Values are type-checked but not yet checked against the catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shot {
    /// Where the shot starts (its mapping in YAML, its row in CSV).
    pub at: Pos,
    pub id: Option<Sp<String>>,
    /// Trimmed of surrounding whitespace: this is the prompt sent and keyed.
    pub prompt: Option<Sp<String>>,
    /// A provider's name (`providers.yaml`); its catalog decides the rest.
    pub provider: Option<Sp<String>>,
    pub model: Option<Sp<String>>,
    pub size: Option<Sp<Size>>,
    pub seconds: Option<Sp<u32>>,
    /// As written, relative to the shot list's folder.
    pub reference: Option<Sp<String>>,
    pub takes: Option<Sp<u32>>,
    pub priority: Option<Sp<Priority>>,
    pub tags: Vec<String>,
}

impl Shot {
    fn at(at: Pos) -> Shot {
        Shot {
            at,
            id: None,
            prompt: None,
            provider: None,
            model: None,
            size: None,
            seconds: None,
            reference: None,
            takes: None,
            priority: None,
            tags: Vec::new(),
        }
    }
}

/// A parsed shot list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShotList {
    pub path: String,
    pub project: Option<Sp<String>>,
    pub defaults: Defaults,
    pub shots: Vec<Shot>,
}

/// Parses a shot list. Every problem found is returned; the list holds whatever was readable.
pub fn parse(input: &ShotListInput) -> (ShotList, Vec<Diagnostic>) {
    let mut shots = Vec::new();
    let (mut list, diagnostics) = parse_into(input, &mut shots);
    list.shots = shots;
    (list, diagnostics)
}

/// Where [`parse_into`] hands a list's shots, one at a time.
pub trait ShotSink {
    /// The list's next shot, with the list's defaults.
    fn shot(&mut self, defaults: &Defaults, shot: Shot);
    /// Every shot handed over so far is void: the list is being read again from its start.
    fn restart(&mut self);
}

/// Collects the shots.
impl ShotSink for Vec<Shot> {
    fn shot(&mut self, _: &Defaults, shot: Shot) {
        self.push(shot);
    }

    fn restart(&mut self) {
        self.clear();
    }
}

/// Parses a shot list, handing each shot to `sink` in order, as soon as it can (a big list is
/// then never held whole); the list returned holds no shots. Every problem found is returned.
pub fn parse_into(input: &ShotListInput, sink: &mut dyn ShotSink) -> (ShotList, Vec<Diagnostic>) {
    match input.format {
        Format::Yaml => yaml::parse_into(&input.path, &input.text, sink),
        Format::Csv => csv::parse_into(&input.path, &input.text, sink),
    }
}

/// Byte offset ↔ line/column conversions over one text.
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> LineIndex<'a> {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { text, starts }
    }

    /// The position of `len` bytes starting at byte `offset`.
    pub(crate) fn pos(&self, offset: usize, len: usize) -> Pos {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts[line - 1];
        let col = self
            .text
            .get(start..offset)
            .map_or(0, |s| s.chars().count())
            + 1;
        Pos {
            line: to_u32(line),
            col: to_u32(col),
            offset: to_u32(offset),
            len: to_u32(len.min(self.text.len() - offset)),
        }
    }

    /// The byte offset of a 1-based line and character column (clamped to the text).
    pub(crate) fn offset_of(&self, line: u32, col: u32) -> usize {
        let Some(&start) = self.starts.get((line as usize).saturating_sub(1)) else {
            return self.text.len();
        };
        let line_text = &self.text[start..];
        let within = line_text
            .char_indices()
            .nth((col as usize).saturating_sub(1))
            .map_or(line_text.len(), |(i, _)| i);
        start + within
    }
}

pub(crate) fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
