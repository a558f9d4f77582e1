//! The receiver's settings, as command-line flags (also read from the environment).

use std::net::SocketAddr;

use clap::Args;

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
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9000)),
            fail_rate: 0.0,
            fail_first: 0,
            name: "receiver".into(),
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
            (parsed.listen, parsed.fail_rate, parsed.fail_first, parsed.name),
            (default.listen, default.fail_rate, default.fail_first, default.name)
        );
    }
}
