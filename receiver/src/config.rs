//! The receiver's settings, as command-line flags (also read from the environment): how it
//! listens and misbehaves ([`ReceiverConfig`]), and how it authenticates deliveries
//! ([`VerifyConfig`]).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use hookline_wire::{PrivateKey, SignatureVerifier, SigningSecret};

use crate::{DeliveryVerifier, Error, Result};

/// How a receiver listens and how badly it behaves.
#[derive(Debug, Clone, Args)]
pub struct ReceiverConfig {
    /// Address to listen on.
    // Used by `Receiver::bind` and the binary; the functions taking a bound listener ignore it.
    #[arg(long, env = "HOOKLINE_RECEIVER_LISTEN", default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,

    /// Share of deliveries (0.0 to 1.0) answered 503 at random, to exercise the sender's retries.
    #[arg(long, env = "HOOKLINE_RECEIVER_FAIL_RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub fail_rate: f64,

    /// Answer 503 to the first N attempts of every webhook-id, then accept it.
    #[arg(long, env = "HOOKLINE_RECEIVER_FAIL_FIRST", default_value_t = 0)]
    pub fail_first: u32,

    /// Name shown in the logs, to tell several receivers apart.
    #[arg(long, env = "HOOKLINE_RECEIVER_NAME", default_value = "receiver")]
    pub name: String,

    /// Write each delivery accepted for the first time to stdout as one JSON line: `webhook_id`,
    /// `webhook_timestamp`, `verified` (signature checked), `encrypted` and `key_id` (the key that
    /// decrypted it), and `event`, the envelope (`type`, `timestamp`, `data`) as your code gets
    /// it, decrypted. Duplicates, simulated failures and refusals are not printed (they are
    /// logged). Logs stay on stderr; each line is flushed as it is written.
    #[arg(long, env = "HOOKLINE_RECEIVER_PRINT", value_parser = clap::builder::BoolishValueParser::new())]
    pub print: bool,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9000)),
            fail_rate: 0.0,
            fail_first: 0,
            name: "receiver".into(),
            print: false,
        }
    }
}

impl ReceiverConfig {
    /// Default settings with this name (builder style, for the demo and tests).
    pub fn named(name: impl Into<String>) -> Self {
        Self { name: name.into(), ..Self::default() }
    }

    /// Sets the random failure rate, clamped to 0.0..=1.0 (NaN counts as 0).
    pub fn with_fail_rate(mut self, rate: f64) -> Self {
        self.fail_rate = if rate.is_nan() { 0.0 } else { rate.clamp(0.0, 1.0) };
        self
    }

    /// Sets how many attempts of each webhook-id are refused before one is accepted.
    pub fn with_fail_first(mut self, attempts: u32) -> Self {
        self.fail_first = attempts;
        self
    }
}

/// How the receiver authenticates deliveries. Without a signing secret it accepts them
/// unverified, which is only fit for a demo.
#[derive(Clone, Args)]
pub struct VerifyConfig {
    /// Signing secret(s) (`whsec_...`) shown once when the customer was created
    /// (`hookline-setup customers create`, `POST /v1/customers`) or its secret rotated; several,
    /// comma-separated, while a secret is rotated. Prefer the environment variable: command lines
    /// are visible to other users of the machine.
    #[arg(
        long = "signing-secret",
        env = "HOOKLINE_RECEIVER_SIGNING_SECRET",
        value_name = "SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub signing_secrets: Vec<String>,

    /// PEM file with the RSA private key (PKCS#8 or PKCS#1) whose public key was uploaded for
    /// the endpoint; encrypted (`application/jose`) deliveries are decrypted with it.
    #[arg(long, env = "HOOKLINE_RECEIVER_PRIVATE_KEY", value_name = "FILE")]
    pub private_key: Option<PathBuf>,

    /// How far `webhook-timestamp` may be from this machine's clock, either way (e.g. `5m`,
    /// `90s`); older deliveries are refused as replays.
    #[arg(
        long,
        env = "HOOKLINE_RECEIVER_TIMESTAMP_TOLERANCE",
        default_value = "5m",
        value_parser = humantime::parse_duration
    )]
    pub timestamp_tolerance: Duration,

    /// Refuse deliveries whose body is not encrypted (needs --private-key).
    #[arg(long, env = "HOOKLINE_RECEIVER_REQUIRE_ENCRYPTION")]
    pub require_encryption: bool,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        Self {
            signing_secrets: Vec::new(),
            private_key: None,
            timestamp_tolerance: hookline_wire::signing::DEFAULT_TOLERANCE,
            require_encryption: false,
        }
    }
}

impl VerifyConfig {
    /// The verifier these settings describe; `None` when no signing secret is set (deliveries are
    /// then accepted unverified). Fails, with [`Error::exit_code`] 2, on a bad secret, an
    /// unreadable or invalid key, or a key (or required encryption) without a secret.
    pub fn verifier(&self) -> Result<Option<DeliveryVerifier>> {
        let secrets = self
            .signing_secrets
            .iter()
            .map(|text| text.trim())
            // Tolerates a trailing comma or an empty variable.
            .filter(|text| !text.is_empty())
            .enumerate()
            .map(|(index, text)| {
                SigningSecret::parse(text).map_err(|source| Error::SigningSecret { position: index + 1, source })
            })
            .collect::<Result<Vec<_>>>()?;
        if secrets.is_empty() {
            if self.private_key.is_some() {
                return Err(Error::NeedsSigningSecret("--private-key"));
            }
            if self.require_encryption {
                return Err(Error::NeedsSigningSecret("--require-encryption"));
            }
            return Ok(None);
        }
        let signatures = SignatureVerifier::new(secrets).with_tolerance(self.timestamp_tolerance);
        let mut verifier = DeliveryVerifier::new(signatures);
        if let Some(path) = &self.private_key {
            verifier = verifier.with_private_key(read_private_key(path)?);
        } else if self.require_encryption {
            return Err(Error::RequireEncryptionWithoutKey);
        }
        Ok(Some(verifier.require_encryption(self.require_encryption)))
    }
}

/// Secrets never appear in debug output (logs, panics).
impl fmt::Debug for VerifyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyConfig")
            .field("signing_secrets", &format_args!("<{} redacted>", self.signing_secrets.len()))
            .field("private_key", &self.private_key)
            .field("timestamp_tolerance", &self.timestamp_tolerance)
            .field("require_encryption", &self.require_encryption)
            .finish()
    }
}

fn read_private_key(path: &std::path::Path) -> Result<PrivateKey> {
    let pem = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).map_err(|source| Error::ReadPrivateKey { path: path.to_owned(), source })?,
    );
    PrivateKey::from_pem(&pem).map_err(|source| Error::PrivateKey { path: path.to_owned(), source })
}

/// Parses a failure rate in `0.0..=1.0`.
pub fn parse_rate(raw: &str) -> Result<f64, String> {
    match raw.trim().parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err(format!("`{raw}` is not a rate between 0.0 and 1.0")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_must_be_between_zero_and_one() {
        assert_eq!(parse_rate("0"), Ok(0.0));
        assert_eq!(parse_rate("0.25"), Ok(0.25));
        assert_eq!(parse_rate("1.0"), Ok(1.0));
        for bad in ["-0.1", "1.5", "NaN", "lots", ""] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
        assert_eq!(ReceiverConfig::default().with_fail_rate(f64::NAN).fail_rate, 0.0);
        assert_eq!(ReceiverConfig::default().with_fail_rate(7.0).fail_rate, 1.0);
    }

    #[test]
    fn flags_match_the_defaults() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            receiver: ReceiverConfig,
        }
        let parsed = Cli::try_parse_from(["x"]).unwrap().receiver;
        let default = ReceiverConfig::default();
        assert_eq!(
            (parsed.listen, parsed.fail_rate, parsed.fail_first, parsed.name, parsed.print),
            (default.listen, default.fail_rate, default.fail_first, default.name, default.print)
        );
        assert!(Cli::try_parse_from(["x", "--print"]).unwrap().receiver.print);
    }

    #[derive(clap::Parser)]
    struct VerifyCli {
        #[command(flatten)]
        verification: VerifyConfig,
    }

    fn verify_flags(args: &[&str]) -> VerifyConfig {
        use clap::Parser;
        VerifyCli::try_parse_from(std::iter::once("x").chain(args.iter().copied())).expect("flags parse").verification
    }

    #[test]
    fn verification_flags_default_to_unverified_with_a_five_minute_tolerance() {
        let parsed = verify_flags(&[]);
        assert!(parsed.signing_secrets.is_empty() && parsed.private_key.is_none() && !parsed.require_encryption);
        assert_eq!(parsed.timestamp_tolerance, Duration::from_secs(300));
        assert_eq!(parsed.timestamp_tolerance, VerifyConfig::default().timestamp_tolerance);
        assert!(parsed.verifier().expect("valid").is_none(), "no secret: unverified");
    }

    #[test]
    fn several_secrets_are_comma_separated_and_empty_entries_ignored() {
        let (old, new) = (SigningSecret::generate().expose(), SigningSecret::generate().expose());
        let both = format!("{old},{new},");
        let parsed = verify_flags(&["--signing-secret", &both, "--timestamp-tolerance", "90s"]);
        assert_eq!(parsed.signing_secrets.len(), 3);
        assert_eq!(parsed.timestamp_tolerance, Duration::from_secs(90));
        assert!(parsed.verifier().expect("valid").is_some());

        let debug = format!("{parsed:?}");
        assert!(!debug.contains(&old[6..]) && !debug.contains(&new[6..]), "{debug}");
        assert!(debug.contains("<3 redacted>"), "{debug}");
    }

    #[test]
    fn bad_verification_settings_are_usage_errors() {
        let good = SigningSecret::generate().expose();
        let with_bad_second = format!("{good},whsec_AAAA");
        let error = verify_flags(&["--signing-secret", &with_bad_second]).verifier().expect_err("bad secret");
        assert!(matches!(error, Error::SigningSecret { position: 2, .. }), "{error}");
        assert!(error.to_string().contains("decodes to 3 bytes"), "{error}");

        let cases = [
            (vec!["--private-key", "/k.pem"], "--private-key needs --signing-secret"),
            (vec!["--require-encryption"], "--require-encryption needs --signing-secret"),
            (
                vec!["--signing-secret", good.as_str(), "--require-encryption"],
                "--require-encryption needs --private-key",
            ),
            (
                vec!["--signing-secret", good.as_str(), "--private-key", "/nonexistent/k.pem"],
                "cannot read the private key",
            ),
        ];
        for (args, message) in cases {
            let error = verify_flags(&args).verifier().expect_err(message);
            assert!(error.to_string().contains(message), "{error}");
            assert_eq!(error.exit_code(), crate::EXIT_USAGE);
        }
        assert!(
            <VerifyCli as clap::Parser>::try_parse_from(["x", "--timestamp-tolerance", "soon"]).is_err(),
            "durations are checked by clap"
        );
    }
}
