//! A YAML document as a tree of positioned nodes.
//!
//! Deserializing straight into typed structs would stop at the first wrong field; reading a
//! loose tree first (every node wrapped in `serde_saphyr::Spanned`, kept as a compact [`Pos`])
//! lets `fields` report every problem of a list in one run. CSV rows are turned into the same
//! nodes, so both formats share one interpretation.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};

use super::{Pos, Sp, to_u32};

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Sp<Node>>),
    Map(Vec<(Sp<String>, Sp<Node>)>),
}

impl Node {
    /// How the node's type is named in messages ("found a list").
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Node::Null => "nothing",
            Node::Bool(_) => "a boolean",
            Node::Int(_) => "a number",
            Node::Float(_) => "a number",
            Node::Str(_) => "text",
            Node::List(_) => "a list",
            Node::Map(_) => "a mapping",
        }
    }
}

impl Sp<Node> {
    /// The scalar as the user wrote it: YAML reads `001` or `1.50` as numbers, but an id or a
    /// prompt wants the characters, which the node's byte range still holds.
    pub(crate) fn scalar_text<'a>(&'a self, source: &'a str) -> Option<Cow<'a, str>> {
        let written = || {
            let start = self.pos.offset as usize;
            source
                .get(start..start + self.pos.len as usize)
                .filter(|raw| !raw.is_empty() && !raw.starts_with('*'))
        };
        match &self.value {
            Node::Str(s) => Some(Cow::Borrowed(s)),
            Node::Bool(b) => {
                Some(written().map_or_else(|| Cow::Owned(b.to_string()), Cow::Borrowed))
            }
            Node::Int(n) => {
                Some(written().map_or_else(|| Cow::Owned(n.to_string()), Cow::Borrowed))
            }
            Node::Float(f) => {
                Some(written().map_or_else(|| Cow::Owned(f.to_string()), Cow::Borrowed))
            }
            Node::Null | Node::List(_) | Node::Map(_) => None,
        }
    }
}

pub(crate) fn pos_of(location: &Location) -> Pos {
    let span = location.span();
    Pos {
        line: to_u32(location.line() as usize),
        col: to_u32(location.column() as usize),
        offset: span.byte_offset().map_or(u32::MAX, |o| to_u32(o as usize)),
        len: span.byte_len().map_or(0, |l| to_u32(l as usize)),
    }
}

fn positioned<T>(spanned: Spanned<T>) -> Sp<T> {
    Sp::new(spanned.value, pos_of(&spanned.referenced))
}

/// Deserializes one node and its children, keeping every child's position.
pub(crate) struct SpannedNode(pub(crate) Sp<Node>);

impl<'de> Deserialize<'de> for SpannedNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SpannedNode, D::Error> {
        Spanned::<Node>::deserialize(d).map(|s| SpannedNode(positioned(s)))
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(i64::try_from(v).map_or(Node::Float(v as f64), Node::Int))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Node, E> {
        Ok(i64::try_from(v).map_or(Node::Float(v as f64), Node::Int))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Node, E> {
        Ok(i64::try_from(v).map_or(Node::Float(v as f64), Node::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Node, E> {
        Ok(Node::Str(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(SpannedNode(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let SpannedNode(value) = map.next_value()?;
            entries.push((positioned(key), value));
        }
        Ok(Node::Map(entries))
    }
}
