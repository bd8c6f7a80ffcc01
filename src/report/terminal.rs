//! What the terminal gets: colour only where it is wanted, and never a control character that
//! came from a server (an id or a message could carry `ESC]0;…` or `ESC[2J`).

use std::borrow::Cow;
use std::io::IsTerminal;
use std::sync::OnceLock;

/// `--color`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colour when stderr is a terminal, unless NO_COLOR is set (CLICOLOR_FORCE forces it).
    #[default]
    Auto,
    Always,
    Never,
}

static COLOR: OnceLock<bool> = OnceLock::new();

/// Decides once, at start, whether stderr gets colour.
pub fn init_color(choice: ColorChoice) -> bool {
    *COLOR.get_or_init(|| {
        decide(
            choice,
            &|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()),
            std::io::stderr().is_terminal(),
        )
    })
}

/// Whether stderr gets colour (auto, if nobody decided).
pub fn color() -> bool {
    init_color(ColorChoice::Auto)
}

fn decide(choice: ColorChoice, env: &dyn Fn(&str) -> Option<String>, terminal: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            if env("CLICOLOR_FORCE").is_some_and(|v| !v.is_empty() && v != "0") {
                true
            } else if env("NO_COLOR").is_some_and(|v| !v.is_empty()) {
                false
            } else {
                terminal
            }
        }
    }
}

/// `text` with every control character shown as an escape (`\u{1b}`, `\n`), so nothing a
/// server sent can move the cursor, retitle the window or clear the screen.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_never_reach_the_terminal() {
        let hostile = "batch_1\u{1b}]0;pwned\u{7}\u{1b}[2J\nnext";
        let shown = escape_controls(hostile);
        assert!(!shown.chars().any(char::is_control), "{shown}");
        assert!(shown.contains("batch_1") && shown.contains("\\n"));
        assert!(matches!(escape_controls("plain"), Cow::Borrowed("plain")));
    }

    #[test]
    fn colour_follows_the_flag_then_the_conventions() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert!(!decide(ColorChoice::Auto, &env(&[]), false));
        assert!(decide(ColorChoice::Auto, &env(&[]), true));
        assert!(!decide(ColorChoice::Auto, &env(&[("NO_COLOR", "1")]), true));
        assert!(decide(
            ColorChoice::Auto,
            &env(&[("CLICOLOR_FORCE", "1")]),
            false
        ));
        assert!(decide(
            ColorChoice::Always,
            &env(&[("NO_COLOR", "1")]),
            false
        ));
        assert!(!decide(
            ColorChoice::Never,
            &env(&[("CLICOLOR_FORCE", "1")]),
            true
        ));
    }
}
