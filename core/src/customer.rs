//! A customer's delivery configuration, as stored (JSON) in the compacted customers topic under
//! the customer id. Unknown fields are ignored when reading so that newer writers do not break
//! older readers.

use serde::{Deserialize, Serialize};
use url::Url;

use crate::{Error, Result};

/// Longest customer id accepted; ids are Kafka keys and appear in logs and metrics.
pub const MAX_ID_LEN: usize = 128;
/// Longest event type accepted.
pub const MAX_EVENT_TYPE_LEN: usize = 255;
/// Subscribing to this event type means "every event type".
pub const ALL_EVENTS: &str = "*";

/// A customer's delivery configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub id: String,
    /// Where events are POSTed. `None` until the customer configures one; deliveries to a customer
    /// without a URL are dead-lettered.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Event types the customer receives when an event is fanned out (`*` = all).
    #[serde(default)]
    pub events: Vec<String>,
}

impl Customer {
    /// A validated customer.
    pub fn new(id: &str, webhook_url: &str, events: Vec<String>) -> Result<Self> {
        validate_id(id)?;
        let url = validate_webhook_url(webhook_url)?;
        for event in &events {
            validate_event_type(event)?;
        }
        Ok(Self { id: id.to_owned(), webhook_url: Some(url.to_string()), events })
    }

    /// Whether a fanned-out event of this type goes to this customer.
    pub fn subscribes_to(&self, event_type: &str) -> bool {
        self.events.iter().any(|e| e == event_type || e == ALL_EVENTS)
    }

    /// Encodes the record value for the customers topic.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes a record value from the customers topic; the key must match the id inside.
    pub fn from_record(key: &str, value: &[u8]) -> Result<Self> {
        let customer: Customer = serde_json::from_slice(value)
            .map_err(|e| Error::InvalidCustomer { key: key.to_owned(), reason: e.to_string() })?;
        if customer.id != key {
            return Err(Error::InvalidCustomer {
                key: key.to_owned(),
                reason: format!("record id `{}` does not match its key", customer.id),
            });
        }
        Ok(customer)
    }
}

/// Checks a customer id: 1..=128 characters of `A-Z a-z 0-9 . _ - :`.
pub fn validate_id(id: &str) -> Result<()> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':');
    if id.is_empty() || id.len() > MAX_ID_LEN || !id.chars().all(ok_char) {
        return Err(Error::Invalid {
            field: "id",
            reason: format!("`{id}` must be 1 to {MAX_ID_LEN} characters of A-Z, a-z, 0-9, '.', '_', '-', ':'"),
        });
    }
    Ok(())
}

/// Checks an event type: 1..=255 characters of `A-Z a-z 0-9 . _ - :`, or `*`.
pub fn validate_event_type(event_type: &str) -> Result<()> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':');
    if event_type == ALL_EVENTS {
        return Ok(());
    }
    if event_type.is_empty() || event_type.len() > MAX_EVENT_TYPE_LEN || !event_type.chars().all(ok_char) {
        return Err(Error::Invalid {
            field: "type",
            reason: format!(
                "`{event_type}` must be 1 to {MAX_EVENT_TYPE_LEN} characters of A-Z, a-z, 0-9, '.', '_', '-', ':'"
            ),
        });
    }
    Ok(())
}

/// Checks a webhook URL: absolute `http`/`https` with a host and no credentials.
pub fn validate_webhook_url(raw: &str) -> Result<Url> {
    let invalid = |reason: String| Error::Invalid { field: "webhook_url", reason };
    let url = Url::parse(raw).map_err(|e| invalid(format!("`{raw}` is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!("scheme `{}` is not http or https", url.scheme())));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("the URL has no host".to_owned()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("credentials in the URL are not allowed".to_owned()));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_inputs() {
        assert!(Customer::new("customer-1", "http://127.0.0.1:9000/webhook", vec!["a.b".into()]).is_ok());
        assert!(Customer::new("", "http://x/", vec![]).is_err());
        assert!(Customer::new("bad id", "http://x/", vec![]).is_err());
        assert!(Customer::new(&"x".repeat(129), "http://x/", vec![]).is_err());
        assert!(Customer::new("c", "ftp://x/", vec![]).is_err());
        assert!(Customer::new("c", "not a url", vec![]).is_err());
        assert!(Customer::new("c", "http://user:pw@x/", vec![]).is_err());
        assert!(Customer::new("c", "http://x/", vec!["bad type".into()]).is_err());
    }

    #[test]
    fn subscriptions_match_exactly_or_by_wildcard() {
        let c = Customer::new("c", "http://x/", vec!["order.created".into()]).unwrap();
        assert!(c.subscribes_to("order.created"));
        assert!(!c.subscribes_to("order.deleted"));
        let all = Customer::new("c", "http://x/", vec!["*".into()]).unwrap();
        assert!(all.subscribes_to("anything"));
    }

    #[test]
    fn record_key_must_match_id() {
        let c = Customer::new("c1", "http://x/", vec![]).unwrap();
        assert_eq!(Customer::from_record("c1", &c.to_bytes()).unwrap(), c);
        assert!(Customer::from_record("c2", &c.to_bytes()).is_err());
        assert!(Customer::from_record("c1", b"{").is_err());
        // Fields added by newer versions are ignored.
        let newer = br#"{"id":"c1","webhook_url":"http://x/","events":[],"public_key":"..."}"#;
        assert_eq!(Customer::from_record("c1", newer).unwrap().id, "c1");
    }
}
