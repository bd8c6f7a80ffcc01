//! [`SharedStr`]: a string of a shot list that points into the list's text where it is written
//! there as is, so that a plan of a hundred thousand shots does not hold every id and prompt twice.

use std::fmt;
use std::ops::{Deref, Range};
use std::sync::Arc;

use serde::Serialize;

use crate::shotlist::Pos;

/// An immutable string that shares its storage: a range of a shot list's text, or a whole
/// string of its own (a value the list writes with escapes, or one from elsewhere).
///
/// It behaves as the `str` it stands for: equality, display and serialization ignore where the
/// bytes are kept.
///
/// Sixteen bytes: the text is behind a thin `Arc<String>`, not a wide `Arc<str>`.
#[derive(Clone)]
pub struct SharedStr {
    text: Arc<String>,
    start: u32,
    end: u32,
}

impl SharedStr {
    /// `value` as it appears in `text` within the span `at` (a scalar, its quotes included), or
    /// a copy of its own when it does not appear there as is.
    pub fn within(text: &Arc<String>, at: Pos, value: String) -> SharedStr {
        match find_within(text, at, &value) {
            Some(range) => SharedStr::slice(text, range),
            None => SharedStr::from(value),
        }
    }

    fn slice(text: &Arc<String>, range: Range<usize>) -> SharedStr {
        // `find_within` only returns ranges inside the text, whose length fits a `Pos` (u32).
        SharedStr {
            text: text.clone(),
            start: range.start as u32,
            end: range.end as u32,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text[self.start as usize..self.end as usize]
    }

    /// The text it is a range of, and the range.
    pub(super) fn parts(&self) -> (&Arc<String>, Range<u32>) {
        (&self.text, self.start..self.end)
    }
}

/// Where `value` is written, unchanged, inside the span `at` of `text`: at its start (a plain
/// scalar, a CSV field), just after its opening quote, or anywhere in it (a one-line block
/// scalar, a value with surrounding spaces trimmed).
fn find_within(text: &str, at: Pos, value: &str) -> Option<Range<usize>> {
    let start = at.offset as usize;
    let span = text.get(start..start.checked_add(at.len as usize)?)?;
    let found = if span.starts_with(value) {
        0
    } else if span.get(1..).is_some_and(|s| s.starts_with(value)) {
        1
    } else {
        span.find(value)?
    };
    Some(start + found..start + found + value.len())
}

impl From<String> for SharedStr {
    fn from(value: String) -> SharedStr {
        let end = u32::try_from(value.len()).expect("a string under 4 GiB");
        SharedStr {
            text: Arc::new(value),
            start: 0,
            end,
        }
    }
}

impl Deref for SharedStr {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for SharedStr {
    fn eq(&self, other: &SharedStr) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for SharedStr {}

impl fmt::Debug for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for SharedStr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str, needle: &str) -> Pos {
        let offset = text.find(needle).unwrap();
        Pos {
            line: 1,
            col: 1,
            offset: offset as u32,
            len: needle.len() as u32,
        }
    }

    fn points_into(shared: &SharedStr, text: &Arc<String>) -> bool {
        Arc::ptr_eq(&shared.text, text)
    }

    #[test]
    fn a_value_written_as_is_points_into_the_text() {
        let text: Arc<String> = Arc::new("id: a\nprompt: \"waves at dusk\"\nnote: dawn\n".into());
        let plain = SharedStr::within(&text, at(&text, "dawn"), "dawn".into());
        assert_eq!(&*plain, "dawn");
        assert!(points_into(&plain, &text));
        let quoted = SharedStr::within(
            &text,
            at(&text, "\"waves at dusk\""),
            "waves at dusk".into(),
        );
        assert_eq!(&*quoted, "waves at dusk");
        assert!(points_into(&quoted, &text));
    }

    #[test]
    fn a_value_written_otherwise_is_its_own_copy() {
        let text: Arc<String> = Arc::new("prompt: \"tab\\there\"\n".into());
        let escaped = SharedStr::within(&text, at(&text, "\"tab\\there\""), "tab\there".into());
        assert_eq!(&*escaped, "tab\there");
        assert!(!points_into(&escaped, &text));
        // A span that does not fit the text (a position from another text) copies too.
        let beyond = Pos {
            offset: 100,
            ..at(&text, "tab")
        };
        let copied = SharedStr::within(&text, beyond, "tab".into());
        assert_eq!(&*copied, "tab");
        assert!(!points_into(&copied, &text));
    }

    #[test]
    fn it_compares_and_serializes_as_its_string() {
        let text: Arc<String> = Arc::new("x: shot-1\n".into());
        let slice = SharedStr::within(&text, at(&text, "shot-1"), "shot-1".into());
        let own = SharedStr::from("shot-1".to_string());
        assert_eq!(slice, own);
        assert_ne!(slice, SharedStr::from("shot-2".to_string()));
        assert_eq!(serde_json::to_string(&slice).unwrap(), "\"shot-1\"");
        assert_eq!(format!("{slice} {slice:?}"), "shot-1 \"shot-1\"");
    }
}
