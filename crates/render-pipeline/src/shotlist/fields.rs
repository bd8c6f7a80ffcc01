//! Turning positioned nodes into shots and defaults: the one place that knows the fields, their
//! types and their ranges, shared by the YAML and CSV readers.

use render_wire::catalog::Size;

use super::diagnostic::{Diagnostic, closest};
use super::node::Node;
use super::{Defaults, Pos, Priority, Shot, Sp};

/// The fields a shot may have, in the order the docs list them.
pub const SHOT_FIELDS: [&str; 10] = [
    "id",
    "prompt",
    "provider",
    "model",
    "size",
    "seconds",
    "reference",
    "takes",
    "priority",
    "tags",
];

const DEFAULT_FIELDS: [&str; 6] = ["provider", "model", "size", "seconds", "takes", "priority"];

/// More takes than this is almost certainly a typo, and would spend real money.
pub const MAX_TAKES: u32 = 100;

/// Shot ids become output file names (`<id>.mp4`, `<id>_take2.mp4`), so they stay short.
pub const MAX_ID_BYTES: usize = 100;

/// Why an id cannot safely name a file, or `Ok` when it can.
pub fn check_id(id: &str) -> Result<(), String> {
    const RESERVED: &[char] = &['/', '\\', ':', '*', '?', '"', '<', '>', '|'];
    if id.is_empty() {
        return Err("the shot id is empty".into());
    }
    if let Some(c) = id.chars().find(|c| RESERVED.contains(c)) {
        return Err(format!(
            "the shot id `{}` contains `{c}`, which cannot appear in a file name",
            id.escape_debug()
        ));
    }
    if id.chars().any(char::is_control) {
        return Err(format!(
            "the shot id `{}` contains a control character",
            id.escape_debug()
        ));
    }
    if id.contains("..") {
        return Err(format!("the shot id `{id}` contains `..`"));
    }
    if id.starts_with('.') {
        return Err(format!(
            "the shot id `{id}` starts with `.`, which hides the file"
        ));
    }
    if id.trim() != id {
        return Err(format!("the shot id `{id}` starts or ends with whitespace"));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(format!(
            "the shot id is {} bytes long; at most {MAX_ID_BYTES} are allowed",
            id.len()
        ));
    }
    Ok(())
}

/// Collects diagnostics while reading the fields of one file.
pub(crate) struct FieldReader<'a> {
    pub(crate) path: &'a str,
    pub(crate) source: &'a str,
    pub(crate) diagnostics: Vec<Diagnostic>,
    /// Off when a CSV header already reported the missing `id` / `prompt` column.
    pub(crate) require_id: bool,
    pub(crate) require_prompt: bool,
}

impl<'a> FieldReader<'a> {
    pub(crate) fn new(path: &'a str, source: &'a str) -> FieldReader<'a> {
        FieldReader {
            path,
            source,
            diagnostics: Vec::new(),
            require_id: true,
            require_prompt: true,
        }
    }

    pub(crate) fn error(&mut self, at: Pos, message: impl Into<String>) -> &mut Diagnostic {
        self.diagnostics
            .push(Diagnostic::error(self.path, at, message));
        self.diagnostics.last_mut().expect("just pushed")
    }

    pub(crate) fn help(&mut self, at: Pos, message: impl Into<String>, help: impl Into<String>) {
        self.diagnostics
            .push(Diagnostic::error(self.path, at, message).with_help(help));
    }

    /// Reports an unknown key, suggesting the closest known one.
    pub(crate) fn unknown_key(&mut self, key: &Sp<String>, what: &str, known: &[&str]) {
        let help = match closest(&key.value, known) {
            Some(near) => format!("did you mean `{near}`?"),
            None => format!("{what} has the fields: {}", known.join(", ")),
        };
        self.help(key.pos, format!("unknown field `{}`", key.value), help);
    }

    /// A shot from a mapping node; `None` when the node is not a mapping at all.
    pub(crate) fn shot(&mut self, node: Sp<Node>) -> Option<Shot> {
        let Node::Map(entries) = node.value else {
            self.help(
                node.pos,
                format!("a shot must be a mapping, found {}", node.value.kind()),
                "write each shot as `- id: …` followed by `prompt: …` and its other fields",
            );
            return None;
        };
        let mut shot = Shot::at(node.pos);
        let entries = self.without_repeats(entries);
        let written = |name: &str| entries.iter().any(|(k, _)| k.value == name);
        let (id_written, prompt_written) = (written("id"), written("prompt"));
        for (key, value) in entries {
            self.shot_field(&mut shot, key, value);
        }
        // A field written but invalid has its own diagnostic; only absence is reported here.
        self.require_id_and_prompt(&shot, id_written, prompt_written);
        Some(shot)
    }

    fn shot_field(&mut self, shot: &mut Shot, key: Sp<String>, value: Sp<Node>) {
        match key.value.as_str() {
            "id" => shot.id = self.id(&key, value),
            "prompt" => shot.prompt = self.prompt(&key, value),
            "provider" => shot.provider = self.optional_text(&key, value),
            "model" => shot.model = self.optional_text(&key, value),
            "size" => shot.size = self.size(&key, value),
            "seconds" => shot.seconds = self.whole_number(&key, value),
            "reference" => shot.reference = self.optional_text(&key, value),
            "takes" => shot.takes = self.takes(&key, value),
            "priority" => shot.priority = self.priority(&key, value),
            "tags" => shot.tags = self.tags(&key, value),
            _ => self.unknown_key(&key, "a shot", &SHOT_FIELDS),
        }
    }

    /// The `defaults` block of a YAML list.
    pub(crate) fn defaults(&mut self, node: Sp<Node>) -> Defaults {
        let mut defaults = Defaults::default();
        let entries = match node.value {
            Node::Map(entries) => entries,
            Node::Null => return defaults,
            other => {
                self.help(
                    node.pos,
                    format!("`defaults` must be a mapping, found {}", other.kind()),
                    "e.g. `defaults: {model: sora-2, size: 1280x720, seconds: 8}`",
                );
                return defaults;
            }
        };
        for (key, value) in self.without_repeats(entries) {
            match key.value.as_str() {
                "provider" => defaults.provider = self.optional_text(&key, value),
                "model" => defaults.model = self.optional_text(&key, value),
                "size" => defaults.size = self.size(&key, value),
                "seconds" => defaults.seconds = self.whole_number(&key, value),
                "takes" => defaults.takes = self.takes(&key, value),
                "priority" => defaults.priority = self.priority(&key, value),
                _ => self.unknown_key(&key, "`defaults`", &DEFAULT_FIELDS),
            }
        }
        defaults
    }

    /// Drops (and reports) the second and later uses of a key in one mapping.
    pub(crate) fn without_repeats(
        &mut self,
        entries: Vec<(Sp<String>, Sp<Node>)>,
    ) -> Vec<(Sp<String>, Sp<Node>)> {
        let repeated = |i: usize| {
            entries[..i]
                .iter()
                .any(|(k, _)| k.value == entries[i].0.value)
        };
        if !(1..entries.len()).any(repeated) {
            return entries;
        }
        let mut kept: Vec<(Sp<String>, Sp<Node>)> = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            match kept.iter().find(|(k, _)| k.value == key.value) {
                Some((first, _)) => {
                    let first = first.pos;
                    let path = self.path;
                    self.error(key.pos, format!("`{}` is given twice", key.value))
                        .related
                        .push(related(path, first, "first given here"));
                }
                None => kept.push((key, value)),
            }
        }
        kept
    }

    fn require_id_and_prompt(&mut self, shot: &Shot, id_written: bool, prompt_written: bool) {
        if !id_written && self.require_id {
            self.help(
                shot.at,
                "the shot has no `id`",
                "every shot needs a unique `id`; it names the shot's output files",
            );
        }
        if !prompt_written && self.require_prompt {
            let (at, message) = match &shot.id {
                Some(id) => (id.pos, format!("shot `{}` has no `prompt`", id.value)),
                None => (shot.at, "the shot has no `prompt`".to_string()),
            };
            self.help(at, message, "add `prompt: …` describing the shot");
        }
    }

    /// Text of a scalar (moved out of the node, not copied); reports other kinds. `None` for
    /// null (treated as absent).
    fn text(&mut self, key: &Sp<String>, value: Sp<Node>) -> Option<Sp<String>> {
        let pos = value.pos;
        match value.value {
            Node::Null => None,
            Node::Str(text) => Some(Sp::new(text, pos)),
            _ => match value.scalar_text(self.source) {
                Some(text) => Some(Sp::new(text.into_owned(), pos)),
                None => {
                    self.error(
                        pos,
                        format!("`{}` must be text, found {}", key.value, value.value.kind()),
                    );
                    None
                }
            },
        }
    }

    fn optional_text(&mut self, key: &Sp<String>, value: Sp<Node>) -> Option<Sp<String>> {
        self.text(key, value)
            .map(|t| Sp::new(trimmed(t.value), t.pos))
            .filter(|t| !t.value.is_empty())
    }

    fn id(&mut self, key: &Sp<String>, value: Sp<Node>) -> Option<Sp<String>> {
        if let Node::Null = value.value {
            self.help(
                value.pos,
                "the shot id is empty",
                "give the shot an id, e.g. `s01`",
            );
            return None;
        }
        let id = self.text(key, value)?;
        if let Err(problem) = check_id(&id.value) {
            self.help(
                id.pos,
                problem,
                "shot ids name output files: use letters, digits, `-` and `_`",
            );
            return None;
        }
        Some(id)
    }

    fn prompt(&mut self, key: &Sp<String>, value: Sp<Node>) -> Option<Sp<String>> {
        let pos = value.pos;
        if let Node::Null = value.value {
            self.help(pos, "the prompt is empty", "describe the shot in `prompt`");
            return None;
        }
        let prompt = self.text(key, value)?;
        let text = trimmed(prompt.value);
        if text.is_empty() {
            self.help(pos, "the prompt is empty", "describe the shot in `prompt`");
            return None;
        }
        Some(Sp::new(text, prompt.pos))
    }

    fn size(&mut self, key: &Sp<String>, value: Sp<Node>) -> Option<Sp<Size>> {
        let text = self.optional_text(key, value)?;
        match text.value.parse::<Size>() {
            Ok(size) => Some(Sp::new(size, text.pos)),
            Err(e) => {
                self.error(text.pos, e.to_string());
                None
            }
        }
    }

    /// A positive whole number, written as a number or as digits in text (CSV cells are text).
    fn whole_number(&mut self, key: &Sp<String>, value: Sp<Node>) -> Option<Sp<u32>> {
        let pos = value.pos;
        let parsed = match &value.value {
            Node::Null => return None,
            Node::Int(n) => u32::try_from(*n).ok(),
            Node::Str(s) if s.trim().is_empty() => return None,
            Node::Str(s) => s.trim().parse::<u32>().ok(),
            _ => None,
        };
        match parsed {
            Some(n) if n > 0 => Some(Sp::new(n, pos)),
            _ => {
                let found = match value.scalar_text(self.source) {
                    Some(text) => format!("`{text}`"),
                    None => value.value.kind().to_string(),
                };
                self.help(
                    pos,
                    format!(
                        "`{}` must be a whole number above 0, found {found}",
                        key.value
                    ),
                    format!(
                        "e.g. `{}: {}`",
                        key.value,
                        if key.value == "takes" { 2 } else { 8 }
                    ),
                );
                None
            }
        }
    }

    fn takes(&mut self, key: &Sp<String>, value: Sp<Node>) -> Option<Sp<u32>> {
        if let Node::Int(n) = value.value
            && n < 1
        {
            self.help(
                value.pos,
                format!("`takes` is {n}; a shot needs at least 1 take"),
                "remove the shot instead, or set `takes: 1`",
            );
            return None;
        }
        let takes = self.whole_number(key, value)?;
        if takes.value > MAX_TAKES {
            self.help(
                takes.pos,
                format!(
                    "{} takes is more than the limit of {MAX_TAKES}",
                    takes.value
                ),
                "split the shot, or check for a typo",
            );
            return None;
        }
        Some(takes)
    }

    /// `rush` (send at once, through the direct lane, at the standard price) or `normal`.
    fn priority(&mut self, key: &Sp<String>, value: Sp<Node>) -> Option<Sp<Priority>> {
        let text = self.optional_text(key, value)?;
        match text.value.to_ascii_lowercase().as_str() {
            "rush" => Some(Sp::new(Priority::Rush, text.pos)),
            "normal" => Some(Sp::new(Priority::Normal, text.pos)),
            other => {
                self.help(
                    text.pos,
                    format!("`priority` is `{other}`; expected `rush` or `normal`"),
                    "`priority: rush` sends the shot at once at the standard price, without waiting for a batch",
                );
                None
            }
        }
    }

    fn tags(&mut self, key: &Sp<String>, value: Sp<Node>) -> Vec<String> {
        let items = match value.value {
            Node::List(items) => items,
            Node::Null => return Vec::new(),
            _ => vec![value],
        };
        let mut tags = Vec::with_capacity(items.len());
        for item in items {
            if let Some(tag) = self.optional_text(key, item) {
                tags.push(tag.value);
            }
        }
        tags
    }
}

/// `text` without surrounding whitespace, reusing its buffer when there is none.
fn trimmed(text: String) -> String {
    if text.trim().len() == text.len() {
        text
    } else {
        text.trim().to_string()
    }
}

pub(crate) fn related(path: &str, at: Pos, label: &str) -> super::Related {
    super::Related {
        path: path.to_string(),
        line: at.line,
        col: at.col,
        offset: at.offset,
        len: at.len,
        label: label.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_cannot_name_a_file_are_refused() {
        let long = "x".repeat(MAX_ID_BYTES + 1);
        let cases: [(&str, &str); 9] = [
            ("", "empty"),
            ("a/b", "contains `/`"),
            ("a\\b", "contains `\\`"),
            ("..", "contains `..`"),
            (".hidden", "starts with `.`"),
            ("tab\there", "control character"),
            ("what?", "contains `?`"),
            (" padded", "whitespace"),
            (&long, "bytes long"),
        ];
        for (id, expected) in cases {
            let err = check_id(id).expect_err(id);
            assert!(err.contains(expected), "{id:?}: {err}");
        }
        for ok in ["s01", "night-exterior_2", "Ünïcode", "a.b", "001"] {
            assert_eq!(check_id(ok), Ok(()), "{ok}");
        }
    }
}
