//! `hookline-setup`, the operator's CLI: creates and checks Hookline's three topics and manages
//! the customer directory (the compacted customers topic).
//!
//! Everything is a library call so that tests and the in-process demo can run a command without
//! spawning the binary: parse a [`Cli`] (or build one with `Cli::try_parse_from`), call [`run`]
//! with any writer for the report, and map an error to the process exit code with
//! [`Error::exit_code`]: 2 for bad input (as clap does for an unparsable command line), 1 for an
//! operational failure.
//!
//! Nothing here alters or deletes an existing topic: a topic laid out differently from what
//! `topics create` asks for is reported, and the operator decides.
//!
//! # Layout
//! - [`Cli`] and its subcommands: the command line (flags also come from the environment).
//! - [`run`]: executes one command, writing its report to a writer.
//! - `topics`: `topics create` / `topics describe`.
//! - `customers`: `customers add` / `list` / `remove`.
//! - `broker`: the reachability probe and timeouts that bound every Kafka call by `--timeout`.
//! - [`error`]: this crate's error type and exit codes.

mod broker;
mod customers;
pub mod error;
mod topics;

use std::io::Write;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use hookline_core::config::{KafkaArgs, TopicArgs, parse_duration};

pub use error::{EXIT_FAILURE, EXIT_USAGE, Error, Result};

/// Hookline operations: topics and customers.
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

    #[command(subcommand)]
    pub command: Command,
}

/// What to manage.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Create or inspect the delivery, dead-letter and customers topics.
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// Add, list or remove customers in the customer directory.
    #[command(subcommand)]
    Customers(CustomersCommand),
}

/// `hookline-setup topics ...`
#[derive(Debug, Clone, Subcommand)]
pub enum TopicsCommand {
    /// Create the three topics if missing (idempotent); report existing ones that differ.
    Create(CreateTopics),
    /// Show each topic's partitions with their low and high watermarks.
    Describe,
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
    /// Add a customer, or replace the configuration of an existing one.
    Add(AddCustomer),
    /// List every customer.
    List(ListCustomers),
    /// Remove a customer (its later events are dead-lettered).
    Remove(RemoveCustomer),
}

/// A customer to write.
#[derive(Debug, Clone, Args)]
pub struct AddCustomer {
    /// Customer id: 1 to 128 characters of A-Z, a-z, 0-9, '.', '_', '-', ':'.
    #[arg(long, env = "HOOKLINE_CUSTOMER_ID")]
    pub id: String,

    /// Where the customer's events are POSTed (absolute http or https URL).
    #[arg(long, env = "HOOKLINE_CUSTOMER_WEBHOOK_URL")]
    pub webhook_url: String,

    /// Event types the customer receives, comma-separated; `*` means all.
    #[arg(long, env = "HOOKLINE_CUSTOMER_EVENTS", value_delimiter = ',', required = true)]
    pub events: Vec<String>,
}

/// How to list customers.
#[derive(Debug, Clone, Args)]
pub struct ListCustomers {
    /// One JSON object per line instead of a table (for scripts).
    #[arg(long, env = "HOOKLINE_CUSTOMERS_JSON")]
    pub json: bool,
}

/// A customer to remove.
#[derive(Debug, Clone, Args)]
pub struct RemoveCustomer {
    /// Id of the customer to remove.
    pub id: String,
}

/// Runs one command, writing its report to `out` (errors are returned, not written).
pub async fn run<W: Write + Send>(cli: Cli, out: &mut W) -> Result<()> {
    let Cli { kafka, topics, timeout, command } = cli;
    match command {
        Command::Topics(TopicsCommand::Create(create)) => topics::create(&kafka, &topics, &create, timeout, out).await,
        Command::Topics(TopicsCommand::Describe) => topics::describe(&kafka, &topics, timeout, out).await,
        Command::Customers(CustomersCommand::Add(add)) => customers::add(&kafka, &topics, &add, timeout, out).await,
        Command::Customers(CustomersCommand::List(list)) => customers::list(&kafka, &topics, &list, timeout, out).await,
        Command::Customers(CustomersCommand::Remove(remove)) => {
            customers::remove(&kafka, &topics, &remove, timeout, out).await
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
        let Command::Customers(CustomersCommand::Add(add)) = cli.command else { panic!("wrong command") };
        assert_eq!(add.events, ["a.b", "c.d"]);
    }

    #[test]
    fn zero_partitions_is_a_usage_error() {
        let error = Cli::try_parse_from(["hookline-setup", "topics", "create", "--partitions", "0"]).unwrap_err();
        assert_eq!(error.exit_code(), i32::from(EXIT_USAGE));
    }
}
