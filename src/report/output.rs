//! The one door to stdout and to the messages on stderr. A command hands its result here as a
//! [`Document`]: one JSON document for scripts (`--format json` keeps stdout exactly that) or its
//! text for people; warnings and errors go to stderr, prefixed as cargo's are, with every
//! control character a server may have sent shown escaped.

use std::io::{self, Write};

use serde::Serialize;

use super::terminal::escape_controls;

/// `--format` as the commands read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Human,
    Json,
}

/// What a command prints when it is done.
pub trait Document: Serialize {
    /// The text for people; the JSON is the `Serialize` form.
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()>;
}

/// Prints `document` on stdout in `format`.
pub fn print<D: Document + ?Sized>(document: &D, format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        return print_json(document);
    }
    let mut out = io::stdout().lock();
    document.write_human(&mut out)?;
    out.flush()?;
    Ok(())
}

/// Prints a JSON value (a document assembled by the caller) on stdout.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// `warning: …` on stderr (above any progress bars).
pub fn warn(message: impl std::fmt::Display) {
    say("warning", &message.to_string());
}

/// `error: …` on stderr, for a command that ends with a non-zero status of its own.
pub fn error(message: impl std::fmt::Display) {
    say("error", &message.to_string());
}

/// `error: …` and each cause on its own `  caused by:` line.
pub fn error_chain(err: &anyhow::Error) {
    error(err);
    for cause in err.chain().skip(1) {
        let line = format!("  caused by: {}\n", escape_controls(&cause.to_string()));
        let _ = super::progress::LogWriter.write_all(line.as_bytes());
    }
}

fn say(level: &str, message: &str) {
    // Our own messages may span lines; any other control character is shown escaped.
    let lines: Vec<_> = message.split('\n').map(escape_controls).collect();
    let line = format!("{level}: {}\n", lines.join("\n"));
    // stderr gone (a closed pipe) leaves nothing to tell.
    let _ = super::progress::LogWriter.write_all(line.as_bytes());
}

/// A line for people only (scripts read the document that follows).
pub fn note(format: Format, line: impl std::fmt::Display) -> anyhow::Result<()> {
    if format == Format::Human {
        let mut out = io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    Ok(())
}

/// Prints text already laid out (a table, a CSV) on stdout.
pub fn print_text(text: &str) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// A line on stderr for people only: what the night is doing, outside the progress events.
pub fn notice(format: Format, line: impl std::fmt::Display) {
    if format == Format::Human {
        let line = format!("{}\n", escape_controls(&line.to_string()));
        let _ = super::progress::LogWriter.write_all(line.as_bytes());
    }
}
