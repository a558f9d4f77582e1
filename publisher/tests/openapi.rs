//! The OpenAPI document at `GET /openapi.json`: valid by an off-the-shelf validator
//! (`openapi-spec-validator`, through `interop/validate_openapi.py`), complete (every documented
//! operation is routed, and the routes the issue names are documented), and true (the answers of a
//! customer's life, here and in every other test of the harness, match their documented schemas).

mod common;

use common::{ADMIN_TOKEN, Harness, PRODUCER_TOKEN};
use hookline_testkit::interop;
use reqwest::Method;
use serde_json::{Value, json};

/// The validator's errors for `document`.
fn validator_errors(document: &Value) -> Vec<String> {
    let answer = interop::python("validate_openapi.py", document);
    serde_json::from_value(answer["errors"].clone()).expect("a list of errors")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_valid_complete_and_true() {
    let harness = Harness::start(&[("acme", &["order.created"])], |_| {}).await;

    // Public, and the same document every time.
    let (status, text) = harness.get("/openapi.json").await;
    assert_eq!(status, 200);
    let document: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(&document, harness.openapi().await);
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"), "{}", document["openapi"]);

    // Valid, by the reference validator, which does refuse a broken document.
    let errors = validator_errors(&document);
    assert!(errors.is_empty(), "openapi-spec-validator refuses the document: {errors:#?}");
    let mut broken = document.clone();
    broken.as_object_mut().unwrap().remove("info");
    broken["paths"]["/publish"]["post"]["responses"]["202"].as_object_mut().unwrap().remove("description");
    let errors = validator_errors(&broken);
    assert!(errors.len() >= 2, "a document without `info` and a response without a description passed: {errors:?}");

    // Complete: the routes of the API are documented, each with an operation id of its own and
    // security schemes the document defines.
    let paths = document["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/publish", &["post"][..]),
        ("/inbound/{source}", &["post"]),
        ("/v1/event-types", &["get"]),
        ("/v1/customers", &["get", "post"]),
        ("/v1/customers/{id}", &["get", "delete"]),
        ("/v1/customer", &["get"]),
        ("/v1/customer/webhook", &["put"]),
        ("/v1/customer/public-key", &["put", "delete"]),
        ("/v1/customer/deliveries", &["get"]),
        ("/v1/customer/deliveries/{event_id}", &["get"]),
        ("/v1/customer/deliveries/{event_id}/resend", &["post"]),
        ("/v1/customer/recover", &["post"]),
        ("/v1/customers/{id}/deliveries", &["get"]),
        ("/v1/customers/{id}/deliveries/{event_id}", &["get"]),
        ("/v1/customers/{id}/deliveries/{event_id}/resend", &["post"]),
        ("/v1/customers/{id}/recover", &["post"]),
        ("/v1/customers/{id}/portal", &["post"]),
        ("/openapi.json", &["get"]),
    ] {
        for method in methods {
            assert!(paths.get(path).and_then(|item| item.get(*method)).is_some(), "{method} {path} is not documented");
        }
    }
    let schemes = document["components"]["securitySchemes"].as_object().unwrap();
    let mut operation_ids = std::collections::BTreeSet::new();
    let mut operations = Vec::new();
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            let id = operation["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path}: no operationId"));
            assert!(operation_ids.insert(id.to_owned()), "operationId {id} twice");
            for requirement in operation["security"].as_array().into_iter().flatten() {
                for scheme in requirement.as_object().unwrap().keys() {
                    assert!(schemes.contains_key(scheme), "{method} {path}: unknown security scheme {scheme}");
                }
            }
            operations.push((path.clone(), method.to_ascii_uppercase(), operation.clone()));
        }
    }
    assert!(operations.len() >= 34, "{} operations", operations.len());

    // Every documented operation is routed: called without credentials (with made-up path
    // parameters), none answers "no route" or "method not allowed", and each secured one refuses
    // with 401.
    for (path, method, operation) in &operations {
        let concrete = path.replace("{id}", "acme").replace("{event_id}", "evt-1").replace("{source}", "nobody");
        let response = harness
            .client
            .request(Method::from_bytes(method.as_bytes()).unwrap(), format!("{}{concrete}", harness.base))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        assert!(
            !body.contains("no route for") && status != 405,
            "{method} {path} is documented but not routed: {status} {body}"
        );
        let secured = operation["security"]
            .as_array()
            .is_some_and(|list| list.iter().any(|r| !r.as_object().unwrap().is_empty()));
        if secured {
            assert_eq!(status, 401, "{method} {path} without a credential: {body}");
        }
    }

    // True: the answers of a customer's life match their schemas (the harness checks every call).
    let (status, created) = harness
        .call(Method::POST, "/v1/customers", Some(ADMIN_TOKEN), Some(json!({ "id": "globex", "name": "Globex" })))
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["api_key"].as_str().unwrap().to_owned();
    for (method, path, token, body, expected) in [
        (Method::GET, "/v1/customers", ADMIN_TOKEN, None, 200),
        (Method::GET, "/v1/customers/globex", ADMIN_TOKEN, None, 200),
        (Method::GET, "/v1/customers/nobody", ADMIN_TOKEN, None, 404),
        (Method::GET, "/v1/customer", &key, None, 200),
        (Method::GET, "/v1/event-types", PRODUCER_TOKEN, None, 200),
        (Method::PUT, "/v1/customer/webhook", &key, Some(json!({ "url": "http://127.0.0.1:9/hook" })), 200),
        (Method::PUT, "/v1/customer/webhook", &key, Some(json!({ "address": "x" })), 422),
        (Method::PUT, "/v1/customer/subscriptions", &key, Some(json!({ "events": ["order.created"] })), 200),
        (Method::PUT, "/v1/customer/rate-limit", &key, Some(json!({ "per_second": 5 })), 200),
        (Method::POST, "/v1/customer/webhook/enable", &key, None, 200),
        (Method::POST, "/v1/customer/signing-secret/rotate", &key, None, 200),
        (Method::POST, "/v1/customer/test-event", &key, None, 202),
        (Method::GET, "/v1/customer/deliveries?limit=5", &key, None, 200),
        (Method::GET, "/v1/customer/deliveries?colour=red", &key, None, 422),
        (Method::GET, "/v1/customer/deliveries/stats", &key, None, 200),
        (Method::GET, "/v1/customer/deliveries/evt-1", &key, None, 404),
        (Method::POST, "/v1/customer/recover", &key, Some(json!({ "since": "2026-01-01T00:00:00Z" })), 202),
        (Method::POST, "/v1/customers/globex/portal", ADMIN_TOKEN, Some(json!({ "ttl_seconds": 60 })), 201),
        (Method::POST, "/v1/customers/globex/api-key", ADMIN_TOKEN, None, 200),
        (Method::DELETE, "/v1/customers/globex", ADMIN_TOKEN, None, 200),
    ] {
        let (status, answer) = harness.call(method.clone(), path, Some(token), body).await;
        assert_eq!(status, expected, "{method} {path}: {answer}");
    }
    let (status, accepted) = harness.publish(json!({ "type": "order.created", "payload": { "id": 1 } })).await;
    assert_eq!(status, 202, "{accepted}");

    // And the check is real: an answer the schema does not describe is refused.
    let customer_view = json!({ "$ref": "#/components/schemas/CustomerView" });
    let errors = common::openapi::schema_errors(&document, &customer_view, &json!({ "id": 5, "events": "all" }));
    assert!(errors.len() >= 2, "{errors:?}");

    harness.stop().await;
}
