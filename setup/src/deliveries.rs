//! `hookline-setup deliveries list|show|resend`: a customer's deliveries, as the publisher's
//! deliveries API sees them (its index of the delivery log), for operators.
//!
//! Unlike the other commands, these talk to a publisher (its admin API, `--api-url` with
//! `--admin-token`) rather than to Kafka: the deliveries are the publisher's index of the log,
//! and a resend goes through the same path as the API's, so there is one owner of both.

use std::io::Write;
use std::time::Duration;

use clap::{Args, Subcommand};
use hookline_core::config::SecretString;
use serde_json::Value;

use crate::{Error, Result};

/// Where the publisher's admin API is.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// The publisher's HTTP address.
    #[arg(long, env = "HOOKLINE_API_URL", default_value = "http://127.0.0.1:4242")]
    pub api_url: String,

    /// An admin token of that publisher (one of its `--admin-tokens`).
    #[arg(long, env = "HOOKLINE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<SecretString>,
}

/// `hookline-setup deliveries ...`
#[derive(Debug, Clone, Subcommand)]
pub enum DeliveriesCommand {
    /// A customer's deliveries, newest first, one line each (`--json`: the API's answer).
    List(ListArgs),
    /// One delivery: its attempts and, while retained, its payload.
    Show(ShowArgs),
    /// Sends a delivery again (the same event, marked as a resend).
    Resend(ShowArgs),
}

/// `deliveries list`
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// The customer.
    #[arg(long, env = "HOOKLINE_CUSTOMER")]
    pub customer: String,
    /// Only deliveries in this state: delivered, failing, parked, dead_lettered.
    #[arg(long, env = "HOOKLINE_DELIVERY_STATUS")]
    pub status: Option<String>,
    /// Only deliveries first attempted at or after this time (RFC 3339).
    #[arg(long, env = "HOOKLINE_DELIVERY_SINCE")]
    pub since: Option<String>,
    /// Only deliveries of this event type.
    #[arg(long = "type", env = "HOOKLINE_DELIVERY_TYPE")]
    pub event_type: Option<String>,
    /// At most this many (1 to 100).
    #[arg(long, env = "HOOKLINE_DELIVERY_LIMIT", default_value_t = 50)]
    pub limit: u32,
    /// Print the API's JSON answer.
    #[arg(long, env = "HOOKLINE_OUTPUT_JSON")]
    pub json: bool,
}

/// `deliveries show|resend`
#[derive(Debug, Clone, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// The customer.
    #[arg(long, env = "HOOKLINE_CUSTOMER")]
    pub customer: String,
    /// The event's id (`evt_…`).
    #[arg(long, env = "HOOKLINE_EVENT_ID")]
    pub event: String,
}

/// Runs a `deliveries` command.
pub async fn run<W: Write + Send>(command: DeliveriesCommand, timeout: Duration, out: &mut W) -> Result<()> {
    match command {
        DeliveriesCommand::List(args) => {
            let mut query = vec![("limit", args.limit.to_string())];
            for (name, value) in [("status", &args.status), ("since", &args.since), ("type", &args.event_type)] {
                if let Some(value) = value {
                    query.push((name, value.clone()));
                }
            }
            let path = ["v1", "customers", &args.customer, "deliveries"];
            let answer = call(&args.api, reqwest::Method::GET, &path, &query, timeout).await?;
            if args.json {
                writeln!(out, "{answer}")?;
                return Ok(());
            }
            let deliveries = answer["deliveries"].as_array().map(Vec::as_slice).unwrap_or_default();
            for delivery in deliveries {
                writeln!(out, "{}", delivery_line(delivery))?;
            }
            writeln!(out, "{} deliver{}", deliveries.len(), if deliveries.len() == 1 { "y" } else { "ies" })?;
            if answer["next_cursor"].is_string() {
                writeln!(out, "(more: narrow with --since, --status or --type, or raise --limit)")?;
            }
            Ok(())
        }
        DeliveriesCommand::Show(args) => {
            let path = ["v1", "customers", &args.customer, "deliveries", &args.event];
            let answer = call(&args.api, reqwest::Method::GET, &path, &[], timeout).await?;
            writeln!(out, "{}", serde_json::to_string_pretty(&answer)?)?;
            Ok(())
        }
        DeliveriesCommand::Resend(args) => {
            let path = ["v1", "customers", &args.customer, "deliveries", &args.event, "resend"];
            let answer = call(&args.api, reqwest::Method::POST, &path, &[], timeout).await?;
            writeln!(
                out,
                "resent {} to {} (resend {})",
                answer["event_id"].as_str().unwrap_or_default(),
                args.customer,
                answer["resend_id"].as_str().unwrap_or_default()
            )?;
            Ok(())
        }
    }
}

/// One line of `deliveries list`.
fn delivery_line(delivery: &Value) -> String {
    let text = |key: &str| delivery[key].as_str().unwrap_or("-").to_owned();
    let last = match (delivery["last_status"].as_u64(), delivery["last_error"].as_str()) {
        (_, Some(error)) => error.to_owned(),
        (Some(status), None) => format!("HTTP {status}"),
        (None, None) => String::new(),
    };
    format!(
        "{}  {:<13}  {:>2} attempt(s)  {}  {}  {}",
        text("first_attempt_at"),
        text("status"),
        delivery["attempts"].as_u64().unwrap_or_default(),
        text("event_id"),
        text("event_type"),
        last
    )
}

/// The address of `path` (its segments, each percent-encoded by `url` as one segment, so an id
/// holding `/` or `?` stays one) under `--api-url`, with `query`.
fn address(api_url: &str, path: &[&str], query: &[(&str, String)]) -> Result<reqwest::Url> {
    let invalid = |reason: &dyn std::fmt::Display| Error::Usage(format!("invalid --api-url `{api_url}`: {reason}"));
    let mut url = reqwest::Url::parse(api_url).map_err(|e| invalid(&e))?;
    url.path_segments_mut().map_err(|()| invalid(&"not an http(s) address"))?.pop_if_empty().extend(path);
    url.query_pairs_mut().extend_pairs(query);
    if query.is_empty() {
        url.set_query(None);
    }
    Ok(url)
}

/// Calls the admin API; its JSON answer, or an error with the API's message (a refusal of the
/// operator's input is a usage error, exit 2).
async fn call(
    api: &ApiArgs,
    method: reqwest::Method,
    path: &[&str],
    query: &[(&str, String)],
    timeout: Duration,
) -> Result<Value> {
    let token = api.admin_token.as_ref().ok_or_else(|| {
        Error::Usage("no admin token: pass --admin-token (or set HOOKLINE_ADMIN_TOKEN), one of the publisher's".into())
    })?;
    let client = reqwest::Client::builder().timeout(timeout).build().map_err(|e| Error::Api(e.to_string()))?;
    let url = address(&api.api_url, path, query)?;
    let response = client
        .request(method, url)
        .bearer_auth(token.expose())
        .send()
        .await
        .map_err(|e| Error::Api(format!("cannot reach the publisher at {}: {e}", api.api_url)))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(body);
    }
    let message = body["error"].as_str().unwrap_or("no error message").to_owned();
    if status.is_client_error() {
        Err(Error::Usage(format!("the publisher refused ({status}): {message}")))
    } else {
        Err(Error::Api(format!("the publisher failed ({status}): {message}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_addresses() {
        let delivery = serde_json::json!({
            "first_attempt_at": "2026-12-01T10:00:00.000Z", "status": "dead_lettered", "attempts": 4,
            "event_id": "evt_1", "event_type": "order.created", "last_status": 503, "last_error": "HTTP 503"
        });
        let line = delivery_line(&delivery);
        assert!(line.starts_with("2026-12-01T10:00:00.000Z  dead_lettered"), "{line}");
        assert!(line.contains(" 4 attempt(s)  evt_1  order.created  HTTP 503"), "{line}");
        let url = |base: &str, path: &[&str], query: &[(&str, String)]| address(base, path, query).unwrap().to_string();
        assert_eq!(url("http://127.0.0.1:4242", &["v1", "acme-1_x.y"], &[]), "http://127.0.0.1:4242/v1/acme-1_x.y");
        assert_eq!(url("http://h/api/", &["v1", "a/b c?d"], &[]), "http://h/api/v1/a%2Fb%20c%3Fd");
        assert_eq!(
            url("http://h", &["v1"], &[("since", "2026-12-01T00:00:00+01:00".into())]),
            "http://h/v1?since=2026-12-01T00%3A00%3A00%2B01%3A00"
        );
        assert!(matches!(address("not a url", &["v1"], &[]), Err(Error::Usage(_))));
        assert!(matches!(address("mailto:ops@example.com", &["v1"], &[]), Err(Error::Usage(_))));
    }
}
