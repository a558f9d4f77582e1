//! `customers import` against a real broker, through the real binary: a file of 200 customers
//! with bad lines among them, then the same file again.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use common::{args, assert_exit, binary, create_topics, in_process, stderr, stdout};
use hookline_core::customer::{Customer, unix_now};
use hookline_setup::EXIT_USAGE;
use hookline_testkit::{Broker, init_test_logging, tenants, unique_name};
use hookline_wire::PrivateKey;
use rdkafka::message::Message;
use serde_json::{Value, json};

/// Valid customers in the file.
const CUSTOMERS: usize = 200;

/// Every record on the customers topic, in order: (key, value).
async fn records(broker: &Broker, prefix: &str) -> Vec<(String, Option<Vec<u8>>)> {
    hookline_testkit::kafka::read_topic(&broker.kafka_args(), &format!("{prefix}.customers"))
        .await
        .iter()
        .map(|r| (String::from_utf8_lossy(r.key().unwrap_or_default()).into_owned(), r.payload().map(<[u8]>::to_vec)))
        .collect()
}

/// The customers topic's high watermark (it has one partition).
async fn high_watermark(broker: &Broker, prefix: &str) -> i64 {
    let kafka = broker.kafka_args();
    let topic = format!("{prefix}.customers");
    tokio::task::spawn_blocking(move || {
        let reader: rdkafka::consumer::BaseConsumer =
            hookline_core::kafka::reader(&kafka, "hookline-test-watermark").expect("reader");
        let (_low, high) =
            rdkafka::consumer::Consumer::fetch_watermarks(&reader, &topic, 0, std::time::Duration::from_secs(10))
                .expect("watermarks");
        high
    })
    .await
    .expect("watermark task")
}

/// The latest record of each customer, decoded.
fn latest(records: &[(String, Option<Vec<u8>>)]) -> HashMap<String, Customer> {
    let mut found = HashMap::new();
    for (key, value) in records {
        match value {
            Some(value) => found.insert(key.clone(), Customer::from_record(key, value).expect("decodes")),
            None => found.remove(key),
        };
    }
    found
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(unique_name(name))
}

/// The report's line for line `number`.
fn report_line(report: &str, number: usize) -> &str {
    let prefix = format!("line {number}: ");
    report.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no report for line {number}:\n{report}"))
}

/// The out file's JSON objects by customer id.
fn issued(out: &Path) -> BTreeMap<String, Value> {
    std::fs::read_to_string(out)
        .expect("the out file")
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("a JSON object per line"))
        .map(|v| (v["id"].as_str().expect("an id").to_owned(), v))
        .collect()
}

#[tokio::test]
async fn import_creates_refuses_with_reasons_and_a_rerun_changes_nothing() {
    init_test_logging();
    let broker = Broker::start();
    let brokers = broker.bootstrap();
    let prefix = unique_name("setup-import");
    let command = |extra: &[&str]| args(&brokers, &prefix, extra);
    create_topics(&brokers, &prefix).await;
    let (result, out) = in_process(&command(&["customers", "create", "--id", "already-here"])).await;
    result.unwrap_or_else(|e| panic!("customers create failed: {e}\n{out}"));
    let (result, out) = in_process(&command(&[
        "sources",
        "add",
        "--id",
        "a-source",
        "--scheme",
        "standard-webhooks",
        "--endpoint",
        "http://10.0.0.7/in",
    ]))
    .await;
    result.unwrap_or_else(|e| panic!("sources add failed: {e}\n{out}"));

    // 200 valid customers, every tenth with a public key, and bad lines in between.
    let pem = PrivateKey::generate(2048).expect("a key").public_key().to_spki_pem();
    let mut lines: Vec<String> = vec!["# customers of the spring launch".into(), String::new()];
    for i in 0..CUSTOMERS {
        let id = format!("cust-{i:03}");
        let mut customer = json!({
            "id": id,
            "name": format!("Customer {i}"),
            "webhook_url": format!("http://127.0.0.1:9/hooks/{i}?token=hush-{i}"),
            "events": ["order.created", "order.paid"],
        });
        if i % 10 == 0 {
            customer["public_key"] = json!(pem);
        }
        lines.push(customer.to_string());
        if i % 40 == 5 {
            lines.push(String::new());
        }
    }
    let bad: &[(&str, &str, &[&str])] = &[
        (r#"{"id": "bad id"}"#, "-", &["invalid id", "`bad id`"]),
        (r#"{"id": "bad-url", "webhook_url": "ftp://x/hook?token=hush-url"}"#, "bad-url", &["invalid webhook_url"]),
        (
            r#"{"id": "ssrf", "webhook_url": "http://10.0.0.1/hook?token=hush-ssrf"}"#,
            "ssrf",
            &["invalid webhook_url", "10.0.0.1"],
        ),
        (r#"{"id": "bad-events", "events": ["order.created", "bad type"]}"#, "bad-events", &["invalid events"]),
        (r#"{"id": "bad-key", "public_key": "not a key"}"#, "bad-key", &["invalid public_key"]),
        (r#"{"id": "cust-007", "name": "Again"}"#, "cust-007", &["duplicate id: first given on line"]),
        (r#"{"id": "broken","#, "-", &["not JSON"]),
        (r#"{"id": "typo", "webhook": "http://127.0.0.1:9/"}"#, "typo", &["unknown field `webhook`"]),
        (r#"["not", "an", "object"]"#, "-", &["not a customer"]),
        (r#"{"id": "a-source"}"#, "a-source", &["inbound source"]),
    ];
    let mut bad_lines = Vec::new();
    for (k, (text, id, reasons)) in bad.iter().enumerate() {
        lines.insert(10 + k * 17, (*text).to_owned());
        bad_lines.push((*text, *id, *reasons));
    }
    lines.push(r#"{"id": "already-here", "webhook_url": "http://127.0.0.1:9/new"}"#.into());
    // Line numbers after the insertions: the first line naming each valid customer.
    let number_of = |text: &str| lines.iter().position(|l| l == text).expect("line") + 1;
    let mut line_of: HashMap<String, usize> = HashMap::new();
    for (index, line) in lines.iter().enumerate() {
        let id = serde_json::from_str::<Value>(line).ok().and_then(|v| v["id"].as_str().map(str::to_owned));
        if let Some(id) = id.filter(|id| id.starts_with("cust-")) {
            line_of.entry(id).or_insert(index + 1);
        }
    }
    assert_eq!(line_of.len(), CUSTOMERS);
    let file = temp_path("import.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").expect("write the import file");
    let out = temp_path("credentials.jsonl");
    let import = command(&["customers", "import", file.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let before = records(&broker, &prefix).await.len();

    let first = binary(&import).await;
    assert_exit(&first, i32::from(EXIT_USAGE));
    let report = stdout(&first);
    for (id, number) in &line_of {
        assert_eq!(report_line(&report, *number), format!("line {number}: {id}: created"), "{report}");
    }
    for (text, id, reasons) in &bad_lines {
        let number = number_of(text);
        let line = report_line(&report, number);
        assert!(line.starts_with(&format!("line {number}: {id}: refused: ")), "{line}");
        for reason in *reasons {
            assert!(line.contains(reason), "{text}: {line}");
        }
    }
    let number = lines.len();
    assert_eq!(
        report_line(&report, number),
        format!("line {number}: already-here: exists (differs: webhook_url; left unchanged)")
    );
    assert!(report.contains(&format!("{CUSTOMERS} created, 1 existed, {} refused", bad.len())), "{report}");
    assert!(stderr(&first).contains(&format!(
        "{} of {} customer line(s) refused",
        bad.len(),
        CUSTOMERS + bad.len() + 1
    )));
    for output in [stdout(&first), stderr(&first)] {
        assert!(!output.contains("hk_") && !output.contains("whsec_") && !output.contains("hush"), "{output}");
    }

    // One record per created customer, holding its whole configuration; the credentials in the
    // out file (owner-only) are the ones stored.
    let written = records(&broker, &prefix).await;
    assert_eq!(written.len(), before + CUSTOMERS, "one record per created customer");
    // Every process that loads the directory up to the high watermark sees every record, on a
    // broker that counts the watermark from the first record of the last batch too (tansu).
    assert_eq!(high_watermark(&broker, &prefix).await, i64::try_from(written.len()).unwrap(), "high watermark");
    let stored = latest(&written);
    let credentials = issued(&out);
    assert_eq!(credentials.len(), CUSTOMERS);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let master = tenants::master_key();
    for i in 0..CUSTOMERS {
        let id = format!("cust-{i:03}");
        let customer = stored.get(&id).unwrap_or_else(|| panic!("{id} stored"));
        let shown = &credentials[&id];
        assert_eq!(shown["line"], json!(line_of[&id]));
        let api_key = shown["api_key"].as_str().expect("an API key");
        assert!(customer.api_key.as_ref().is_some_and(|hash| hash.matches(api_key)), "{id}: the key works");
        let secrets = customer.active_signing_secrets(&master, unix_now()).expect("the secret opens");
        assert_eq!(secrets.iter().map(|s| s.expose()).collect::<Vec<_>>(), [shown["signing_secret"].as_str().unwrap()]);
        assert_eq!(customer.name.as_deref(), Some(format!("Customer {i}").as_str()));
        assert_eq!(
            customer.webhook_url.as_deref(),
            Some(format!("http://127.0.0.1:9/hooks/{i}?token=hush-{i}").as_str())
        );
        assert_eq!(customer.events, ["order.created", "order.paid"]);
        assert_eq!(customer.public_key.is_some(), i % 10 == 0, "{id}");
    }
    for (_, id, _) in &bad_lines {
        // `a-source` and `cust-007` (the duplicate) exist from elsewhere.
        assert!(["a-source", "cust-007"].contains(id) || !stored.contains_key(*id), "{id} was refused, not stored");
    }
    assert!(stored["already-here"].webhook_url.is_none(), "an existing customer is left alone");

    // A new process sees every customer imported.
    let listed = binary(&command(&["customers", "list", "--json"])).await;
    assert_exit(&listed, 0);
    assert_eq!(stdout(&listed).lines().count(), CUSTOMERS + 1);

    // The same import again: everything exists, nothing is written, no credentials issued.
    let out_before = std::fs::read(&out).expect("out file");
    let again = binary(&import).await;
    assert_exit(&again, i32::from(EXIT_USAGE));
    let report = stdout(&again);
    for (id, number) in &line_of {
        assert_eq!(report_line(&report, *number), format!("line {number}: {id}: exists"), "{report}");
    }
    assert!(report.contains(&format!("0 created, {} existed, {} refused", CUSTOMERS + 1, bad.len())), "{report}");
    assert_eq!(records(&broker, &prefix).await.len(), written.len(), "nothing written");
    assert_eq!(high_watermark(&broker, &prefix).await, i64::try_from(written.len()).unwrap(), "high watermark");
    assert_eq!(std::fs::read(&out).expect("out file"), out_before, "no credentials issued");

    // A clean file exits 0; the same --out collects the new credentials.
    let more = temp_path("more.jsonl");
    std::fs::write(&more, "{\"id\": \"cust-000\"}\n{\"id\": \"late-1\"}\n{\"id\": \"late-2\", \"events\": [\"*\"]}")
        .unwrap();
    let clean =
        binary(&command(&["customers", "import", more.to_str().unwrap(), "--out", out.to_str().unwrap()])).await;
    assert_exit(&clean, 0);
    assert_eq!(
        stdout(&clean).lines().take(3).collect::<Vec<_>>(),
        ["line 1: cust-000: exists", "line 2: late-1: created", "line 3: late-2: created"]
    );
    let credentials = issued(&out);
    assert_eq!(credentials.len(), CUSTOMERS + 2);
    let stored = latest(&records(&broker, &prefix).await);
    let late = credentials["late-2"]["api_key"].as_str().unwrap();
    assert!(stored["late-2"].api_key.as_ref().is_some_and(|hash| hash.matches(late)));
    assert_eq!(stored["late-2"].events, ["*"]);
    for path in [file, out, more] {
        std::fs::remove_file(path).ok();
    }
}

#[tokio::test]
async fn credentials_never_go_to_a_file_others_can_read() {
    init_test_logging();
    let broker = Broker::start();
    let brokers = broker.bootstrap();
    let prefix = unique_name("setup-import-out");
    let command = |extra: &[&str]| args(&brokers, &prefix, extra);
    create_topics(&brokers, &prefix).await;
    let file = temp_path("import.jsonl");
    std::fs::write(&file, "{\"id\": \"c1\"}\n").unwrap();

    let shared = temp_path("shared.jsonl");
    std::fs::write(&shared, "").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let refused =
        binary(&command(&["customers", "import", file.to_str().unwrap(), "--out", shared.to_str().unwrap()])).await;
    assert_exit(&refused, i32::from(EXIT_USAGE));
    assert!(stderr(&refused).contains("chmod 600"), "{}", stderr(&refused));
    assert!(records(&broker, &prefix).await.is_empty(), "nothing created");

    let missing = binary(&command(&["customers", "import", "/nonexistent/import.jsonl", "--out", "x"])).await;
    assert_exit(&missing, i32::from(EXIT_USAGE));
    assert!(stderr(&missing).contains("cannot read /nonexistent/import.jsonl"), "{}", stderr(&missing));
    for path in [file, shared] {
        std::fs::remove_file(path).ok();
    }
}
