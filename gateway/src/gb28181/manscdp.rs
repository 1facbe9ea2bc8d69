//! MANSCDP, GB/T 28181's XML in SIP `MESSAGE` bodies (Application/MANSCDP+xml):
//! keepalives, catalog queries and their answers. Bodies come in GB 2312 more often
//! than UTF-8; [`decode`] turns either into text, and [`parse`] reads it with
//! `quick-xml` into a small bounded tree.

use quick_xml::events::Event;

/// Elements one body may hold, at most (a catalog answer lists at most a few hundred
/// channels per message; devices split larger catalogs).
pub const MAX_ELEMENTS: usize = 20_000;

/// How deep elements may nest.
pub const MAX_DEPTH: usize = 16;

/// One element: its name, its text, its children.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    /// The tag name as written.
    pub name: String,
    /// Its text, trimmed (empty for elements with only children).
    pub text: String,
    /// Child elements in order.
    pub children: Vec<Element>,
}

impl Element {
    /// The first child named `name` (any case).
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// The text of the first child named `name`; `None` when absent or empty.
    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name)
            .map(|c| c.text.as_str())
            .filter(|t| !t.is_empty())
    }
}

/// Why a body is not MANSCDP lookout reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// Not well-formed XML.
    #[error("not well-formed XML: {0}")]
    Syntax(String),
    /// Over [`MAX_ELEMENTS`] or [`MAX_DEPTH`].
    #[error("XML too large or too deep")]
    TooLarge,
    /// No root element.
    #[error("no root element")]
    Empty,
}

/// A body's text: UTF-8 when it is, else GB 18030 (a superset of the GB 2312 and GBK
/// devices declare).
pub fn decode(body: &[u8]) -> String {
    match std::str::from_utf8(body) {
        Ok(s) => s.to_string(),
        Err(_) => encoding_rs::GB18030.decode(body).0.into_owned(),
    }
}

/// The root element of `text`.
pub fn parse(text: &str) -> Result<Element, XmlError> {
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().trim_text(true);
    let mut stack: Vec<Element> = Vec::new();
    let mut count = 0usize;
    let mut root: Option<Element> = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| XmlError::Syntax(e.to_string()))?;
        let empty = matches!(event, Event::Empty(_));
        match event {
            Event::Start(e) | Event::Empty(e) if root.is_none() => {
                count += 1;
                if count > MAX_ELEMENTS || stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooLarge);
                }
                let element = Element {
                    name: String::from_utf8_lossy(e.name().as_ref()).into_owned(),
                    ..Element::default()
                };
                if empty {
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(element),
                        None => root = Some(element),
                    }
                } else {
                    stack.push(element);
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    let s = t.unescape().map_err(|e| XmlError::Syntax(e.to_string()))?;
                    top.text.push_str(s.trim());
                }
            }
            Event::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text
                        .push_str(String::from_utf8_lossy(t.as_ref()).trim());
                }
            }
            Event::End(_) => {
                let Some(done) = stack.pop() else {
                    return Err(XmlError::Syntax("unbalanced end tag".into()));
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => root = Some(done),
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::Syntax("unclosed element".into()));
    }
    root.ok_or(XmlError::Empty)
}

/// Escapes text for an XML element.
pub fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// A catalog query for `device`, sequence number `sn`.
pub fn catalog_query(device: &str, sn: u32) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<Query>\r\n<CmdType>Catalog</CmdType>\r\n<SN>{sn}</SN>\r\n<DeviceID>{}</DeviceID>\r\n</Query>\r\n",
        escape(device)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_catalog_answer_in_gb2312() {
        let xml = "<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Response>\r\n<CmdType>Catalog</CmdType>\r\n<SN>17</SN>\r\n<DeviceID>34020000001320000001</DeviceID>\r\n<SumNum>1</SumNum>\r\n<DeviceList Num=\"1\">\r\n<Item>\r\n<DeviceID>34020000001320000011</DeviceID>\r\n<Name>北门塔</Name>\r\n<Status>ON</Status>\r\n<Parental/>\r\n</Item>\r\n</DeviceList>\r\n</Response>\r\n";
        let (gb, _, _) = encoding_rs::GB18030.encode(xml);
        let root = parse(&decode(&gb)).expect("xml");
        assert_eq!(root.name, "Response");
        assert_eq!(root.text_of("cmdtype"), Some("Catalog"));
        let items = &root.child("DeviceList").expect("list").children;
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].text_of("Name"), Some("北门塔"));
        assert_eq!(items[0].text_of("Parental"), None);
    }

    #[test]
    fn bad_and_huge_bodies_are_refused() {
        assert!(matches!(parse("<a><b></a>"), Err(XmlError::Syntax(_))));
        assert_eq!(parse(""), Err(XmlError::Empty));
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert_eq!(parse(&deep), Err(XmlError::TooLarge));
        let q = catalog_query("340<&>", 3);
        assert!(q.contains("340&lt;&amp;&gt;"));
        assert_eq!(parse(&q).expect("query").text_of("SN"), Some("3"));
    }
}
