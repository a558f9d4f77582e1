//! Credentials for tests: a fixed master key (test-only; never use it anywhere else), the
//! loopback allow-list the SSRF guard needs for `127.0.0.1` endpoints, and customers that carry
//! a signing secret (every delivery is signed, so a customer without one is dead-lettered).

use hookline_core::customer::Customer;
use hookline_core::netguard::NetworkArgs;
use hookline_core::secrets::{MasterKey, MasterKeyArgs};
use hookline_wire::signing::SigningSecret;

/// Base64 of the tests' master key (32 bytes of ASCII text; public, so only for tests).
pub const TEST_MASTER_KEY: &str = "aG9va2xpbmUtdGVzdC1tYXN0ZXIta2V5LTMyYnl0ZXM=";

/// Networks tests deliver to despite the SSRF guard, as `HOOKLINE_ALLOW_NETWORKS` takes them.
pub const LOOPBACK_NETWORKS: &str = "127.0.0.0/8,::1/128";

/// The tests' master key.
pub fn master_key() -> MasterKey {
    MasterKey::from_base64(TEST_MASTER_KEY).expect("test master key")
}

/// Master key arguments carrying [`TEST_MASTER_KEY`].
pub fn master_key_args() -> MasterKeyArgs {
    MasterKeyArgs::with_key(&master_key())
}

/// SSRF guard arguments allowing loopback only.
pub fn loopback_network() -> NetworkArgs {
    NetworkArgs {
        allow_networks: LOOPBACK_NETWORKS
            .split(',')
            .map(|network| network.parse().expect("loopback network"))
            .collect(),
    }
}

/// A customer subscribed to `events` at `url`, with a signing secret sealed under
/// [`master_key`]; the plaintext secret is returned for verifying what it receives.
pub fn signed_customer(id: &str, url: &str, events: &[&str]) -> (Customer, SigningSecret) {
    let mut customer =
        Customer::new(id, url, events.iter().map(|e| (*e).to_owned()).collect()).expect("valid test customer");
    let (secret, _) = customer.rotate_signing_secret(&master_key(), std::time::Duration::ZERO);
    (customer, secret)
}
