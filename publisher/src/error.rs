//! Errors of the publisher: start-up failures and the reasons a publish request is refused.
//!
//! One enum for both, so that a handler can use `?` on anything; [`crate::http`] maps each
//! variant to an HTTP status and a JSON body `{"error": "..."}`, and to a gRPC status code.

use std::net::SocketAddr;

/// Result alias used across `hookline-publisher`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the publisher.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request body is not JSON at all (400).
    #[error("malformed JSON: {0}")]
    MalformedJson(String),

    /// The body is JSON but not a valid publish request: a missing, unknown or ill-typed field,
    /// or a field value that fails validation (422). The message names the field.
    #[error("{0}")]
    InvalidRequest(String),

    /// The request is not `application/json` (415).
    #[error("expected a request with `Content-Type: application/json`")]
    UnsupportedMediaType,

    /// The body is larger than `--max-body-size` (413).
    #[error("request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },

    /// The event's encoded record (Avro envelope and payload) is larger than the record limit:
    /// librdkafka's `message.max.bytes` less room for Hookline's headers (413). Nothing is produced.
    #[error(
        "the event is too large: its record would be {size} bytes, more than the limit of {limit} bytes (the \
         producer's message.max.bytes less room for Hookline's headers); send a smaller payload"
    )]
    EventTooLarge { size: usize, limit: usize },

    /// The body could not be read (400): the client went away or sent a broken body.
    #[error("cannot read the request body: {0}")]
    BodyUnreadable(String),

    /// The request body did not arrive within `--http-request-timeout` (408).
    #[error("the request body did not arrive within {limit:?}")]
    BodyTimeout { limit: std::time::Duration },

    /// The request was not answered within `--http-request-timeout` (503): retry it, as after any
    /// 503 (an event may have been written meanwhile).
    #[error("the request was not answered within {limit:?}; retry")]
    AnswerTimeout { limit: std::time::Duration },

    /// `target` names a customer the directory does not know (404).
    #[error("unknown customer `{}`", hookline_core::quote::clip(.0))]
    UnknownCustomer(String),

    /// An incoming event names no inbound source (404).
    #[error("unknown inbound source `{}`", hookline_core::quote::clip(.0))]
    UnknownSource(String),

    /// `POST /inbound/{source}`: the sender's signature is missing, malformed or wrong (401).
    #[error("{0}")]
    BadSignature(String),

    /// `POST /inbound/{source}`: the signed timestamp is outside the tolerance (401).
    #[error("the `webhook-timestamp` is missing, malformed or more than 5 minutes from now")]
    StaleSignature,

    /// No credentials, or credentials nobody issued (401).
    #[error("{0}")]
    Unauthorized(&'static str),

    /// Valid credentials of a role this endpoint does not serve (403).
    #[error("{0}")]
    Forbidden(&'static str),

    /// A tenant operation was refused or failed: bad input (422, naming the field), unknown
    /// customer (404), existing customer (409), directory or broker unavailable (503).
    #[error("{0}")]
    Tenant(#[source] hookline_core::Error),

    /// The request conflicts with the customer's configuration (409).
    #[error("{0}")]
    Conflict(String),

    /// No route for this path (404).
    #[error("no route for {}", hookline_core::quote::clip(.0))]
    NoRoute(String),

    /// The path exists but not with this method (405).
    #[error("method {} is not allowed on {}", hookline_core::quote::clip(method), hookline_core::quote::clip(path))]
    MethodNotAllowed { method: String, path: String },

    /// Producing one or more copies of an event failed (503). This is a partial failure when
    /// `produced > 0`: those copies are on the topic and will be delivered. The contract is
    /// at-least-once: the caller retries the whole request, so those customers may receive the
    /// event twice (under a new event id, since every request gets its own).
    #[error(
        "could not publish event {event_id}: {failed} of {total} deliveries failed ({reason}); \
         {produced} were already written (and a failed one may have been), so a retry can deliver \
         some copies twice"
    )]
    Produce { event_id: String, total: usize, failed: usize, produced: usize, reason: String },

    /// The `Idempotency-Key` was used within the window for a request with another body (422).
    #[error(
        "this `Idempotency-Key` was used for a different request (type, payload or target) within the \
         idempotency window; use a new key for a new request"
    )]
    IdempotencyKeyReused,

    /// A request with the same `Idempotency-Key` is being published right now (409).
    #[error("a request with this `Idempotency-Key` is in progress; retry shortly")]
    IdempotencyInProgress,

    /// The idempotency records could not be read or written in time (503).
    #[error("idempotency records unavailable: {0}")]
    Idempotency(#[source] hookline_core::Error),

    /// The idempotency records could not be loaded at start-up.
    #[error("cannot load the idempotency records from `{topic}`: {source}")]
    IdempotencyLoad { topic: String, source: hookline_core::Error },

    /// The event could not be encoded: the schema registry is unreachable or does not hold the
    /// schema (503).
    #[error("cannot encode the event: {0}")]
    Encode(#[source] hookline_core::Error),

    /// The customer directory could not answer in time, or has stopped (503).
    #[error("customer directory unavailable: {0}")]
    Directory(#[source] hookline_core::Error),

    /// An event-type schema file cannot be used (a start-up error naming the file).
    #[error("event type schema {file}: {reason}")]
    EventSchema { file: String, reason: String },

    /// The schema registry could not be read: at start-up, or when a publish needed a schema
    /// it could not give while schemas are required (503).
    #[error("schema registry: {0}")]
    SchemaRegistry(String),

    /// The customer directory could not be loaded at start-up.
    #[error("cannot load the customer directory from `{topic}`: {source}")]
    DirectoryLoad { topic: String, source: hookline_core::Error },

    /// A start-up failure of the shared core: topic missing, directory load, client creation.
    #[error(transparent)]
    Core(#[from] hookline_core::Error),

    /// Creating the Kafka producer failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),

    /// Registering the metrics failed.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),

    /// Binding the listen address failed.
    #[error("cannot listen on {address}: {source}")]
    Bind { address: SocketAddr, source: std::io::Error },

    /// The HTTP server stopped with an I/O error.
    #[error("http server: {0}")]
    Serve(#[source] std::io::Error),

    /// The gRPC server could not be built or stopped with an error.
    #[error("grpc server: {0}")]
    Grpc(String),

    /// A bug: work that should not fail did (500).
    #[error("internal error: {0}")]
    Internal(String),
}
