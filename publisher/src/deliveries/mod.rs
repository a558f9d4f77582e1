//! The deliveries API: what was sent to a customer's endpoint, every attempt with its status and
//! error, from the delivery log (the attempts topic the consumers write) folded into an index
//! ([`index`]) that a follower keeps current ([`follow`]).
//!
//! Customer (`Authorization: Bearer <api key>`), its own deliveries only (no customer id in the
//! paths, so there is no other tenant's to name):
//! - `GET /v1/customer/deliveries?since=&until=&status=&type=&limit=&cursor=`: newest first;
//!   `since`/`until` RFC 3339 times, `status` one of `delivered`, `failing`, `parked`,
//!   `dead_lettered`; `limit` 1 to 100 (default 50); `cursor` the previous page's `next_cursor`.
//! - `GET /v1/customer/deliveries/{event_id}`: the delivery, its attempts, and its payload while
//!   the delivery topic (or the retry topic, once parked) still holds the record.
//!
//! - `GET /v1/customer/deliveries/stats`: the last 24 hours, per hour, `{"hours": [{"start"
//!   (Unix seconds), "delivered", "failed"}]}` (attempts that succeeded, and that failed).
//! - `POST /v1/customer/deliveries/{event_id}/resend`: the event once more, as it was (while the
//!   topic holds it), marked as a resend so that the consumer sends it although it was
//!   delivered before: `202 {"event_id", "resend_id"}`.
//! - `POST /v1/customer/recover {"since", "until"?}`: resends every dead-lettered delivery first
//!   attempted in that window, newest first, at most [`MAX_RECOVER`] per call:
//!   `202 {"resent", "unavailable", "next_until"}` (`next_until`: call again with it as `until`
//!   for the older ones).
//!
//! Admin: the same for any customer under `/v1/customers/{id}/deliveries` and
//! `/v1/customers/{id}/recover`.
//!
//! The log is eventually consistent: an attempt appears once the consumer's batch reached the
//! broker and the follower read it (typically well under a second).

pub(crate) mod follow;
pub(crate) mod index;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use hookline_core::attempts::{AttemptOutcome, AttemptRecord};
use hookline_core::config::KafkaArgs;
use hookline_core::customer::{Customer, validate_id};
use hookline_core::envelope::new_resend_id;
use hookline_core::kafka;
use hookline_core::parking::unix_ms;
use hookline_core::tenants::Tenants;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::answer::{counted, to_json};
use crate::auth::{Admin, AuthenticatedCustomer};
use crate::body::JsonBody;
use crate::error::ErrorBody;
use crate::metrics::Metrics;
use crate::openapi::{BadBody, CustomerId, EventId, NotFound, Refused};
use crate::publish::Publisher;
use crate::state::{RouteState, Shared};
use crate::{Error, Result};
use index::{Cursor, Delivery, Index, Query as Listing, State as DeliveryState};

/// The default and largest page.
const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 100;
/// Payload reads at once (each a short-lived reader of one record).
const MAX_PAYLOAD_READS: usize = 4;
/// How long reading one payload may take.
const PAYLOAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Most deliveries one recover call resends: bounded work per request.
pub(crate) const MAX_RECOVER: u32 = 100;

/// What the deliveries routes use.
pub(crate) struct Deliveries {
    /// Credentials and the body limit.
    pub shared: Shared,
    pub index: Index,
    pub tenants: Arc<Tenants>,
    pub metrics: Metrics,
    /// For reading payloads from the delivery (or retry) topic.
    pub kafka: KafkaArgs,
    /// Decodes the records read, and writes resends.
    pub publisher: Arc<Publisher>,
    pub payload_reads: Semaphore,
}

impl Deliveries {
    pub(crate) fn new(
        shared: Shared,
        index: Index,
        tenants: Arc<Tenants>,
        kafka: KafkaArgs,
        publisher: Arc<Publisher>,
    ) -> Self {
        let metrics = publisher.metrics.clone();
        let payload_reads = Semaphore::new(MAX_PAYLOAD_READS);
        Self { shared, index, tenants, metrics, kafka, publisher, payload_reads }
    }
}

impl std::fmt::Debug for Deliveries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliveries").finish_non_exhaustive()
    }
}

impl RouteState for Deliveries {
    fn shared(&self) -> &Shared {
        &self.shared
    }
}

/// The deliveries routes.
pub(crate) fn routes(state: Arc<Deliveries>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list_own))
        .routes(routes!(stats_own))
        .routes(routes!(show_own))
        .routes(routes!(list_any))
        .routes(routes!(show_any))
        .routes(routes!(resend_own))
        .routes(routes!(resend_any))
        .routes(routes!(recover_own))
        .routes(routes!(recover_any))
        .with_state(state)
}

/// The query parameters of a listing, as documented; [`parse_listing`] reads them (and refuses
/// any other, naming [`PARAMETERS`]).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct ListingParams {
    /// Deliveries first attempted at or after this time (RFC 3339).
    since: Option<String>,
    /// Deliveries first attempted before this time (RFC 3339).
    until: Option<String>,
    /// Only deliveries in this state.
    status: Option<DeliveryState>,
    /// Only deliveries of this event type.
    #[param(rename = "type")]
    event_type: Option<String>,
    /// The page's size, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// The previous page's `next_cursor`.
    cursor: Option<String>,
}

/// The query parameters a listing takes.
const PARAMETERS: [&str; 6] = ["since", "until", "status", "type", "limit", "cursor"];

/// One delivery: an event to one customer's endpoint, as its latest log record left it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct DeliveryView {
    event_id: String,
    customer_id: String,
    event_type: String,
    status: DeliveryState,
    /// Attempts made (requests sent).
    attempts: u32,
    /// RFC 3339.
    first_attempt_at: String,
    /// RFC 3339.
    last_attempt_at: String,
    /// The HTTP status of the latest attempt, if the endpoint answered.
    last_status: Option<u16>,
    /// Why the latest attempt failed, if it did.
    last_error: Option<String>,
}

/// One record of the delivery log about a delivery: an attempt, or a parking, dead-letter or
/// skip decision.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AttemptView {
    /// The attempt's number, from 1.
    attempt: u32,
    /// RFC 3339.
    at: String,
    outcome: AttemptOutcome,
    /// How long the request took (absent for decisions without a request).
    duration_ms: Option<u64>,
    /// The endpoint's HTTP status, if it answered.
    status: Option<u16>,
    /// The class of failure (`timeout`, `connect`, `http_status`, …).
    error_class: Option<String>,
    /// The failure, bounded.
    error: Option<String>,
    /// The start of the endpoint's answer, bounded.
    response: Option<String>,
    /// Why the record was parked, dead-lettered or skipped.
    reason: Option<String>,
}

/// A page of deliveries, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct DeliveryPage {
    deliveries: Vec<DeliveryView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    next_cursor: Option<String>,
}

/// One delivery, its attempts, and its payload while its topic holds it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct DeliveryDetail {
    delivery: DeliveryView,
    /// Oldest first.
    attempts: Vec<AttemptView>,
    /// Whether the topic still holds the record (it can be resent).
    payload_available: bool,
    /// The event's payload, while available.
    payload: Option<serde_json::Value>,
}

/// One hour of a customer's attempts.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Hour {
    /// The hour's start, Unix seconds.
    start: u64,
    /// Attempts that succeeded.
    delivered: u64,
    /// Attempts that failed.
    failed: u64,
}

/// The last 24 hours of a customer's attempts, oldest hour first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Stats {
    hours: Vec<Hour>,
}

/// `202` of a resend.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Resent {
    event_id: String,
    /// Marks the copy (the `hookline-resend-id` header) so that the consumer sends it although
    /// the event was delivered before.
    resend_id: String,
}

/// `202` of a recover.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Recovered {
    /// Deliveries resent.
    resent: u32,
    /// Deliveries whose record is past the topic's retention.
    unavailable: u32,
    /// More remain: call again with this as `until` for the older ones.
    next_until: Option<String>,
}

/// Runs `query` on the index off the async threads (SQLite blocks).
async fn on_index<T: Send + 'static>(
    state: &Deliveries,
    query: impl FnOnce(&Index) -> Result<T> + Send + 'static,
) -> Result<T> {
    let index = state.index.clone();
    tokio::task::spawn_blocking(move || query(&index)).await.map_err(|e| Error::Internal(e.to_string()))?
}

/// `customer_id`'s delivery of `event_id` and its log records, else [`Error::UnknownDelivery`].
async fn delivery_of(state: &Deliveries, customer_id: &str, event_id: &str) -> Result<(Delivery, Vec<AttemptRecord>)> {
    let (customer, event) = (customer_id.to_owned(), event_id.to_owned());
    on_index(state, move |index| index.get(&customer, &event))
        .await?
        .ok_or_else(|| Error::UnknownDelivery(event_id.to_owned()))
}

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Parses a listing's query parameters, naming the one at fault.
pub(crate) fn parse_listing(customer_id: &str, params: &HashMap<String, String>) -> Result<Listing> {
    let mut listing = Listing { customer_id: customer_id.to_owned(), limit: DEFAULT_LIMIT, ..Listing::default() };
    for (name, value) in params {
        let invalid = |why: &str| Error::InvalidRequest(format!("invalid `{name}`: {why}"));
        match name.as_str() {
            "since" | "until" => {
                let at = humantime::parse_rfc3339_weak(value)
                    .map_err(|_| invalid("an RFC 3339 time is expected, e.g. 2026-12-01T09:00:00Z"))?;
                let ms = Some(unix_ms(at));
                if name == "since" { listing.since_ms = ms } else { listing.until_ms = ms }
            }
            "status" => {
                let names = DeliveryState::ALL.map(DeliveryState::as_str).join(", ");
                listing.state = Some(
                    DeliveryState::ALL
                        .into_iter()
                        .find(|state| state.as_str() == value)
                        .ok_or_else(|| invalid(&format!("one of {names} is expected")))?,
                );
            }
            "type" => {
                hookline_core::customer::validate_event_type(value).map_err(|_| invalid("not an event type"))?;
                listing.event_type = Some(value.clone());
            }
            "limit" => {
                listing.limit = value
                    .parse()
                    .ok()
                    .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                    .ok_or_else(|| invalid(&format!("a number from 1 to {MAX_LIMIT} is expected")))?;
            }
            "cursor" => {
                listing.before = Some(Cursor::decode(value).ok_or_else(|| invalid("not a cursor this API gave"))?);
            }
            _ => {
                return Err(Error::InvalidRequest(format!(
                    "unknown query parameter `{}`; known: {}",
                    hookline_core::quote::clip(name),
                    PARAMETERS.join(", ")
                )));
            }
        }
    }
    Ok(listing)
}

fn delivery_view(delivery: &Delivery) -> DeliveryView {
    DeliveryView {
        event_id: delivery.event_id.clone(),
        customer_id: delivery.customer_id.clone(),
        event_type: delivery.event_type.clone(),
        status: delivery.state,
        attempts: delivery.attempts,
        first_attempt_at: rfc3339(delivery.first_at_ms),
        last_attempt_at: rfc3339(delivery.last_at_ms),
        last_status: delivery.last_status,
        last_error: delivery.last_error.clone(),
    }
}

fn attempt_view(record: &AttemptRecord) -> AttemptView {
    AttemptView {
        attempt: record.attempt,
        at: rfc3339(record.at_ms),
        outcome: record.outcome,
        duration_ms: record.duration_ms,
        status: record.status,
        error_class: record.error_class.clone(),
        error: record.error.clone(),
        response: record.response.clone(),
        reason: record.reason.clone(),
    }
}

async fn list(state: &Deliveries, customer_id: &str, params: &HashMap<String, String>) -> Result<serde_json::Value> {
    let listing = parse_listing(customer_id, params)?;
    let limit = listing.limit as usize;
    let page = on_index(state, move |index| index.list(&listing)).await?;
    let full = page.len() == limit;
    let next = if full {
        page.last().map(|last| Cursor { first_at_ms: last.first_at_ms, event_id: last.event_id.clone() }.encode())
    } else {
        None
    };
    Ok(to_json(DeliveryPage { deliveries: page.iter().map(delivery_view).collect(), next_cursor: next }))
}

async fn show(state: &Deliveries, customer_id: &str, event_id: &str) -> Result<serde_json::Value> {
    let (delivery, attempts) = delivery_of(state, customer_id, event_id).await?;
    let payload = read_delivery(state, &delivery)
        .await
        .and_then(|record| serde_json::from_str::<serde_json::Value>(record.payload.get()).ok());
    Ok(to_json(DeliveryDetail {
        delivery: delivery_view(&delivery),
        attempts: attempts.iter().map(attempt_view).collect(),
        payload_available: payload.is_some(),
        payload,
    }))
}

/// The delivery's record, read from where it lives, if the topic still holds it.
async fn read_delivery(state: &Deliveries, delivery: &Delivery) -> Option<hookline_core::envelope::EventRecord> {
    let _permit = state.payload_reads.acquire().await.ok()?;
    let (topic, partition, offset) = delivery.location.clone();
    let kafka = state.kafka.clone();
    let value = tokio::task::spawn_blocking(move || read_record(&kafka, &topic, partition, offset)).await.ok()??;
    let record = state.publisher.codec.decode_delivery(&value).await.ok()?;
    (record.event_id == delivery.event_id).then_some(record)
}

/// The value of the record at `offset`, unless the topic no longer holds it.
fn read_record(kafka_args: &KafkaArgs, topic: &str, partition: i32, offset: i64) -> Option<Vec<u8>> {
    let reader: BaseConsumer = kafka::reader(kafka_args, "hookline-publisher-payload").ok()?;
    let (low, high) = reader.fetch_watermarks(topic, partition, PAYLOAD_TIMEOUT).ok()?;
    if offset < low || offset >= high {
        return None;
    }
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, partition, Offset::Offset(offset)).ok()?;
    reader.assign(&list).ok()?;
    let until = std::time::Instant::now() + PAYLOAD_TIMEOUT;
    while std::time::Instant::now() < until {
        match reader.poll(Duration::from_millis(200)) {
            Some(Ok(message)) if message.offset() == offset => return message.payload().map(<[u8]>::to_vec),
            Some(Ok(message)) if message.offset() > offset => return None,
            _ => {}
        }
    }
    None
}

/// Resends one delivery of `customer_id`; the resend's id.
async fn resend(state: &Deliveries, customer: &Arc<Customer>, event_id: &str) -> Result<String> {
    let (delivery, _) = delivery_of(state, &customer.id, event_id).await?;
    resend_delivery(state, customer, &delivery).await
}

/// Writes `delivery` of `customer` again; the resend's id.
async fn resend_delivery(state: &Deliveries, customer: &Arc<Customer>, delivery: &Delivery) -> Result<String> {
    let Some(record) = read_delivery(state, delivery).await else {
        return Err(Error::Conflict(format!(
            "event {} is no longer on its topic (past its retention): it cannot be resent",
            delivery.event_id
        )));
    };
    let resend_id = new_resend_id();
    state.publisher.resend(record, Arc::clone(customer), &resend_id).await?;
    tracing::info!(event_id = %delivery.event_id, customer = %delivery.customer_id, %resend_id, "delivery resent");
    Ok(resend_id)
}

/// `POST .../recover` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RecoverBody {
    /// Resend the dead-lettered deliveries first attempted at or after this time (RFC 3339).
    since: String,
    /// … and before this one (RFC 3339; default: now).
    #[serde(default)]
    until: Option<String>,
}

/// Resends the dead-lettered deliveries of `customer_id` first attempted in the body's window.
async fn recover(state: &Deliveries, customer: &Arc<Customer>, body: RecoverBody) -> Result<serde_json::Value> {
    let mut params = HashMap::from([("since".to_owned(), body.since), ("status".to_owned(), "dead_lettered".into())]);
    if let Some(until) = body.until {
        params.insert("until".into(), until);
    }
    params.insert("limit".into(), MAX_RECOVER.to_string());
    let listing = parse_listing(&customer.id, &params)?;
    let page = on_index(state, move |index| index.list(&listing)).await?;
    let (mut resent, mut unavailable) = (0, 0);
    for delivery in &page {
        match resend_delivery(state, customer, delivery).await {
            Ok(_) => resent += 1,
            Err(Error::Conflict(_)) => unavailable += 1,
            Err(error) => return Err(error),
        }
    }
    let next_until =
        (page.len() == MAX_RECOVER as usize).then(|| page.last().map(|d| rfc3339(d.first_at_ms))).flatten();
    Ok(to_json(Recovered { resent, unavailable, next_until }))
}

/// Answers and counts one request: `200 OK` with its body.
fn answer(state: &Deliveries, operation: &'static str, result: Result<serde_json::Value>) -> Response {
    counted(&state.metrics, operation, result.map(|body| (StatusCode::OK, body)))
}

/// The customer a customer's request is about: itself.
fn own(auth: Result<AuthenticatedCustomer, Error>) -> Result<Arc<Customer>> {
    auth.map(|AuthenticatedCustomer(customer)| customer)
}

/// The customer an admin's request is about: the one its path names, which must exist (looked
/// up once per request: a look-up catches the directory up with the topic).
async fn named(state: &Deliveries, auth: Result<Admin, Error>, id: &str) -> Result<Arc<Customer>> {
    auth?;
    validate_id(id).map_err(|_| Error::UnknownCustomer(id.to_owned()))?;
    state.tenants.get(id).await.map_err(Error::Tenant)
}

/// Answers a resend.
fn resent(event_id: String, resend_id: String) -> serde_json::Value {
    to_json(Resent { event_id, resend_id })
}

/// The body of a recover request, read once the caller is known.
async fn recover_body(state: &Arc<Deliveries>, request: Request) -> Result<RecoverBody> {
    JsonBody::<RecoverBody>::from_request(request, state).await.map(|JsonBody(body)| body)
}

/// The last 24 hours of the customer's attempts, per hour (the portal's chart).
async fn stats(state: &Deliveries, customer_id: &str) -> Result<serde_json::Value> {
    const HOURS: usize = 24;
    let hour_ms = 3_600_000;
    let now = unix_ms(SystemTime::now());
    let from = (now / hour_ms + 1).saturating_sub(HOURS as u64) * hour_ms;
    let customer = customer_id.to_owned();
    let buckets = on_index(state, move |index| index.hourly(&customer, from, HOURS)).await?;
    let hours = buckets
        .iter()
        .zip(0..)
        .map(|(&(delivered, failed), n)| Hour { start: (from + n * hour_ms) / 1000, delivered, failed })
        .collect();
    Ok(to_json(Stats { hours }))
}

#[utoipa::path(get, path = "/v1/customer/deliveries/stats", tag = "deliveries", operation_id = "own_delivery_stats",
    security(("customer_api_key" = [])),
    responses((status = 200, description = "The last 24 hours of attempts, per hour", body = Stats), Refused))]
async fn stats_own(State(state): State<Arc<Deliveries>>, auth: Result<AuthenticatedCustomer, Error>) -> Response {
    let result = async { stats(&state, &own(auth)?.id).await }.await;
    answer(&state, "own_delivery_stats", result)
}

#[utoipa::path(get, path = "/v1/customer/deliveries", tag = "deliveries", operation_id = "list_own_deliveries",
    security(("customer_api_key" = [])), params(ListingParams),
    responses((status = 200, description = "The caller's deliveries, newest first", body = DeliveryPage),
        (status = 422, description = "A parameter is invalid or unknown (named)", body = ErrorBody), Refused))]
async fn list_own(
    State(state): State<Arc<Deliveries>>,
    auth: Result<AuthenticatedCustomer, Error>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let result = async { list(&state, &own(auth)?.id, &params).await }.await;
    answer(&state, "list_own_deliveries", result)
}

#[utoipa::path(get, path = "/v1/customer/deliveries/{event_id}", tag = "deliveries", operation_id = "show_own_delivery",
    security(("customer_api_key" = [])), params(EventId),
    responses((status = 200, description = "The delivery, its attempts and its payload", body = DeliveryDetail), Refused, NotFound))]
async fn show_own(
    State(state): State<Arc<Deliveries>>,
    auth: Result<AuthenticatedCustomer, Error>,
    Path(event_id): Path<String>,
) -> Response {
    let result = async { show(&state, &own(auth)?.id, &event_id).await }.await;
    answer(&state, "show_own_delivery", result)
}

#[utoipa::path(get, path = "/v1/customers/{id}/deliveries", tag = "deliveries", operation_id = "list_deliveries",
    security(("admin_token" = [])),
    params(CustomerId, ListingParams),
    responses((status = 200, description = "The customer's deliveries, newest first", body = DeliveryPage),
        (status = 422, description = "A parameter is invalid or unknown (named)", body = ErrorBody), Refused, NotFound))]
async fn list_any(
    State(state): State<Arc<Deliveries>>,
    auth: Result<Admin, Error>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let result = async { list(&state, &named(&state, auth, &id).await?.id, &params).await }.await;
    answer(&state, "list_deliveries", result)
}

#[utoipa::path(get, path = "/v1/customers/{id}/deliveries/{event_id}", tag = "deliveries", operation_id = "show_delivery",
    security(("admin_token" = [])),
    params(CustomerId, EventId),
    responses((status = 200, description = "The delivery, its attempts and its payload", body = DeliveryDetail), Refused, NotFound))]
async fn show_any(
    State(state): State<Arc<Deliveries>>,
    auth: Result<Admin, Error>,
    Path((id, event_id)): Path<(String, String)>,
) -> Response {
    let result = async { show(&state, &named(&state, auth, &id).await?.id, &event_id).await }.await;
    answer(&state, "show_delivery", result)
}

#[utoipa::path(post, path = "/v1/customer/deliveries/{event_id}/resend", tag = "deliveries", operation_id = "resend_own_delivery",
    security(("customer_api_key" = [])), params(EventId),
    responses((status = 202, description = "A copy marked as a resend is on the delivery topic", body = Resent),
        (status = 409, description = "The record is past its topic's retention", body = ErrorBody), Refused, NotFound))]
async fn resend_own(
    State(state): State<Arc<Deliveries>>,
    auth: Result<AuthenticatedCustomer, Error>,
    Path(event_id): Path<String>,
) -> Response {
    let result = async {
        let resend_id = resend(&state, &own(auth)?, &event_id).await?;
        Ok(resent(event_id, resend_id))
    }
    .await;
    accepted(&state, "resend_own_delivery", result)
}

#[utoipa::path(post, path = "/v1/customers/{id}/deliveries/{event_id}/resend", tag = "deliveries", operation_id = "resend_delivery",
    security(("admin_token" = [])),
    params(CustomerId, EventId),
    responses((status = 202, description = "A copy marked as a resend is on the delivery topic", body = Resent),
        (status = 409, description = "The record is past its topic's retention", body = ErrorBody), Refused, NotFound))]
async fn resend_any(
    State(state): State<Arc<Deliveries>>,
    auth: Result<Admin, Error>,
    Path((id, event_id)): Path<(String, String)>,
) -> Response {
    let result = async {
        let resend_id = resend(&state, &named(&state, auth, &id).await?, &event_id).await?;
        Ok(resent(event_id, resend_id))
    }
    .await;
    accepted(&state, "resend_delivery", result)
}

#[utoipa::path(post, path = "/v1/customer/recover", tag = "deliveries", operation_id = "recover_own",
    security(("customer_api_key" = [])),
    request_body(content = RecoverBody, content_type = "application/json"),
    responses((status = 202, description = "Up to 100 dead-lettered deliveries resent, newest first", body = Recovered), Refused, BadBody))]
async fn recover_own(
    State(state): State<Arc<Deliveries>>,
    auth: Result<AuthenticatedCustomer, Error>,
    request: Request,
) -> Response {
    let result = async {
        let customer = own(auth)?;
        recover(&state, &customer, recover_body(&state, request).await?).await
    }
    .await;
    accepted(&state, "recover_own", result)
}

#[utoipa::path(post, path = "/v1/customers/{id}/recover", tag = "deliveries", operation_id = "recover",
    security(("admin_token" = [])),
    params(CustomerId),
    request_body(content = RecoverBody, content_type = "application/json"),
    responses((status = 202, description = "Up to 100 dead-lettered deliveries resent, newest first", body = Recovered), Refused, BadBody, NotFound))]
async fn recover_any(
    State(state): State<Arc<Deliveries>>,
    auth: Result<Admin, Error>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let result = async {
        let customer = named(&state, auth, &id).await?;
        recover(&state, &customer, recover_body(&state, request).await?).await
    }
    .await;
    accepted(&state, "recover", result)
}

/// Answers and counts a resend or recover: `202 Accepted` (the copies are written, not yet
/// delivered).
fn accepted(state: &Deliveries, operation: &'static str, result: Result<serde_json::Value>) -> Response {
    counted(&state.metrics, operation, result.map(|body| (StatusCode::ACCEPTED, body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn invalid(pairs: &[(&str, &str)]) -> String {
        match parse_listing("acme", &params(pairs)) {
            Err(Error::InvalidRequest(message)) => message,
            other => panic!("expected InvalidRequest for {pairs:?}, got {other:?}"),
        }
    }

    #[test]
    fn listings_are_parsed_and_bad_parameters_named() {
        let listing = parse_listing(
            "acme",
            &params(&[
                ("since", "2026-12-01T00:00:00Z"),
                ("status", "dead_lettered"),
                ("type", "order.created"),
                ("limit", "10"),
            ]),
        )
        .unwrap();
        assert_eq!(listing.customer_id, "acme");
        assert_eq!(listing.since_ms, Some(1_796_083_200_000));
        assert_eq!(listing.state, Some(DeliveryState::DeadLettered));
        assert_eq!((listing.event_type.as_deref(), listing.limit), (Some("order.created"), 10));
        assert_eq!(parse_listing("acme", &HashMap::new()).unwrap().limit, DEFAULT_LIMIT);

        assert!(invalid(&[("since", "yesterday")]).starts_with("invalid `since`"));
        assert!(invalid(&[("status", "lost")]).contains("delivered, failing, parked, dead_lettered"));
        assert!(invalid(&[("limit", "0")]).starts_with("invalid `limit`"));
        assert!(invalid(&[("limit", "101")]).starts_with("invalid `limit`"));
        assert!(invalid(&[("cursor", "nope")]).starts_with("invalid `cursor`"));
        assert!(invalid(&[("type", "has space")]).starts_with("invalid `type`"));
        assert!(invalid(&[("customer", "other")]).contains("unknown query parameter `customer`"));
    }

    #[test]
    fn the_documented_parameters_are_those_parsed() {
        let documented: Vec<String> = ListingParams::into_params(|| None).into_iter().map(|p| p.name).collect();
        assert_eq!(documented, PARAMETERS);
        let example = [
            ("since", "2026-12-01T00:00:00Z"),
            ("until", "2026-12-02T00:00:00Z"),
            ("status", "failing"),
            ("type", "a.b"),
            ("limit", "5"),
            ("cursor", &Cursor { first_at_ms: 1, event_id: "e".into() }.encode()),
        ];
        assert_eq!(example.map(|(name, _)| name), PARAMETERS);
        parse_listing("acme", &params(&example)).unwrap();
    }
}
