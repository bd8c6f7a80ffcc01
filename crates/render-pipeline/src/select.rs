//! Choosing part of a night: `--only PATTERN` (shot ids or globs such as `sq010_*`) and
//! `--tag TAG`. The whole list is still read and validated; only the chosen shots are priced,
//! sent and laid out.

use globset::{Glob, GlobMatcher};

use crate::plan::Plan;

/// Which shots a command works on. Empty means all of them.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    only: Vec<(String, GlobMatcher)>,
    tags: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SelectionError {
    #[error("--only {pattern:?} is not a valid pattern: {reason}")]
    BadPattern { pattern: String, reason: String },
    #[error("--{flag} {value:?} matches no shot in the list")]
    Unmatched { flag: &'static str, value: String },
}

impl Selection {
    /// Patterns are globs over the whole shot id (`*`, `?`, `[a-c]`, `{a,b}`); a plain id
    /// matches only itself. Several `--only` are alternatives, as are several `--tag`; given
    /// both, a shot must match one of each.
    pub fn new(only: &[String], tags: &[String]) -> Result<Selection, SelectionError> {
        let only = only
            .iter()
            .map(|pattern| {
                let glob = Glob::new(pattern).map_err(|err| SelectionError::BadPattern {
                    pattern: pattern.clone(),
                    reason: err.kind().to_string(),
                })?;
                Ok((pattern.clone(), glob.compile_matcher()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Selection {
            only,
            tags: tags.to_vec(),
        })
    }

    pub fn is_everything(&self) -> bool {
        self.only.is_empty() && self.tags.is_empty()
    }

    fn chooses(&self, shot_id: &str, tags: &[String]) -> bool {
        let id_ok = self.only.is_empty() || self.only.iter().any(|(_, m)| m.is_match(shot_id));
        let tag_ok = self.tags.is_empty() || self.tags.iter().any(|t| tags.contains(t));
        id_ok && tag_ok
    }

    /// Keeps only the chosen requests. A pattern or tag that chooses nothing is an error: a
    /// typo in a cron line should not quietly render nothing (or, worse, be mistaken for an
    /// empty night).
    pub fn apply(&self, plan: &mut Plan) -> Result<(), SelectionError> {
        if self.is_everything() {
            return Ok(());
        }
        for (pattern, matcher) in &self.only {
            if !plan.requests.iter().any(|r| matcher.is_match(&*r.shot_id)) {
                return Err(SelectionError::Unmatched {
                    flag: "only",
                    value: pattern.clone(),
                });
            }
        }
        for tag in &self.tags {
            if !plan.requests.iter().any(|r| r.tags.contains(tag)) {
                return Err(SelectionError::Unmatched {
                    flag: "tag",
                    value: tag.clone(),
                });
            }
        }
        plan.requests.retain(|r| self.chooses(&r.shot_id, &r.tags));
        plan.partial = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn globs_match_whole_ids_and_plain_ids_only_themselves() {
        let s = Selection::new(&["sq010_*".into(), "hero".into()], &[]).unwrap();
        assert!(s.chooses("sq010_a", &[]));
        assert!(s.chooses("hero", &[]));
        assert!(!s.chooses("sq020_a", &[]));
        assert!(!s.chooses("hero2", &[]));
        assert!(!s.chooses("x_sq010_a", &[]));
    }

    #[test]
    fn ids_and_tags_must_both_match_when_both_given() {
        let s = Selection::new(&["sq010_*".into()], &["hero".into()]).unwrap();
        assert!(s.chooses("sq010_a", &tags(&["hero", "night"])));
        assert!(!s.chooses("sq010_a", &tags(&["night"])));
        assert!(!s.chooses("sq020_a", &tags(&["hero"])));
    }

    #[test]
    fn a_bad_glob_is_an_error_naming_it() {
        let err = Selection::new(&["sq[010".into()], &[]).unwrap_err();
        assert!(err.to_string().contains("sq[010"), "{err}");
    }
}
