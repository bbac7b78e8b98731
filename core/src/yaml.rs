//! YAML in and out. Input is parsed event by event so that every field keeps its line, and
//! so that hostile input (alias bombs, deep nesting, duplicate keys) is refused with a clear
//! message instead of exhausting memory or silently picking one of two values.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Number, Value};
use yaml_rust2::{
    Yaml, YamlEmitter,
    parser::{Event, MarkedEventReceiver, Parser},
    scanner::{Marker, TScalarStyle},
};

/// Bounds on what one file may expand to.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Nodes per document, counting every expansion of an alias.
    pub max_nodes: usize,
    /// Nesting depth.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_nodes: 50_000,
            max_depth: 64,
        }
    }
}

/// A line and column, both counted from 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl From<Marker> for Position {
    fn from(mark: Marker) -> Self {
        Self {
            line: mark.line(),
            column: mark.col() + 1,
        }
    }
}

/// One YAML document as JSON, with the position of every field path in it.
#[derive(Clone, Debug)]
pub struct Document {
    pub value: Value,
    pub start: Position,
    positions: HashMap<String, Position>,
}

impl Document {
    /// Where `path` (like `spec.probes[0].name`) is written, or its nearest written ancestor
    /// (a missing field is reported where its parent is).
    pub fn position_of(&self, path: &str) -> Position {
        let mut candidate = path;
        loop {
            if let Some(pos) = self.positions.get(candidate) {
                return *pos;
            }
            match candidate.rfind(['.', '[']) {
                Some(cut) => candidate = &candidate[..cut],
                None => return self.start,
            }
        }
    }
}

/// Why YAML could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {}, column {}: {message}", .position.line, .position.column)]
pub struct YamlError {
    pub position: Position,
    pub message: String,
}

/// Parses every document in `text`. Empty documents (a stray `---`) are dropped.
pub fn parse_documents(text: &str, limits: Limits) -> Result<Vec<Document>, YamlError> {
    let mut builder = Builder::new(limits);
    let mut parser = Parser::new_from_str(text);
    if let Err(err) = parser.load(&mut builder, true) {
        let mark = *err.marker();
        return Err(YamlError {
            position: mark.into(),
            message: format!("not valid YAML: {}", err.info()),
        });
    }
    if let Some(err) = builder.error {
        return Err(err);
    }
    Ok(builder.documents)
}

/// A container being filled.
enum Open {
    Seq {
        items: Vec<Value>,
        anchor: usize,
        path: String,
    },
    Map {
        entries: Map<String, Value>,
        pending_key: Option<(String, Position)>,
        anchor: usize,
        path: String,
    },
}

struct Builder {
    limits: Limits,
    stack: Vec<Open>,
    anchors: HashMap<usize, (Value, usize)>,
    nodes: usize,
    doc_start: Position,
    positions: HashMap<String, Position>,
    documents: Vec<Document>,
    error: Option<YamlError>,
}

impl Builder {
    fn new(limits: Limits) -> Self {
        Self {
            limits,
            stack: Vec::new(),
            anchors: HashMap::new(),
            nodes: 0,
            doc_start: Position::default(),
            positions: HashMap::new(),
            documents: Vec::new(),
            error: None,
        }
    }

    fn fail(&mut self, mark: Marker, message: impl Into<String>) {
        if self.error.is_none() {
            self.error = Some(YamlError {
                position: mark.into(),
                message: message.into(),
            });
        }
    }

    /// The path of the node about to be added to the innermost container.
    fn child_path(&self) -> String {
        match self.stack.last() {
            None => String::new(),
            Some(Open::Seq { items, path, .. }) => format!("{path}[{}]", items.len()),
            Some(Open::Map {
                pending_key: Some((key, _)),
                path,
                ..
            }) => join(path, key),
            Some(Open::Map { path, .. }) => path.clone(),
        }
    }

    fn charge(&mut self, nodes: usize, mark: Marker) -> bool {
        self.nodes = self.nodes.saturating_add(nodes);
        if self.nodes > self.limits.max_nodes {
            self.fail(
                mark,
                format!(
                    "the document expands to more than {} nodes (an alias bomb?)",
                    self.limits.max_nodes
                ),
            );
            return false;
        }
        true
    }

    /// Adds a finished node to the innermost container (or finishes the document).
    fn add(&mut self, value: Value, size: usize, anchor: usize, mark: Marker) {
        if anchor > 0 {
            self.anchors.insert(anchor, (value.clone(), size));
        }
        let start = self.doc_start;
        match self.stack.last_mut() {
            None => {
                let positions = std::mem::take(&mut self.positions);
                if !value.is_null() {
                    self.documents.push(Document {
                        value,
                        start,
                        positions,
                    });
                }
            }
            Some(Open::Seq { items, .. }) => items.push(value),
            Some(Open::Map {
                entries,
                pending_key,
                ..
            }) => match pending_key.take() {
                Some((key, key_pos)) => {
                    if entries.contains_key(&key) {
                        self.error.get_or_insert(YamlError {
                            position: key_pos,
                            message: format!("the key {key:?} appears twice in one mapping"),
                        });
                    }
                    entries.insert(key, value);
                }
                None => match value {
                    Value::String(key) => *pending_key = Some((key, mark.into())),
                    other => self.fail(
                        mark,
                        format!("mapping keys must be strings, found {}", kind_of(&other)),
                    ),
                },
            },
        }
    }

    fn record_position(&mut self, mark: Marker) {
        let expecting_key = matches!(
            self.stack.last(),
            Some(Open::Map {
                pending_key: None,
                ..
            })
        );
        if !expecting_key {
            let path = self.child_path();
            self.positions.entry(path).or_insert_with(|| mark.into());
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        match event {
            Event::DocumentStart => {
                self.doc_start = mark.into();
                self.nodes = 0;
                self.anchors.clear();
            }
            Event::Scalar(text, style, anchor, tag) => {
                if !self.charge(1, mark) {
                    return;
                }
                let tag = tag.map(|t| t.suffix);
                let value = match scalar_value(&text, style, tag.as_deref()) {
                    Ok(value) => value,
                    Err(message) => return self.fail(mark, message),
                };
                self.record_position(mark);
                self.add(value, 1, anchor, mark);
            }
            Event::Alias(id) => {
                let Some((value, size)) = self.anchors.get(&id).cloned() else {
                    return self.fail(mark, "alias to an unknown anchor");
                };
                if !self.charge(size, mark) {
                    return;
                }
                self.record_position(mark);
                self.add(value, size, 0, mark);
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if self.stack.len() >= self.limits.max_depth {
                    return self.fail(
                        mark,
                        format!("nesting deeper than {} levels", self.limits.max_depth),
                    );
                }
                if !self.charge(1, mark) {
                    return;
                }
                self.record_position(mark);
                let path = self.child_path();
                let open = if matches!(event, Event::SequenceStart(..)) {
                    Open::Seq {
                        items: Vec::new(),
                        anchor,
                        path,
                    }
                } else {
                    Open::Map {
                        entries: Map::new(),
                        pending_key: None,
                        anchor,
                        path,
                    }
                };
                self.stack.push(open);
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(open) = self.stack.pop() else {
                    return self.fail(mark, "unbalanced YAML structure");
                };
                let (value, anchor) = match open {
                    Open::Seq { items, anchor, .. } => (Value::Array(items), anchor),
                    Open::Map {
                        entries, anchor, ..
                    } => (Value::Object(entries), anchor),
                };
                let size = count_nodes(&value);
                self.add(value, size, anchor, mark);
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn count_nodes(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        Value::Object(map) => 1 + map.values().map(count_nodes).sum::<usize>(),
        _ => 1,
    }
}

/// A short name for a JSON value's type, for messages.
pub fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Resolves a scalar the way Kubernetes (YAML 1.2 core schema, as in sigs.k8s.io/yaml) does.
fn scalar_value(text: &str, style: TScalarStyle, tag: Option<&str>) -> Result<Value, String> {
    match tag {
        Some("str") => return Ok(Value::String(text.to_owned())),
        Some("int" | "float" | "bool" | "null" | "map" | "seq") | None => {}
        Some(other) => return Err(format!("unsupported YAML tag !!{other}")),
    }
    if style != TScalarStyle::Plain {
        return Ok(Value::String(text.to_owned()));
    }
    Ok(match text {
        "" | "~" | "null" | "Null" | "NULL" => Value::Null,
        "true" | "True" | "TRUE" => Value::Bool(true),
        "false" | "False" | "FALSE" => Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "-.inf" | ".nan" | ".NaN" | ".NAN" => {
            return Err(format!("{text} is not a finite number"));
        }
        _ => parse_number(text).unwrap_or_else(|| Value::String(text.to_owned())),
    })
}

fn parse_number(text: &str) -> Option<Value> {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits.is_empty() || !digits.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let negative = text.starts_with('-');
    if let Some(hex) = digits.strip_prefix("0x") {
        let n = i64::from_str_radix(hex, 16).ok()?;
        return Some(Value::from(if negative { -n } else { n }));
    }
    if let Some(oct) = digits.strip_prefix("0o") {
        let n = i64::from_str_radix(oct, 8).ok()?;
        return Some(Value::from(if negative { -n } else { n }));
    }
    if digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(n) = text.parse::<i64>() {
            return Some(Value::from(n));
        }
        if let Ok(n) = text.parse::<u64>() {
            return Some(Value::from(n));
        }
    }
    let is_float = digits
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'));
    if is_float {
        let f: f64 = text.parse().ok()?;
        return Number::from_f64(f).map(Value::Number);
    }
    None
}

/// Renders JSON as block-style YAML.
pub fn emit(value: &Value) -> String {
    let mut out = String::new();
    let mut emitter = YamlEmitter::new(&mut out);
    emitter.multiline_strings(true);
    // Writing to a String cannot fail.
    let _ = emitter.dump(&to_yaml(value));
    let body = out.strip_prefix("---\n").unwrap_or(&out);
    format!("{body}\n")
}

fn to_yaml(value: &Value) -> Yaml {
    match value {
        Value::Null => Yaml::Null,
        Value::Bool(b) => Yaml::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Yaml::Integer(i),
            None => Yaml::Real(n.to_string()),
        },
        Value::String(s) => Yaml::String(s.clone()),
        Value::Array(items) => Yaml::Array(items.iter().map(to_yaml).collect()),
        Value::Object(map) => Yaml::Hash(
            map.iter()
                .map(|(k, v)| (Yaml::String(k.clone()), to_yaml(v)))
                .collect(),
        ),
    }
}

/// Positions sorted by path, for debugging and tests.
pub fn positions(doc: &Document) -> BTreeMap<&str, Position> {
    doc.positions
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Document>, YamlError> {
        parse_documents(text, Limits::default())
    }

    #[test]
    fn keeps_lines_of_fields_and_list_items() {
        let docs = parse("a: 1\nb:\n  c: x\n  d:\n    - 1\n    - e: 2\n").unwrap();
        let doc = &docs[0];
        assert_eq!(doc.position_of("a").line, 1);
        assert_eq!(doc.position_of("b.c").line, 3);
        assert_eq!(doc.position_of("b.d[1].e").line, 6);
        assert_eq!(doc.position_of("b.d[1].missing").line, 6);
        assert_eq!(doc.value["b"]["d"][0], 1);
    }

    #[test]
    fn resolves_scalars_like_kubernetes() {
        let docs = parse("a: '1'\nb: 1.5\nc: yes\nd: ~\ne: true\nf: 0x10\n").unwrap();
        let v = &docs[0].value;
        assert_eq!(v["a"], "1");
        assert_eq!(v["b"], 1.5);
        assert_eq!(v["c"], "yes");
        assert!(v["d"].is_null());
        assert_eq!(v["e"], true);
        assert_eq!(v["f"], 16);
    }

    #[test]
    fn refuses_duplicate_keys_and_alias_bombs() {
        let dup = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(dup.position.line, 3);
        assert!(dup.message.contains("twice"));

        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for (i, prev) in ["a", "b", "c", "d", "e", "f"].iter().enumerate() {
            let name = ["b", "c", "d", "e", "f", "g"][i];
            bomb.push_str(&format!(
                "{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
        }
        let err = parse(&bomb).unwrap_err();
        assert!(err.message.contains("alias bomb"), "{err}");
    }

    #[test]
    fn splits_documents_and_drops_empty_ones() {
        let docs = parse("---\na: 1\n---\n---\nb: 2\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].start.line, 4);
    }

    #[test]
    fn emits_yaml_that_parses_back() {
        let value = serde_json::json!({"a": [1, "2", {"b": true}], "c": "x: y", "d": 1.5});
        let text = emit(&value);
        assert_eq!(parse(&text).unwrap()[0].value, value);
    }
}
