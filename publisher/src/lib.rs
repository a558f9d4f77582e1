//! Hookline's publisher: an HTTP front door that turns one published event into one delivery
//! record per receiving customer on the delivery topic.
//!
//! `POST /publish` takes `{"type": "...", "payload": <any JSON>, "target": "customer-id"?}`.
//! Without `target` the event is fanned out to every customer in the directory subscribed to
//! `type`; with it, to that customer only. A `payload` must match the schema of its `type`, if
//! the type has one ([`event_types`]). Every copy carries the same event id, is keyed by the
//! customer id (so one customer's events stay ordered on one partition), is encoded in Avro
//! (`hookline_core::codec`: single-object encoding, or the Confluent wire format with
//! `--schema-registry-url`) and is produced by one shared idempotent, `acks=all` producer. The
//! request is answered `202` only once the broker has acknowledged every copy, so an accepted
//! event is durable; a `503` means the caller must retry (at-least-once: some copies may already
//! have been written).
//!
//! The same publish path serves the gRPC event broker ([`grpc`], `hookline.v1.EventBroker` on
//! `--grpc-listen`, default port 9620), which runs beside the HTTP server, with the same credentials,
//! until the same shutdown.
//!
//! # Layout
//! The import graph runs one way, from the transports down to publishing; no module imports one
//! that imports it back.
//!
//! **Transports** (each parses its own input and takes only the state it uses):
//! - `http`: the axum router, every HTTP route assembled in one place with its layers, and the
//!   `POST /publish`, probe and `/metrics` handlers.
//! - `api`: the onboarding API under `/v1` (admin: customers; customer: its own key, webhook,
//!   subscriptions, signing secret, test event) and `GET /v1/event-types`.
//! - `inbound`: `POST /inbound/{source}`, inbound webhooks verified with the source's secret
//!   (Standard Webhooks or `X-Hub-Signature-256`) and queued for its internal endpoint.
//! - `deliveries`: the deliveries API (a customer's deliveries and their attempts, from the
//!   delivery log), its SQLite index (`deliveries::index`) and the follower that keeps the index
//!   current (`deliveries::follow`).
//! - `portal`: the customer portal page at `/portal` (embedded assets, security headers) and the
//!   admin's signed, expiring portal links.
//! - [`grpc`]: the gRPC event broker (`SendOutgoingEvent`, `HandleIncomingEvent`), health and
//!   reflection; the generated code in [`grpc::pb`].
//! - `openapi`: the OpenAPI document's root (title, security schemes, shared refusals) and
//!   `GET /openapi.json`; the routers add every route's path item as they register it
//!   (`utoipa_axum`), so the document is generated from the routes themselves.
//! - `server`: the HTTP server beneath the router (hyper connections with a header read
//!   timeout, the whole-request timeout layer, graceful drain).
//!
//! **What the transports share**:
//! - `publish`: publishing without a transport: the request, its direction, the field rules
//!   every transport applies, and the path from schema check through idempotency and recipients
//!   to the acknowledged copies.
//! - `auth`: bearer credentials (admin tokens, producer tokens, customer API keys) to roles, and
//!   the extractors that require one.
//! - `state`: what every group of routes' state shares (credentials, the body limit), which the
//!   extractors take from it.
//! - `body`: HTTP request bodies: bounded reads, JSON content types, parsing with errors that
//!   name the field.
//! - `answer`: how the JSON APIs (onboarding, deliveries) answer a handler's result, counted
//!   per operation and status.
//! - [`error`]: this crate's error type, and how each error is answered (HTTP status and JSON
//!   body, gRPC code, metrics outcome).
//!
//! **Beneath publishing**:
//! - `fanout`: writes an event's copies through the shared producer within bounds on the bytes
//!   in flight, per request and in total, so that a large fan-out cannot starve other requests.
//! - [`idempotency`]: `Idempotency-Key` handling over the idempotency topic, and its bounded view.
//! - [`event_types`]: event-type schemas (Avro, JSON Schema) from a directory and a Confluent
//!   Schema Registry, and payload validation.
//! - [`metrics`]: Prometheus counters, gauges and histogram served on `GET /metrics`.
//! - [`config`]: the command line / environment ([`Config`]), and the size bounds derived from
//!   it ([`Config::limits`]: the record limit from `message.max.bytes`, the body limit, the
//!   in-flight budgets).
//!
//! [`run`] / [`serve`] / [`serve_with_grpc`] (here): start-up, the state each transport gets, and
//! graceful shutdown.

mod answer;
mod api;
mod auth;
mod body;
pub mod config;
mod deliveries;
pub mod error;
pub mod event_types;
mod fanout;
pub mod grpc;
mod http;
pub mod idempotency;
mod inbound;
pub mod metrics;
mod openapi;
mod portal;
mod publish;
mod server;
mod state;

use std::sync::Arc;
use std::time::Duration;

use hookline_core::codec::{Codec, RecordType};
use hookline_core::config::SecretString;
use hookline_core::directory::Directory;
use hookline_core::notices::Notifier;
use hookline_core::secrets::TokenSet;
use hookline_core::tenants::Tenants;
use rdkafka::ClientConfig;
use rdkafka::producer::FutureProducer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use error::{Error, Result};

use crate::api::Onboarding;
use crate::auth::Authenticator;
use crate::body::BodyLimit;
use crate::deliveries::Deliveries;
use crate::deliveries::index::Index;
use crate::event_types::EventTypes;
use crate::grpc::BrokerState;
use crate::http::HttpState;
use crate::idempotency::Idempotency;
use crate::inbound::Inbound;
use crate::portal::Portal;
use crate::publish::Publisher;
use crate::state::Shared;

/// Time beyond the request's own deadline before another request may take over its claim of an
/// `Idempotency-Key`.
const CLAIM_LEASE_MARGIN: Duration = Duration::from_secs(5);
use crate::metrics::Metrics;

/// Binds `config.listen` and `config.grpc_listen` (unless `off`) and serves until `shutdown` is
/// cancelled (see [`serve_with_grpc`]).
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    let address = config.listen;
    let listener = TcpListener::bind(address).await.map_err(|source| Error::Bind { address, source })?;
    serve(config, listener, shutdown).await
}

/// Serves HTTP on `listener`, and gRPC on `config.grpc_listen` unless it is `off` (it is in
/// [`Config::new`]); see [`serve_with_grpc`].
pub async fn serve(config: Config, listener: TcpListener, shutdown: CancellationToken) -> Result<()> {
    let grpc = match config.grpc_listen.0 {
        Some(address) => Some(TcpListener::bind(address).await.map_err(|source| Error::Bind { address, source })?),
        None => None,
    };
    serve_with_grpc(config, listener, grpc, shutdown).await
}

/// Loads the customer directory, then serves the HTTP API on `listener` and, when given, the
/// gRPC event broker on `grpc`, until `shutdown` is cancelled: stops accepting, lets in-flight
/// requests finish, flushes the producer and returns. If either server fails, both stop.
///
/// Connections made while the directory loads wait in the listen backlog and are answered once
/// it has loaded. Returns `Ok(())` at once if `shutdown` fires during the load.
pub async fn serve_with_grpc(
    config: Config,
    listener: TcpListener,
    grpc: Option<TcpListener>,
    shutdown: CancellationToken,
) -> Result<()> {
    let address = listener.local_addr().map_err(Error::Serve)?;
    // Settings that cannot work are refused before anything connects (the binary checks them
    // first and exits 2; this covers embedders and tests).
    let limits = config.limits()?;
    let master_key = config.master_key.require()?;
    let admin_tokens = TokenSet::new(config.admin_tokens.iter().map(SecretString::expose));
    let producer_tokens = TokenSet::new(config.producer_tokens.iter().map(SecretString::expose));
    if admin_tokens.is_empty() {
        tracing::warn!("no admin tokens configured (HOOKLINE_ADMIN_TOKENS): the admin API refuses every request");
    }
    if producer_tokens.is_empty() {
        tracing::warn!("no producer tokens configured (HOOKLINE_PRODUCER_TOKENS): every publish is refused");
    }
    if config.http_request_timeout <= config.publish_deadline() {
        tracing::warn!(
            http_request_timeout = ?config.http_request_timeout,
            publish_deadline = ?config.publish_deadline(),
            "--http-request-timeout is not above --fanout-timeout (at least --produce-timeout) and its grace: \
             publishes the broker is slow to acknowledge are answered 503 by the request timeout rather than by \
             the produce deadline"
        );
    }
    let metrics = Metrics::new()?;
    // Schemas first: a bad schema file is reported before anything connects to Kafka.
    let event_types = tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        loaded = EventTypes::load(&config, metrics.clone()) => Arc::new(loaded?),
    };
    let schemas_stop = CancellationToken::new();
    let _stop_schemas = schemas_stop.clone().drop_guard();
    event_types.spawn_refresh(schemas_stop);

    let codec = Codec::new(&config.schema_registry)?;
    check_schemas(&codec, &config).await?;
    // Not a child of `shutdown`: in-flight requests may still need to catch the directory up
    // while the server drains, so it stops only when this function returns (drop guard).
    let directory_stop = CancellationToken::new();
    let _stop_directory = directory_stop.clone().drop_guard();
    let directory = tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        loaded = Directory::start(
            &config.kafka,
            &config.topics.customers,
            config.directory_load_timeout,
            directory_stop.clone(),
            codec.clone(),
        ) => loaded.map_err(|source| Error::DirectoryLoad {
            topic: config.topics.customers.clone(),
            source: hookline_core::kafka::name_brokers(source, &config.kafka),
        })?,
    };

    let producer: FutureProducer = producer_config(&config).create()?;
    let idempotency_settings = idempotency::Settings {
        window: config.idempotency_window,
        // A claim outlives the request that made it: until then it is not taken over.
        lease: config.publish_deadline() + CLAIM_LEASE_MARGIN,
        max_keys: config.idempotency_max_keys.get(),
        load_timeout: config.directory_load_timeout,
    };
    let idempotency = tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        loaded = Idempotency::start(
            &config.kafka,
            &config.topics.idempotency,
            producer.clone(),
            idempotency_settings,
            metrics.idempotency(),
            directory_stop.clone(),
        ) => loaded?,
    };
    export_catchups(&metrics, &directory, &idempotency)?;
    // An endpoint enabled again is announced to the operators subscribed to it.
    let counted = metrics.clone();
    let notifier =
        Notifier::new(producer.clone(), config.topics.deliveries.clone(), directory.clone(), config.produce_timeout)
            .observed(Arc::new(move |event, outcome| counted.notice(event, outcome)));
    let portal_signer = hookline_core::secrets::PortalSigner::new(&master_key);
    let tenants = Arc::new(
        Tenants::new(
            directory.clone(),
            producer.clone(),
            config.topics.customers.clone(),
            master_key,
            config.network.policy(),
            config.produce_timeout,
        )
        .with_notifier(notifier),
    );
    // The delivery log, folded into the index the deliveries API reads; followed on a thread of
    // its own until this function returns.
    let index = Index::open(config.delivery_log_dir.as_deref(), &config.topics.attempts)?;
    let log_stop = CancellationToken::new();
    let _stop_log = log_stop.clone().drop_guard();
    let log_counts = Arc::new(deliveries::follow::Counts::default());
    let log_follower = deliveries::follow::spawn(
        config.kafka.clone(),
        config.topics.attempts.clone(),
        index.clone(),
        config.delivery_log_retention,
        Arc::clone(&log_counts),
        log_stop.clone(),
    );
    export_log_counts(&metrics, &log_counts)?;
    let publisher = Arc::new(Publisher {
        producer,
        directory,
        topic: config.topics.deliveries.clone(),
        codec,
        record_limit: limits.record,
        fanout: fanout::Fanout::new(&config, &limits, metrics.clone()),
        metrics: metrics.clone(),
        idempotency,
        event_types: Arc::clone(&event_types),
    });
    let auth = Authenticator::new(admin_tokens, producer_tokens, Arc::clone(&tenants), portal_signer.clone());
    let body_limit = BodyLimit(limits.body);
    let shared = Shared { auth: auth.clone(), body_limit };
    let http_state = Arc::new(HttpState {
        publisher: Arc::clone(&publisher),
        shared: shared.clone(),
        metrics: metrics.clone(),
        request_timeout: config.http_request_timeout,
    });
    let onboarding = Arc::new(Onboarding {
        shared: shared.clone(),
        tenants: Arc::clone(&tenants),
        metrics: metrics.clone(),
        signing_secret_grace: config.signing_secret_grace,
        publisher: Arc::clone(&publisher),
        event_types,
    });
    let inbound = Arc::new(Inbound {
        publisher: Arc::clone(&publisher),
        tenants: Arc::clone(&tenants),
        body_limit,
        metrics: metrics.clone(),
    });
    let deliveries = Arc::new(Deliveries::new(
        shared.clone(),
        index,
        Arc::clone(&tenants),
        config.kafka.clone(),
        Arc::clone(&publisher),
    ));
    let portal = Arc::new(Portal {
        shared: shared.clone(),
        tenants: Arc::clone(&tenants),
        metrics: metrics.clone(),
        signer: portal_signer,
        public_url: config.public_url.clone(),
        default_ttl: config.portal_link_ttl.min(portal::MAX_LINK_TTL),
    });
    let broker = Arc::new(BrokerState {
        publisher: Arc::clone(&publisher),
        auth,
        metrics: metrics.clone(),
        // Messages are bounded like HTTP bodies (a payload travels as text in both).
        message_limit: limits.body.saturating_add(64 * 1024),
        timeout: config.http_request_timeout,
    });
    tracing::info!(
        %address,
        topic = %config.topics.deliveries,
        max_record_bytes = limits.record,
        max_body_bytes = limits.body,
        max_inflight_bytes = limits.inflight,
        max_request_inflight_bytes = limits.request_inflight,
        "publisher listening"
    );

    let router = http::router(http_state, onboarding, inbound, deliveries, portal)?;
    // Either server failing stops the other, so the process does not run half a publisher.
    let stop = shutdown.child_token();
    let http_server = async {
        let limits = server::Limits {
            header_read_timeout: config.http_header_read_timeout,
            max_connections: usize::try_from(config.http_max_connections).unwrap_or(usize::MAX),
        };
        server::serve(listener, router, limits, metrics.clone(), stop.clone()).await;
        stop.cancel();
    };
    let grpc_server = async {
        let Some(grpc) = grpc else { return Ok(()) };
        if let Ok(address) = grpc.local_addr() {
            tracing::info!(%address, "gRPC event broker listening");
        }
        let served = grpc::serve(broker, grpc, stop.clone()).await;
        stop.cancel();
        served
    };
    let ((), grpc_served) = tokio::join!(http_server, grpc_server);

    // Every answered request already waited for its copies; this catches records of requests
    // whose client went away before the answer. librdkafka blocks, so keep it off the runtime,
    // and drop the producer there too (its destructor may block as well).
    let flush_timeout = config.produce_timeout;
    let directory = publisher.directory.clone();
    let idempotency = publisher.idempotency.clone();
    let flushed = tokio::task::spawn_blocking(move || {
        let result = publisher.flush(flush_timeout);
        drop(publisher);
        result
    })
    .await;
    match flushed {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "producer flush failed; unacknowledged records may be lost"),
        Err(error) => tracing::warn!(%error, "producer flush task failed"),
    }
    directory.close().await;
    idempotency.close().await;
    log_stop.cancel();
    if tokio::task::spawn_blocking(move || log_follower.join()).await.is_err() {
        tracing::warn!("the delivery log follower did not stop cleanly");
    }
    grpc_served?;
    tracing::info!("publisher stopped");
    Ok(())
}

/// Exports how often the customer directory and the idempotency view caught up with their
/// topics (broker round trips, coalesced; see `hookline_core::follower`).
fn export_log_counts(metrics: &Metrics, counts: &Arc<deliveries::follow::Counts>) -> Result<()> {
    use std::sync::atomic::Ordering;
    let indexed = Arc::clone(counts);
    metrics.export_counter(
        "hookline_delivery_log_indexed_total",
        "Delivery log records read into the deliveries index.",
        move || indexed.indexed.load(Ordering::Relaxed),
    )?;
    let invalid = Arc::clone(counts);
    metrics.export_counter(
        "hookline_delivery_log_invalid_total",
        "Records on the delivery log's topic that are not attempt records (skipped).",
        move || invalid.invalid.load(Ordering::Relaxed),
    )?;
    Ok(())
}

fn export_catchups(metrics: &Metrics, directory: &Directory, idempotency: &Idempotency) -> Result<()> {
    let directory = directory.clone();
    metrics.export_counter(
        "hookline_directory_catchups_total",
        "Catch-ups of the customer directory with the customers topic (broker round trips, coalesced).",
        move || directory.catchups(),
    )?;
    metrics.export_counter(
        "hookline_idempotency_catchups_total",
        "Catch-ups of the idempotency view with the idempotency topic (broker round trips, coalesced).",
        idempotency.catchup_count(),
    )?;
    Ok(())
}

/// With a schema registry, checks at start-up that it holds the schemas this publisher writes,
/// so that a missing registration fails the start rather than every publish.
async fn check_schemas(codec: &Codec, config: &Config) -> Result<()> {
    let Some(url) = codec.registry_url() else { return Ok(()) };
    for (topic, record) in
        [(&config.topics.deliveries, RecordType::Delivery), (&config.topics.customers, RecordType::Customer)]
    {
        let subject = format!("{topic}-value");
        let id = codec.writer_id(&subject, record).await?;
        let registry = hookline_core::quote::url(url);
        tracing::info!(%registry, subject, id, "writing records in the Confluent wire format");
    }
    Ok(())
}

/// The shared producer's settings: Hookline's producer defaults, with `message.timeout.ms`
/// tied to `--produce-timeout` so that librdkafka gives up on a record when the request does,
/// unless the operator set a delivery timeout explicitly.
fn producer_config(config: &Config) -> ClientConfig {
    let client_id = hookline_core::kafka::client_id("hookline-publisher");
    let mut client = hookline_core::kafka::producer_config(&config.kafka, &client_id);
    let explicit = config
        .kafka
        .kafka_properties
        .iter()
        .any(|(key, _)| key == "message.timeout.ms" || key == "delivery.timeout.ms");
    if !explicit {
        client.set("message.timeout.ms", message_timeout_ms(config.produce_timeout).to_string());
    }
    client
}

/// `timeout` in librdkafka's range for `message.timeout.ms`: 0 would mean "never", so at least 1.
fn message_timeout_ms(timeout: Duration) -> u128 {
    timeout.as_millis().clamp(1, i32::MAX as u128)
}

#[cfg(test)]
mod tests {
    use hookline_core::config::{KafkaArgs, TopicArgs};

    use super::*;

    #[test]
    fn produce_timeout_drives_message_timeout_unless_set() {
        let mut config = Config::new(KafkaArgs::new("b:9092"), TopicArgs::default());
        config.produce_timeout = Duration::from_millis(2500);
        assert_eq!(producer_config(&config).get("message.timeout.ms"), Some("2500"));
        assert_eq!(producer_config(&config).get("enable.idempotence"), Some("true"));
        let client_id = hookline_core::kafka::client_id("hookline-publisher");
        assert_eq!(producer_config(&config).get("client.id"), Some(client_id.as_str()));

        config.kafka = KafkaArgs::new("b:9092").with_property("message.timeout.ms", "9000");
        assert_eq!(producer_config(&config).get("message.timeout.ms"), Some("9000"));

        assert_eq!(message_timeout_ms(Duration::ZERO), 1);
        assert_eq!(message_timeout_ms(Duration::from_secs(u64::MAX)), i32::MAX as u128);
    }
}
