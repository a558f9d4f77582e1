//! SSRF guard for webhook URLs.
//!
//! A webhook URL is chosen by a customer, and the consumer POSTs to it from inside the operator's
//! network. Without a guard, a customer could register `http://169.254.169.254/...` (cloud
//! metadata, often holding credentials) or an internal service and have Hookline call it. So a
//! webhook URL must be `http`/`https` and may only reach public addresses: loopback, private,
//! link-local, shared (CGNAT), multicast, reserved and documentation ranges are refused, as are
//! IPv6 forms that embed such an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64, 6to4).
//!
//! URLs are checked when registered ([`NetworkPolicy::check_url`]) *and* at delivery time, on the
//! addresses actually connected to (see the consumer's `webhook` module), because DNS can change
//! in between. Operators can allow networks explicitly (`HOOKLINE_ALLOW_NETWORKS`), e.g.
//! `127.0.0.0/8` for local demos and tests.
//!
//! Every refusal of an address says how to allow it ([`Refusal`]: the setting and the network to
//! add, e.g. `127.0.0.0/8`), so an operator reading the API's answer, the setup CLI's error, a
//! dead letter's `hookline-dlq-error` header or the consumer's log knows what to change. The
//! texts are built here only ([`Refusal`]'s `Display`, [`refused_host`]). A refused scheme has
//! no setting to name.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ipnet::IpNet;

use crate::{Error, Result, quote};

/// How long registration waits for DNS before refusing the URL.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The setting that allows networks despite the guard (`--allow-networks` on the command line).
const ALLOW_SETTING: &str = "HOOKLINE_ALLOW_NETWORKS";

/// Why the guard refuses one address, and the network whose addition to
/// `HOOKLINE_ALLOW_NETWORKS` would allow it. Shown (`Display`) as the reason followed by how to
/// allow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What the address is, e.g. `127.0.0.1 is a loopback address`.
    pub reason: String,
    /// The smallest sensible network that allows the address that decides (for IPv4 embedded in
    /// IPv6, the IPv4 address): `127.0.0.0/8` for IPv4 loopback, else the address alone.
    pub network: IpNet,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; {}", self.reason, allow_hint(std::slice::from_ref(&self.network)))
    }
}

/// How to allow `networks` (at least one), e.g. `to allow it, add 127.0.0.0/8 to
/// HOOKLINE_ALLOW_NETWORKS on the publisher, consumer and setup CLI`: each checks webhook URLs
/// with its own setting. Short, because the setup CLI's import report clips its lines to 160
/// characters.
fn allow_hint(networks: &[IpNet]) -> String {
    let list = networks.iter().map(IpNet::to_string).collect::<Vec<_>>().join(",");
    format!("to allow it, add {list} to {ALLOW_SETTING} on the publisher, consumer and setup CLI")
}

/// The network to suggest allowing for a refused address: the loopback network for an IPv4
/// loopback address (a local service may listen on any of it), else the address alone, so that
/// allowing one destination does not open its neighbours.
fn suggested_network(ip: IpAddr) -> IpNet {
    match ip {
        IpAddr::V4(v4) if v4.is_loopback() => IpNet::V4(ipnet::Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8)),
        other => IpNet::from(other),
    }
}

/// Why `host` is refused: the refusals of the addresses it resolves to (at least one; each
/// reason shown once) and how to allow them, naming every network once. Names the host, never
/// the URL.
pub fn refused_host(host: &str, refusals: &[Refusal]) -> String {
    let mut reasons: Vec<&str> = Vec::new();
    let mut networks: Vec<IpNet> = Vec::new();
    for refusal in refusals {
        if !reasons.contains(&refusal.reason.as_str()) {
            reasons.push(&refusal.reason);
        }
        if !networks.contains(&refusal.network) {
            networks.push(refusal.network);
        }
    }
    let which = if reasons.len() == 1 { "a forbidden address" } else { "forbidden addresses" };
    format!("host `{}` resolves to {which}: {}; {}", quote::clip(host), reasons.join("; "), allow_hint(&networks))
}

/// Which destinations webhook URLs may reach: public addresses, plus the allowed networks.
///
/// The default allows no extra networks (the strict policy production wants).
#[derive(Debug, Clone, Default)]
pub struct NetworkPolicy {
    allow: Vec<IpNet>,
}

impl NetworkPolicy {
    /// Public addresses plus everything inside `allow`.
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self { allow }
    }

    /// A policy that allows every address, i.e. no SSRF protection at all. Only for tests that
    /// are not about the guard; never for a running service.
    pub fn allow_all() -> Self {
        Self::new(vec![IpNet::V4(ipnet::Ipv4Net::default()), IpNet::V6(ipnet::Ipv6Net::default())])
    }

    /// The explicitly allowed networks.
    pub fn allowed_networks(&self) -> &[IpNet] {
        &self.allow
    }

    fn allows(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|net| net.contains(&ip))
    }

    /// `Ok` if `ip` is public or inside an allowed network; else why not (e.g. `127.0.0.1 is a
    /// loopback address`) and the network that would allow it.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refusal> {
        if self.allows(ip) {
            return Ok(());
        }
        let refused = |reason: String, decides: IpAddr| Err(Refusal { reason, network: suggested_network(decides) });
        match ip {
            IpAddr::V4(v4) => match ipv4_category(v4) {
                None => Ok(()),
                Some(category) => refused(format!("{v4} is {category}"), ip),
            },
            IpAddr::V6(v6) => match classify_ipv6(v6) {
                V6::Public => Ok(()),
                V6::Blocked(category) => refused(format!("{v6} is {category}"), ip),
                // Traffic to these reaches the embedded IPv4 address (directly, or through a
                // translator or relay), so that address decides, including the allow-list.
                V6::Embeds(_, v4) if self.allows(IpAddr::V4(v4)) => Ok(()),
                V6::Embeds(kind, v4) => match ipv4_category(v4) {
                    None => Ok(()),
                    Some(category) => refused(format!("{v6} is {kind} address of {v4}, {category}"), IpAddr::V4(v4)),
                },
            },
        }
    }

    /// The checks that need no DNS: the scheme must be `http` or `https`, and an IP-literal host
    /// must pass [`NetworkPolicy::check_ip`]. Returns the domain name still to resolve and check,
    /// or `None` for an IP literal (already checked). The error names the host and the reason
    /// (with how to allow a refused address), never the rest of the URL.
    pub fn check_without_dns<'u>(&self, url: &'u url::Url) -> Result<Option<&'u str>, String> {
        let scheme = url.scheme();
        if scheme != "http" && scheme != "https" {
            return Err(format!("the scheme must be http or https, not `{}`", quote::clip(scheme)));
        }
        let literal = match url.host().ok_or_else(|| "the URL has no host".to_owned())? {
            url::Host::Ipv4(ip) => IpAddr::V4(ip),
            url::Host::Ipv6(ip) => IpAddr::V6(ip),
            url::Host::Domain(domain) => return Ok(Some(domain)),
        };
        self.check_ip(literal).map(|()| None).map_err(|refusal| refusal.to_string())
    }

    /// Checks a webhook URL: [`NetworkPolicy::check_without_dns`], then every address its host
    /// resolves to (with the URL's port, or the scheme's default) must pass
    /// [`NetworkPolicy::check_ip`].
    ///
    /// Errors are [`Error::Invalid`] for the field `webhook_url`, naming the host and the reason
    /// (never the rest of the URL, whose path or query may hold a token).
    pub async fn check_url(&self, url: &url::Url) -> Result<()> {
        let invalid = |reason: String| Error::Invalid { field: "webhook_url", reason };
        let Some(domain) = self.check_without_dns(url).map_err(invalid)? else {
            return Ok(());
        };
        let scheme = url.scheme();
        let port = url.port_or_known_default().unwrap_or(if scheme == "https" { 443 } else { 80 });
        let addresses = match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((domain, port))).await {
            Ok(Ok(addresses)) => addresses.collect::<Vec<_>>(),
            Ok(Err(error)) => return Err(invalid(format!("cannot resolve host `{}`: {error}", quote::clip(domain)))),
            Err(_) => {
                return Err(invalid(format!(
                    "cannot resolve host `{}`: no answer within {RESOLVE_TIMEOUT:?}",
                    quote::clip(domain)
                )));
            }
        };
        if addresses.is_empty() {
            return Err(invalid(format!("host `{}` has no addresses", quote::clip(domain))));
        }
        // Every address, not just one: the client may connect to any of them. All refusals are
        // collected, so that the hint names every network to allow at once.
        let refusals: Vec<Refusal> = addresses.iter().filter_map(|address| self.check_ip(address.ip()).err()).collect();
        if refusals.is_empty() { Ok(()) } else { Err(invalid(refused_host(domain, &refusals))) }
    }
}

/// Why an IPv4 address is not public, `None` if it is.
fn ipv4_category(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    let category = match (a, b, c) {
        (0, _, _) => "an unspecified address (0.0.0.0/8, \"this network\")",
        (127, _, _) => "a loopback address",
        (10, _, _) => "a private address (10.0.0.0/8)",
        (172, 16..=31, _) => "a private address (172.16.0.0/12)",
        (192, 168, _) => "a private address (192.168.0.0/16)",
        (100, 64..=127, _) => "a shared (carrier-grade NAT) address (100.64.0.0/10)",
        (169, 254, _) => "a link-local address (169.254.0.0/16, where cloud metadata services live)",
        (192, 0, 0) => "an IETF protocol assignment (192.0.0.0/24)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "a documentation address",
        (198, 18..=19, _) => "a benchmarking address (198.18.0.0/15)",
        // Deprecated 6to4 relay anycast (RFC 7526): whichever relay is nearest, often inside the
        // provider's own network.
        (192, 88, 99) => "a 6to4 relay anycast address (192.88.99.0/24)",
        // Azure's WireServer: a public-looking address every Azure VM reaches on the host, which
        // serves the VM's configuration (and, to the guest agent, its certificates).
        _ if ip == Ipv4Addr::new(168, 63, 129, 16) => "Azure's WireServer (168.63.129.16)",
        (224..=239, _, _) => "a multicast address",
        _ if ip == Ipv4Addr::BROADCAST => "the broadcast address",
        (240..=255, _, _) => "a reserved address (240.0.0.0/4)",
        _ => return None,
    };
    Some(category)
}

/// What an IPv6 address is, for the guard.
enum V6 {
    Public,
    Blocked(&'static str),
    /// An address that carries an IPv4 address (kind, e.g. "an IPv4-mapped").
    Embeds(&'static str, Ipv4Addr),
}

fn classify_ipv6(ip: Ipv6Addr) -> V6 {
    let segments = ip.segments();
    let bits = u128::from(ip);
    let in_net = |prefix: u128, len: u32| bits >> (128 - len) == prefix >> (128 - len);
    let low_v4 = Ipv4Addr::from(bits as u32);

    if ip.is_unspecified() {
        return V6::Blocked("the unspecified address");
    }
    if ip.is_loopback() {
        return V6::Blocked("a loopback address");
    }
    if in_net(0xffff << 32, 96) {
        return V6::Embeds("an IPv4-mapped", low_v4);
    }
    if in_net(0, 96) {
        return V6::Embeds("an IPv4-compatible", low_v4);
    }
    if in_net(0x0064_ff9b << 96, 96) {
        return V6::Embeds("a NAT64", low_v4);
    }
    if segments[0] == 0x2002 {
        let embedded = Ipv4Addr::from((u32::from(segments[1]) << 16) | u32::from(segments[2]));
        return V6::Embeds("a 6to4", embedded);
    }
    let category = if in_net(0x0064_ff9b_0001 << 80, 48) {
        "a local-use NAT64 address (64:ff9b:1::/48)"
    } else if in_net(0x0100 << 112, 64) {
        "a discard-only address (100::/64)"
    } else if in_net(0x2001_0000 << 96, 32) {
        // The client's IPv4 address is hidden (obfuscated) in it; Teredo is obsolete anyway.
        "a Teredo address (2001::/32)"
    } else if in_net(0x2001_0002 << 96, 48) {
        "a benchmarking address (2001:2::/48)"
    } else if in_net(0x2001_0db8 << 96, 32) || in_net(0x3fff << 112, 20) {
        "a documentation address"
    } else if in_net(0xfe80 << 112, 10) {
        "a link-local address (fe80::/10)"
    } else if in_net(0xfc00 << 112, 7) {
        "a unique-local address (fc00::/7, includes cloud metadata such as fd00:ec2::254)"
    } else if in_net(0xfec0 << 112, 10) {
        "a site-local address (fec0::/10)"
    } else if in_net(0xff00 << 112, 8) {
        "a multicast address"
    } else if !in_net(0x2000 << 112, 3) {
        // Only 2000::/3 is allocated for global unicast; the rest is reserved by the IETF.
        "a reserved address (outside global unicast 2000::/3)"
    } else {
        return V6::Public;
    };
    V6::Blocked(category)
}

/// Parses one allowed network: a CIDR (`10.1.0.0/16`, `::1/128`) or a bare address, taken as a
/// single-host network (`127.0.0.1` = `127.0.0.1/32`).
pub fn parse_network(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty entry in the list of networks (to allow no extra networks, leave it unset)".to_owned());
    }
    if text.contains('/') {
        text.parse::<IpNet>().map(|net| net.trunc()).map_err(|_| format!("`{text}` is not a network in CIDR notation"))
    } else {
        text.parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| format!("`{text}` is not an IP address or a network in CIDR notation"))
    }
}

/// The SSRF guard's settings, flattened into the configuration of the binaries that check
/// webhook URLs.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct NetworkArgs {
    /// Networks (CIDR, comma-separated) webhook URLs may reach despite the SSRF guard, e.g. 127.0.0.0/8 for local demos.
    #[arg(long, env = "HOOKLINE_ALLOW_NETWORKS", value_delimiter = ',', value_parser = parse_network, global = true)]
    pub allow_networks: Vec<IpNet>,
}

impl NetworkArgs {
    /// The policy these settings describe.
    pub fn policy(&self) -> NetworkPolicy {
        NetworkPolicy::new(self.allow_networks.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or_else(|_| panic!("test address {text}"))
    }

    fn net(text: &str) -> IpNet {
        parse_network(text).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Addresses the default policy must refuse, with a fragment of the expected reason.
    const BLOCKED: &[(&str, &str)] = &[
        // Unspecified: "this host", connecting to it reaches the local machine.
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("::", "unspecified"),
        // Loopback.
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("::1", "loopback"),
        // RFC 1918 private networks.
        ("10.0.0.1", "private"),
        ("10.255.255.255", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        // Shared address space (CGNAT), which also holds Alibaba Cloud's metadata service.
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.100.100.200", "carrier-grade NAT"),
        ("100.127.255.255", "carrier-grade NAT"),
        // Link-local, home of the AWS/GCP/Azure metadata service 169.254.169.254.
        ("169.254.169.254", "link-local"),
        ("169.254.0.1", "link-local"),
        ("fe80::1", "link-local"),
        ("febf::1", "link-local"),
        // Unique-local IPv6, including AWS's IPv6 metadata endpoint.
        ("fd00:ec2::254", "unique-local"),
        ("fc00::1", "unique-local"),
        // Deprecated site-local IPv6.
        ("fec0::1", "site-local"),
        // Multicast.
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("ff0e::1", "multicast"),
        // Limited broadcast.
        ("255.255.255.255", "broadcast"),
        // IETF protocol assignments.
        ("192.0.0.1", "IETF protocol"),
        ("192.0.0.170", "IETF protocol"),
        // Benchmarking.
        ("198.18.0.1", "benchmarking"),
        ("198.19.255.255", "benchmarking"),
        ("2001:2::1", "benchmarking"),
        // Deprecated 6to4 relay anycast.
        ("192.88.99.1", "6to4 relay"),
        ("192.88.99.255", "6to4 relay"),
        // Azure's WireServer, reachable from every Azure VM.
        ("168.63.129.16", "WireServer"),
        // Reserved for future use.
        ("240.0.0.1", "reserved"),
        ("254.1.2.3", "reserved"),
        // Documentation (TEST-NET-1/2/3, 2001:db8::/32, 3fff::/20).
        ("192.0.2.1", "documentation"),
        ("198.51.100.7", "documentation"),
        ("203.0.113.9", "documentation"),
        ("2001:db8::1", "documentation"),
        ("3fff::1", "documentation"),
        // IPv4-mapped IPv6 is judged by the IPv4 address it carries.
        ("::ffff:127.0.0.1", "IPv4-mapped address of 127.0.0.1, a loopback"),
        ("::ffff:169.254.169.254", "IPv4-mapped address of 169.254.169.254, a link-local"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:0.0.0.0", "unspecified"),
        // IPv4-compatible (deprecated) likewise.
        ("::127.0.0.1", "IPv4-compatible address of 127.0.0.1"),
        ("::192.168.0.1", "private"),
        // NAT64 well-known prefix: a translator forwards to the embedded IPv4.
        ("64:ff9b::7f00:1", "NAT64 address of 127.0.0.1"),
        ("64:ff9b::a9fe:a9fe", "NAT64 address of 169.254.169.254"),
        // Local-use NAT64: translation to operator-chosen (possibly internal) space.
        ("64:ff9b:1::a00:1", "local-use NAT64"),
        // 6to4: the IPv4 address sits in bits 16..48.
        ("2002:7f00:1::", "6to4 address of 127.0.0.1"),
        ("2002:a9fe:a9fe::1", "6to4 address of 169.254.169.254"),
        // Teredo hides an (obfuscated) IPv4 address; obsolete, refused outright.
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
        // Discard-only.
        ("100::1", "discard-only"),
        // Everything outside global unicast 2000::/3 is reserved.
        ("4000::1", "reserved"),
        ("::ffff:0:7f00:1", "reserved"),
    ];

    /// Public addresses the default policy must accept.
    const PUBLIC: &[&str] = &[
        "1.1.1.1",
        "8.8.8.8",
        "93.184.215.14",
        "9.255.255.255",   // just below 10/8
        "11.0.0.0",        // just above 10/8
        "172.15.255.255",  // just below 172.16/12
        "172.32.0.0",      // just above 172.16/12
        "100.63.255.255",  // just below 100.64/10
        "100.128.0.0",     // just above 100.64/10
        "169.253.255.255", // just below 169.254/16
        "192.0.1.1",       // between 192.0.0/24 and 192.0.2/24
        "192.88.98.255",   // just below the 6to4 relay anycast 192.88.99/24
        "192.88.100.0",    // just above it
        "168.63.129.15",   // next to Azure's WireServer
        "168.63.129.17",   // next to Azure's WireServer
        "198.17.255.255",  // just below 198.18/15
        "198.20.0.0",      // just above 198.18/15
        "223.255.255.255", // just below multicast
        "2606:4700:4700::1111",
        "2001:4860:4860::8888",
        "2a00:1450:4001::1",
        "::ffff:8.8.8.8",   // IPv4-mapped public address
        "64:ff9b::808:808", // NAT64 of a public address
        "2002:808:808::1",  // 6to4 of a public address
    ];

    #[test]
    fn blocks_non_public_addresses() {
        let policy = NetworkPolicy::default();
        for (address, expected) in BLOCKED {
            match policy.check_ip(ip(address)) {
                Ok(()) => panic!("{address} was allowed"),
                Err(Refusal { reason, network }) => {
                    assert!(reason.contains(expected), "{address}: `{reason}` does not mention `{expected}`");
                    assert!(reason.starts_with(&ip(address).to_string()), "{address}: `{reason}`");
                    // The network the refusal suggests does allow the address.
                    assert_eq!(NetworkPolicy::new(vec![network]).check_ip(ip(address)), Ok(()), "{address}: {network}");
                }
            }
        }
    }

    #[test]
    fn suggested_networks_are_the_smallest_sensible() {
        for (address, network) in [
            ("127.0.0.1", "127.0.0.0/8"),
            ("127.1.2.3", "127.0.0.0/8"),
            ("::1", "::1/128"),
            ("10.1.2.3", "10.1.2.3/32"),
            ("169.254.169.254", "169.254.169.254/32"),
            ("fd00:ec2::254", "fd00:ec2::254/128"),
            // An address embedding IPv4 is judged, and allowed, by the IPv4 address.
            ("::ffff:127.0.0.1", "127.0.0.0/8"),
            ("64:ff9b::a00:1", "10.0.0.1/32"),
        ] {
            let refusal = NetworkPolicy::default().check_ip(ip(address)).expect_err(address);
            assert_eq!(refusal.network, net(network), "{address}");
        }
    }

    #[test]
    fn allows_public_addresses() {
        let policy = NetworkPolicy::default();
        for address in PUBLIC {
            assert_eq!(policy.check_ip(ip(address)), Ok(()), "{address}");
        }
    }

    #[test]
    fn reason_names_the_address_and_how_to_allow_it() {
        let refusal = NetworkPolicy::default().check_ip(ip("127.0.0.1")).expect_err("loopback");
        assert_eq!(refusal.reason, "127.0.0.1 is a loopback address");
        assert_eq!(
            refusal.to_string(),
            "127.0.0.1 is a loopback address; to allow it, add 127.0.0.0/8 to HOOKLINE_ALLOW_NETWORKS on the publisher, \
             consumer and setup CLI"
        );
    }

    #[test]
    fn a_refused_host_names_every_network_to_allow_once() {
        let policy = NetworkPolicy::default();
        let refusals: Vec<Refusal> = ["127.0.0.1", "::1", "127.0.0.2", "127.0.0.1"]
            .iter()
            .filter_map(|a| policy.check_ip(ip(a)).err())
            .collect();
        assert_eq!(
            refused_host("localhost", &refusals),
            "host `localhost` resolves to forbidden addresses: 127.0.0.1 is a loopback address; ::1 is a loopback \
             address; 127.0.0.2 is a loopback address; to allow it, add 127.0.0.0/8,::1/128 to HOOKLINE_ALLOW_NETWORKS \
             on the publisher, consumer and setup CLI"
        );
        assert_eq!(
            refused_host("db.internal", &refusals[..1]),
            "host `db.internal` resolves to a forbidden address: 127.0.0.1 is a loopback address; to allow it, add \
             127.0.0.0/8 to HOOKLINE_ALLOW_NETWORKS on the publisher, consumer and setup CLI"
        );
    }

    #[test]
    fn allow_list_opens_networks() {
        let policy = NetworkPolicy::new(vec![net("127.0.0.0/8"), net("10.1.0.0/16"), net("fd00::/8")]);
        for allowed in ["127.0.0.1", "127.1.2.3", "10.1.200.3", "fd00:ec2::254", "::ffff:127.0.0.1", "64:ff9b::a01:1"] {
            assert_eq!(policy.check_ip(ip(allowed)), Ok(()), "{allowed}");
        }
        for blocked in ["::1", "10.2.0.1", "169.254.169.254", "fc00::1", "::ffff:10.2.0.1"] {
            assert!(policy.check_ip(ip(blocked)).is_err(), "{blocked}");
        }
    }

    #[test]
    fn allow_all_allows_everything() {
        let policy = NetworkPolicy::allow_all();
        for (address, _) in BLOCKED {
            assert_eq!(policy.check_ip(ip(address)), Ok(()), "{address}");
        }
    }

    #[test]
    fn parses_allowed_networks() {
        assert_eq!(net("127.0.0.0/8").to_string(), "127.0.0.0/8");
        assert_eq!(net(" 127.0.0.1 ").to_string(), "127.0.0.1/32");
        assert_eq!(net("::1").to_string(), "::1/128");
        assert_eq!(net("10.1.2.3/16").to_string(), "10.1.0.0/16");
        assert!(parse_network("localhost").is_err());
        assert!(parse_network("10.0.0.0/33").is_err());
        assert!(parse_network("").is_err());
    }

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        network: NetworkArgs,
    }

    #[test]
    fn network_args_from_the_command_line() {
        let cli = Cli::try_parse_from(["test", "--allow-networks", "127.0.0.0/8, ::1,10.0.0.0/8"]).expect("parses");
        assert_eq!(cli.network.allow_networks, vec![net("127.0.0.0/8"), net("::1/128"), net("10.0.0.0/8")]);
        assert_eq!(cli.network.policy().check_ip(ip("::1")), Ok(()));
        assert!(Cli::try_parse_from(["test", "--allow-networks", "nonsense"]).is_err());
        if std::env::var_os("HOOKLINE_ALLOW_NETWORKS").is_none() {
            let cli = Cli::try_parse_from(["test"]).expect("parses");
            assert!(cli.network.allow_networks.is_empty());
        }
    }

    fn url(text: &str) -> url::Url {
        url::Url::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn invalid_reason(result: Result<()>) -> String {
        match result {
            Err(Error::Invalid { field: "webhook_url", reason }) => reason,
            Err(other) => panic!("unexpected error {other}"),
            Ok(()) => panic!("accepted"),
        }
    }

    #[tokio::test]
    async fn check_url_checks_scheme_and_literal_hosts() {
        let policy = NetworkPolicy::default();
        let reason = invalid_reason(policy.check_url(&url("ftp://example.com/x")).await);
        assert!(reason.contains("http or https"), "{reason}");
        let reason = invalid_reason(policy.check_url(&url("file:///etc/passwd")).await);
        assert!(reason.contains("http or https"), "{reason}");
        let reason =
            invalid_reason(policy.check_url(&url("http://169.254.169.254/latest/meta-data?token=s3cr3t")).await);
        assert_eq!(
            reason,
            "169.254.169.254 is a link-local address (169.254.0.0/16, where cloud metadata services live); to allow it, \
             add 169.254.169.254/32 to HOOKLINE_ALLOW_NETWORKS on the publisher, consumer and setup CLI"
        );
        let reason = invalid_reason(policy.check_url(&url("https://[::1]:8443/hook")).await);
        assert!(reason.contains("::1 is a loopback"), "{reason}");
        // The URL parser normalises other IPv4 spellings into literals, which are then checked.
        let reason = invalid_reason(policy.check_url(&url("http://0x7f.1/hook")).await);
        assert!(reason.contains("127.0.0.1 is a loopback"), "{reason}");
        let reason = invalid_reason(policy.check_url(&url("http://2130706433/hook")).await);
        assert!(reason.contains("127.0.0.1"), "{reason}");
        assert!(policy.check_url(&url("https://93.184.215.14/hook")).await.is_ok());
        assert!(policy.check_url(&url("https://[2606:4700:4700::1111]/hook")).await.is_ok());
    }

    #[tokio::test]
    async fn check_url_resolves_names() {
        let policy = NetworkPolicy::default();
        let reason = invalid_reason(policy.check_url(&url("http://localhost:8080/hook?secret=abc")).await);
        assert!(reason.contains("`localhost`") && reason.contains("loopback"), "{reason}");
        assert!(reason.contains("add 127.0.0.0/8") && reason.contains("to HOOKLINE_ALLOW_NETWORKS"), "{reason}");
        assert!(!reason.contains("secret"), "{reason}");

        // localhost may resolve to ::1 as well as 127.0.0.1; allowing both makes it pass.
        let allowed = NetworkPolicy::new(vec![net("127.0.0.0/8"), net("::1")]);
        assert!(allowed.check_url(&url("http://localhost:8080/hook")).await.is_ok());
        assert!(allowed.check_url(&url("http://127.0.0.1:8080/hook")).await.is_ok());

        // `.invalid` never resolves (RFC 6761).
        let reason = invalid_reason(policy.check_url(&url("https://hookline-test.invalid/hook")).await);
        assert!(reason.contains("cannot resolve host `hookline-test.invalid`"), "{reason}");
    }
}
