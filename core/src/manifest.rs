//! Reading manifests: YAML text in, typed and validated objects out, or a list of problems
//! each naming the line and the field path and saying what is allowed.
//!
//! The checks are layered like the API server's, so `chaosctl validate` and admission agree:
//! strict decoding (unknown fields are errors), then the CRD's own CEL rules evaluated
//! client-side against the generated schema, then checks CEL cannot express.

use std::{collections::BTreeMap, fmt};

use kube::{CustomResourceExt, core::ObjectMeta};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{
    api::{
        API_VERSION, DrillSchedule, DrillScheduleSpec, Experiment, ExperimentSpec, GameDay,
        GameDaySpec,
    },
    yaml::{self, Document, Limits, Position},
};

mod schema;
mod semantic;

pub use crate::api::is_dns_label;
pub use semantic::{check_experiment, check_game_day, check_schedule};

/// The largest manifest file accepted.
pub const MAX_BYTES: usize = 1 << 20;

/// A validated object from a manifest.
#[derive(Clone, Debug, PartialEq)]
pub enum Manifest {
    Experiment(Box<Experiment>),
    GameDay(Box<GameDay>),
    DrillSchedule(Box<DrillSchedule>),
}

impl Manifest {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Experiment(_) => "Experiment",
            Self::GameDay(_) => "GameDay",
            Self::DrillSchedule(_) => "DrillSchedule",
        }
    }

    pub fn name(&self) -> &str {
        let meta = match self {
            Self::Experiment(o) => &o.metadata,
            Self::GameDay(o) => &o.metadata,
            Self::DrillSchedule(o) => &o.metadata,
        };
        meta.name.as_deref().unwrap_or("")
    }
}

/// One thing wrong with a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub position: Position,
    /// The field, like `spec.blastRadius.maxPercent` (empty for the whole document).
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Position { line, column } = self.position;
        if self.path.is_empty() {
            write!(f, "{line}:{column}: {}", self.message)
        } else {
            write!(f, "{line}:{column}: {}: {}", self.path, self.message)
        }
    }
}

/// Reads every object in a file's bytes.
pub fn load_bytes(bytes: &[u8]) -> Result<Vec<Manifest>, Vec<Problem>> {
    if bytes.len() > MAX_BYTES {
        return Err(vec![whole_file(format!(
            "the file is {} bytes; manifests are limited to {MAX_BYTES}",
            bytes.len()
        ))]);
    }
    let text = std::str::from_utf8(bytes).map_err(|err| {
        let before = &bytes[..err.valid_up_to()];
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        let column = before.iter().rev().take_while(|b| **b != b'\n').count() + 1;
        vec![Problem {
            position: Position { line, column },
            path: String::new(),
            message: "the file is not valid UTF-8".into(),
        }]
    })?;
    load_str(text)
}

/// Reads every object in YAML text.
pub fn load_str(text: &str) -> Result<Vec<Manifest>, Vec<Problem>> {
    let documents = yaml::parse_documents(text, Limits::default()).map_err(|err| {
        vec![Problem {
            position: err.position,
            path: String::new(),
            message: err.message,
        }]
    })?;
    if documents.is_empty() {
        return Err(vec![whole_file("the file holds no objects".into())]);
    }
    let mut manifests = Vec::new();
    let mut problems = Vec::new();
    for doc in &documents {
        match load_document(doc) {
            Ok(m) => manifests.push(m),
            Err(mut p) => problems.append(&mut p),
        }
    }
    if problems.is_empty() {
        Ok(manifests)
    } else {
        Err(problems)
    }
}

fn whole_file(message: String) -> Problem {
    Problem {
        position: Position { line: 1, column: 1 },
        path: String::new(),
        message,
    }
}

/// Collects problems for one document, each placed at its field's line.
struct Report<'a> {
    doc: &'a Document,
    problems: Vec<Problem>,
}

impl Report<'_> {
    fn add(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            position: self.doc.position_of(path),
            path: path.to_owned(),
            message: message.into(),
        });
    }
}

fn load_document(doc: &Document) -> Result<Manifest, Vec<Problem>> {
    let mut report = Report {
        doc,
        problems: Vec::new(),
    };
    let Value::Object(root) = &doc.value else {
        report.add(
            "",
            format!(
                "expected a Kubernetes object, found {}",
                yaml::kind_of(&doc.value)
            ),
        );
        return Err(report.problems);
    };
    for key in root.keys() {
        match key.as_str() {
            "apiVersion" | "kind" | "metadata" | "spec" => {}
            "status" => report.add("status", "status is written by firedrill; remove it"),
            other => report.add(
                other,
                format!("unknown field {other:?}; allowed: apiVersion, kind, metadata, spec"),
            ),
        }
    }
    match root.get("apiVersion") {
        Some(Value::String(v)) if v == API_VERSION => {}
        Some(other) => report.add(
            "apiVersion",
            format!("apiVersion must be {API_VERSION}, found {}", short(other)),
        ),
        None => report.add(
            "",
            format!("apiVersion is missing; it must be {API_VERSION}"),
        ),
    }
    let kind = root.get("kind").and_then(Value::as_str).unwrap_or_default();
    let metadata = check_metadata(root.get("metadata"), &mut report);
    let spec = root.get("spec");
    if spec.is_none() {
        report.add("", "spec is missing");
    }
    let manifest = match (kind, spec) {
        (_, None) => None,
        ("Experiment", Some(spec)) => typed::<ExperimentSpec>(spec, &mut report).map(|spec| {
            Manifest::Experiment(Box::new(Experiment {
                metadata,
                spec,
                status: None,
            }))
        }),
        ("GameDay", Some(spec)) => typed::<GameDaySpec>(spec, &mut report).map(|spec| {
            Manifest::GameDay(Box::new(GameDay {
                metadata,
                spec,
                status: None,
            }))
        }),
        ("DrillSchedule", Some(spec)) => {
            typed::<DrillScheduleSpec>(spec, &mut report).map(|spec| {
                Manifest::DrillSchedule(Box::new(DrillSchedule {
                    metadata,
                    spec,
                    status: None,
                }))
            })
        }
        ("Injection", _) => {
            report.add(
                "kind",
                "Injection objects are written by the operator, not by hand",
            );
            None
        }
        (other, _) => {
            report.add(
                "kind",
                format!("kind {other:?} is not one of Experiment, GameDay, DrillSchedule"),
            );
            None
        }
    };
    let Some(manifest) = manifest else {
        return Err(report.problems);
    };
    check_admission(&manifest, &mut report);
    // Checks beyond the CRD's own would only repeat its findings in other words.
    if report.problems.is_empty() {
        let found = match &manifest {
            Manifest::Experiment(o) => semantic::check_experiment(&o.spec),
            Manifest::GameDay(o) => semantic::check_game_day(&o.spec),
            Manifest::DrillSchedule(o) => semantic::check_schedule(&o.spec),
        };
        for (path, message) in found {
            report.add(&format!("spec.{path}"), message);
        }
    }
    if report.problems.is_empty() {
        Ok(manifest)
    } else {
        Err(report.problems)
    }
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 60 {
        format!("{}…", &text[..text.floor_char_boundary(60)])
    } else {
        text
    }
}

/// Deserializes `spec` strictly, reporting the field path of the first error.
fn typed<T: DeserializeOwned>(spec: &Value, report: &mut Report<'_>) -> Option<T> {
    if !spec.is_object() {
        report.add(
            "spec",
            format!("must be a mapping, found {}", yaml::kind_of(spec)),
        );
        return None;
    }
    match serde_path_to_error::deserialize::<_, T>(spec) {
        Ok(value) => Some(value),
        Err(err) => {
            let inner = err.path().to_string();
            let path = if inner == "." {
                "spec".to_owned()
            } else {
                format!("spec.{inner}")
            };
            report.add(&path, err.into_inner().to_string());
            None
        }
    }
}

const DNS_LABEL_HELP: &str = "lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters";

fn check_metadata(metadata: Option<&Value>, report: &mut Report<'_>) -> ObjectMeta {
    let mut meta = ObjectMeta::default();
    let Some(metadata) = metadata else {
        report.add("", "metadata is missing; it needs at least a name");
        return meta;
    };
    let Value::Object(fields) = metadata else {
        report.add(
            "metadata",
            format!(
                "metadata must be a mapping, found {}",
                yaml::kind_of(metadata)
            ),
        );
        return meta;
    };
    for (key, value) in fields {
        let path = format!("metadata.{key}");
        match key.as_str() {
            "name" | "namespace" => match value.as_str() {
                Some(text) if is_dns_label(text) => {
                    if key == "name" {
                        meta.name = Some(text.to_owned());
                    } else {
                        meta.namespace = Some(text.to_owned());
                    }
                }
                Some(text) => report.add(
                    &path,
                    format!("{text:?} is not a valid {key}: {DNS_LABEL_HELP}"),
                ),
                None => report.add(&path, format!("{key} must be a string")),
            },
            "labels" | "annotations" => match string_map(value) {
                Some(map) => {
                    if key == "labels" {
                        meta.labels = Some(map);
                    } else {
                        meta.annotations = Some(map);
                    }
                }
                None => report.add(&path, format!("{key} must map strings to strings")),
            },
            other => report.add(
                &path,
                format!("unknown field {other:?}; allowed: name, namespace, labels, annotations"),
            ),
        }
    }
    if meta.name.is_none() && !fields.contains_key("name") {
        report.add("metadata", "metadata.name is missing");
    }
    meta
}

fn string_map(value: &Value) -> Option<BTreeMap<String, String>> {
    value
        .as_object()?
        .iter()
        .map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect()
}

/// Checks the object against the CRD's schema bounds and CEL rules, as the API server would
/// at admission.
fn check_admission(manifest: &Manifest, report: &mut Report<'_>) {
    let (crd, object) = match manifest {
        Manifest::Experiment(o) => (Experiment::crd(), serde_json::to_value(o)),
        Manifest::GameDay(o) => (GameDay::crd(), serde_json::to_value(o)),
        Manifest::DrillSchedule(o) => (DrillSchedule::crd(), serde_json::to_value(o)),
    };
    let schema = crd
        .spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .map(serde_json::to_value);
    let (Some(Ok(schema)), Ok(object)) = (schema, object) else {
        report.add("", "internal error: the CRD schema could not be built");
        return;
    };
    // Bounds and types are checked on the spec as written, before decoding could reshape it.
    if let (Some(spec_schema), Some(written)) = (
        schema.pointer("/properties/spec"),
        report.doc.value.get("spec"),
    ) {
        let mut found = Vec::new();
        schema::check(spec_schema, written, "spec", &mut found);
        for (path, message) in found {
            report.add(&path, message);
        }
    }
    if let Err(errors) = kube::core::cel::Validator::new().validate(&schema, &object, None) {
        for err in errors.iter() {
            report.add(&err.field_path, err.message.clone());
        }
    }
}
