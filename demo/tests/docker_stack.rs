//! Static checks of `docker/` (nothing here runs Docker, which the development machines lack):
//!
//! - `compose.yaml` parses; the files it references (build context, Dockerfile and its ignore
//!   file, bind-mounted configuration) exist; `depends_on` and the addresses in the environment
//!   name services of the file; the `consumer` service can be scaled; health checks knock on
//!   ports the services listen on.
//! - `prometheus.yaml` parses and scrapes the publisher and every consumer replica at the ports
//!   they listen on, and only services of `compose.yaml`.
//! - every Grafana dashboard parses, and every `hookline_*` metric its queries use is one that
//!   `hookline_publisher::metrics::Metrics::new()` or `hookline_consumer::Metrics::new()` registers.
//! - the Dockerfile builds and installs every `[[bin]]` of the workspace (from `cargo metadata`).
//! - the command lines of the compose services (and of `setup`'s script) parse with the
//!   binaries' own argument parsers.
//!
//! Each check is a function returning the problems it found; the `*_catches_*` tests feed each one
//! a broken input to show it can fail.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_norway::{Mapping, Value};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("demo/ has a parent").to_path_buf()
}

fn docker_dir() -> PathBuf {
    repo_root().join("docker")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()))
}

/// Parses YAML and resolves merge keys (`<<: *anchor`), as Docker Compose does.
fn parse_yaml(text: &str) -> Result<Value, String> {
    let mut value: Value = serde_norway::from_str(text).map_err(|error| error.to_string())?;
    value.apply_merge().map_err(|error| error.to_string())?;
    Ok(value)
}

fn load_yaml(path: &Path) -> Value {
    parse_yaml(&read(path)).unwrap_or_else(|error| panic!("{} does not parse: {error}", path.display()))
}

fn compose() -> Value {
    load_yaml(&docker_dir().join("compose.yaml"))
}

fn services(compose: &Value) -> &Mapping {
    compose.get("services").and_then(Value::as_mapping).expect("compose.yaml has a `services` mapping")
}

fn service_names(compose: &Value) -> BTreeSet<String> {
    services(compose).keys().filter_map(Value::as_str).map(str::to_owned).collect()
}

/// A list or a single string, as compose and Prometheus accept for several keys.
fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(text)) => vec![text.clone()],
        Some(Value::Sequence(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// A service's environment as (name, value) pairs, from either compose syntax.
fn environment(service: &Value) -> Vec<(String, String)> {
    match service.get("environment") {
        Some(Value::Mapping(map)) => map
            .iter()
            .filter_map(|(key, value)| {
                let value = match value {
                    Value::String(text) => text.clone(),
                    Value::Number(number) => number.to_string(),
                    Value::Bool(flag) => flag.to_string(),
                    _ => String::new(),
                };
                Some((key.as_str()?.to_owned(), value))
            })
            .collect(),
        Some(Value::Sequence(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(|item| match item.split_once('=') {
                Some((key, value)) => (key.to_owned(), value.to_owned()),
                None => (item.to_owned(), String::new()),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The value after `flag` in a service's `command` list (`--listen 0.0.0.0:4242`).
fn command_flag(service: &Value, flag: &str) -> Option<String> {
    let command = strings(service.get("command"));
    command.iter().position(|arg| arg == flag).and_then(|at| command.get(at + 1).cloned())
}

/// The host of `scheme://host:port/...` or `host:port`.
fn host_of(address: &str) -> &str {
    let rest = address.split_once("://").map_or(address, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    authority.rsplit_once(':').map_or(authority, |(host, _)| host)
}

fn port_of(address: &str) -> Option<u16> {
    let rest = address.split_once("://").map_or(address, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    authority.rsplit_once(':').and_then(|(_, port)| port.parse().ok())
}

/// Problems of compose.yaml; relative paths are resolved against `base` (the file's directory).
fn check_compose(compose: &Value, base: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let names = service_names(compose);
    for required in ["kafka", "schema-registry", "setup", "publisher", "consumer", "receiver", "lgtm"] {
        if !names.contains(required) {
            problems.push(format!("no `{required}` service"));
        }
    }
    for (name, service) in services(compose) {
        let name = name.as_str().unwrap_or("?");
        if let Some(build) = service.get("build") {
            let (context, dockerfile) = match build {
                Value::String(context) => (context.clone(), "Dockerfile".to_owned()),
                _ => (
                    build.get("context").and_then(Value::as_str).unwrap_or(".").to_owned(),
                    build.get("dockerfile").and_then(Value::as_str).unwrap_or("Dockerfile").to_owned(),
                ),
            };
            let context = base.join(context);
            if !context.is_dir() {
                problems.push(format!("{name}: build context {} is not a directory", context.display()));
            }
            let dockerfile = context.join(dockerfile);
            if !dockerfile.is_file() {
                problems.push(format!("{name}: Dockerfile {} does not exist", dockerfile.display()));
            }
            let ignore = PathBuf::from(format!("{}.dockerignore", dockerfile.display()));
            if !ignore.is_file() {
                problems.push(format!("{name}: {} does not exist (target/ would be sent to Docker)", ignore.display()));
            }
        }
        if service.get("build").is_none() && service.get("image").is_none() {
            problems.push(format!("{name}: neither `image` nor `build`"));
        }
        for volume in service.get("volumes").and_then(Value::as_sequence).into_iter().flatten() {
            let source = match volume {
                Value::String(short) => short.split(':').next().unwrap_or_default().to_owned(),
                _ => match volume.get("type").and_then(Value::as_str) {
                    Some("bind") => volume.get("source").and_then(Value::as_str).unwrap_or_default().to_owned(),
                    _ => continue,
                },
            };
            // Named volumes have no `.` or `/` in front.
            if (source.starts_with('.') || source.starts_with('/')) && !base.join(&source).exists() {
                problems.push(format!("{name}: bind-mounted {source} does not exist"));
            }
        }
        let depends_on = match service.get("depends_on") {
            Some(Value::Mapping(map)) => map.keys().filter_map(Value::as_str).map(str::to_owned).collect(),
            other => strings(other),
        };
        for dependency in depends_on {
            if !names.contains(&dependency) {
                problems.push(format!("{name}: depends on `{dependency}`, which is not a service"));
            }
        }
        for (key, value) in environment(service) {
            let addresses = match key.as_str() {
                "KAFKA_BROKERS" | "SCHEMA_REGISTRY_URL" | "OTEL_EXPORTER_OTLP_ENDPOINT" => {
                    value.split(',').map(str::to_owned).collect()
                }
                "SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS" => vec![value.clone()],
                _ => Vec::new(),
            };
            for address in addresses {
                let host = host_of(&address);
                if !names.contains(host) {
                    problems.push(format!("{name}: {key}={value} names host `{host}`, which is not a service"));
                }
            }
        }
    }
    // A health check over /dev/tcp must knock on a port the service listens on.
    for (name, service) in services(compose) {
        let name = name.as_str().unwrap_or("?");
        let listening: Vec<u16> = ["--listen", "--metrics-listen", "--grpc-listen"]
            .iter()
            .filter_map(|flag| command_flag(service, flag))
            .filter_map(|address| port_of(&address))
            .collect();
        let test = strings(service.get("healthcheck").and_then(|check| check.get("test"))).join(" ");
        if let Some((_, rest)) = test.split_once("/dev/tcp/127.0.0.1/") {
            let port = rest.split(|c: char| !c.is_ascii_digit()).next().and_then(|port| port.parse().ok());
            if !port.is_some_and(|port| listening.contains(&port)) {
                problems
                    .push(format!("{name}: the health check's port {port:?} is not one it listens on {listening:?}"));
            }
        }
    }
    if let Some(consumer) = services(compose).get("consumer") {
        for key in ["container_name", "ports"] {
            if consumer.get(key).is_some() {
                problems.push(format!("consumer: `{key}` makes `--scale consumer=N` collide"));
            }
        }
    }
    if let Some(setup) = services(compose).get("setup") {
        let script = strings(setup.get("command")).join(" ");
        let topics = script.find("hookline-setup topics create");
        let schemas = script.find("hookline-setup schemas register");
        if !matches!((topics, schemas), (Some(topics), Some(schemas)) if topics < schemas) {
            problems.push("setup: does not run `topics create` and then `schemas register`".to_owned());
        }
    }
    for name in ["publisher", "consumer"] {
        if let Some(service) = services(compose).get(name)
            && !environment(service).iter().any(|(key, _)| key == "OTEL_EXPORTER_OTLP_ENDPOINT")
        {
            problems.push(format!("{name}: no OTEL_EXPORTER_OTLP_ENDPOINT"));
        }
    }
    problems
}

/// The compose-side file mounted at `target` in the `lgtm` service, resolved against `base`.
fn lgtm_mount(compose: &Value, base: &Path, target: &str) -> Option<PathBuf> {
    let lgtm = services(compose).get("lgtm")?;
    lgtm.get("volumes")?.as_sequence()?.iter().filter_map(Value::as_str).find_map(|volume| {
        let mut parts = volume.split(':');
        let source = parts.next()?;
        (parts.next()? == target).then(|| base.join(source))
    })
}

/// Problems of the Prometheus configuration against the compose file.
fn check_prometheus(prometheus: &Value, compose: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let names = service_names(compose);
    let Some(jobs) = prometheus.get("scrape_configs").and_then(Value::as_sequence) else {
        return vec!["no scrape_configs".to_owned()];
    };
    // (service, port, discovered through DNS)
    let mut scraped: Vec<(String, u16, bool)> = Vec::new();
    for job in jobs {
        let job_name = job.get("job_name").and_then(Value::as_str).unwrap_or("?");
        for config in job.get("static_configs").and_then(Value::as_sequence).into_iter().flatten() {
            for target in strings(config.get("targets")) {
                let (host, port) = (host_of(&target).to_owned(), port_of(&target));
                match port {
                    Some(port) if names.contains(&host) => scraped.push((host, port, false)),
                    _ => problems.push(format!("{job_name}: target {target} is not service:port of compose.yaml")),
                }
            }
        }
        for config in job.get("dns_sd_configs").and_then(Value::as_sequence).into_iter().flatten() {
            let port = config.get("port").and_then(Value::as_u64).and_then(|port| u16::try_from(port).ok());
            for host in strings(config.get("names")) {
                match port {
                    Some(port) if names.contains(&host) => scraped.push((host, port, true)),
                    _ => problems.push(format!("{job_name}: DNS name {host} (port {port:?}) is not a compose service")),
                }
            }
        }
        if job.get("metrics_path").and_then(Value::as_str).is_some_and(|path| path != "/metrics") {
            problems.push(format!("{job_name}: Hookline serves /metrics"));
        }
    }
    // Where Hookline's services listen, from their commands (or the binaries' defaults).
    let service = |name: &str| services(compose).get(name);
    let publisher_port = service("publisher")
        .and_then(|publisher| command_flag(publisher, "--listen"))
        .map_or(Some(4242), |listen| port_of(&listen));
    let consumer_port = service("consumer")
        .and_then(|consumer| command_flag(consumer, "--metrics-listen"))
        .map_or(Some(9464), |listen| port_of(&listen));
    if !scraped.iter().any(|(host, port, _)| host == "publisher" && Some(*port) == publisher_port) {
        problems.push(format!("the publisher is not scraped on its HTTP port {publisher_port:?}"));
    }
    if !scraped.iter().any(|(host, port, dns)| host == "consumer" && Some(*port) == consumer_port && *dns) {
        problems.push(format!(
            "the consumer is not scraped through dns_sd_configs on its metrics port {consumer_port:?} \
             (a static target reaches one replica only)"
        ));
    }
    problems
}

/// Every `expr` string anywhere in a dashboard (panel targets, nested rows, variables).
fn queries(value: &serde_json::Value, found: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", serde_json::Value::String(expr)) => found.push(expr.clone()),
                    _ => queries(value, found),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| queries(item, found)),
        _ => {}
    }
}

/// The `hookline_*` identifiers in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let is_ident = |byte: u8| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b':';
    let mut at = 0;
    while let Some(offset) = expr[at..].find("hookline_") {
        let start = at + offset;
        let mut end = start;
        while end < bytes.len() && is_ident(bytes[end]) {
            end += 1;
        }
        if start == 0 || !is_ident(bytes[start - 1]) {
            names.insert(expr[start..end].to_owned());
        }
        at = end;
    }
    names
}

/// What the two registries hold.
#[derive(Debug)]
struct Exported {
    /// The publisher's families and their types (`counter`, `gauge`, `histogram`): every family of
    /// its text exposition, after every labelled metric got a sample (the text format leaves out
    /// families without one; its registry is private).
    publisher: BTreeMap<String, String>,
    /// The consumer's histograms (from `gather()`, which lists every unlabelled metric).
    consumer_histograms: BTreeSet<String>,
}

impl Exported {
    fn new() -> Self {
        use hookline_publisher::metrics::{InboundOutcome, Metrics, Outcome};
        let metrics = Metrics::new().expect("publisher metrics register");
        metrics.request(Outcome::Accepted);
        metrics.inbound_request(InboundOutcome::Accepted);
        metrics.api_request("create_customer", 201);
        metrics.grpc_request("SendOutgoingEvent", tonic::Code::Ok);
        metrics.schema_validation_failed("avro");
        metrics.event_types("directory", 0);
        metrics.schema_registry_request("lookup", "ok");
        metrics.produced(1);
        metrics.produce_took(0.001);
        let text = metrics.render().expect("publisher metrics render");
        let publisher = text
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .filter_map(|line| line.split_once(' '))
            .map(|(name, kind)| (name.to_owned(), kind.trim().to_owned()))
            .collect();
        let consumer = hookline_consumer::Metrics::new().expect("consumer metrics register");
        let consumer_histograms = consumer
            .registry
            .gather()
            .iter()
            .filter(|family| family.get_field_type() == prometheus::proto::MetricType::HISTOGRAM)
            .map(|family| family.name().to_owned())
            .collect();
        Self { publisher, consumer_histograms }
    }

    /// Whether the publisher or the consumer registers a metric family `name`.
    fn family(&self, name: &str) -> bool {
        self.publisher.contains_key(name) || consumer_registers(name)
    }

    fn histogram(&self, name: &str) -> bool {
        self.publisher.get(name).is_some_and(|kind| kind == "histogram") || self.consumer_histograms.contains(name)
    }

    /// Whether `series` is a family or a series of a histogram (`_bucket`, `_sum`, `_count`).
    fn series(&self, series: &str) -> bool {
        self.family(series)
            || ["_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| series.strip_suffix(suffix).is_some_and(|family| self.histogram(family)))
    }
}

/// Whether the consumer's registry holds a metric family `name`: registering another collector of
/// that name in a fresh `Metrics` is refused as a duplicate exactly when it does. (The consumer's
/// labelled metrics have no sample until used, so its `gather()` does not list them.)
fn consumer_registers(name: &str) -> bool {
    let metrics = hookline_consumer::Metrics::new().expect("consumer metrics register");
    let Ok(probe) = prometheus::IntCounter::new(name, "probe") else {
        return false;
    };
    matches!(metrics.registry.register(Box::new(probe)), Err(prometheus::Error::AlreadyReg))
}

/// Problems of a dashboard: queries using a `hookline_*` metric that neither registry holds.
fn check_dashboard(dashboard: &serde_json::Value, exported: &Exported) -> Vec<String> {
    let mut found = Vec::new();
    queries(dashboard, &mut found);
    if found.is_empty() {
        return vec!["no queries (no `expr` anywhere)".to_owned()];
    }
    let mut problems = Vec::new();
    for expr in &found {
        for name in metric_names(expr) {
            if !exported.series(&name) {
                problems.push(format!("`{name}` (in `{expr}`) is not a metric Hookline exports"));
            }
        }
    }
    problems
}

/// `[[bin]]` targets of the workspace, as (package, binary), from `cargo metadata`.
fn workspace_binaries() -> Vec<(String, String)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = std::process::Command::new(cargo)
        .args(["metadata", "--no-deps", "--format-version", "1", "--offline"])
        .current_dir(repo_root())
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).expect("cargo metadata is JSON");
    let mut binaries = Vec::new();
    for package in metadata["packages"].as_array().expect("packages") {
        for target in package["targets"].as_array().expect("targets") {
            let is_bin = target["kind"].as_array().is_some_and(|kinds| kinds.iter().any(|kind| kind == "bin"));
            if is_bin {
                binaries.push((
                    package["name"].as_str().expect("package name").to_owned(),
                    target["name"].as_str().expect("target name").to_owned(),
                ));
            }
        }
    }
    binaries
}

/// Problems of the Dockerfile: binaries it does not build or does not install.
fn check_dockerfile(dockerfile: &str, binaries: &[(String, String)]) -> Vec<String> {
    // Joined continuation lines, without comments.
    let text = dockerfile
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("\\\n", " ");
    let mut problems = Vec::new();
    let Some(build) = text.lines().find(|line| line.contains("cargo build")) else {
        return vec!["no `cargo build`".to_owned()];
    };
    let words: Vec<&str> = build.split_whitespace().collect();
    let whole_workspace = words.contains(&"--workspace") && !words.contains(&"--bin");
    // Packages left out on purpose (`--exclude`): neither built nor installed.
    let excluded: Vec<&str> = words.windows(2).filter(|pair| pair[0] == "--exclude").map(|pair| pair[1]).collect();
    for (package, binary) in binaries.iter().filter(|(package, _)| !excluded.contains(&package.as_str())) {
        let selected = whole_workspace || words.windows(2).any(|pair| pair == ["-p", package.as_str()]);
        if !selected {
            problems.push(format!("`cargo build` does not build package {package} (binary {binary})"));
        }
        if !text.contains(&format!("target/release/{binary} ")) && !text.contains(&format!("target/release/{binary}\n"))
        {
            problems.push(format!("binary {binary} is not copied out of target/release"));
        }
    }
    if !text.lines().any(|line| line.starts_with("COPY --from=builder") && line.contains("/usr/local/bin")) {
        problems.push("the runtime stage does not copy the binaries into /usr/local/bin".to_owned());
    }
    match text.lines().filter_map(|line| line.strip_prefix("USER ")).next_back() {
        Some(user) if !user.trim().starts_with("0") && !user.trim().starts_with("root") => {}
        _ => problems.push("the image does not end as a non-root USER".to_owned()),
    }
    problems
}

/// The `hookline-*` command lines of a service: its `command` list, or the `hookline-setup ...`
/// commands of a `sh -c` script (split at `|`, `||`, `&&`, `;` and line ends; quotes dropped).
fn command_lines(service: &Value) -> Vec<Vec<String>> {
    let command = strings(service.get("command"));
    if command.first().is_some_and(|program| program.starts_with("hookline-")) {
        return vec![command];
    }
    let Some(script) = command.last() else {
        return Vec::new();
    };
    script
        .split(['\n', ';', '|', '&'])
        .map(|segment| {
            segment
                .split_whitespace()
                .map(|word| word.trim_matches(|quote| quote == '\'' || quote == '"').to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|words| words.first().is_some_and(|program| program.starts_with("hookline-")))
        .collect()
}

/// Problems of the compose services' command lines: each `hookline-*` command must parse with
/// that binary's argument parser (the receiver's lives in its `main.rs`, so it is not checked).
fn check_command_lines(compose: &Value) -> Vec<String> {
    use clap::Parser;
    let mut problems = Vec::new();
    for (name, service) in services(compose) {
        let name = name.as_str().unwrap_or("?");
        for args in command_lines(service) {
            let parsed = match args[0].as_str() {
                "hookline-publisher" => hookline_publisher::Config::try_parse_from(&args).map(drop),
                "hookline-consumer" => hookline_consumer::Config::try_parse_from(&args).map(drop),
                "hookline-setup" => hookline_setup::Cli::try_parse_from(&args).map(drop),
                _ => Ok(()),
            };
            if let Err(error) = parsed {
                problems.push(format!("{name}: `{}` does not parse: {}", args.join(" "), error.kind()));
            }
        }
    }
    problems
}

#[test]
fn compose_commands_parse_with_the_binaries_arguments() {
    let compose = compose();
    let setup = command_lines(&services(&compose)["setup"]);
    assert!(setup.len() >= 4, "setup's script: {setup:?}");
    let problems = check_command_lines(&compose);
    assert!(problems.is_empty(), "docker/compose.yaml:\n{}", problems.join("\n"));
}

#[test]
fn command_check_catches_unknown_flags() {
    let text = read(&docker_dir().join("compose.yaml"))
        .replace("\"--metrics-listen\"", "\"--metrics-address\"")
        .replace("schemas register", "schemas registre");
    let problems = check_command_lines(&parse_yaml(&text).expect("still YAML")).join("\n");
    assert!(problems.contains("consumer: `hookline-consumer --group hookline --metrics-address"), "{problems}");
    assert!(problems.contains("setup: `hookline-setup schemas registre`"), "{problems}");
}

#[test]
fn compose_parses_and_references_existing_files_and_services() {
    let problems = check_compose(&compose(), &docker_dir());
    assert!(problems.is_empty(), "docker/compose.yaml:\n{}", problems.join("\n"));
}

#[test]
fn prometheus_scrapes_the_publisher_and_every_consumer_replica() {
    let compose = compose();
    let base = docker_dir();
    let mounted = lgtm_mount(&compose, &base, "/otel-lgtm/prometheus.yaml")
        .expect("the lgtm service mounts a Prometheus configuration at /otel-lgtm/prometheus.yaml");
    let problems = check_prometheus(&load_yaml(&mounted), &compose);
    assert!(problems.is_empty(), "{}:\n{}", mounted.display(), problems.join("\n"));
}

#[test]
fn grafana_provisions_the_dashboards_directory() {
    let compose = compose();
    let base = docker_dir();
    let provider = lgtm_mount(&compose, &base, "/otel-lgtm/grafana/conf/provisioning/dashboards/hookline.yaml")
        .expect("the lgtm service mounts a dashboard provider");
    let provider = load_yaml(&provider);
    let paths: Vec<String> = provider
        .get("providers")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.get("options")?.get("path")?.as_str().map(str::to_owned))
        .collect();
    assert!(!paths.is_empty(), "the dashboard provider names no path");
    for path in paths {
        let source = lgtm_mount(&compose, &base, &path)
            .unwrap_or_else(|| panic!("the provider reads {path}, which the lgtm service does not mount"));
        let dashboards = std::fs::read_dir(&source).map(|entries| entries.count()).unwrap_or(0);
        assert!(dashboards > 0, "{} (mounted at {path}) holds no dashboards", source.display());
    }
}

#[test]
fn dashboards_use_only_exported_metrics() {
    let exported = Exported::new();
    assert!(exported.family("hookline_publish_requests_total"), "{exported:?}");
    assert!(exported.histogram("hookline_produce_duration_seconds"), "{exported:?}");
    assert!(exported.family("hookline_deliveries_total"), "{exported:?}");
    assert!(exported.histogram("hookline_delivery_attempt_duration_seconds"), "{exported:?}");
    let directory = docker_dir().join("grafana/dashboards");
    let mut checked = 0;
    for entry in std::fs::read_dir(&directory).expect("docker/grafana/dashboards exists") {
        let path = entry.expect("directory entry").path();
        if path.extension().is_none_or(|extension| extension != "json") {
            continue;
        }
        let dashboard: serde_json::Value = serde_json::from_str(&read(&path))
            .unwrap_or_else(|error| panic!("{} does not parse: {error}", path.display()));
        let problems = check_dashboard(&dashboard, &exported);
        assert!(problems.is_empty(), "{}:\n{}", path.display(), problems.join("\n"));
        checked += 1;
    }
    assert!(checked > 0, "no dashboard in {}", directory.display());
}

#[test]
fn dockerfile_builds_every_workspace_binary() {
    let binaries = workspace_binaries();
    assert!(binaries.iter().any(|(_, binary)| binary == "hookline-consumer"), "{binaries:?}");
    let problems = check_dockerfile(&read(&docker_dir().join("Dockerfile")), &binaries);
    assert!(problems.is_empty(), "docker/Dockerfile:\n{}", problems.join("\n"));
}

// Each check fails on a broken input.

#[test]
fn compose_check_catches_missing_files_fixed_names_and_unknown_services() {
    let text = read(&docker_dir().join("compose.yaml"))
        .replace("./prometheus.yaml:", "./no-such-file.yaml:")
        .replace("dockerfile: docker/Dockerfile", "dockerfile: docker/Nope")
        .replace("http://lgtm:4318", "http://otel-collector:4318")
        .replace("/dev/tcp/127.0.0.1/9464", "/dev/tcp/127.0.0.1/9465");
    let mut compose = parse_yaml(&text).expect("still YAML");
    let consumer = compose["services"]["consumer"].as_mapping_mut().expect("consumer");
    consumer.insert("container_name".into(), "consumer".into());
    let depends_on = compose["services"]["publisher"]["depends_on"].as_mapping_mut().expect("depends_on");
    depends_on.insert("zookeeper".into(), Value::Mapping(Mapping::new()));
    let problems = check_compose(&compose, &docker_dir()).join("\n");
    let expected =
        ["no-such-file.yaml", "zookeeper", "docker/Nope", "otel-collector", "container_name", "port Some(9465)"];
    for expected in expected {
        assert!(problems.contains(expected), "{expected} not reported in:\n{problems}");
    }
    assert!(parse_yaml("services: [unclosed").is_err());
}

#[test]
fn prometheus_check_catches_unknown_targets_and_a_static_consumer() {
    let compose = compose();
    let prometheus = parse_yaml(
        "scrape_configs:\n  - job_name: a\n    static_configs:\n      - targets: ['publisher:9999', 'nowhere:1', 'consumer:9464']\n",
    )
    .expect("YAML");
    let problems = check_prometheus(&prometheus, &compose).join("\n");
    for expected in ["nowhere:1", "publisher is not scraped", "consumer is not scraped through dns_sd_configs"] {
        assert!(problems.contains(expected), "{expected} not reported in:\n{problems}");
    }
}

#[test]
fn dashboard_check_catches_unknown_metrics() {
    let exported = Exported::new();
    assert!(!exported.family("hookline_not_a_metric_total") && !consumer_registers("hookline_not_a_metric_total"));
    let dashboard = serde_json::json!({"panels": [{"type": "row", "panels": [{"targets": [
        {"expr": "sum(rate(hookline_deliveries_total[5m])) / sum(rate(hookline_delivered_total[5m]))"},
        {"expr": "histogram_quantile(0.9, rate(hookline_delivery_attempt_duration_seconds_bucket[5m]))"},
        {"expr": "rate(hookline_publish_requests_total_bucket[5m])"},
    ]}]}]});
    let problems = check_dashboard(&dashboard, &exported);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("`hookline_delivered_total`"), "{problems:?}");
    assert!(problems[1].contains("`hookline_publish_requests_total_bucket`"), "{problems:?}");
    assert!(!check_dashboard(&serde_json::json!({"panels": []}), &exported).is_empty());
}

#[test]
fn dockerfile_check_catches_a_missing_binary() {
    let binaries = workspace_binaries();
    let dockerfile = read(&docker_dir().join("Dockerfile"))
        .replace("target/release/hookline-demo", "")
        .replace("USER 10001:10001", "USER root");
    let problems = check_dockerfile(&dockerfile, &binaries).join("\n");
    assert!(problems.contains("binary hookline-demo is not copied"), "{problems}");
    assert!(problems.contains("non-root"), "{problems}");
    let narrow = dockerfile.replace("--workspace --exclude hookline-bench --bins", "-p hookline-publisher");
    let problems = check_dockerfile(&narrow, &binaries).join("\n");
    assert!(problems.contains("does not build package hookline-consumer"), "{problems}");
    // Only a package excluded on purpose may be missing from the image.
    let unexcluded = dockerfile.replace("--exclude hookline-bench ", "");
    let problems = check_dockerfile(&unexcluded, &binaries).join("\n");
    assert!(problems.contains("binary hookline-bench is not copied"), "{problems}");
}
