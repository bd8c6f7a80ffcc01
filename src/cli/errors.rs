//! How a command ends: the exit statuses (the one list, from which `render --help` is written
//! and against which a test holds the README's table), and the one place an error becomes one.

use render_pipeline::api::error::ApiError;
use render_pipeline::harvest::HarvestError;
use render_pipeline::submit::SubmitError;

/// Exit statuses: the one list, from which `render --help` is written (and against which a test
/// holds the README's table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success = 0,
    Invalid = 1,
    /// Bad flags or configuration (clap's own errors exit 2 too).
    Usage = 2,
    OverBudget = 3,
    SomeFailed = 4,
    SomeLost = 5,
    Corrupt = 6,
    Failure = 10,
}

impl Outcome {
    pub const ALL: [Outcome; 8] = [
        Outcome::Success,
        Outcome::Invalid,
        Outcome::Usage,
        Outcome::OverBudget,
        Outcome::SomeFailed,
        Outcome::SomeLost,
        Outcome::Corrupt,
        Outcome::Failure,
    ];

    pub fn code(self) -> u8 {
        self as u8
    }

    /// What the status means, as `render --help` and the README say it.
    pub fn meaning(self) -> &'static str {
        match self {
            Outcome::Success => "everything asked for was done",
            Outcome::Invalid => "invalid shot list or catalog (nothing was spent)",
            Outcome::Usage => "usage error",
            Outcome::OverBudget => "the plan exceeds `--budget` (nothing was spent)",
            Outcome::SomeFailed => "some requests failed (their errors are in the manifest)",
            Outcome::SomeLost => {
                "some requests were lost: they expired before harvest (`render retry RUN`)"
            }
            Outcome::Corrupt => {
                "`render cache verify` found damaged objects (quarantined; their requests render again)"
            }
            Outcome::Failure => {
                "runtime failure (API, network, disk): run the same command again to continue"
            }
        }
    }
}

/// The exit statuses for `render --help`.
pub fn exit_codes_help() -> String {
    let mut help = String::from("Exit status:");
    for outcome in Outcome::ALL {
        help.push_str(&format!("\n  {:<3} {}", outcome.code(), outcome.meaning()));
    }
    help
}

/// A mistake in what was asked (a run that does not exist, the wrong provider), not a failure
/// of the night: exit status 2, like a bad flag.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The exit status of a command that ended in an error: the one place an error becomes a
/// status. A mistake in what was asked, anywhere in the chain of causes, is a usage error (2);
/// everything else is a runtime failure (10), which the same command run again continues.
pub fn exit_status_of(err: &anyhow::Error) -> Outcome {
    if err.chain().any(is_usage) {
        Outcome::Usage
    } else {
        Outcome::Failure
    }
}

/// Whether one cause is the user's mistake rather than the night's failure.
fn is_usage(cause: &(dyn std::error::Error + 'static)) -> bool {
    if cause.is::<UsageError>() {
        return true;
    }
    if let Some(err) = cause.downcast_ref::<HarvestError>() {
        return matches!(
            err,
            HarvestError::UnknownRun(_) | HarvestError::OtherProvider { .. }
        );
    }
    if let Some(err) = cause.downcast_ref::<SubmitError>() {
        return matches!(err, SubmitError::NoRoute(_));
    }
    if let Some(err) = cause.downcast_ref::<ApiError>() {
        return matches!(
            err,
            ApiError::MissingApiKey | ApiError::InvalidConfig { .. }
        );
    }
    false
}

#[cfg(test)]
mod exit_code_tests {
    use super::Outcome;

    /// The README's table of exit statuses is the one `render --help` prints.
    #[test]
    fn the_readme_lists_every_exit_status_as_help_does() {
        let readme = include_str!("../../README.md");
        for outcome in Outcome::ALL {
            let row = format!("| {} | {} |", outcome.code(), outcome.meaning());
            assert!(readme.contains(&row), "README lacks the row {row}");
        }
        let help = super::exit_codes_help();
        assert_eq!(help.lines().count(), Outcome::ALL.len() + 1, "{help}");
    }

    /// The status comes from the cause, however deep under context it lies.
    #[test]
    fn a_usage_mistake_anywhere_in_the_chain_exits_2_and_anything_else_10() {
        use super::{UsageError, exit_status_of};
        use anyhow::Context as _;
        use render_pipeline::api::error::ApiError;
        let usage: anyhow::Result<()> = Err(UsageError("no run named x".into()).into());
        let wrapped = usage.context("looking for the run").unwrap_err();
        assert_eq!(exit_status_of(&wrapped), Outcome::Usage);
        let key: anyhow::Result<()> = Err(ApiError::MissingApiKey.into());
        let key = key.context("a").context("b").unwrap_err();
        assert_eq!(exit_status_of(&key), Outcome::Usage);
        let disk = std::io::Error::other("disk full");
        let disk = anyhow::Error::from(disk).context("writing the cache");
        assert_eq!(exit_status_of(&disk), Outcome::Failure);
    }
}
