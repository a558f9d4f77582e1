//! `hookline-setup`, the operator's CLI: creates and checks Hookline's topics, manages customers
//! and inbound sources (the compacted customers topic), inspects, replays and purges dead letters,
//! shows and resends a customer's deliveries, and generates keys.
//!
//! Everything is a library call so that tests and the in-process demo can run a command without
//! spawning the binary: parse a [`Cli`] (or build one with `Cli::try_parse_from`), call [`run`]
//! with any writer for the report, and map an error to the process exit code with
//! [`Error::exit_code`]: 2 for bad input (as clap does for an unparsable command line), 1 for an
//! operational failure.
//!
//! Nothing here alters or deletes an existing topic: a topic laid out differently from what
//! `topics create` asks for is reported, and the operator decides. The one deletion is `dlq purge`,
//! which removes dead letters older than a time the operator names.
//!
//! # Layout
//! - [`Cli`] and its subcommands: the command line (flags also come from the environment).
//! - [`run`]: executes one command, writing its report to a writer.
//! - `topics`: `topics create` / `topics describe`.
//! - `check`: the health of the whole: broker, topics, consumer group and lag, schema registry.
//! - `cluster`: one look at brokers, topics, watermarks and the group (`describe` and `check`).
//! - `customers`: `customers create` (alias `add`) / `get` / `list` / `remove` / `set-webhook` /
//!   `subscribe` / `set-public-key` / `clear-public-key` / `rotate-secret` / `reissue-api-key` /
//!   `enable`,
//!   through the same [`hookline_core::tenants::Tenants`] rules as the onboarding API.
//! - `import`: `customers import FILE --out CREDENTIALS`: many customers from a JSON Lines file,
//!   one directory load, batched writes, a report per line; safe to re-run.
//! - `sources`: `sources add` / `list` / `remove`: inbound webhook sources, through the same
//!   [`hookline_core::tenants::Tenants`].
//! - `schemas`: `schemas register` / `check` / `show`: the Avro schemas of the topics in the
//!   Confluent Schema Registry.
//! - `deliveries`: `deliveries list` / `show` / `resend`: a customer's deliveries, through a
//!   publisher's admin API (its index of the delivery log; its resend path).
//! - `dlq`: `dlq list` / `replay` / `purge`: reads the dead-letter topic with a group-less reader,
//!   re-produces selected dead letters to the delivery topic (progress kept in a compacted marker
//!   topic so a re-run produces nothing twice), deletes old ones with Kafka's DeleteRecords.
//! - `keys`: `keys generate` (a customer's RSA key pair) and `keys master-key`.
//! - `broker`: the reachability probe and timeouts that bound every Kafka call by `--timeout`.
//! - [`error`]: this crate's error type and exit codes.

mod broker;
mod check;
mod cluster;
mod customers;
mod deliveries;
mod dlq;
pub mod error;
mod import;
mod keys;
mod schemas;
mod sources;
mod topics;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::{Args, Parser, Subcommand};
use hookline_core::codec::Codec;
use hookline_core::config::{KafkaArgs, SchemaRegistryArgs, TopicArgs, parse_duration};
use hookline_core::customer::SignatureScheme;
use hookline_core::netguard::NetworkArgs;
use hookline_core::secrets::{MasterKey, MasterKeyArgs};

pub use error::{EXIT_FAILURE, EXIT_USAGE, Error, Result};

/// Hookline operations: topics, customers, dead letters and keys.
#[derive(Debug, Clone, Parser)]
#[command(name = "hookline-setup", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(flatten)]
    pub topics: TopicArgs,

    /// How long to wait for Kafka before giving up (e.g. 500ms, 15s, 1m).
    #[arg(long, env = "HOOKLINE_TIMEOUT", default_value = "15s", value_parser = parse_duration, global = true)]
    pub timeout: Duration,

    #[command(flatten)]
    pub master_key: MasterKeyArgs,

    #[command(flatten)]
    pub network: NetworkArgs,

    #[command(flatten)]
    pub schema_registry: SchemaRegistryArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// What to manage.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Create or inspect the delivery, dead-letter and customers topics.
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// Manage customers (tenants): create, configure, rotate credentials, remove.
    #[command(subcommand)]
    Customers(CustomersCommand),
    /// Inspect, replay and purge dead letters (the DLQ topic).
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Manage inbound webhook sources: external senders whose signed webhooks Hookline receives
    /// on `POST /inbound/{id}` and delivers to an internal endpoint.
    #[command(subcommand)]
    Sources(SourcesCommand),
    /// Generate keys: a customer's RSA key pair, or the operator's master key.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Register or check the topics' Avro schemas in the Confluent Schema Registry.
    #[command(subcommand)]
    Schemas(SchemasCommand),
    /// A customer's deliveries (the delivery log, through a publisher's admin API): list them,
    /// show one with its attempts, resend one.
    #[command(subcommand)]
    Deliveries(deliveries::DeliveriesCommand),
    /// Check that everything Hookline needs is in place: the broker, the topics and their layout,
    /// the consumer group and its lag, the schema registry and its subjects. One line per check
    /// (`ok`, `warn` or `FAIL` with what to do); exit 1 if any check fails.
    Check(CheckArgs),
}

/// The consumer group to look at.
#[derive(Debug, Clone, Args)]
pub struct GroupArg {
    /// Consumer group id of the consumers (as given to `hookline-consumer --group`).
    #[arg(long, env = "HOOKLINE_GROUP", default_value = "hookline")]
    pub group: String,
}

/// `check [--group G] [--max-lag N] [--json]`
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Consumer group id of the consumers (as given to `hookline-consumer --group`).
    #[arg(long, env = "HOOKLINE_GROUP", default_value = "hookline")]
    pub group: String,

    /// Warn when the group's total lag on the delivery topic is above this many records.
    #[arg(long, env = "HOOKLINE_MAX_LAG")]
    pub max_lag: Option<u64>,

    /// Print one JSON object (`{"ok", "checks": [{"check", "status", "detail"}]}`) instead of text.
    #[arg(long, env = "HOOKLINE_OUTPUT_JSON")]
    pub json: bool,
}

/// `hookline-setup schemas ...`
#[derive(Debug, Clone, Subcommand)]
pub enum SchemasCommand {
    /// Register the compiled-in schemas under `<topic>-value` for the delivery, dead-letter and
    /// customers topics; prints each subject's id and version. The registry checks
    /// compatibility: a refusal is reported with its message (exit 1).
    Register,
    /// Check that each subject holds the compiled-in schema (exit 1 if one does not).
    Check,
    /// Print the compiled-in schemas and their fingerprints (needs no registry).
    Show,
}

/// `hookline-setup sources ...`
#[derive(Debug, Clone, Subcommand)]
pub enum SourcesCommand {
    /// Register an inbound source: prints the sender's secret (when generated) and the secret
    /// that signs deliveries to the internal endpoint, once.
    Add(AddSource),
    /// List the inbound sources (no secrets).
    List(ListCustomers),
    /// Remove an inbound source (its events still queued are dead-lettered).
    Remove(CustomerId),
}

/// `sources add --id ID --scheme S --endpoint URL [--secret S]`
#[derive(Debug, Clone, Args)]
pub struct AddSource {
    /// Source id (the path of `POST /inbound/{id}`): 1 to 128 characters of A-Z, a-z, 0-9, '.',
    /// '_', '-', ':'.
    #[arg(long, env = "HOOKLINE_SOURCE_ID")]
    pub id: String,

    /// How the sender signs: `standard-webhooks` (webhook-id / webhook-timestamp /
    /// webhook-signature, `whsec_` secret) or `hub-signature-256` (X-Hub-Signature-256).
    #[arg(long, env = "HOOKLINE_SOURCE_SCHEME")]
    pub scheme: SignatureScheme,

    /// The internal endpoint its events are delivered to (http or https; internal addresses
    /// are allowed: the SSRF guard does not apply to operator-chosen endpoints).
    #[arg(long, env = "HOOKLINE_SOURCE_ENDPOINT")]
    pub endpoint: String,

    /// The sender's secret (`whsec_...` for standard-webhooks, 16 to 1024 bytes for
    /// hub-signature-256). Omitted: one is generated and printed once.
    #[arg(long, env = "HOOKLINE_SOURCE_SECRET", hide_env_values = true)]
    pub secret: Option<String>,

    /// Print one JSON object (for scripts) instead of text.
    #[arg(long, env = "HOOKLINE_OUTPUT_JSON")]
    pub json: bool,
}

/// `hookline-setup topics ...`
#[derive(Debug, Clone, Subcommand)]
pub enum TopicsCommand {
    /// Create every Hookline topic if missing (idempotent); report existing ones that differ.
    Create(CreateTopics),
    /// Show each topic's partitions: leader, replicas, in-sync replicas, low and high watermarks,
    /// and on the delivery topic the group's committed offset and lag.
    Describe(GroupArg),
}

/// Layout of the topics `topics create` makes.
#[derive(Debug, Clone, Args)]
pub struct CreateTopics {
    /// Partitions of the delivery topic and the DLQ: the ceiling on consumer parallelism.
    #[arg(long, env = "HOOKLINE_PARTITIONS", default_value_t = 6, value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: i32,

    /// Replicas of every partition; 1 suits a single local broker, use 3 in production.
    #[arg(
        long,
        env = "HOOKLINE_REPLICATION_FACTOR",
        default_value_t = 1,
        value_parser = clap::value_parser!(i32).range(1..)
    )]
    pub replication_factor: i32,
}

/// `hookline-setup customers ...`
#[derive(Debug, Clone, Subcommand)]
pub enum CustomersCommand {
    /// Create a customer: prints its API key and signing secret, once.
    #[command(alias = "add")]
    Create(CreateCustomer),
    /// Create many customers from a JSON Lines file (one `{"id", "name"?, "webhook_url"?,
    /// "events"?, "public_key"?}` per line): their credentials are appended to --out, a report
    /// of every line is printed. Safe to re-run: existing customers are left alone. Exit 2 if a
    /// line was refused (the others are imported all the same).
    Import(ImportCustomers),
    /// Show one customer (no credentials).
    Get(ShowCustomer),
    /// List every customer.
    List(ListCustomers),
    /// Remove a customer (its later events are dead-lettered).
    Remove(CustomerId),
    /// Set the webhook URL (http/https; checked against the SSRF guard).
    SetWebhook(SetWebhook),
    /// Replace the event types the customer receives.
    Subscribe(Subscribe),
    /// Encrypt deliveries to this RSA public key (PEM, SPKI or PKCS#1, at least 2048 bits).
    SetPublicKey(SetPublicKey),
    /// Stop encrypting deliveries.
    ClearPublicKey(CustomerId),
    /// Issue a new signing secret (printed once); the previous one keeps signing for `--grace`.
    RotateSecret(RotateSecret),
    /// Issue a new API key (printed once); the previous one stops working at once.
    ReissueApiKey(CustomerId),
    /// Enable an endpoint the consumers disabled after failing for `--disable-after`; replay what
    /// was dead-lettered meanwhile with `dlq replay --customer ID --reason endpoint_disabled`.
    Enable(CustomerId),
    /// Limit the deliveries per second to the customer's endpoint (`--per-second N`, 1 to 10000),
    /// or remove the limit (`--off`).
    RateLimit(RateLimit),
}

/// `customers rate-limit ID (--per-second N | --off)`
#[derive(Debug, Clone, Args)]
pub struct RateLimit {
    /// Customer id.
    pub id: String,
    /// Most deliveries per second to the customer's endpoint.
    #[arg(long, env = "HOOKLINE_CUSTOMER_RATE_LIMIT", required_unless_present = "off", conflicts_with = "off")]
    pub per_second: Option<u32>,
    /// No limit.
    #[arg(long, env = "HOOKLINE_CUSTOMER_RATE_LIMIT_OFF")]
    pub off: bool,
}

/// A customer to create.
#[derive(Debug, Clone, Args)]
pub struct CreateCustomer {
    /// Customer id: 1 to 128 characters of A-Z, a-z, 0-9, '.', '_', '-', ':'.
    #[arg(long, env = "HOOKLINE_CUSTOMER_ID")]
    pub id: String,

    /// Display name.
    #[arg(long, env = "HOOKLINE_CUSTOMER_NAME")]
    pub name: Option<String>,

    /// Where the customer's events are POSTed (absolute http or https URL); the customer can
    /// also set it through the API.
    #[arg(long, env = "HOOKLINE_CUSTOMER_WEBHOOK_URL")]
    pub webhook_url: Option<String>,

    /// Event types the customer receives, comma-separated; `*` means all.
    #[arg(long, env = "HOOKLINE_CUSTOMER_EVENTS", value_delimiter = ',')]
    pub events: Vec<String>,

    /// Print one JSON object (for scripts) instead of text.
    #[arg(long, env = "HOOKLINE_OUTPUT_JSON")]
    pub json: bool,
}

/// `customers import FILE --out CREDENTIALS`
#[derive(Debug, Clone, Args)]
pub struct ImportCustomers {
    /// JSON Lines file, one customer per line: `{"id": "acme", "name": "Acme", "webhook_url":
    /// "https://...", "events": ["order.created"], "public_key": "-----BEGIN PUBLIC KEY-----\n..."}`
    /// (only `id` is required); blank lines and lines starting with `#` are skipped.
    pub file: PathBuf,

    /// File the created customers' API keys and signing secrets are appended to, one JSON object
    /// per line (created with mode 0600; an existing one must be readable by its owner only).
    #[arg(long, env = "HOOKLINE_IMPORT_OUT")]
    pub out: PathBuf,
}

/// A customer to show.
#[derive(Debug, Clone, Args)]
pub struct ShowCustomer {
    /// Customer id.
    pub id: String,

    /// Print JSON instead of text.
    #[arg(long, env = "HOOKLINE_OUTPUT_JSON")]
    pub json: bool,
}

/// How to list customers.
#[derive(Debug, Clone, Args)]
pub struct ListCustomers {
    /// One JSON object per line instead of a table (for scripts).
    #[arg(long, env = "HOOKLINE_OUTPUT_JSON")]
    pub json: bool,
}

/// A customer named by id.
#[derive(Debug, Clone, Args)]
pub struct CustomerId {
    /// Customer id.
    pub id: String,
}

/// `customers set-webhook ID URL`
#[derive(Debug, Clone, Args)]
pub struct SetWebhook {
    /// Customer id.
    pub id: String,
    /// Absolute http or https URL.
    pub url: String,
}

/// `customers subscribe ID --events a,b`
#[derive(Debug, Clone, Args)]
pub struct Subscribe {
    /// Customer id.
    pub id: String,
    /// Event types, comma-separated; `*` means all.
    #[arg(long, env = "HOOKLINE_CUSTOMER_EVENTS", value_delimiter = ',', required = true)]
    pub events: Vec<String>,
}

/// `customers set-public-key ID --file public.pem`
#[derive(Debug, Clone, Args)]
pub struct SetPublicKey {
    /// Customer id.
    pub id: String,
    /// PEM file with the customer's RSA public key (see `keys generate`).
    #[arg(long, env = "HOOKLINE_CUSTOMER_PUBLIC_KEY_FILE")]
    pub file: PathBuf,
}

/// `customers rotate-secret ID [--grace 24h]`
#[derive(Debug, Clone, Args)]
pub struct RotateSecret {
    /// Customer id.
    pub id: String,
    /// How long the previous secret keeps signing, alongside the new one.
    #[arg(long, env = "HOOKLINE_SIGNING_SECRET_GRACE", default_value = "24h", value_parser = parse_duration)]
    pub grace: Duration,
}

/// `hookline-setup dlq ...`
#[derive(Debug, Clone, Subcommand)]
pub enum DlqCommand {
    /// Show dead letters: a table, or one JSON object per line with --json.
    List(ListDeadLetters),
    /// Re-produce selected dead letters, unchanged, to the delivery topic so they are delivered
    /// again (same event id). Needs a selector or --all; a re-run skips what was replayed.
    Replay(ReplayDeadLetters),
    /// Delete the dead letters written before a time (Kafka DeleteRecords).
    Purge(PurgeDeadLetters),
}

/// Which dead letters a `dlq` command works on. Filters combine with AND; the values of one
/// repeated (or comma-separated) filter combine with OR.
#[derive(Debug, Clone, Default, Args)]
pub struct DlqFilter {
    /// Only these customers (the record key), comma-separated or repeated.
    #[arg(long, env = "HOOKLINE_DLQ_CUSTOMER", value_delimiter = ',')]
    pub customer: Vec<String>,

    /// Only these event ids, comma-separated or repeated.
    #[arg(long, env = "HOOKLINE_DLQ_EVENT_ID", value_delimiter = ',')]
    pub event_id: Vec<String>,

    /// Only these reasons (max_attempts, unknown_customer, ...), comma-separated or repeated.
    #[arg(long, env = "HOOKLINE_DLQ_REASON", value_delimiter = ',')]
    pub reason: Vec<String>,

    /// Only dead letters written at or after this time: RFC 3339 (2026-11-23T18:00:00Z, with an
    /// offset, or a date) or an age such as 2h, 30m, 7d.
    #[arg(long, env = "HOOKLINE_DLQ_SINCE", value_parser = dlq::parse_time)]
    pub since: Option<SystemTime>,

    /// Only dead letters written before this time (same forms as --since).
    #[arg(long, env = "HOOKLINE_DLQ_UNTIL", value_parser = dlq::parse_time)]
    pub until: Option<SystemTime>,

    /// At most this many dead letters, oldest first (for `replay`: this many produced by this run,
    /// those already replayed not counted, so it works as a batch size).
    #[arg(long, env = "HOOKLINE_DLQ_LIMIT", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
}

/// `dlq list [filters] [--json]`
#[derive(Debug, Clone, Args)]
pub struct ListDeadLetters {
    #[command(flatten)]
    pub filter: DlqFilter,

    /// One JSON object per line instead of a table (for scripts).
    #[arg(long, env = "HOOKLINE_OUTPUT_JSON")]
    pub json: bool,

    /// The replay state topic, to show which dead letters were replayed (see `dlq replay`).
    #[arg(long, env = "HOOKLINE_DLQ_REPLAY_STATE_TOPIC")]
    pub state_topic: Option<String>,
}

/// `dlq replay (filters | --all) [--dry-run]`
#[derive(Debug, Clone, Args)]
pub struct ReplayDeadLetters {
    #[command(flatten)]
    pub filter: DlqFilter,

    /// Replay every dead letter (required when no filter is given, so that a bare `replay`
    /// never re-sends a whole DLQ by accident).
    #[arg(long, env = "HOOKLINE_DLQ_REPLAY_ALL")]
    pub all: bool,

    /// Show what would be replayed; produce nothing.
    #[arg(long, env = "HOOKLINE_DRY_RUN")]
    pub dry_run: bool,

    /// Compacted topic recording which dead letters were replayed (default: the DLQ topic's
    /// name + `.replayed`); created on the first replay.
    #[arg(long, env = "HOOKLINE_DLQ_REPLAY_STATE_TOPIC")]
    pub state_topic: Option<String>,
}

/// `dlq purge --before TIME [--dry-run]`
#[derive(Debug, Clone, Args)]
pub struct PurgeDeadLetters {
    /// Delete the dead letters written before this time (same forms as --since: RFC 3339 or an
    /// age such as 30d).
    #[arg(long, env = "HOOKLINE_DLQ_PURGE_BEFORE", value_parser = dlq::parse_time)]
    pub before: SystemTime,

    /// Show what would be deleted; delete nothing.
    #[arg(long, env = "HOOKLINE_DRY_RUN")]
    pub dry_run: bool,
}

/// `hookline-setup keys ...`
#[derive(Debug, Clone, Subcommand)]
pub enum KeysCommand {
    /// Write a customer RSA key pair (the customer's side of encryption): `private.pem` (PKCS#8, mode 0600) and
    /// `public.pem` (SPKI, to upload).
    Generate(GenerateKeys),
    /// Print a new random master key (base64 of 32 bytes) for HOOKLINE_MASTER_KEY.
    MasterKey,
}

/// `keys generate [--bits 4096] --out DIR`
#[derive(Debug, Clone, Args)]
pub struct GenerateKeys {
    /// RSA modulus size: 2048, 3072 or 4096.
    #[arg(long, env = "HOOKLINE_KEY_BITS", default_value_t = 4096, value_parser = parse_bits)]
    pub bits: usize,
    /// Directory to write the key files to (created if missing; existing files are not replaced).
    #[arg(long, env = "HOOKLINE_KEY_OUT")]
    pub out: PathBuf,
}

fn parse_bits(raw: &str) -> Result<usize, String> {
    match raw.parse::<usize>() {
        Ok(bits @ (2048 | 3072 | 4096)) => Ok(bits),
        _ => Err(format!("`{raw}` is not one of 2048, 3072, 4096")),
    }
}

/// Runs one command, writing its report to `out` (errors are returned, not written).
pub async fn run<W: Write + Send>(cli: Cli, out: &mut W) -> Result<()> {
    let Cli { kafka, topics, timeout, master_key, network, schema_registry, command } = cli;
    let tenant_context = || -> Result<customers::Context<'_>> {
        Ok(customers::Context {
            kafka: &kafka,
            topics: &topics,
            master_key: &master_key,
            network: network.policy(),
            timeout,
            codec: Codec::new(&schema_registry)?,
        })
    };
    match command {
        Command::Topics(TopicsCommand::Create(create)) => topics::create(&kafka, &topics, &create, timeout, out).await,
        Command::Topics(TopicsCommand::Describe(group)) => {
            topics::describe(&kafka, &topics, &group.group, timeout, out).await
        }
        Command::Check(args) => check::run(&kafka, &topics, &schema_registry, &args, timeout, out).await,
        Command::Customers(command) => customers::run(&tenant_context()?, command, out).await,
        Command::Sources(command) => sources::run(&tenant_context()?, command, out).await,
        Command::Dlq(command) => dlq::run(&kafka, &topics, timeout, command, out).await,
        Command::Keys(KeysCommand::Generate(generate)) => {
            let (private, public) =
                keys::generate_key_pair(generate.bits, &generate.out).map_err(|e| Error::Keys(e.to_string()))?;
            writeln!(out, "wrote {} (keep it secret) and {} (upload it)", private.display(), public.display())?;
            Ok(())
        }
        Command::Schemas(command) => schemas::run(&topics, &schema_registry, command, timeout, out).await,
        Command::Deliveries(command) => deliveries::run(command, timeout, out).await,
        Command::Keys(KeysCommand::MasterKey) => {
            writeln!(out, "{}", MasterKey::generate().to_base64())?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_work_on_loopback() {
        let cli = Cli::try_parse_from(["hookline-setup", "topics", "create"]).unwrap();
        let Command::Topics(TopicsCommand::Create(create)) = cli.command else { panic!("wrong command") };
        assert_eq!((create.partitions, create.replication_factor), (6, 1));
        assert_eq!(cli.timeout, Duration::from_secs(15));
    }

    #[test]
    fn shared_flags_go_anywhere_and_events_split_on_commas() {
        let cli = Cli::try_parse_from([
            "hookline-setup",
            "customers",
            "add",
            "--id",
            "c1",
            "--brokers",
            "b:1",
            "--webhook-url",
            "http://127.0.0.1:9000/webhook",
            "--events",
            "a.b,c.d",
            "--timeout",
            "2s",
        ])
        .unwrap();
        assert_eq!(cli.kafka.brokers, "b:1");
        assert_eq!(cli.timeout, Duration::from_secs(2));
        let Command::Customers(CustomersCommand::Create(add)) = cli.command else { panic!("wrong command") };
        assert_eq!(add.events, ["a.b", "c.d"]);
    }

    #[test]
    fn source_schemes_are_checked_by_the_parser() {
        let cli = Cli::try_parse_from([
            "hookline-setup",
            "sources",
            "add",
            "--id",
            "github",
            "--scheme",
            "hub-signature-256",
            "--endpoint",
            "http://10.0.0.5/github",
        ])
        .unwrap();
        let Command::Sources(SourcesCommand::Add(add)) = cli.command else { panic!("wrong command") };
        assert_eq!(add.scheme, SignatureScheme::HubSignature256);
        assert!(add.secret.is_none());
        let error = Cli::try_parse_from([
            "hookline-setup",
            "sources",
            "add",
            "--id",
            "x",
            "--scheme",
            "md5",
            "--endpoint",
            "http://x/",
        ])
        .unwrap_err();
        assert_eq!(error.exit_code(), i32::from(EXIT_USAGE));
    }

    #[test]
    fn a_positional_url_is_not_the_schema_registry_url() {
        let cli = Cli::try_parse_from(["hookline-setup", "customers", "set-webhook", "c1", "http://x/hook"]).unwrap();
        assert_eq!(cli.schema_registry.url, None);
        let Command::Customers(CustomersCommand::SetWebhook(set)) = cli.command else { panic!("wrong command") };
        assert_eq!(set.url, "http://x/hook");
        let cli = Cli::try_parse_from([
            "hookline-setup",
            "schemas",
            "register",
            "--schema-registry-url",
            "http://r:8081",
            "--schema-registry-basic-auth",
            "key:secret",
        ])
        .unwrap();
        assert_eq!(cli.schema_registry.url.as_deref(), Some("http://r:8081"));
        assert_eq!(cli.schema_registry.basic_auth.map(|a| a.expose().to_owned()).as_deref(), Some("key:secret"));
    }

    #[test]
    fn zero_partitions_is_a_usage_error() {
        let error = Cli::try_parse_from(["hookline-setup", "topics", "create", "--partitions", "0"]).unwrap_err();
        assert_eq!(error.exit_code(), i32::from(EXIT_USAGE));
    }
}
