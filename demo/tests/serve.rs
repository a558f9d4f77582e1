//! `hookline-demo --serve`, the real binary: once the deliveries are accounted for it prints a
//! customer portal link that works, keeps serving, and exits 0 on Ctrl-C (SIGINT).

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_prints_a_working_portal_link_and_stops_on_ctrl_c() {
    let mut demo = Command::new(env!("CARGO_BIN_EXE_hookline-demo"))
        .args(["--serve", "--events", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the demo");
    let mut lines = BufReader::new(demo.stdout.take().expect("stdout")).lines();
    let link = tokio::time::timeout(Duration::from_secs(180), async {
        while let Some(line) = lines.next_line().await.expect("read the demo's output") {
            if let Some(at) = line.find("http://")
                && line.contains("/portal#token=")
            {
                return line[at..].trim().to_owned();
            }
        }
        panic!("the demo ended without printing a portal link");
    })
    .await
    .expect("a portal link within 3 minutes");

    let (page, token) = link.split_once('#').expect("a fragment");
    let token = token.strip_prefix("token=").expect("a token");
    let client = reqwest::Client::new();
    let served = client.get(page).send().await.expect("the portal page");
    assert_eq!(served.status(), 200);
    assert!(served.headers().contains_key("content-security-policy"));
    let base = page.trim_end_matches("/portal");
    let me = client.get(format!("{base}/v1/customer")).bearer_auth(token).send().await.expect("the customer API");
    assert_eq!(me.status(), 200);
    let me: serde_json::Value = me.json().await.expect("JSON");
    let deliveries = client
        .get(format!("{base}/v1/customer/deliveries?status=dead_lettered"))
        .bearer_auth(token)
        .send()
        .await
        .expect("the deliveries API");
    let deliveries: serde_json::Value = deliveries.json().await.expect("JSON");
    assert!(
        deliveries["deliveries"].as_array().is_some_and(|d| !d.is_empty()),
        "the link is for a customer with failed deliveries ({}): {deliveries}",
        me["id"]
    );

    // Ctrl-C ends the serving, and the demo exits 0 with its summary.
    let pid = demo.id().expect("a pid").to_string();
    let sent = std::process::Command::new("kill").args(["-INT", &pid]).status().expect("kill -INT");
    assert!(sent.success());
    let status = tokio::time::timeout(Duration::from_secs(60), demo.wait()).await.expect("exits").expect("status");
    assert!(status.success(), "{status}");
}
