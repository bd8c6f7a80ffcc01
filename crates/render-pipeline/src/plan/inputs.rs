//! Reading what a plan is made from: the shot list files (or standard input) and the catalog.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::shotlist::{Diagnostic, Pos, ShotListInput};
use render_wire::catalog::{Catalog, CatalogError};

use super::COMMAND_LINE;

/// Reads shot list files; `-` reads YAML from `stdin` (once), resolving references against the
/// current folder. Unreadable files become diagnostics, so every file is still looked at.
pub fn read_inputs(
    paths: &[PathBuf],
    stdin: &mut dyn Read,
) -> (Vec<ShotListInput>, Vec<Diagnostic>) {
    let mut inputs = Vec::with_capacity(paths.len());
    let mut diagnostics = Vec::new();
    let mut stdin_read = false;
    for path in paths {
        let read = if path.as_os_str() == "-" {
            if std::mem::replace(&mut stdin_read, true) {
                let message = "`-` (standard input) is given more than once";
                diagnostics.push(Diagnostic::error(COMMAND_LINE, Pos::NONE, message));
                continue;
            }
            ShotListInput::read_stdin(stdin, Path::new(""))
        } else {
            ShotListInput::read(path)
        };
        match read {
            Ok(input) => inputs.push(input),
            Err(diagnostic) => diagnostics.push(diagnostic),
        }
    }
    (inputs, diagnostics)
}

/// The built-in catalog, then `<state_dir>/catalog.yaml` if it exists, then each `--catalog`
/// file in order: later entries replace earlier ones of the same model.
pub fn load_catalog(state_dir: &Path, extra: &[PathBuf]) -> Result<Catalog, CatalogError> {
    let state_catalog = state_dir.join("catalog.yaml");
    let mut paths: Vec<&Path> = Vec::with_capacity(extra.len() + 1);
    if state_catalog.is_file() {
        paths.push(&state_catalog);
    }
    paths.extend(extra.iter().map(PathBuf::as_path));
    Catalog::load(&paths)
}
