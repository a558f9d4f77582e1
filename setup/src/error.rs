//! Errors of the setup CLI, and the exit code each one maps to.

use std::time::Duration;

/// Result alias used across `hookline-setup`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Exit code for an operational failure (broker unreachable, topic missing or different).
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for bad input; the same code clap uses for a command line it cannot parse.
pub const EXIT_USAGE: u8 = 2;

/// Everything that can make a setup command fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] hookline_core::Error),

    /// No broker answered: `reason` says whether they refused (failed fast) or stayed silent
    /// (the whole `--timeout`).
    #[error("cannot reach Kafka at {brokers}: {reason}; {hint}", hint = hookline_core::error::BROKERS_HINT)]
    Unreachable { brokers: String, reason: String },

    #[error("timed out after {0:?} waiting for {1}; is the broker overloaded? raise --timeout to wait longer")]
    Timeout(Duration, &'static str),

    #[error(
        "topic(s) {} already exist with a different layout; Hookline never alters or deletes topics: either run again with \
         flags matching the existing topics, or change/recreate the topics with your Kafka tooling \
         (adding partitions re-maps customer ids to partitions, so drain the consumers first)",
        .0.join(", ")
    )]
    TopicsDiffer(Vec<String>),

    #[error("missing topic(s): {}; create them with `hookline-setup topics create`", .0.join(", "))]
    MissingTopics(Vec<String>),

    /// `check` found something wrong; its report says what and what to do.
    #[error("{} check(s) failed: {}; see the FAIL lines above for what to do", .0.len(), .0.join(", "))]
    ChecksFailed(Vec<String>),

    #[error(
        "no schema registry given: pass --schema-registry-url (or set SCHEMA_REGISTRY_URL), e.g. \
         --schema-registry-url http://127.0.0.1:8081"
    )]
    NoSchemaRegistry,

    #[error("subject `{subject}`: {source}")]
    Schema { subject: String, source: hookline_core::Error },

    /// A command line that parses but asks for something impossible; names the flag.
    #[error("{0}")]
    Usage(String),

    /// A replay stopped part-way; a re-run replays the rest (what was replayed is skipped).
    #[error(
        "replayed {replayed} dead letter(s), then failed: {reason}; run the same command again to replay the rest \
         (dead letters already replayed are skipped)"
    )]
    Replay { replayed: usize, reason: String },

    /// The broker did not delete the records `dlq purge` asked it to.
    #[error(
        "the broker did not delete dead letters from {topic}: {reason}. Some brokers do not implement Kafka's \
         DeleteRecords (tansu 0.6 does not); there, bound the DLQ with its retention.ms instead"
    )]
    Purge { topic: String, reason: String },

    /// `customers import` refused some lines for bad input; the others were imported.
    #[error(
        "{refused} of {lines} customer line(s) refused (see the report); fix them and run the same import again: \
         the customers already created are skipped"
    )]
    ImportRefused { refused: usize, lines: usize },

    /// `customers import` stopped part-way.
    #[error(
        "the import stopped after creating {created} customer(s) (their credentials are in {out}): {reason}; run the \
         same import again to import the rest: the customers already created are skipped"
    )]
    Import { created: usize, out: String, reason: String },

    #[error("cannot generate keys: {0}")]
    Keys(String),
    /// The publisher's admin API could not be reached or failed (`deliveries`).
    #[error("{0}")]
    Api(String),

    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),

    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

impl Error {
    /// The process exit code for this error: [`EXIT_USAGE`] for bad input, else [`EXIT_FAILURE`].
    pub fn exit_code(&self) -> u8 {
        match self {
            // `ensure_topics` reports a broker refusing a creation as `Invalid { field: "topic" }`;
            // that is the broker's verdict, not the operator's typo.
            Self::Core(hookline_core::Error::Invalid { field, .. }) if *field != "topic" => EXIT_USAGE,
            Self::NoSchemaRegistry | Self::Usage(_) | Self::ImportRefused { .. } => EXIT_USAGE,
            _ => EXIT_FAILURE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_errors_are_usage_errors() {
        let invalid = hookline_core::customer::validate_id("bad id").unwrap_err();
        assert_eq!(Error::from(invalid).exit_code(), EXIT_USAGE);
        let refused = hookline_core::Error::Invalid { field: "topic", reason: "cannot create".into() };
        assert_eq!(Error::from(refused).exit_code(), EXIT_FAILURE);
        assert_eq!(Error::MissingTopics(vec!["t".into()]).exit_code(), EXIT_FAILURE);
        assert_eq!(Error::ChecksFailed(vec!["broker".into()]).exit_code(), EXIT_FAILURE);
        assert_eq!(Error::Usage("--all".into()).exit_code(), EXIT_USAGE);
        assert_eq!(Error::ImportRefused { refused: 1, lines: 2 }.exit_code(), EXIT_USAGE);
        let stopped = Error::Import { created: 1, out: "creds.jsonl".into(), reason: "broker gone".into() };
        assert_eq!(stopped.exit_code(), EXIT_FAILURE);
        assert_eq!(Error::Purge { topic: "t".into(), reason: "r".into() }.exit_code(), EXIT_FAILURE);
        assert_eq!(Error::from(hookline_core::Error::UnknownCustomer("c".into())).exit_code(), EXIT_FAILURE);
    }
}
