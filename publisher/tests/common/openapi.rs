//! Checks every answer the harness receives against the publisher's own OpenAPI document
//! (`GET /openapi.json`): a documented route's success must be a documented status with a body
//! its schema accepts, an error must be a documented error or the shared `{"error"}` body, and a
//! route the document lacks may only be refused as unknown (404/405). Every test that calls the
//! API through the harness therefore also tests that the document tells the truth.

use serde_json::{Value, json};

/// The path item of `path` (a concrete path, query included or not): the template whose
/// segments all match, preferring literal segments over parameters.
pub fn path_item<'a>(document: &'a Value, path: &str) -> Option<(&'a str, &'a Value)> {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let segments: Vec<&str> = path.split('/').collect();
    let mut best: Option<(usize, &str, &Value)> = None;
    for (template, item) in document["paths"].as_object()? {
        let parts: Vec<&str> = template.split('/').collect();
        if parts.len() != segments.len() {
            continue;
        }
        let mut literal = 0;
        let matched = parts.iter().zip(&segments).all(|(part, segment)| {
            if part.starts_with('{') && part.ends_with('}') {
                !segment.is_empty()
            } else {
                literal += 1;
                part == segment
            }
        });
        if matched && best.is_none_or(|(most, _, _)| literal > most) {
            best = Some((literal, template, item));
        }
    }
    best.map(|(_, template, item)| (template, item))
}

/// The errors of `instance` against `schema`, whose `$ref`s point into `document`.
pub fn schema_errors(document: &Value, schema: &Value, instance: &Value) -> Vec<String> {
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": document["components"],
        "allOf": [schema],
    });
    let validator = jsonschema::options().offline().build(&root).unwrap_or_else(|e| panic!("schema {schema}: {e}"));
    validator.iter_errors(instance).map(|error| format!("{}: {error}", error.instance_path())).collect()
}

/// Panics unless `status` and `body`, answered to `method path`, are what the document says.
pub fn check_answer(document: &Value, method: &str, path: &str, status: u16, body: &Value) {
    let Some((template, item)) = path_item(document, path) else {
        assert!(
            matches!(status, 404 | 405),
            "{method} {path} answered {status}, but the OpenAPI document has no such path"
        );
        return;
    };
    let Some(operation) = item.get(method.to_ascii_lowercase()) else {
        assert_eq!(
            status, 405,
            "{method} {path} answered {status}, but {template} has no {method} in the OpenAPI document"
        );
        return;
    };
    let schema = match operation["responses"].get(status.to_string()) {
        Some(response) => response["content"]["application/json"]["schema"].clone(),
        None => {
            assert!(status >= 400, "{method} {template}: {status} is not in the OpenAPI document: {body}");
            json!({ "$ref": "#/components/schemas/ErrorBody" })
        }
    };
    assert!(!schema.is_null(), "{method} {template}: {status} is documented without a JSON body");
    let errors = schema_errors(document, &schema, body);
    assert!(
        errors.is_empty(),
        "{method} {template} answered {status} with a body its OpenAPI schema refuses: {errors:?}\n{body}"
    );
}
