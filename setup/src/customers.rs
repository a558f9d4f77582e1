//! `customers ...`: the operator's side of tenant management, with the same rules as the
//! publisher's onboarding API (both go through [`hookline_core::tenants::Tenants`]).
//!
//! Reads load the same [`Directory`] view the consumer uses, so what `list` shows is what the
//! consumer will see. Credentials are printed once, when issued (`create`, `rotate-secret`,
//! `reissue-api-key`), and never stored in the clear.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use hookline_core::codec::Codec;
use hookline_core::config::{KafkaArgs, TopicArgs};
use hookline_core::customer::{Customer, StoredPublicKey, validate_id};
use hookline_core::directory::Directory;
use hookline_core::netguard::NetworkPolicy;
use hookline_core::notices::Notifier;
use hookline_core::secrets::{MasterKey, MasterKeyArgs};
use hookline_core::tenants::{NewCustomer, Tenants};
use rdkafka::producer::FutureProducer;
use serde_json::json;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::broker::{bounded, check_reachable, for_writes};
use crate::{CreateCustomer, CustomersCommand, Error, Result};

/// Time allowed on top of `--timeout` for an operation that has its own timeout of that length,
/// so that its own, more specific error wins.
pub(crate) const SLACK: Duration = Duration::from_secs(5);

/// What a customers command needs besides its own arguments.
#[derive(Debug)]
pub struct Context<'a> {
    pub kafka: &'a KafkaArgs,
    pub topics: &'a TopicArgs,
    pub master_key: &'a MasterKeyArgs,
    pub network: NetworkPolicy,
    pub timeout: Duration,
    /// Encodes and decodes customer records (through the schema registry when configured).
    pub codec: Codec,
}

/// Runs one `customers` subcommand.
pub async fn run<W: Write + Send>(context: &Context<'_>, command: CustomersCommand, out: &mut W) -> Result<()> {
    if let CustomersCommand::Import(import) = command {
        return crate::import::run(context, import, out).await;
    }
    // Validate what can be validated before touching Kafka, so bad input is reported as such
    // even without a broker.
    precheck(context, &command)?;
    let tenants = connect(context).await?;
    let timeout = context.timeout + SLACK;
    match command {
        CustomersCommand::Create(create) => {
            // One record with the whole configuration: one write, one acknowledgement.
            let issued =
                bounded(timeout, "the customer to be created", tenants.create_customer(&new_customer(&create))).await?;
            let customer = &issued.customer;
            if create.json {
                let shown = json!({
                    "id": customer.id,
                    "api_key": issued.api_key.expose(),
                    "signing_secret": issued.signing_secret.expose(),
                    "customer": customer.view(),
                });
                writeln!(out, "{shown}")?;
            } else {
                writeln!(out, "created {}", customer.id)?;
                writeln!(out, "api_key:        {}", issued.api_key.expose())?;
                writeln!(out, "signing_secret: {}", issued.signing_secret.expose())?;
                writeln!(out, "(shown once: give both to the customer; only a hash of the key is stored)")?;
                write_details(customer, out)?;
            }
        }
        CustomersCommand::Import(_) => {}
        CustomersCommand::Get(get) => {
            let customer = bounded(timeout, "the customer directory", tenants.get(&get.id)).await?;
            if get.json {
                writeln!(out, "{}", serde_json::to_string(&customer.view())?)?;
            } else {
                write_details(&customer, out)?;
            }
        }
        CustomersCommand::List(list) => {
            let customers = bounded(timeout, "the customer directory", tenants.list()).await?;
            if list.json {
                for customer in &customers {
                    serde_json::to_writer(&mut *out, &customer.view())?;
                    writeln!(out)?;
                }
            } else {
                write_table(&customers, out)?;
            }
        }
        CustomersCommand::Remove(remove) => {
            bounded(timeout, "the removal to be acknowledged", tenants.delete(&remove.id)).await?;
            writeln!(out, "removed {}", remove.id)?;
        }
        CustomersCommand::SetWebhook(set) => {
            let customer =
                bounded(timeout, "the webhook URL to be saved", tenants.set_webhook_url(&set.id, &set.url)).await?;
            writeln!(out, "{}: webhook {}", customer.id, customer.webhook_url.as_deref().unwrap_or("-"))?;
        }
        CustomersCommand::Subscribe(subscribe) => {
            let customer =
                bounded(timeout, "the subscriptions to be saved", tenants.set_events(&subscribe.id, subscribe.events))
                    .await?;
            writeln!(out, "{}: events {}", customer.id, customer.events.join(","))?;
        }
        CustomersCommand::SetPublicKey(set) => {
            let pem = read_pem(&set.file)?;
            let customer =
                bounded(timeout, "the public key to be saved", tenants.set_public_key(&set.id, &pem)).await?;
            let key = customer.public_key.as_ref().map(|k| format!("{} ({} bits)", k.kid, k.bits));
            writeln!(out, "{}: deliveries are now encrypted to key {}", customer.id, key.unwrap_or_default())?;
        }
        CustomersCommand::ClearPublicKey(clear) => {
            let customer =
                bounded(timeout, "the public key to be removed", tenants.clear_public_key(&clear.id)).await?;
            writeln!(out, "{}: deliveries are now sent unencrypted", customer.id)?;
        }
        CustomersCommand::RotateSecret(rotate) => {
            let rotated = bounded(
                timeout,
                "the new signing secret to be saved",
                tenants.rotate_signing_secret(&rotate.id, rotate.grace),
            )
            .await?;
            writeln!(out, "signing_secret: {}", rotated.signing_secret.expose())?;
            match rotated.previous_expires_at {
                Some(at) => writeln!(out, "(shown once; the previous secret keeps signing until {at} (Unix seconds))")?,
                None => writeln!(out, "(shown once)")?,
            }
        }
        CustomersCommand::ReissueApiKey(reissue) => {
            let (customer, api_key) =
                bounded(timeout, "the new API key to be saved", tenants.reissue_api_key(&reissue.id)).await?;
            writeln!(out, "{}: api_key {}", customer.id, api_key.expose())?;
            writeln!(out, "(shown once; the previous key no longer works)")?;
        }
        CustomersCommand::Enable(enable) => {
            let (customer, was_disabled) =
                bounded(timeout, "the endpoint to be enabled", tenants.enable(&enable.id)).await?;
            if was_disabled {
                writeln!(out, "{}: endpoint enabled", customer.id)?;
            } else {
                writeln!(out, "{}: endpoint was not disabled", customer.id)?;
            }
        }
        CustomersCommand::RateLimit(limit) => {
            let customer =
                bounded(timeout, "the rate limit to be saved", tenants.set_rate_limit(&limit.id, limit.per_second))
                    .await?;
            match customer.rate_limit {
                Some(rate) => writeln!(out, "{}: at most {rate} deliveries per second", customer.id)?,
                None => writeln!(out, "{}: no rate limit", customer.id)?,
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// Checks the arguments that need no broker.
fn precheck(context: &Context<'_>, command: &CustomersCommand) -> Result<()> {
    match command {
        CustomersCommand::Create(create) => {
            new_customer(create).validate()?;
            context.master_key.require()?;
        }
        CustomersCommand::Import(_) => {}
        CustomersCommand::Get(get) => validate_id(&get.id)?,
        CustomersCommand::List(_) => {}
        CustomersCommand::Remove(remove) => validate_id(&remove.id)?,
        CustomersCommand::SetWebhook(set) => {
            validate_id(&set.id)?;
            hookline_core::customer::validate_webhook_url(&set.url)?;
        }
        CustomersCommand::Subscribe(subscribe) => {
            validate_id(&subscribe.id)?;
            hookline_core::customer::normalize_events(subscribe.events.clone())?;
        }
        CustomersCommand::SetPublicKey(set) => {
            validate_id(&set.id)?;
            StoredPublicKey::from_pem(&read_pem(&set.file)?)?;
        }
        CustomersCommand::ClearPublicKey(clear) => validate_id(&clear.id)?,
        CustomersCommand::RotateSecret(rotate) => {
            validate_id(&rotate.id)?;
            context.master_key.require()?;
        }
        CustomersCommand::ReissueApiKey(reissue) => validate_id(&reissue.id)?,
        CustomersCommand::Enable(enable) => validate_id(&enable.id)?,
        CustomersCommand::RateLimit(limit) => {
            validate_id(&limit.id)?;
            Customer::default().set_rate_limit(limit.per_second)?;
        }
    }
    Ok(())
}

/// The customer `customers create` asks for.
fn new_customer(create: &CreateCustomer) -> NewCustomer {
    NewCustomer {
        id: create.id.clone(),
        name: create.name.clone(),
        webhook_url: create.webhook_url.clone(),
        events: create.events.clone(),
        public_key: None,
    }
}

/// A live tenant service on the customers topic. Commands that issue no secret work without the
/// master key, so an ephemeral one stands in (it seals nothing).
pub(crate) async fn connect(context: &Context<'_>) -> Result<Connected> {
    check_reachable(context.kafka, context.timeout).await?;
    // Without this check, a broker that auto-creates topics would make an uncompacted one.
    bounded(
        context.timeout,
        "the customers topic's metadata",
        hookline_core::topics::describe_partitions(context.kafka, &context.topics.customers),
    )
    .await?;
    let stop = CancellationToken::new();
    let guard = stop.clone().drop_guard();
    let directory = bounded(
        context.timeout + SLACK,
        "the customer directory to load",
        Directory::start(context.kafka, &context.topics.customers, context.timeout, stop, context.codec.clone()),
    )
    .await?;
    let writes = for_writes(context.kafka, context.timeout);
    let producer: FutureProducer = hookline_core::kafka::producer_config(&writes, "hookline-setup")
        .create()
        .map_err(hookline_core::Error::from)?;
    let master_key = context.master_key.load()?.unwrap_or_else(MasterKey::generate);
    // `customers enable` (and a new webhook URL) announce the endpoint enabled to the operators
    // subscribed to `hookline.endpoint.enabled`, as the onboarding API does.
    let notifier =
        Notifier::new(producer.clone(), context.topics.deliveries.clone(), directory.clone(), context.timeout);
    let tenants = Tenants::new(
        directory,
        producer,
        context.topics.customers.clone(),
        master_key,
        context.network.clone(),
        context.timeout,
    )
    .with_notifier(notifier);
    Ok(Connected { tenants, _stop: guard })
}

/// A tenant service whose directory follower stops when this is dropped.
pub(crate) struct Connected {
    tenants: Tenants,
    _stop: DropGuard,
}

impl std::ops::Deref for Connected {
    type Target = Tenants;

    fn deref(&self) -> &Tenants {
        &self.tenants
    }
}

fn read_pem(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|error| {
        Error::Core(hookline_core::Error::Invalid {
            field: "public_key",
            reason: format!("cannot read {}: {error}", path.display()),
        })
    })
}

fn write_details<W: Write>(customer: &Customer, out: &mut W) -> std::io::Result<()> {
    let view = customer.view();
    writeln!(out, "id:          {}", view.id)?;
    if let Some(name) = &view.name {
        writeln!(out, "name:        {name}")?;
    }
    writeln!(out, "webhook_url: {}", view.webhook_url.as_deref().unwrap_or("-"))?;
    writeln!(out, "events:      {}", if view.events.is_empty() { "-".into() } else { view.events.join(",") })?;
    let key = view.public_key.map(|k| format!("{} ({} bits)", k.kid, k.bits));
    writeln!(out, "public_key:  {}", key.as_deref().unwrap_or("- (deliveries unencrypted)"))?;
    writeln!(out, "secrets:     {} active", view.signing_secrets.len())?;
    if let Some(rate) = view.rate_limit {
        writeln!(out, "rate limit:  {rate} deliveries per second")?;
    }
    if let Some(disabled) = &view.disabled {
        writeln!(out, "disabled:    since {} (Unix seconds): {}", disabled.at, disabled.reason)?;
    }
    Ok(())
}

fn write_table<W: Write>(customers: &[Arc<Customer>], out: &mut W) -> std::io::Result<()> {
    const HEADERS: [&str; 4] = ["ID", "WEBHOOK_URL", "EVENTS", "ENCRYPTED"];
    if customers.is_empty() {
        return writeln!(out, "no customers");
    }
    let rows: Vec<[String; 4]> = customers
        .iter()
        .map(|c| {
            [
                c.id.clone(),
                c.webhook_url.clone().unwrap_or_else(|| "-".into()),
                if c.events.is_empty() { "-".into() } else { c.events.join(",") },
                if c.public_key.is_some() { "yes".into() } else { "no".into() },
            ]
        })
        .collect();
    let id_width = rows.iter().map(|r| r[0].len()).chain([HEADERS[0].len()]).max().unwrap_or_default();
    let url_width = rows.iter().map(|r| r[1].len()).chain([HEADERS[1].len()]).max().unwrap_or_default();
    let events_width = rows.iter().map(|r| r[2].len()).chain([HEADERS[2].len()]).max().unwrap_or_default();
    for [id, url, events, encrypted] in std::iter::once(HEADERS.map(str::to_owned)).chain(rows) {
        writeln!(out, "{id:<id_width$}  {url:<url_width$}  {events:<events_width$}  {encrypted}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(lines[0], "ID       WEBHOOK_URL    EVENTS  ENCRYPTED");
        assert_eq!(lines[1], "a        http://x/hook  e1,e2   no");
        assert_eq!(lines[2], "long-id  http://y/      *       no");

        let mut empty = Vec::new();
        write_table(&[], &mut empty).unwrap();
        assert_eq!(String::from_utf8(empty).unwrap(), "no customers\n");
    }
}
