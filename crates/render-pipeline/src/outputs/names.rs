//! The names outputs are laid out under: the project's folder, and a file stem per take that
//! no other request of the run uses.

use std::path::{Path, PathBuf};

use crate::events::{Event, EventSink};
use crate::ledger::RunItem;

/// `renders/<project>/`, or `renders/default/` for a shot list without a project.
pub fn default_out_dir(project: Option<&str>) -> PathBuf {
    Path::new("renders").join(project.map_or_else(|| "default".into(), project_folder))
}

/// The folder name of a project: its name as written where it can be one (spaces and
/// non-ASCII letters are kept, so people recognise it), with what cannot name a folder
/// (separators, control characters, a leading dot) turned into `-`.
pub fn project_folder(project: &str) -> String {
    let replaced: String = project
        .chars()
        .map(|c| match c {
            '/' | '\\' | ':' => '-',
            c if c.is_control() => '-',
            c => c,
        })
        .collect();
    let trimmed = replaced
        .trim()
        .trim_start_matches('.')
        .trim_end_matches('.')
        .trim();
    if is_safe_file_stem(trimmed) {
        trimmed.to_string()
    } else {
        "default".to_string()
    }
}

/// Whether `stem` can name a file inside the output folder and nothing else: the same rule
/// the shot list's ids are held to (no separators, no `..`, no leading dot, no control
/// characters), checked again because the ledger outlives versions of that rule.
pub fn is_safe_file_stem(stem: &str) -> bool {
    crate::shotlist::check_id(stem).is_ok()
}

/// The file stems a run's outputs use, so no two requests write the same file: shot `a` with
/// two takes and a shot named `a_take2`, or ids that differ only in case on a
/// case-insensitive disk.
#[derive(Default)]
pub(super) struct OutputNames(std::collections::HashSet<String>);

impl OutputNames {
    pub(super) fn claim(&mut self, item: &RunItem, events: &dyn EventSink) -> String {
        let stem = output_stem(&item.shot_id, item.take);
        if self.0.insert(stem.to_lowercase()) {
            return stem;
        }
        let unique = format!("{stem}-{}", &item.key.hex()[..8]);
        events.emit(Event::Warning {
            message: format!(
                "{stem} is taken by another shot; writing {unique} for {}",
                item.shot_id
            ),
        });
        self.0.insert(unique.to_lowercase());
        unique
    }
}

/// `<shot>` for the first take, `<shot>_take<n>` for the others.
pub fn output_stem(shot_id: &str, take: u32) -> String {
    match take {
        0 | 1 => shot_id.to_string(),
        n => format!("{shot_id}_take{n}"),
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_are_safe() {
        for ok in ["shot-01", "Opening Scene", "a.b", "ünïcode"] {
            assert!(is_safe_file_stem(ok), "{ok}");
        }
        for bad in [
            "", "..", "../x", "a/b", "a\\b", ".hidden", "c:x", "a\nb", "a\0b",
        ] {
            assert!(!is_safe_file_stem(bad), "{bad:?}");
        }
    }

    #[test]
    fn default_folder_is_named_for_the_project() {
        assert_eq!(
            default_out_dir(Some("spring-ad")),
            Path::new("renders/spring-ad")
        );
        assert_eq!(default_out_dir(Some("../etc")), Path::new("renders/-etc"));
        assert_eq!(
            default_out_dir(Some("Printemps été")),
            Path::new("renders/Printemps été")
        );
        assert_eq!(project_folder("a/b\\c:d"), "a-b-c-d");
        assert_eq!(project_folder(".hidden "), "hidden");
        assert_eq!(project_folder(".."), "default");
        assert_eq!(default_out_dir(None), Path::new("renders/default"));
    }
}
