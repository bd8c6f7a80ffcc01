//! Problems found in shot lists, as values: collected for a whole run, sorted, and rendered once
//! by the reporter (`crate::report::plan`).

use serde::Serialize;

use super::Pos;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// A second place a diagnostic points at (the first use of a duplicated id, say).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Related {
    pub path: String,
    pub line: u32,
    pub col: u32,
    /// Byte offset and length in that file's text.
    pub offset: u32,
    pub len: u32,
    pub label: String,
}

/// One problem, pointing at the user's text.
///
/// `line`/`col` are 1-based (the column counts characters); `line == 0` means the problem has no
/// position (an unreadable file, a command-line flag). `offset`/`len` are the byte range of the
/// offending text, for the caret.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub path: String,
    pub line: u32,
    pub col: u32,
    pub offset: u32,
    pub len: u32,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<Related>,
}

impl Diagnostic {
    pub fn error(path: &str, at: Pos, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(Severity::Error, path, at, message.into())
    }

    pub fn warning(path: &str, at: Pos, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(Severity::Warning, path, at, message.into())
    }

    fn new(severity: Severity, path: &str, at: Pos, message: String) -> Diagnostic {
        Diagnostic {
            severity,
            path: path.to_string(),
            line: at.line,
            col: at.col,
            offset: at.offset,
            len: at.len,
            message,
            help: None,
            related: Vec::new(),
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn with_related(mut self, path: &str, at: Pos, label: impl Into<String>) -> Diagnostic {
        self.related.push(Related {
            path: path.to_string(),
            line: at.line,
            col: at.col,
            offset: at.offset,
            len: at.len,
            label: label.into(),
        });
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Where the diagnostic points, as `path:line:col` (or just `path` without a position).
    pub fn location(&self) -> String {
        if self.line == 0 {
            self.path.clone()
        } else {
            format!("{}:{}:{}", self.path, self.line, self.col)
        }
    }
}

/// Sorts by file, then position, and drops exact repeats (a bad `defaults` value inherited by
/// many shots is reported once, at the `defaults` entry).
pub fn sort_and_dedup(diagnostics: &mut Vec<Diagnostic>) {
    diagnostics.sort_by(|a, b| {
        (&a.path, a.line, a.col, a.severity, &a.message)
            .cmp(&(&b.path, b.line, b.col, b.severity, &b.message))
    });
    diagnostics.dedup();
}

pub fn has_errors(diagnostics: &[Diagnostic]) -> bool {
    diagnostics.iter().any(Diagnostic::is_error)
}

/// The known name closest to `name`, for "did you mean" hints; `None` when nothing is close.
pub fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(2);
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(name, k), *k))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| k)
}
