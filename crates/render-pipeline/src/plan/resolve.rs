//! Where each of a shot's values comes from (the shot, its list's `defaults`, a flag or the
//! built-in default), so a diagnostic can point at it and explain it.

use crate::shotlist::{Pos, Sp};
use render_wire::catalog::{Catalog, ModelSpec, Size};

use super::{COMMAND_LINE, DEFAULT_MODEL, DEFAULT_SECONDS, DEFAULT_SIZE};

/// Where a shot's effective value came from, for pointing at it and explaining it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Origin {
    Builtin,
    Flag,
    Defaults,
    Shot,
}

#[derive(Clone, Debug)]
pub(super) struct Resolved<T> {
    pub(super) value: T,
    pub(super) origin: Origin,
    pub(super) pos: Pos,
}

impl<T> Resolved<T> {
    pub(super) fn pick(
        shot: Option<&Sp<T>>,
        defaults: Option<&Sp<T>>,
        flag: Option<T>,
        builtin: T,
    ) -> Self
    where
        T: Clone,
    {
        if let Some(v) = shot {
            return Resolved {
                value: v.value.clone(),
                origin: Origin::Shot,
                pos: v.pos,
            };
        }
        if let Some(v) = defaults {
            return Resolved {
                value: v.value.clone(),
                origin: Origin::Defaults,
                pos: v.pos,
            };
        }
        match flag {
            Some(value) => Resolved {
                value,
                origin: Origin::Flag,
                pos: Pos::NONE,
            },
            None => Resolved {
                value: builtin,
                origin: Origin::Builtin,
                pos: Pos::NONE,
            },
        }
    }

    /// The file a diagnostic about this value points into.
    pub(super) fn path<'a>(&self, list_path: &'a str) -> &'a str {
        match self.origin {
            Origin::Shot | Origin::Defaults => list_path,
            Origin::Flag | Origin::Builtin => COMMAND_LINE,
        }
    }

    /// Explains where a value not written on the shot came from.
    pub(super) fn note(&self, flag: &str) -> String {
        match self.origin {
            Origin::Shot => String::new(),
            Origin::Defaults => " (from `defaults`)".into(),
            Origin::Flag => format!(" (from {flag})"),
            Origin::Builtin => " (the built-in default)".into(),
        }
    }
}

/// The model a shot names none of: sora-2 where the provider has it, else its first model.
pub(super) fn builtin_model(catalog: Option<&Catalog>) -> String {
    match catalog {
        Some(c) if c.model(DEFAULT_MODEL).is_none() => c
            .models()
            .next()
            .map_or(DEFAULT_MODEL.to_string(), |m| m.name.0.clone()),
        _ => DEFAULT_MODEL.to_string(),
    }
}

/// 1280x720 where the model offers it, else its first size.
pub(super) fn builtin_size(spec: Option<&ModelSpec>) -> Size {
    match spec {
        Some(s) if s.rate(DEFAULT_SIZE).is_none() => {
            s.sizes.keys().next().copied().unwrap_or(DEFAULT_SIZE)
        }
        _ => DEFAULT_SIZE,
    }
}

/// 8 seconds where the model offers it, else its shortest.
pub(super) fn builtin_seconds(spec: Option<&ModelSpec>) -> u32 {
    match spec {
        Some(s) if !s.accepts_seconds(DEFAULT_SECONDS) => {
            s.seconds.first().map_or(DEFAULT_SECONDS.0, |s| s.0)
        }
        _ => DEFAULT_SECONDS.0,
    }
}
