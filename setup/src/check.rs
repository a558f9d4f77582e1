//! `check`: is everything Hookline needs in place? One line per check, in order: the broker, each
//! topic's existence and layout, the topics' cleanup policies, the consumer group's state and
//! members, its lag on the delivery topic, and (when configured) the schema registry and its
//! subjects. A `FAIL` says what to do; a `warn` is worth a look but does not fail the command
//! (no consumer running, lag above `--max-lag`, a question the broker does not answer).

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use hookline_core::codec::{self, Codec};
use hookline_core::config::{KafkaArgs, SchemaRegistryArgs, TopicArgs};
use hookline_core::kafka;
use hookline_core::topics;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;

use crate::cluster::{self, Snapshot};
use crate::topics::partitions;
use crate::{CheckArgs, Error, Result};

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Fail => "FAIL",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone)]
struct Finding {
    check: String,
    status: Status,
    detail: String,
}

#[derive(Debug, Default)]
struct Report(Vec<Finding>);

impl Report {
    fn add(&mut self, status: Status, check: impl Into<String>, detail: impl Into<String>) {
        self.0.push(Finding { check: check.into(), status, detail: detail.into() });
    }
}

/// Runs every check and prints the report; fails with [`Error::ChecksFailed`] if any check failed.
pub async fn run<W: Write + Send>(
    kafka: &KafkaArgs,
    names: &TopicArgs,
    registry: &SchemaRegistryArgs,
    args: &CheckArgs,
    timeout: Duration,
    out: &mut W,
) -> Result<()> {
    // A malformed registry URL is the operator's typo (exit 2), found before anything is asked.
    let codec = Codec::new(registry)?;
    let mut report = Report::default();

    match cluster::snapshot(kafka, names, Some(&args.group), timeout).await {
        Ok(snapshot) => {
            report.add(Status::Ok, "broker", format!("{} broker(s), bootstrap {}", snapshot.brokers, kafka.brokers));
            check_topics(kafka, names, &snapshot, timeout, &mut report).await;
            check_group(kafka, &args.group, timeout, &mut report).await?;
            check_lag(&snapshot, args, &mut report);
        }
        // The Kafka checks all need the broker; the registry does not.
        Err(error @ (Error::Unreachable { .. } | Error::Timeout(..))) => {
            report.add(Status::Fail, "broker", error.to_string());
        }
        Err(other) => return Err(other),
    }
    check_registry(&codec, names, registry, timeout, &mut report).await?;

    if args.json {
        let checks: Vec<serde_json::Value> = report
            .0
            .iter()
            .map(|f| serde_json::json!({ "check": f.check, "status": f.status.label(), "detail": f.detail }))
            .collect();
        let ok = report.0.iter().all(|f| f.status != Status::Fail);
        writeln!(out, "{}", serde_json::json!({ "ok": ok, "checks": checks }))?;
    } else {
        for finding in &report.0 {
            writeln!(out, "{:<4} {}: {}", finding.status.label(), finding.check, finding.detail)?;
        }
    }
    out.flush()?;
    let failed: Vec<String> = report.0.into_iter().filter(|f| f.status == Status::Fail).map(|f| f.check).collect();
    if failed.is_empty() { Ok(()) } else { Err(Error::ChecksFailed(failed)) }
}

/// Each topic exists, with as many partitions as its relation to the delivery topic asks, every
/// partition led, and the cleanup policy `topics create` gives it.
async fn check_topics(
    kafka: &KafkaArgs,
    names: &TopicArgs,
    snapshot: &Snapshot,
    timeout: Duration,
    report: &mut Report,
) {
    let delivery_partitions = snapshot.deliveries().partitions.as_ref().map(Vec::len);
    // The expected layout is `topics create`'s, with the delivery topic's actual partition count
    // (any count is fine for it; the topics co-partitioned with it must follow it).
    let count = delivery_partitions.and_then(|n| i32::try_from(n).ok()).unwrap_or(1);
    let specs = topics::specs(names, count, 1);
    let policies = cleanup_policies(kafka, snapshot, timeout).await;

    for (index, (topic, spec)) in snapshot.topics.iter().zip(&specs).enumerate() {
        let check = format!("topic {} ({})", topic.name, topic.role);
        let Some(found) = &topic.partitions else {
            report.add(Status::Fail, check, "missing; run `hookline-setup topics create`");
            continue;
        };
        let mut problems = Vec::new();
        // The DLQ, the ledger, the retry topic and the parking state follow the delivery topic
        // (unknown when it is missing).
        let follows_deliveries = matches!(index, 1 | 3 | 5 | 6);
        // The delivery log may have any count: it is keyed by customer and read whole.
        let any_count = index == 7;
        if !any_count
            && (!follows_deliveries || delivery_partitions.is_some())
            && found.len() != usize::try_from(spec.partitions).unwrap_or_default()
        {
            let why = if follows_deliveries { " (as many as the delivery topic)" } else { "" };
            problems.push(format!("has {}, expected {}{why}", partitions(found.len() as i64), spec.partitions));
        }
        let leaderless: Vec<String> = found.iter().filter(|p| p.leader < 0).map(|p| p.id.to_string()).collect();
        if !leaderless.is_empty() {
            problems.push(format!(
                "partition(s) {} have no leader (are all its replicas' brokers down?)",
                leaderless.join(",")
            ));
        }
        let policy = match &policies {
            Ok(policies) => policies.get(&spec.name).cloned(),
            Err(_) => None,
        };
        if let Some(policy) = &policy
            && policy != spec.cleanup_policy
        {
            problems.push(format!("has cleanup.policy={policy}, expected {}", spec.cleanup_policy));
        }
        // Fewer in-sync replicas than replicas: still served, but one broker less from data loss.
        let under_replicated: Vec<String> =
            found.iter().filter(|p| p.isr.len() < p.replicas.len()).map(|p| p.id.to_string()).collect();
        if problems.is_empty() {
            let policy = policy.map_or_else(String::new, |p| format!(", cleanup.policy={p}"));
            let layout = format!("{}{policy}", partitions(found.len() as i64));
            if under_replicated.is_empty() {
                report.add(Status::Ok, check, layout);
            } else {
                report.add(
                    Status::Warn,
                    check,
                    format!(
                        "{layout}; partition(s) {} under-replicated (fewer in-sync replicas than replicas): check \
                         the brokers",
                        under_replicated.join(",")
                    ),
                );
            }
        } else {
            report.add(
                Status::Fail,
                check,
                format!(
                    "{}; Hookline never alters topics: recreate it with your Kafka tooling (drain the consumers first), \
                     or point the topic flags at the right topics",
                    problems.join("; ")
                ),
            );
        }
    }
    if let Err(reason) = policies {
        report.add(
            Status::Warn,
            "topic configs",
            format!("the broker did not answer DescribeConfigs ({reason}); cleanup policies not checked"),
        );
    }
}

/// `cleanup.policy` of each existing topic, or why the broker did not say.
async fn cleanup_policies(
    kafka: &KafkaArgs,
    snapshot: &Snapshot,
    timeout: Duration,
) -> Result<HashMap<String, String>, String> {
    let existing: Vec<&str> =
        snapshot.topics.iter().filter(|t| t.partitions.is_some()).map(|t| t.name.as_str()).collect();
    if existing.is_empty() {
        return Ok(HashMap::new());
    }
    let admin: AdminClient<DefaultClientContext> =
        kafka::admin_config(kafka, "hookline-setup").create().map_err(|e| e.to_string())?;
    let options = AdminOptions::new().request_timeout(Some(timeout));
    let resources: Vec<ResourceSpecifier<'_>> = existing.iter().map(|name| ResourceSpecifier::Topic(name)).collect();
    let answer = tokio::time::timeout(timeout + Duration::from_secs(1), admin.describe_configs(&resources, &options))
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
        .map_err(|e| e.to_string())?;
    let mut policies = HashMap::new();
    for (name, result) in existing.iter().zip(answer) {
        match result {
            Ok(resource) => {
                if let Some(policy) = resource.entry_map().get("cleanup.policy").and_then(|e| e.value.clone()) {
                    policies.insert((*name).to_owned(), policy);
                }
            }
            Err(code) => return Err(format!("{name}: {code}")),
        }
    }
    Ok(policies)
}

/// The group's state and members, when the broker describes groups.
async fn check_group(kafka: &KafkaArgs, group: &str, timeout: Duration, report: &mut Report) -> Result<()> {
    let check = format!("group {group}");
    match cluster::group(kafka, group, timeout).await? {
        Err(reason) => report.add(
            Status::Warn,
            check,
            format!("the broker did not describe the group ({reason}); its state and members are not checked"),
        ),
        // Apache Kafka lists a group with members or committed offsets; tansu 0.6 only one with
        // committed offsets.
        Ok(None) => report.add(
            Status::Warn,
            check,
            format!(
                "not listed by the broker: no consumer has joined it (tansu 0.6 lists a group only once it has \
                 committed offsets); make sure the consumers run (`hookline-consumer --group {group}`)"
            ),
        ),
        Ok(Some(found)) if found.members.is_empty() => report.add(
            Status::Warn,
            check,
            format!(
                "state {}, no members: nothing is delivering; start the consumers (`hookline-consumer --group {group}`)",
                found.state
            ),
        ),
        Ok(Some(found)) => {
            let status = if found.state == "Stable" { Status::Ok } else { Status::Warn };
            let rebalancing = if status == Status::Ok { "" } else { " (rebalancing; check again shortly)" };
            report.add(
                status,
                check,
                format!(
                    "state {}{rebalancing}, {} member(s): {}",
                    found.state,
                    found.members.len(),
                    found.members.join(", ")
                ),
            );
        }
    }
    Ok(())
}

/// The group's lag on the delivery topic: high watermark minus committed offset, per partition.
fn check_lag(snapshot: &Snapshot, args: &CheckArgs, report: &mut Report) {
    let check = format!("group {} lag", args.group);
    let (Some(partitions), Some(committed)) = (&snapshot.deliveries().partitions, &snapshot.committed) else {
        return; // The missing delivery topic is reported already.
    };
    let committed = match committed {
        Ok(committed) => committed,
        Err(reason) => {
            report.add(Status::Warn, check, format!("cannot read the committed offsets: {reason}"));
            return;
        }
    };
    let mut total = 0;
    let mut each = Vec::new();
    for partition in partitions {
        match cluster::lag(partition.watermarks, committed.get(&partition.id).copied()) {
            Some(lag) => {
                total += lag;
                each.push(format!("p{} {lag}", partition.id));
            }
            None => each.push(format!("p{} ?", partition.id)),
        }
    }
    let mut detail = format!("total {total} on {} ({})", snapshot.deliveries().name, each.join(", "));
    if committed.is_empty() {
        detail.push_str("; nothing committed yet, counted from the earliest record");
    }
    match args.max_lag {
        Some(max) if u64::try_from(total).unwrap_or_default() > max => report.add(
            Status::Warn,
            check,
            format!(
                "{detail}; above --max-lag {max}: start more consumers (up to one per partition) or look for a slow \
                 or failing endpoint (retries, dead letters)"
            ),
        ),
        _ => report.add(Status::Ok, check, detail),
    }
}

/// The registry answers `GET /subjects`, and each topic's `<topic>-value` subject holds the
/// compiled-in schema.
async fn check_registry(
    codec: &Codec,
    names: &TopicArgs,
    args: &SchemaRegistryArgs,
    timeout: Duration,
    report: &mut Report,
) -> Result<()> {
    let Some(url) = codec.registry_url() else {
        report.add(Status::Ok, "schema registry", "not configured (no --schema-registry-url); nothing to check");
        return Ok(());
    };
    let subjects = match list_subjects(url, args, timeout).await {
        Ok(subjects) => {
            report.add(Status::Ok, "schema registry", format!("{url}: {} subject(s)", subjects.len()));
            subjects
        }
        Err(reason) => {
            report.add(
                Status::Fail,
                "schema registry",
                format!(
                    "{url}: {reason}; check that the registry is running and that --schema-registry-url \
                     (SCHEMA_REGISTRY_URL) points at it"
                ),
            );
            return Ok(());
        }
    };
    for (subject, record) in codec::subjects(names) {
        let check = format!("subject {subject}");
        if !subjects.contains(&subject) {
            report.add(Status::Fail, check, "not registered; run `hookline-setup schemas register`");
            continue;
        }
        match tokio::time::timeout(timeout, codec.lookup(&subject, record)).await {
            Ok(Ok(found)) => {
                let version = found.version.map_or_else(|| "?".to_owned(), |v| v.to_string());
                report.add(Status::Ok, check, format!("{} id {} version {version}", record.full_name(), found.id));
            }
            Ok(Err(hookline_core::Error::SchemaNotRegistered { .. })) => report.add(
                Status::Fail,
                check,
                format!(
                    "does not hold the compiled-in {} schema; run `hookline-setup schemas register` (the registry \
                     checks compatibility)",
                    record.full_name()
                ),
            ),
            Ok(Err(error)) => report.add(Status::Fail, check, error.to_string()),
            Err(_) => report.add(Status::Fail, check, format!("no answer within {timeout:?}")),
        }
    }
    Ok(())
}

/// `GET /subjects`, reached directly like the codec's client (no proxy), with the same credentials.
async fn list_subjects(url: &str, args: &SchemaRegistryArgs, timeout: Duration) -> Result<Vec<String>, String> {
    let client = reqwest::Client::builder().no_proxy().timeout(timeout).build().map_err(|e| e.to_string())?;
    let mut request = client.get(format!("{url}/subjects"));
    if let Some((user, password)) = args.basic_auth.as_ref().and_then(|c| c.expose().split_once(':')) {
        request = request.basic_auth(user, Some(password));
    }
    let response = request.send().await.map_err(|e| format!("cannot reach it ({e})"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(format!("GET /subjects answered {status}: {}", body.trim()));
    }
    response.json().await.map_err(|e| format!("GET /subjects answered something else than a list of subjects ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Partition, Topic};

    fn snapshot(watermarks: &[(i64, i64)], committed: Result<HashMap<i32, i64>, String>) -> Snapshot {
        let partitions = watermarks
            .iter()
            .zip(0..)
            .map(|(w, id)| Partition { id, leader: 1, replicas: vec![1], isr: vec![1], watermarks: Some(*w) })
            .collect();
        let topic = |role, name: &str, partitions| Topic { role, name: name.to_owned(), partitions };
        Snapshot {
            brokers: 1,
            topics: vec![
                topic("deliveries", "t", Some(partitions)),
                topic("dead letters", "t.dlq", None),
                topic("customers", "t.customers", None),
                topic("delivery ledger", "t.delivered", None),
                topic("idempotency", "t.idempotency", None),
                topic("retry", "t.retry", None),
                topic("parking state", "t.parking", None),
                topic("delivery log", "t.attempts", None),
            ],
            committed: Some(committed),
        }
    }

    fn lag_report(snapshot: &Snapshot, max_lag: Option<u64>) -> Finding {
        let mut report = Report::default();
        check_lag(snapshot, &CheckArgs { group: "g".into(), max_lag, json: false }, &mut report);
        assert_eq!(report.0.len(), 1);
        report.0.remove(0)
    }

    #[test]
    fn lag_is_summed_and_warned_about_above_the_limit() {
        let found = snapshot(&[(0, 10), (5, 8)], Ok(HashMap::from([(0, 4)])));
        let finding = lag_report(&found, None);
        assert_eq!((finding.status, finding.detail.as_str()), (Status::Ok, "total 9 on t (p0 6, p1 3)"));
        assert_eq!(lag_report(&found, Some(9)).status, Status::Ok);
        let above = lag_report(&found, Some(8));
        assert_eq!(above.status, Status::Warn);
        assert!(above.detail.contains("above --max-lag 8"), "{}", above.detail);

        let nothing = lag_report(&snapshot(&[(0, 2)], Ok(HashMap::new())), None);
        assert!(
            nothing.detail.ends_with("nothing committed yet, counted from the earliest record"),
            "{}",
            nothing.detail
        );
        let refused = lag_report(&snapshot(&[(0, 2)], Err("not coordinator".into())), None);
        assert_eq!(refused.status, Status::Warn);
    }
}
