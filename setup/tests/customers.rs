//! `customers add` / `list` / `remove` against a real broker.

mod common;

use common::{args, assert_exit, binary, in_process, stderr, stdout};
use hookline_core::customer::Customer;
use hookline_setup::{EXIT_FAILURE, EXIT_USAGE, Error};
use hookline_testkit::{Broker, init_test_logging, unique_name};

async fn create_topics(brokers: &str, prefix: &str) {
    let (result, out) = in_process(&args(brokers, prefix, &["topics", "create", "--partitions", "2"])).await;
    result.unwrap_or_else(|e| panic!("topics create failed: {e}\n{out}"));
}

#[tokio::test]
async fn add_list_upsert_remove_round_trip() {
    init_test_logging();
    let broker = Broker::start();
    let brokers = broker.bootstrap();
    let prefix = unique_name("setup-customers");
    create_topics(&brokers, &prefix).await;
    let command = |extra: &[&str]| args(&brokers, &prefix, extra);

    let (result, out) = in_process(&command(&["customers", "list"])).await;
    result.expect("list on an empty directory");
    assert_eq!(out, "no customers\n");

    let add = command(&[
        "customers",
        "add",
        "--id",
        "acme",
        "--webhook-url",
        "http://127.0.0.1:9001/webhook",
        "--events",
        "order.created,order.paid",
    ]);
    let (result, out) = in_process(&add).await;
    result.expect("add");
    assert!(out.starts_with("saved acme: http://127.0.0.1:9001/webhook (order.created,order.paid)"), "{out}");
    let other = binary(&command(&[
        "customers",
        "add",
        "--id",
        "globex",
        "--webhook-url",
        "https://globex.example/hooks",
        "--events",
        "*",
    ]))
    .await;
    assert_exit(&other, 0);

    let (result, table) = in_process(&command(&["customers", "list"])).await;
    result.expect("list");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("ID") && lines[0].contains("WEBHOOK_URL") && lines[0].contains("EVENTS"));
    assert!(lines[1].starts_with("acme ") && lines[1].contains("http://127.0.0.1:9001/webhook"), "{table}");
    assert!(lines[1].ends_with("order.created,order.paid"), "{table}");
    assert!(lines[2].starts_with("globex ") && lines[2].ends_with('*'), "{table}");

    // Upsert: the same id with a new URL replaces the old configuration.
    let upsert = command(&[
        "customers",
        "add",
        "--id",
        "acme",
        "--webhook-url",
        "http://127.0.0.1:9002/webhook",
        "--events",
        "order.created",
    ]);
    assert_exit(&binary(&upsert).await, 0);
    let listed = binary(&command(&["customers", "list", "--json"])).await;
    assert_exit(&listed, 0);
    let customers: Vec<Customer> =
        stdout(&listed).lines().map(|line| serde_json::from_str(line).expect("one JSON customer per line")).collect();
    assert_eq!(customers.len(), 2);
    assert_eq!(customers[0].id, "acme");
    assert_eq!(customers[0].webhook_url.as_deref(), Some("http://127.0.0.1:9002/webhook"));
    assert_eq!(customers[0].events, ["order.created"]);
    assert_eq!(customers[1].id, "globex");

    let (result, out) = in_process(&command(&["customers", "remove", "acme"])).await;
    result.expect("remove");
    assert_eq!(out, "removed acme\n");
    let (result, table) = in_process(&command(&["customers", "list"])).await;
    result.expect("list after remove");
    assert!(!table.contains("acme"), "{table}");
    assert!(table.contains("globex"), "{table}");

    // Removing it again: unknown, operational failure.
    let (result, _) = in_process(&command(&["customers", "remove", "acme"])).await;
    match result {
        Err(error @ Error::UnknownCustomer(_)) => assert_eq!(error.exit_code(), EXIT_FAILURE),
        other => panic!("expected UnknownCustomer, got {other:?}"),
    }
    let again = binary(&command(&["customers", "remove", "acme"])).await;
    assert_exit(&again, 1);
    assert!(stderr(&again).contains("unknown customer `acme`"), "{}", stderr(&again));
}

#[tokio::test]
async fn invalid_input_exits_2_and_writes_nothing() {
    init_test_logging();
    let broker = Broker::start();
    let brokers = broker.bootstrap();
    let prefix = unique_name("setup-invalid");
    create_topics(&brokers, &prefix).await;
    let command = |extra: &[&str]| args(&brokers, &prefix, extra);

    let bad_url =
        binary(&command(&["customers", "add", "--id", "c1", "--webhook-url", "ftp://x/", "--events", "a"])).await;
    assert_exit(&bad_url, 2);
    assert!(stderr(&bad_url).contains("invalid webhook_url"), "{}", stderr(&bad_url));

    let not_a_url =
        binary(&command(&["customers", "add", "--id", "c1", "--webhook-url", "not a url", "--events", "a"])).await;
    assert_exit(&not_a_url, 2);

    let bad_id =
        binary(&command(&["customers", "add", "--id", "bad id", "--webhook-url", "http://x/", "--events", "a"])).await;
    assert_exit(&bad_id, 2);
    assert!(stderr(&bad_id).contains("invalid id"), "{}", stderr(&bad_id));

    let (result, _) =
        in_process(&command(&["customers", "add", "--id", "c1", "--webhook-url", "http://x/", "--events", "bad type"]))
            .await;
    let error = result.expect_err("an invalid event type is refused");
    assert_eq!(error.exit_code(), EXIT_USAGE, "{error}");

    let bad_remove = binary(&command(&["customers", "remove", "bad id"])).await;
    assert_exit(&bad_remove, 2);

    let missing_events = binary(&command(&["customers", "add", "--id", "c1", "--webhook-url", "http://x/"])).await;
    assert_exit(&missing_events, 2);

    // Nothing reached the customers topic: not even an offset was used.
    let (result, table) = in_process(&command(&["customers", "list"])).await;
    result.expect("list");
    assert_eq!(table, "no customers\n");
    let (result, described) = in_process(&command(&["topics", "describe"])).await;
    result.expect("describe");
    assert!(described.contains(&format!("{prefix}.customers (customers): 1 partition, 0 records")), "{described}");
}

#[tokio::test]
async fn customers_need_the_topics() {
    init_test_logging();
    let broker = Broker::start();
    let prefix = unique_name("setup-no-topics");

    let add = binary(&args(
        &broker.bootstrap(),
        &prefix,
        &["customers", "add", "--id", "c1", "--webhook-url", "http://127.0.0.1:9000/webhook", "--events", "a"],
    ))
    .await;
    assert_exit(&add, 1);
    assert!(stderr(&add).contains("does not exist"), "{}", stderr(&add));

    let list = binary(&args(&broker.bootstrap(), &prefix, &["customers", "list"])).await;
    assert_exit(&list, 1);
    assert!(stderr(&list).contains("hookline-setup topics create"), "{}", stderr(&list));
}
