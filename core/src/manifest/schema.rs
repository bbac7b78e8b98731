//! The value constraints of a structural OpenAPI schema (bounds, lengths, patterns, enums),
//! checked the way the API server checks them, so a manifest that passes here is not
//! refused at admission. Types and unknown fields are already settled by strict decoding.

use serde_json::Value;

/// Appends `(path, message)` for every constraint `value` breaks.
pub fn check(schema: &Value, value: &Value, path: &str, found: &mut Vec<(String, String)>) {
    let mut add = |message: String| found.push((path.to_owned(), message));
    if let Some(want) = schema.get("type").and_then(Value::as_str) {
        let nullable = schema.get("nullable").and_then(Value::as_bool) == Some(true);
        let fits = match value {
            Value::Null => nullable,
            Value::Bool(_) => want == "boolean",
            Value::Number(n) => {
                want == "number" || (want == "integer" && (n.is_i64() || n.is_u64()))
            }
            Value::String(_) => want == "string",
            Value::Array(_) => want == "array",
            Value::Object(_) => want == "object",
        };
        if !fits {
            let want = match want {
                "object" => "a mapping",
                "array" => "a list",
                "integer" => "a whole number",
                other => other,
            };
            add(format!(
                "must be {want}, found {}",
                crate::yaml::kind_of(value)
            ));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !value.is_null()
        && !allowed.contains(value)
    {
        let names: Vec<String> = allowed.iter().map(Value::to_string).collect();
        add(format!(
            "{value} is not allowed; use one of {}",
            names.join(", ")
        ));
    }
    match value {
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
                && x < min
            {
                add(format!("{n} is below the minimum of {min}"));
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
                && x > max
            {
                add(format!("{n} is above the maximum of {max}"));
            }
        }
        Value::String(text) => {
            let chars = text.chars().count() as u64;
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                && chars < min
            {
                add(format!("must be at least {min} characters long"));
            }
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                && chars > max
            {
                add(format!("must be at most {max} characters long, is {chars}"));
            }
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
                match regex::Regex::new(pattern) {
                    Ok(re) if !re.is_match(text) => {
                        add(format!("{text:?} does not match the pattern {pattern}"))
                    }
                    Ok(_) => {}
                    Err(err) => add(format!("internal error: bad pattern {pattern}: {err}")),
                }
            }
        }
        Value::Array(items) => {
            let len = items.len() as u64;
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && len < min
            {
                add(format!("needs at least {min} items, has {len}"));
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && len > max
            {
                add(format!("allows at most {max} items, has {len}"));
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item_schema, item, &format!("{path}[{i}]"), found);
                }
            }
        }
        Value::Object(fields) => {
            let len = fields.len() as u64;
            if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
                && len > max
            {
                add(format!("allows at most {max} entries, has {len}"));
            }
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|s| s.is_object());
            for (key, field) in fields {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                if let Some(field_schema) = properties.and_then(|p| p.get(key)).or(additional) {
                    check(field_schema, field, &child, found);
                }
            }
        }
        Value::Null | Value::Bool(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_each_broken_bound_with_its_path() {
        let schema = json!({"properties": {
            "n": {"minimum": 1, "maximum": 100},
            "s": {"maxLength": 3, "pattern": "^[a-z]+$"},
            "l": {"maxItems": 1, "items": {"enum": ["A", "B"]}},
        }});
        let mut found = Vec::new();
        check(
            &schema,
            &json!({"n": 101, "s": "AB12", "l": ["A", "C"]}),
            "spec",
            &mut found,
        );
        let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            ["spec.l", "spec.l[1]", "spec.n", "spec.s", "spec.s"],
            "{found:?}"
        );
        found.clear();
        check(
            &schema,
            &json!({"n": 100, "s": "ab", "l": ["B"]}),
            "spec",
            &mut found,
        );
        assert!(found.is_empty(), "{found:?}");
    }
}
