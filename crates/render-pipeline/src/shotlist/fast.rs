//! A quick reader for the plain block-style YAML that most shot lists are: ASCII text, mappings
//! and sequences in block style, plain one-line scalars, one-line flow sequences (`tags: [a, b]`)
//! and comments. It builds exactly the tree (values and positions) that serde-saphyr builds for
//! the same text, or gives up (`None`) at the first thing outside that subset, and then
//! serde-saphyr reads the whole text as before. So it never decides a diagnostic: syntax errors,
//! quoting, anchors, tags, multi-line scalars and every ambiguous scalar go to serde-saphyr.
//! `tests/shotlist_fast_path.rs` compares the two on generated lists.

use super::node::Node;
use super::{Pos, Sp, to_u32};

/// Deeper than any shot list: give up rather than recurse far.
const MAX_DEPTH: usize = 16;
const MAX_INPUT_BYTES: usize = 200 << 20;
const MAX_KEY_BYTES: usize = 512;

/// Who hears of the document as it is read: each item of its `shots` as soon as the item ends,
/// instead of keeping it in the tree (a list of a hundred thousand shots then never exists as
/// nodes), and each top-level entry as soon as it is read.
pub(crate) trait Streamed {
    /// An item of the first top-level `shots` sequence (which the tree then holds empty).
    fn shot(&mut self, item: Sp<Node>);
    /// A top-level entry, once read (the items of a streamed `shots` have gone before).
    fn entry(&mut self, key: &Sp<String>, value: &Sp<Node>);
}

/// The tree of `text`, or `None` when the text is outside the subset this reader knows, or
/// would pass serde-saphyr's budget of `max_events` events. `None` can come after `streamed`
/// heard of part of the text: the caller then forgets what it heard.
pub(crate) fn parse(
    text: &str,
    max_events: usize,
    streamed: Option<&mut dyn Streamed>,
) -> Option<Sp<Node>> {
    // Tabs, carriage returns and non-ASCII text change how columns and lines are counted: the
    // general parser knows those rules.
    if !text.is_ascii() || text.bytes().any(|b| b == b'\t' || b == b'\r') {
        return None;
    }
    // serde-saphyr refuses more input than this (and keys longer than its look-ahead).
    if text.len() > MAX_INPUT_BYTES {
        return None;
    }
    let mut reader = Reader {
        src: text.as_bytes(),
        text,
        at: 0,
        line: 1,
        line_start: 0,
        events: 4,
        max_events,
        streamed,
        shots_streamed: false,
        streaming: false,
    };
    reader.skip_insignificant();
    if reader.at >= reader.src.len() || reader.indent() != 0 {
        return None;
    }
    let root = reader.map(0, 0)?;
    reader.skip_insignificant();
    (reader.at >= reader.src.len()).then_some(root)
}

struct Reader<'a, 's> {
    src: &'a [u8],
    text: &'a str,
    /// The byte being read.
    at: usize,
    /// 1-based line of `at`, and where that line starts.
    line: u32,
    line_start: usize,
    /// Parser events so far (stream and document start and end count four), against the
    /// budget serde-saphyr would apply.
    events: usize,
    max_events: usize,
    streamed: Option<&'s mut dyn Streamed>,
    /// The first `shots` has been streamed: a repeated one is reported and dropped, from the tree.
    shots_streamed: bool,
    /// The sequence being read is the top-level `shots`.
    streaming: bool,
}

impl Reader<'_, '_> {
    fn pos(&self, offset: usize, len: usize) -> Pos {
        Pos {
            line: self.line,
            col: to_u32(offset - self.line_start + 1),
            offset: to_u32(offset),
            len: to_u32(len),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.at).copied()
    }

    fn count_event(&mut self, n: usize) -> Option<()> {
        self.events += n;
        (self.events <= self.max_events).then_some(())
    }

    /// Moves to the first significant character of the next line that is not blank or a
    /// comment (from the start of a line, or from the end of a value on its line).
    fn skip_insignificant(&mut self) {
        loop {
            // The rest of the current line: spaces, then perhaps a comment, then the line end.
            let mut i = self.at;
            while i < self.src.len() && self.src[i] == b' ' {
                i += 1;
            }
            let line_begins_here = self.at == self.line_start;
            if i < self.src.len() && self.src[i] != b'\n' && self.src[i] != b'#' {
                if line_begins_here {
                    self.at = i;
                    return;
                }
                // Something after a value on its line: leave it for the caller to refuse.
                self.at = i;
                return;
            }
            while i < self.src.len() && self.src[i] != b'\n' {
                i += 1;
            }
            if i >= self.src.len() {
                self.at = i;
                return;
            }
            self.at = i + 1;
            self.line += 1;
            self.line_start = self.at;
        }
    }

    /// The indentation of the current line (`at` is at its first significant character).
    fn indent(&self) -> usize {
        self.at - self.line_start
    }

    /// Whether `at` starts a `- ` sequence entry.
    fn at_dash(&self) -> bool {
        self.peek() == Some(b'-') && matches!(self.src.get(self.at + 1), Some(b' ' | b'\n') | None)
    }

    /// A block mapping whose keys sit at column `indent` (0-based); `at` is at its first key.
    fn map(&mut self, indent: usize, depth: usize) -> Option<Sp<Node>> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.count_event(2)?;
        let pos = self.pos(self.at, 0);
        let mut entries = Vec::new();
        loop {
            let key = self.key()?;
            let top = depth == 0 && self.streamed.is_some();
            // Read before the value: the maps inside it set the flag again for their own keys.
            let shots = top && key.value == "shots" && !self.shots_streamed;
            self.streaming = shots;
            let value = self.value_after_key(indent, depth)?;
            self.streaming = false;
            self.shots_streamed |= shots;
            if let Some(streamed) = self.streamed.as_deref_mut().filter(|_| top) {
                streamed.entry(&key, &value);
            }
            entries.push((key, value));
            // `at` is at the first significant character of the next line, or at the end.
            if self.at >= self.src.len() {
                break;
            }
            let next = self.indent();
            if next < indent {
                break;
            }
            if next > indent || self.at_dash() {
                return None;
            }
        }
        Some(Sp::new(Node::Map(entries), pos))
    }

    /// A plain key followed by `:` and a space or the line's end.
    fn key(&mut self) -> Option<Sp<String>> {
        let start = self.at;
        let first = self.peek()?;
        if !(first.is_ascii_alphabetic() || first == b'_') {
            return None;
        }
        let mut end = start + 1;
        while end < self.src.len()
            && (self.src[end].is_ascii_alphanumeric() || matches!(self.src[end], b'_' | b'-'))
        {
            end += 1;
        }
        if self.src.get(end) != Some(&b':')
            || !matches!(self.src.get(end + 1), Some(b' ' | b'\n') | None)
        {
            return None;
        }
        let name = &self.text[start..end];
        if special_word(name) || name.len() > MAX_KEY_BYTES {
            return None;
        }
        self.count_event(1)?;
        let key = Sp::new(name.to_string(), self.pos(start, end - start));
        self.at = end + 1;
        Some(key)
    }

    /// The value of a key of a mapping at `indent`: on the key's line, or a block below it.
    /// Returns with `at` at the next significant line.
    fn value_after_key(&mut self, indent: usize, depth: usize) -> Option<Sp<Node>> {
        while self.peek() == Some(b' ') {
            self.at += 1;
        }
        let inline = !matches!(self.peek(), Some(b'\n' | b'#') | None);
        if inline {
            let value = self.inline_value()?;
            self.end_of_value_line(indent)?;
            return Some(value);
        }
        self.skip_insignificant();
        if self.at >= self.src.len() {
            return None; // An empty value: its position is the parser's to say.
        }
        let below = self.indent();
        if self.at_dash() && below >= indent {
            return self.seq(below, below == indent, depth + 1);
        }
        if below > indent {
            return self.map(below, depth + 1);
        }
        None
    }

    /// After a value on its line: only a comment may follow, and the next significant line may
    /// not be indented deeper than `indent` (that would continue a multi-line scalar).
    fn end_of_value_line(&mut self, indent: usize) -> Option<()> {
        let line = self.line;
        self.skip_insignificant();
        if self.line == line && self.at < self.src.len() {
            return None;
        }
        if self.at < self.src.len() && self.indent() > indent {
            return None;
        }
        Some(())
    }

    /// A block sequence whose dashes sit at column `indent`; `at` is at its first dash.
    /// `indentless` when its dashes sit at the column of the key it is the value of: the
    /// parser then places the sequence at its first item rather than its first dash.
    fn seq(&mut self, indent: usize, indentless: bool, depth: usize) -> Option<Sp<Node>> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.count_event(2)?;
        let mut pos = self.pos(self.at, 0);
        let mut items = Vec::new();
        // The top-level `shots` sequence, not one nested in its items.
        let stream = self.streaming && depth == 1;
        let mut first = true;
        loop {
            // `- ` then the item on the same line.
            self.at += 1;
            while self.peek() == Some(b' ') {
                self.at += 1;
            }
            if matches!(self.peek(), Some(b'\n' | b'#') | None) {
                return None;
            }
            if indentless && first {
                pos = self.pos(self.at, 0);
            }
            first = false;
            let column = self.indent();
            let item = if self.looks_like_key() {
                self.map(column, depth + 1)?
            } else {
                let value = self.inline_value()?;
                self.end_of_value_line(indent)?;
                value
            };
            match self.streamed.as_deref_mut().filter(|_| stream) {
                Some(streamed) => streamed.shot(item),
                None => items.push(item),
            }
            if self.at >= self.src.len() {
                break;
            }
            let next = self.indent();
            if next < indent || (next == indent && !self.at_dash()) {
                break;
            }
            if next > indent {
                return None;
            }
        }
        Some(Sp::new(Node::List(items), pos))
    }

    /// Whether `at` starts `key:` (followed by a space or the line's end).
    fn looks_like_key(&self) -> bool {
        let mut end = self.at;
        while end < self.src.len()
            && (self.src[end].is_ascii_alphanumeric() || matches!(self.src[end], b'_' | b'-'))
        {
            end += 1;
        }
        end > self.at
            && self.src.get(end) == Some(&b':')
            && matches!(self.src.get(end + 1), Some(b' ' | b'\n') | None)
    }

    /// A plain scalar or a flow sequence, on the current line.
    fn inline_value(&mut self) -> Option<Sp<Node>> {
        if self.peek() == Some(b'[') {
            return self.flow_seq();
        }
        let start = self.at;
        let mut end = start;
        while end < self.src.len() && self.src[end] != b'\n' {
            let b = self.src[end];
            if b == b'#' && self.src[end - 1] == b' ' {
                break;
            }
            if b == b':' && matches!(self.src.get(end + 1), Some(b' ' | b'\n') | None) {
                return None;
            }
            end += 1;
        }
        while end > start && self.src[end - 1] == b' ' {
            end -= 1;
        }
        let node = scalar(&self.text[start..end])?;
        self.count_event(1)?;
        self.at = end;
        Some(Sp::new(node, self.pos(start, end - start)))
    }

    /// `[a, b]` on one line, of plain scalars.
    fn flow_seq(&mut self) -> Option<Sp<Node>> {
        self.count_event(2)?;
        let pos = self.pos(self.at, 1);
        self.at += 1;
        let mut items = Vec::new();
        loop {
            while self.peek() == Some(b' ') {
                self.at += 1;
            }
            if self.peek() == Some(b']') && items.is_empty() {
                self.at += 1;
                break;
            }
            let start = self.at;
            let mut end = start;
            while end < self.src.len() && !matches!(self.src[end], b',' | b']' | b'\n') {
                if matches!(self.src[end], b'[' | b'{' | b'}' | b'#' | b':') {
                    return None;
                }
                end += 1;
            }
            let close = *self.src.get(end)?;
            if close == b'\n' {
                return None;
            }
            let mut trimmed = end;
            while trimmed > start && self.src[trimmed - 1] == b' ' {
                trimmed -= 1;
            }
            let node = scalar(&self.text[start..trimmed])?;
            self.count_event(1)?;
            items.push(Sp::new(node, self.pos(start, trimmed - start)));
            self.at = end + 1;
            if close == b']' {
                break;
            }
        }
        Some(Sp::new(Node::List(items), pos))
    }
}

/// How serde-saphyr reads a plain scalar, for the spellings whose reading is certain: text that
/// starts with a letter (and is no boolean or null word), whole decimal numbers, sizes such as
/// `1280x720`, and text starting with a digit that holds a space. `None` for anything else.
fn scalar(text: &str) -> Option<Node> {
    let first = *text.as_bytes().first()?;
    if first.is_ascii_alphabetic() {
        return (!special_word(text)).then(|| Node::Str(text.to_string()));
    }
    if !first.is_ascii_digit() {
        return None;
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        // A leading zero reads as a float (`001` is 1.0), and long numbers may overflow.
        if (first == b'0' && text.len() > 1) || text.len() > 18 {
            return None;
        }
        return text.parse().ok().map(Node::Int);
    }
    if is_size(text) || (text.contains(' ') && !text.contains(':')) {
        return Some(Node::Str(text.to_string()));
    }
    None
}

/// `WIDTHxHEIGHT` with no leading zeros (so never `0x…`, a hexadecimal number).
fn is_size(text: &str) -> bool {
    let Some((w, h)) = text.split_once('x') else {
        return false;
    };
    let digits =
        |s: &str| !s.is_empty() && !s.starts_with('0') && s.bytes().all(|b| b.is_ascii_digit());
    digits(w) && digits(h)
}

/// Words YAML reads as booleans, null or special floats, in any case.
fn special_word(text: &str) -> bool {
    const WORDS: [&str; 12] = [
        "y", "yes", "n", "no", "true", "false", "on", "off", "null", "nan", "inf", "infinity",
    ];
    text.len() <= 8 && WORDS.iter().any(|w| w.eq_ignore_ascii_case(text))
}

#[cfg(test)]
mod tests;
