//! Maps between positions in a TOML file and key paths such as
//! `camera[3].url`, so every configuration mistake is reported with its file,
//! line, column and key — whether serde found it (a span, we find the key) or
//! the semantic checks did (a key, we find the span).

use std::fmt;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// A dotted key path (`camera[3].location.lat`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Segment>);

impl KeyPath {
    pub fn root() -> Self {
        KeyPath(Vec::new())
    }

    pub fn key(&self, k: &str) -> Self {
        let mut v = self.0.clone();
        v.push(Segment::Key(k.to_string()));
        KeyPath(v)
    }

    pub fn index(&self, i: usize) -> Self {
        let mut v = self.0.clone();
        v.push(Segment::Index(i));
        KeyPath(v)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for seg in &self.0 {
            match seg {
                Segment::Key(k) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    write_key(f, k)?;
                }
                Segment::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        if first {
            f.write_str("(top level)")?;
        }
        Ok(())
    }
}

/// A key as it would be written in the file: bare when TOML allows it, otherwise
/// quoted, so an empty key or one holding a dot or a space is still a visible,
/// unambiguous step of the path (`camera[0]."my key"`, `""`).
fn write_key(f: &mut fmt::Formatter<'_>, key: &str) -> fmt::Result {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        return f.write_str(key);
    }
    f.write_str("\"")?;
    for c in key.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            c if c.is_control() => write!(f, "\\u{:04X}", u32::from(c))?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

/// Line and column (both 1-based) of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(before.chars().count(), |nl| {
        before[nl + 1..].chars().count()
    }) + 1;
    (line, col)
}

/// A parsed document that keeps every key's and value's span.
pub struct Locator<'s> {
    root: Option<Spanned<DeTable<'s>>>,
}

impl<'s> Locator<'s> {
    pub fn new(source: &'s str) -> Self {
        Locator {
            root: DeTable::parse(source).ok(),
        }
    }

    /// The span of the key (or, for array items, the item) at `path`.
    pub fn span_of(&self, path: &KeyPath) -> Option<Range<usize>> {
        let root = self.root.as_ref()?;
        let mut table: &DeTable<'s> = root.get_ref();
        let mut value: Option<&Spanned<DeValue<'s>>> = None;
        let mut span = None;
        for seg in &path.0 {
            match seg {
                Segment::Key(k) => {
                    if let Some(v) = value {
                        table = v.get_ref().as_table()?;
                    }
                    let (key, v) = table.get_key_value(k.as_str())?;
                    span = Some(key.span());
                    value = Some(v);
                }
                Segment::Index(i) => {
                    let arr = value?.get_ref().as_array()?;
                    let item = arr.get(*i)?;
                    span = Some(item.span());
                    value = Some(item);
                }
            }
        }
        span
    }

    /// The innermost key path whose value contains `offset`.
    pub fn path_at(&self, offset: usize) -> KeyPath {
        let mut path = KeyPath::root();
        if let Some(root) = &self.root {
            descend_table(root.get_ref(), offset, &mut path);
        }
        path
    }
}

// Table spans cover only their `[header]`, so every child is visited rather
// than pruning by a container's span; the deepest hit wins.
fn descend_table(table: &DeTable<'_>, offset: usize, path: &mut KeyPath) -> bool {
    for (key, value) in table.iter() {
        path.0.push(Segment::Key(key.get_ref().to_string()));
        if descend_value(value.get_ref(), offset, path)
            || key.span().contains(&offset)
            || value.span().contains(&offset)
        {
            return true;
        }
        path.0.pop();
    }
    false
}

fn descend_value(value: &DeValue<'_>, offset: usize, path: &mut KeyPath) -> bool {
    if let Some(t) = value.as_table() {
        return descend_table(t, offset, path);
    }
    if let Some(arr) = value.as_array() {
        for (i, item) in arr.iter().enumerate() {
            path.0.push(Segment::Index(i));
            if descend_value(item.get_ref(), offset, path) || item.span().contains(&offset) {
                return true;
            }
            path.0.pop();
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "[gateway]\nid = \"g\"\n\n[[camera]]\nid = \"a\"\nurl = \"rtsp://x\"\n\n[[camera]]\nid = \"b\"\nlocation = { lat = 1.0, lon = 2.0 }\n";

    #[test]
    fn finds_span_of_array_item_key() {
        let loc = Locator::new(DOC);
        let path = KeyPath::root().key("camera").index(1).key("id");
        let span = loc.span_of(&path).expect("span");
        assert_eq!(line_col(DOC, span.start), (9, 1));
    }

    #[test]
    fn finds_path_at_offset() {
        let loc = Locator::new(DOC);
        let off = DOC.find("lat").expect("lat");
        assert_eq!(loc.path_at(off).to_string(), "camera[1].location.lat");
        let off = DOC.find("rtsp").expect("url");
        assert_eq!(loc.path_at(off).to_string(), "camera[0].url");
    }

    #[test]
    fn keys_that_need_quotes_are_quoted() {
        let path = KeyPath::root()
            .key("")
            .key("camera")
            .index(0)
            .key("my key")
            .key("a.b")
            .key("q\"\\\t");
        assert_eq!(
            path.to_string(),
            r#""".camera[0]."my key"."a.b"."q\"\\\u0009""#
        );
        // An empty top-level key, as a broken script could write it, is named, not blank.
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Strict {
            gateway: Option<u32>,
        }
        let problems = super::super::parse_toml::<Strict>(std::path::Path::new("x.toml"), "''=' '")
            .expect_err("unknown field");
        assert_eq!(problems.0[0].key, r#""""#);
    }

    #[test]
    fn line_col_is_one_based() {
        assert_eq!(line_col("a\nbc", 0), (1, 1));
        assert_eq!(line_col("a\nbc", 3), (2, 2));
    }
}
