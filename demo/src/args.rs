//! Command-line and environment settings of `hookline-demo`.
//!
//! Every flag has a `HOOKLINE_DEMO_*` variable of its own, so that a `KAFKA_BROKERS` meant for
//! the real binaries never turns the self-contained demo into one against a real cluster.

use std::time::Duration;

use clap::Parser;
use hookline_core::config::{KafkaArgs, parse_duration, parse_key_value};

/// Runs Hookline end to end in one process and checks that every delivery is accounted for.
#[derive(Debug, Clone, Parser)]
#[command(name = "hookline-demo", version, about)]
pub struct Args {
    /// Events to publish. Most are fanned out to every subscribed customer; one in twenty is
    /// targeted at a single customer.
    #[arg(long, env = "HOOKLINE_DEMO_EVENTS", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub events: u32,

    /// Consumers in the delivery group (they share the delivery topic's partitions).
    #[arg(long, env = "HOOKLINE_DEMO_CONSUMERS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=32))]
    pub consumers: u32,

    /// Partitions of the delivery topic and of the DLQ.
    #[arg(long, env = "HOOKLINE_DEMO_PARTITIONS", default_value_t = 6, value_parser = clap::value_parser!(i32).range(1..=64))]
    pub partitions: i32,

    /// Kafka bootstrap servers to run against instead of the in-process mock cluster. The demo
    /// then creates its topics under a unique `hookline-demo-…` prefix and leaves them behind.
    #[arg(long, env = "HOOKLINE_DEMO_BROKERS")]
    pub brokers: Option<String>,

    /// Extra librdkafka property KEY=VALUE for every client (SASL, SSL... with `--brokers`).
    /// Repeatable; in the environment, separate several with `;`.
    #[arg(
        long = "kafka-property",
        env = "HOOKLINE_DEMO_KAFKA_PROPERTIES",
        value_name = "KEY=VALUE",
        value_parser = parse_key_value,
        value_delimiter = ';'
    )]
    pub kafka_properties: Vec<(String, String)>,

    /// Give up (and exit 1) if some delivery is still unaccounted for this long after publishing
    /// started.
    #[arg(long, env = "HOOKLINE_DEMO_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Once the deliveries are accounted for, print a customer portal link for a customer whose
    /// endpoint failed, and keep everything running until Ctrl-C, to click through the portal.
    #[arg(long, env = "HOOKLINE_DEMO_SERVE")]
    pub serve: bool,
}

impl Args {
    /// The defaults, with `events` events (for tests).
    pub fn with_events(events: u32) -> Self {
        Self {
            events,
            consumers: 3,
            partitions: 6,
            brokers: None,
            kafka_properties: Vec::new(),
            timeout: Duration::from_secs(120),
            serve: false,
        }
    }

    /// Client settings for `bootstrap`, with the pass-through properties.
    pub(crate) fn kafka(&self, bootstrap: &str) -> KafkaArgs {
        let mut kafka = KafkaArgs::new(bootstrap);
        kafka.kafka_properties.extend(self.kafka_properties.iter().cloned());
        kafka
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_with_events() {
        let parsed = Args::try_parse_from(["hookline-demo"]).unwrap();
        let built = Args::with_events(200);
        assert_eq!(
            (parsed.events, parsed.consumers, parsed.partitions, parsed.brokers, parsed.timeout),
            (built.events, built.consumers, built.partitions, built.brokers, built.timeout)
        );
    }

    #[test]
    fn flags_parse_and_bad_values_are_refused() {
        let parsed = Args::try_parse_from([
            "hookline-demo",
            "--events",
            "40",
            "--consumers",
            "2",
            "--brokers",
            "k:9092",
            "--kafka-property",
            "security.protocol=SSL",
            "--timeout",
            "30s",
        ])
        .unwrap();
        assert_eq!((parsed.events, parsed.consumers), (40, 2));
        assert_eq!(parsed.brokers.as_deref(), Some("k:9092"));
        assert_eq!(parsed.timeout, Duration::from_secs(30));
        let kafka = parsed.kafka("k:9092");
        assert_eq!(kafka.kafka_properties, vec![("security.protocol".into(), "SSL".into())]);

        assert!(Args::try_parse_from(["hookline-demo", "--events", "0"]).is_err());
        assert!(Args::try_parse_from(["hookline-demo", "--consumers", "0"]).is_err());
        assert!(Args::try_parse_from(["hookline-demo", "--timeout", "soon"]).is_err());
    }
}
