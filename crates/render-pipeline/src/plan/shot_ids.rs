//! [`ShotIds`]: where each shot id of a night was first used, to report duplicates.
//!
//! A night can have a hundred thousand ids. They are indexed by where their text is (which text,
//! which bytes) rather than by a copy of each: an entry is 28 bytes, a third of a map from
//! strings to places.

use std::hash::{BuildHasher, RandomState};
use std::ops::Range;
use std::sync::Arc;

use hashbrown::HashTable;

use super::SharedStr;
use crate::shotlist::Pos;

pub(super) struct ShotIds {
    /// The texts ids are ranges of, with the list (an index into the planner's lists) each
    /// belongs to: every list's text, and the own copy of an id written with escapes.
    texts: Vec<(Arc<String>, usize)>,
    /// The index in `texts` of the list being read.
    current: Option<u32>,
    firsts: HashTable<FirstUse>,
    hasher: RandomState,
}

#[derive(Clone, Copy)]
struct FirstUse {
    /// An index into `texts`.
    text: u32,
    start: u32,
    end: u32,
    at: Pos,
}

impl FirstUse {
    fn id<'t>(&self, texts: &'t [(Arc<String>, usize)]) -> &'t str {
        &texts[self.text as usize].0[self.start as usize..self.end as usize]
    }
}

impl ShotIds {
    pub(super) fn new() -> ShotIds {
        ShotIds {
            texts: Vec::new(),
            current: None,
            firsts: HashTable::new(),
            hasher: RandomState::new(),
        }
    }

    /// The ids that follow are read from list `list`, whose text is `text`.
    pub(super) fn start_list(&mut self, list: usize, text: &Arc<String>) {
        self.current = Some(self.texts.len() as u32);
        self.texts.push((text.clone(), list));
    }

    /// Records that `id` is used at `at` in the current list; when it was used before, returns
    /// the list and place of its first use instead.
    pub(super) fn first_use(&mut self, id: &SharedStr, at: Pos) -> Option<(usize, Pos)> {
        let Self {
            texts,
            current,
            firsts,
            hasher,
        } = self;
        let hash = hasher.hash_one(id.as_str());
        if let Some(first) = firsts.find(hash, |e| e.id(texts) == id.as_str()) {
            return Some((texts[first.text as usize].1, first.at));
        }
        let current = current.expect("ids are read from a list");
        let (text, Range { start, end }) = id.parts();
        let text = if Arc::ptr_eq(text, &texts[current as usize].0) {
            current
        } else {
            let list = texts[current as usize].1;
            texts.push((text.clone(), list));
            (texts.len() - 1) as u32
        };
        let entry = FirstUse {
            text,
            start,
            end,
            at,
        };
        firsts.insert_unique(hash, entry, |e| hasher.hash_one(e.id(texts)));
        None
    }

    /// Forgets the ids of list `list`, which is read again from its start.
    pub(super) fn forget_list(&mut self, list: usize) {
        let texts = &self.texts;
        self.firsts.retain(|e| texts[e.text as usize].1 != list);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: u32) -> Pos {
        Pos {
            line,
            col: 7,
            offset: 0,
            len: 0,
        }
    }

    fn slice(text: &Arc<String>, id: &str) -> SharedStr {
        let offset = text.find(id).unwrap() as u32;
        let span = Pos {
            offset,
            len: id.len() as u32,
            ..at(1)
        };
        SharedStr::within(text, span, id.to_string())
    }

    #[test]
    fn an_id_used_again_names_its_first_use_in_any_list() {
        let first: Arc<String> = Arc::new("- id: a\n- id: b\n".into());
        let second: Arc<String> = Arc::new("- id: b\n- id: \"\\x61\"\n".into());
        let mut ids = ShotIds::new();
        ids.start_list(0, &first);
        assert_eq!(ids.first_use(&slice(&first, "a"), at(1)), None);
        assert_eq!(ids.first_use(&slice(&first, "b"), at(2)), None);
        ids.start_list(1, &second);
        assert_eq!(ids.first_use(&slice(&second, "b"), at(1)), Some((0, at(2))));
        // Written with an escape, `a` is its own copy, and still the same id.
        let escaped = SharedStr::from("a".to_string());
        assert_eq!(ids.first_use(&escaped, at(2)), Some((0, at(1))));
        assert_eq!(
            ids.first_use(&SharedStr::from("c".to_string()), at(3)),
            None
        );
        assert_eq!(ids.first_use(&slice(&second, "b"), at(4)), Some((0, at(2))));
        assert_eq!(
            ids.first_use(&SharedStr::from("c".to_string()), at(5)),
            Some((1, at(3)))
        );
    }

    #[test]
    fn a_list_read_again_forgets_only_its_own_ids() {
        let first: Arc<String> = Arc::new("- id: a\n".into());
        let second: Arc<String> = Arc::new("- id: b\n".into());
        let mut ids = ShotIds::new();
        ids.start_list(0, &first);
        ids.first_use(&slice(&first, "a"), at(1));
        ids.start_list(1, &second);
        ids.first_use(&slice(&second, "b"), at(1));
        ids.first_use(&SharedStr::from("own".to_string()), at(2));
        ids.forget_list(1);
        assert_eq!(ids.first_use(&slice(&second, "b"), at(3)), None);
        assert_eq!(
            ids.first_use(&SharedStr::from("own".to_string()), at(4)),
            None
        );
        assert_eq!(ids.first_use(&slice(&first, "a"), at(5)), Some((0, at(1))));
    }

    #[test]
    fn many_ids_survive_the_table_growing() {
        let text: Arc<String> = Arc::new((0..5000).map(|i| format!("id-{i:05}\n")).collect());
        let mut ids = ShotIds::new();
        ids.start_list(0, &text);
        for i in 0..5000 {
            assert_eq!(
                ids.first_use(&slice(&text, &format!("id-{i:05}")), at(i + 1)),
                None
            );
        }
        for i in (0..5000).step_by(499) {
            let again = SharedStr::from(format!("id-{i:05}"));
            assert_eq!(ids.first_use(&again, at(9999)), Some((0, at(i + 1))));
        }
    }
}
