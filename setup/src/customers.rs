//! `customers add`, `customers list` and `customers remove`.
//!
//! Writes go straight to the compacted customers topic; reads load the same
//! [`Directory`] view the consumer uses, so what `list` shows is what the consumer will see.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use hookline_core::config::{KafkaArgs, TopicArgs};
use hookline_core::customer::{Customer, validate_id};
use hookline_core::directory::{self, Directory};
use tokio_util::sync::CancellationToken;

use crate::broker::{bounded, check_reachable, for_writes};
use crate::{AddCustomer, Error, ListCustomers, RemoveCustomer, Result};

/// Time allowed on top of `--timeout` for an operation that has its own timeout of that length,
/// so that its own, more specific error wins.
const SLACK: Duration = Duration::from_secs(5);

/// Upserts a customer.
pub async fn add<W: Write + Send>(
    kafka: &KafkaArgs,
    names: &TopicArgs,
    add: &AddCustomer,
    timeout: Duration,
    out: &mut W,
) -> Result<()> {
    // Validate before touching Kafka, so bad input is reported as such even without a broker.
    let customer = Customer::new(&add.id, &add.webhook_url, normalize_events(&add.events))?;
    check_reachable(kafka, timeout).await?;
    // Without this check, a broker that auto-creates topics would make an uncompacted one.
    bounded(
        timeout,
        "the customers topic's metadata",
        hookline_core::topics::describe_partitions(kafka, &names.customers),
    )
    .await?;
    bounded(
        timeout + SLACK,
        "the customer record to be acknowledged",
        directory::put_customer(&for_writes(kafka, timeout), &names.customers, &customer),
    )
    .await?;
    writeln!(
        out,
        "saved {}: {} ({})",
        customer.id,
        customer.webhook_url.as_deref().unwrap_or_default(),
        customer.events.join(",")
    )?;
    Ok(())
}

/// Prints every customer, as a table or as JSON lines.
pub async fn list<W: Write + Send>(
    kafka: &KafkaArgs,
    names: &TopicArgs,
    list: &ListCustomers,
    timeout: Duration,
    out: &mut W,
) -> Result<()> {
    let customers = load(kafka, names, timeout).await?.all();
    if list.json {
        for customer in &customers {
            serde_json::to_writer(&mut *out, customer.as_ref())?;
            writeln!(out)?;
        }
    } else {
        write_table(&customers, out)?;
    }
    out.flush()?;
    Ok(())
}

/// Removes a known customer (writes a tombstone).
pub async fn remove<W: Write + Send>(
    kafka: &KafkaArgs,
    names: &TopicArgs,
    remove: &RemoveCustomer,
    timeout: Duration,
    out: &mut W,
) -> Result<()> {
    validate_id(&remove.id)?;
    // A tombstone for an unknown id would "succeed" silently, hiding a typo.
    if load(kafka, names, timeout).await?.get(&remove.id).is_none() {
        return Err(Error::UnknownCustomer(remove.id.clone()));
    }
    bounded(
        timeout + SLACK,
        "the removal to be acknowledged",
        directory::remove_customer(&for_writes(kafka, timeout), &names.customers, &remove.id),
    )
    .await?;
    writeln!(out, "removed {}", remove.id)?;
    Ok(())
}

/// The directory as the topic holds it now. The follower thread is stopped on return: a CLI
/// command needs one snapshot, not a live view.
async fn load(kafka: &KafkaArgs, names: &TopicArgs, timeout: Duration) -> Result<Directory> {
    check_reachable(kafka, timeout).await?;
    let stop = CancellationToken::new();
    let _stop_follower = stop.clone().drop_guard();
    bounded(timeout + SLACK, "the customer directory to load", Directory::start(kafka, &names.customers, timeout, stop))
        .await
}

/// Trims each event type and drops repeats, keeping the operator's order.
fn normalize_events(events: &[String]) -> Vec<String> {
    let mut normalized: Vec<String> = Vec::with_capacity(events.len());
    for event in events.iter().map(|e| e.trim()) {
        if !normalized.iter().any(|seen| seen == event) {
            normalized.push(event.to_owned());
        }
    }
    normalized
}

fn write_table<W: Write>(customers: &[Arc<Customer>], out: &mut W) -> std::io::Result<()> {
    const HEADERS: [&str; 3] = ["ID", "WEBHOOK_URL", "EVENTS"];
    if customers.is_empty() {
        return writeln!(out, "no customers");
    }
    let rows: Vec<[String; 3]> = customers
        .iter()
        .map(|c| [c.id.clone(), c.webhook_url.clone().unwrap_or_else(|| "-".into()), c.events.join(",")])
        .collect();
    let id_width = rows.iter().map(|r| r[0].len()).chain([HEADERS[0].len()]).max().unwrap_or_default();
    let url_width = rows.iter().map(|r| r[1].len()).chain([HEADERS[1].len()]).max().unwrap_or_default();
    for [id, url, events] in std::iter::once(HEADERS.map(str::to_owned)).chain(rows) {
        writeln!(out, "{id:<id_width$}  {url:<url_width$}  {events}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_trimmed_and_deduplicated_in_order() {
        let raw: Vec<String> = ["b", " a", "b ", "c"].map(String::from).to_vec();
        assert_eq!(normalize_events(&raw), ["b", "a", "c"]);
    }

    #[test]
    fn table_aligns_columns() {
        let customers = vec![
            Arc::new(Customer::new("a", "http://x/hook", vec!["e1".into(), "e2".into()]).unwrap()),
            Arc::new(Customer::new("long-id", "http://y/", vec!["*".into()]).unwrap()),
        ];
        let mut out = Vec::new();
        write_table(&customers, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "ID       WEBHOOK_URL    EVENTS");
        assert_eq!(lines[1], "a        http://x/hook  e1,e2");
        assert_eq!(lines[2], "long-id  http://y/      *");

        let mut empty = Vec::new();
        write_table(&[], &mut empty).unwrap();
        assert_eq!(String::from_utf8(empty).unwrap(), "no customers\n");
    }
}
