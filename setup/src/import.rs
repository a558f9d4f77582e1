//! `customers import FILE --out CREDENTIALS`: onboards many customers in one run.
//!
//! The file is JSON Lines: one customer per line with the fields `customers create` takes
//! (`{"id", "name"?, "webhook_url"?, "events"?, "public_key"?}`, see [`Line`]); blank lines and
//! lines starting with `#` are skipped. Every line passes the onboarding API's checks
//! ([`Tenants::check`]: id, name, webhook URL with the SSRF guard, event types, public key)
//! before anything it needs is written. A line that fails is refused and reported with its line
//! number and the reason; the rest of the file is imported all the same.
//!
//! The directory is loaded once. Lines are taken in batches of up to [`BATCH`] customers, each
//! created by one [`Tenants::create_batch`] (records in flight together, acknowledgements awaited
//! together, every record read back through the directory by id). The credentials of the
//! customers a batch created are appended to the `--out` file (readable by its owner only) as
//! soon as the batch is acknowledged, and appear nowhere else: not on stdout, not in logs.
//!
//! Re-running is safe: a customer whose id exists is reported as `exists` and left alone (no
//! record written, no credentials issued), so an import stopped part-way, or fixed and run again,
//! creates only what is missing. Within one file the first line naming an id claims it; later
//! lines with that id are refused, even when the first was refused for another reason.
//!
//! The report (one line per customer line, then a summary) goes to the command's output, a
//! progress bar to stderr when it is a terminal.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, IsTerminal, Read as _, Write};
use std::path::{Path, PathBuf};

use futures::StreamExt as _;
use hookline_core::customer::validate_id;
use hookline_core::tenants::{Checked, Created, NewCustomer, Tenants};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use crate::customers::{Context, connect};
use crate::{Error, ImportCustomers, Result};

/// Customers per [`Tenants::create_batch`]: the records in flight at once, and the most
/// credentials held before they are written to the out file.
pub const BATCH: usize = 1000;
/// Webhook URLs checked (their hosts resolved) at once.
const CONCURRENT_CHECKS: usize = 16;
/// Longest line read; a longer one is refused unread. 1000 subscriptions of 255 characters fit.
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// Longest reason shown in the report, in characters: room for an SSRF refusal of a host name
/// with its resolved address and how to allow it (a host is itself clipped by `quote::clip`).
const MAX_REASON_CHARS: usize = 240;

/// One line of the file: the fields of `customers create`, and the public key as PEM text.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    webhook_url: Option<String>,
    #[serde(default)]
    events: Option<Vec<String>>,
    #[serde(default)]
    public_key: Option<String>,
}

/// Runs `customers import`.
pub async fn run<W: Write + Send>(context: &Context<'_>, import: ImportCustomers, out: &mut W) -> Result<()> {
    // Everything that can be refused without a broker is refused before connecting: no master
    // key, an unreadable file, an out file that others could read.
    context.master_key.require()?;
    let file = File::open(&import.file)
        .map_err(|error| Error::Usage(format!("cannot read {}: {error}", import.file.display())))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or_default();
    let mut credentials = Credentials::open(&import.out)?;
    let tenants = connect(context).await?;

    // Ctrl-C stops the import after the batch in flight, whose credentials are then written.
    let interrupted = CancellationToken::new();
    let watcher = tokio::spawn({
        let interrupted = interrupted.clone();
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                interrupted.cancel();
            }
        }
    });
    let progress = progress_bar(size);
    let mut importer = Importer {
        tenants: &tenants,
        credentials: &mut credentials,
        input: BufReader::new(file),
        buffer: Vec::new(),
        line: 0,
        seen: HashMap::new(),
        tally: Tally::default(),
        progress: &progress,
    };
    let stopped = importer.import_all(&interrupted, out).await;
    let tally = importer.tally;
    watcher.abort();
    progress.finish_and_clear();
    let stopped = stopped?;

    writeln!(out, "{}", tally.summary(&import.file, &import.out))?;
    out.flush()?;
    if let Some(reason) = stopped {
        return Err(Error::Import { created: tally.created, out: import.out.display().to_string(), reason });
    }
    if tally.refused > 0 {
        return Err(Error::ImportRefused { refused: tally.refused, lines: tally.lines() });
    }
    Ok(())
}

fn progress_bar(bytes: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(bytes), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{bar:30} {percent:>3}% {msg}") {
        bar.set_style(style);
    }
    bar
}

/// Imports the file batch by batch.
struct Importer<'a> {
    tenants: &'a Tenants,
    credentials: &'a mut Credentials,
    input: BufReader<File>,
    buffer: Vec<u8>,
    /// Number of the last line read.
    line: usize,
    /// The line that claimed each id.
    seen: HashMap<String, usize>,
    tally: Tally,
    progress: &'a ProgressBar,
}

/// A line to check and create.
#[derive(Debug)]
struct Candidate {
    line: usize,
    customer: NewCustomer,
    /// Bytes of the file it took (for the progress bar).
    bytes: u64,
}

impl Importer<'_> {
    /// Imports every batch. Returns why the import stopped early (an operational failure, which
    /// stops it after the report of its batch is written, or Ctrl-C); `Err` only when the report
    /// cannot be written.
    async fn import_all<W: Write>(&mut self, interrupted: &CancellationToken, out: &mut W) -> Result<Option<String>> {
        loop {
            let mut reports = Vec::new();
            let mut candidates = Vec::new();
            let read = self.read_batch(&mut reports, &mut candidates);
            let failure = self.import_batch(candidates, &mut reports).await;
            reports.sort_by_key(|report| report.line);
            for report in &reports {
                writeln!(out, "{report}")?;
            }
            out.flush()?;
            self.progress.set_message(self.tally.progress());
            match (read, failure) {
                (_, Some(reason)) | (Err(reason), None) => return Ok(Some(reason)),
                (Ok(true), None) => return Ok(None),
                (Ok(false), None) if interrupted.is_cancelled() => return Ok(Some("interrupted".into())),
                (Ok(false), None) => {}
            }
        }
    }

    /// Reads lines until [`BATCH`] of them are candidates (`Ok(false)`), or to the end of the
    /// file (`Ok(true)`); refuses what can be refused without the network. `Err` says why the
    /// file could not be read on.
    fn read_batch(
        &mut self,
        reports: &mut Vec<Report>,
        candidates: &mut Vec<Candidate>,
    ) -> std::result::Result<bool, String> {
        while candidates.len() < BATCH {
            let read = read_line(&mut self.input, &mut self.buffer)
                .map_err(|error| format!("cannot read line {} of the file: {error}", self.line + 1))?;
            let Some((read, bytes)) = read else { return Ok(true) };
            self.line += 1;
            match admit(self.line, read, &mut self.seen) {
                Admitted::Skip => {
                    self.tally.skipped += 1;
                    self.progress.inc(bytes);
                }
                Admitted::Refused { id, reason } => {
                    let outcome = Outcome::Refused(reason);
                    self.tally.count(&outcome);
                    self.progress.inc(bytes);
                    reports.push(Report { line: self.line, id, outcome });
                }
                Admitted::Check(customer) => candidates.push(Candidate { line: self.line, customer, bytes }),
            }
        }
        Ok(false)
    }

    /// Checks the candidates' webhook URLs, creates those that pass, writes their credentials.
    /// Returns the reason of an operational failure.
    async fn import_batch(&mut self, candidates: Vec<Candidate>, reports: &mut Vec<Report>) -> Option<String> {
        let (tenants, progress) = (self.tenants, self.progress);
        let checks: Vec<hookline_core::Result<Checked>> = futures::stream::iter(&candidates)
            .map(|candidate| async move {
                let checked = tenants.check(&candidate.customer).await;
                progress.inc(candidate.bytes);
                checked
            })
            .buffered(CONCURRENT_CHECKS)
            .collect()
            .await;
        let mut lines = Vec::with_capacity(candidates.len());
        let mut checked = Vec::with_capacity(candidates.len());
        for (candidate, check) in candidates.into_iter().zip(checks) {
            match check {
                Ok(ok) => {
                    lines.push(candidate.line);
                    checked.push(ok);
                }
                Err(error) => {
                    let outcome = refusal(error, candidate.customer.webhook_url.as_deref());
                    self.tally.count(&outcome);
                    reports.push(Report { line: candidate.line, id: Some(candidate.customer.id), outcome });
                }
            }
        }
        if checked.is_empty() {
            return None;
        }

        progress.set_message(format!("writing {} customer(s)", checked.len()));
        let batch = match self.tenants.create_batch(&checked).await {
            Ok(batch) => batch,
            Err(error) => {
                let reason = error.to_string();
                for (line, customer) in lines.into_iter().zip(&checked) {
                    let outcome = Outcome::Failed(reason.clone());
                    self.tally.count(&outcome);
                    reports.push(Report { line, id: Some(customer.id().to_owned()), outcome });
                }
                return Some(reason);
            }
        };
        let mut issued = Vec::new();
        let mut failure = None;
        for ((line, customer), created) in lines.into_iter().zip(&checked).zip(batch.created) {
            let outcome = match created {
                Created::Issued(new) => {
                    issued.push(Zeroizing::new(IssuedLine::json(line, &new)));
                    Outcome::Created
                }
                Created::Exists(existing) if existing.is_source() => Outcome::Refused(format!(
                    "id `{}` belongs to an inbound source (see `sources list`); choose another id",
                    existing.id
                )),
                Created::Exists(existing) => Outcome::Exists(customer.differences(&existing)),
                Created::Failed(error) => {
                    let reason = error.to_string();
                    failure.get_or_insert_with(|| reason.clone());
                    Outcome::Failed(reason)
                }
            };
            self.tally.count(&outcome);
            reports.push(Report { line, id: Some(customer.id().to_owned()), outcome });
        }
        if let Err(error) = self.credentials.append(&issued) {
            return Some(format!(
                "cannot write the credentials of the {} customer(s) just created to {}: {error}; they exist without \
                 known credentials: give each new ones with `customers reissue-api-key` and `customers rotate-secret \
                 --grace 0s`",
                issued.len(),
                self.credentials.path.display()
            ));
        }
        if let Err(error) = batch.read_back {
            failure.get_or_insert_with(|| error.to_string());
        }
        failure
    }
}

/// What a line asks for, decided without the network.
#[derive(Debug, PartialEq, Eq)]
enum Admitted {
    /// Blank, or a comment.
    Skip,
    /// Refused: why, and the id if one could be read.
    Refused { id: Option<String>, reason: String },
    /// Valid so far: its webhook URL is still to be checked, and whether it exists.
    Check(NewCustomer),
}

/// Decides what to do with line number `line`; a line with a valid id claims it in `seen`.
fn admit(line: usize, read: ReadLine, seen: &mut HashMap<String, usize>) -> Admitted {
    let refused = |id: Option<String>, reason: String| Admitted::Refused { id, reason };
    let text = match read {
        ReadLine::Text(text) => text,
        ReadLine::TooLong => return refused(None, format!("longer than {MAX_LINE_BYTES} bytes")),
        ReadLine::NotUtf8 => return refused(None, "not UTF-8 text".into()),
    };
    let text = text.trim();
    if text.is_empty() || text.starts_with('#') {
        return Admitted::Skip;
    }
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(error) => return refused(None, format!("not JSON: {error}")),
    };
    // serde would also read a struct from an array, by position.
    if !value.is_object() {
        return refused(None, "not a customer: expected a JSON object, {\"id\": ...}".into());
    }
    let id = value.get("id").and_then(serde_json::Value::as_str).map(str::to_owned);
    let line_fields = match serde_json::from_value::<Line>(value) {
        Ok(fields) => fields,
        Err(error) => return refused(id, format!("not a customer: {error}")),
    };
    let customer = NewCustomer {
        id: line_fields.id,
        name: line_fields.name,
        webhook_url: line_fields.webhook_url,
        events: line_fields.events.unwrap_or_default(),
        public_key: line_fields.public_key,
    };
    if let Err(error) = validate_id(&customer.id) {
        return refused(None, error.to_string());
    }
    match seen.entry(customer.id.clone()) {
        Entry::Occupied(first) => {
            return refused(Some(customer.id), format!("duplicate id: first given on line {}", first.get()));
        }
        Entry::Vacant(vacant) => {
            vacant.insert(line);
        }
    }
    match customer.validate() {
        Ok(()) => Admitted::Check(customer),
        Err(error) => {
            let reason = redact(&error.to_string(), customer.webhook_url.as_deref());
            refused(Some(customer.id), reason)
        }
    }
}

/// The outcome of a check that failed: bad input is refused, anything else is a failure.
fn refusal(error: hookline_core::Error, webhook_url: Option<&str>) -> Outcome {
    match error {
        hookline_core::Error::Invalid { .. } => Outcome::Refused(redact(&error.to_string(), webhook_url)),
        other => Outcome::Failed(other.to_string()),
    }
}

/// `reason` without the webhook URL given (its path or query may hold a token), as the SSRF guard
/// names only the host.
fn redact(reason: &str, webhook_url: Option<&str>) -> String {
    match webhook_url {
        Some(url) if !url.is_empty() => reason.replace(url, "<webhook_url>"),
        _ => reason.to_owned(),
    }
}

/// One line of the file, as read.
#[derive(Debug, PartialEq, Eq)]
enum ReadLine {
    Text(String),
    TooLong,
    NotUtf8,
}

/// Reads the next line without its line ending, keeping at most [`MAX_LINE_BYTES`] of it (a
/// longer line is consumed but not kept). Also returns the bytes consumed; `None` at the end.
fn read_line(input: &mut impl BufRead, buffer: &mut Vec<u8>) -> io::Result<Option<(ReadLine, u64)>> {
    buffer.clear();
    let mut consumed = input.by_ref().take(MAX_LINE_BYTES as u64 + 1).read_until(b'\n', buffer)?;
    if consumed == 0 {
        return Ok(None);
    }
    if buffer.last() == Some(&b'\n') {
        buffer.pop();
        if buffer.last() == Some(&b'\r') {
            buffer.pop();
        }
    } else if buffer.len() > MAX_LINE_BYTES {
        loop {
            let available = input.fill_buf()?;
            if available.is_empty() {
                break;
            }
            let (used, ends) = match available.iter().position(|&b| b == b'\n') {
                Some(at) => (at + 1, true),
                None => (available.len(), false),
            };
            input.consume(used);
            consumed += used;
            if ends {
                break;
            }
        }
        return Ok(Some((ReadLine::TooLong, consumed as u64)));
    }
    let read = match std::str::from_utf8(buffer) {
        Ok(text) => ReadLine::Text(text.to_owned()),
        Err(_) => ReadLine::NotUtf8,
    };
    Ok(Some((read, consumed as u64)))
}

/// What happened to one line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Created,
    /// Left alone; the fields given that differ from the stored customer.
    Exists(Vec<&'static str>),
    /// Bad input: why.
    Refused(String),
    /// Could not be written (an operational failure): why.
    Failed(String),
}

/// One line of the report: `line N: ID: created|exists|refused: REASON|failed: REASON`.
#[derive(Debug, PartialEq, Eq)]
struct Report {
    line: usize,
    /// Shown only if valid (`-` otherwise; a refused id is quoted in the reason).
    id: Option<String>,
    outcome: Outcome,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = self.id.as_deref().filter(|id| validate_id(id).is_ok()).unwrap_or("-");
        write!(f, "line {}: {id}: ", self.line)?;
        match &self.outcome {
            Outcome::Created => f.write_str("created"),
            Outcome::Exists(differs) if differs.is_empty() => f.write_str("exists"),
            Outcome::Exists(differs) => write!(f, "exists (differs: {}; left unchanged)", differs.join(", ")),
            Outcome::Refused(reason) => write!(f, "refused: {}", clip(reason)),
            Outcome::Failed(reason) => write!(f, "failed: {}", clip(reason)),
        }
    }
}

/// `reason` on one line, at most [`MAX_REASON_CHARS`] characters.
fn clip(reason: &str) -> String {
    let one_line = reason.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= MAX_REASON_CHARS {
        return one_line;
    }
    let mut clipped: String = one_line.chars().take(MAX_REASON_CHARS - 1).collect();
    clipped.push('…');
    clipped
}

/// Lines by outcome.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Tally {
    created: usize,
    exists: usize,
    refused: usize,
    failed: usize,
    /// Blank lines and comments.
    skipped: usize,
}

impl Tally {
    fn count(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Created => self.created += 1,
            Outcome::Exists(_) => self.exists += 1,
            Outcome::Refused(_) => self.refused += 1,
            Outcome::Failed(_) => self.failed += 1,
        }
    }

    /// Lines that named a customer (or tried to).
    fn lines(&self) -> usize {
        self.created + self.exists + self.refused + self.failed
    }

    fn progress(&self) -> String {
        format!("{} created, {} exist, {} refused", self.created, self.exists, self.refused)
    }

    fn summary(&self, file: &Path, out: &Path) -> String {
        let mut summary =
            format!("{}: {} created, {} existed, {} refused", file.display(), self.created, self.exists, self.refused);
        if self.failed > 0 {
            summary.push_str(&format!(", {} failed", self.failed));
        }
        summary.push_str(&format!(", {} blank or comment line(s)", self.skipped));
        if self.created > 0 {
            summary.push_str(&format!(
                "; the created customers' API keys and signing secrets were appended to {} (shown once: hand each \
                 customer its own)",
                out.display()
            ));
        }
        summary
    }
}

/// A created customer's line in the out file.
#[derive(Debug, Serialize)]
struct IssuedLine<'a> {
    id: &'a str,
    api_key: &'a str,
    signing_secret: &'a str,
    /// The line of the import file it came from.
    line: usize,
}

impl IssuedLine<'_> {
    fn json(line: usize, issued: &hookline_core::customer::Issued) -> String {
        let secret = Zeroizing::new(issued.signing_secret.expose());
        let shown = IssuedLine {
            id: &issued.customer.id,
            api_key: issued.api_key.expose(),
            signing_secret: secret.as_str(),
            line,
        };
        // Serializing strings into a string cannot fail.
        serde_json::to_string(&shown).unwrap_or_default()
    }
}

/// The out file: the created customers' credentials, one JSON object per line, appended.
#[derive(Debug)]
struct Credentials {
    path: PathBuf,
    file: File,
}

impl Credentials {
    /// Opens `path` for appending: created with mode 0600 if missing; an existing file must be a
    /// regular file that only its owner can read or write. Never truncated.
    fn open(path: &Path) -> Result<Self> {
        let refuse = |why: String| Error::Usage(format!("--out {}: {why}", path.display()));
        let missing = match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(refuse("is a symbolic link; credentials are only written to a regular file".into()));
            }
            Ok(_) => false,
            Err(error) if error.kind() == io::ErrorKind::NotFound => true,
            Err(error) => return Err(refuse(error.to_string())),
        };
        let mut options = OpenOptions::new();
        options.append(true).create_new(missing);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let file = options.open(path).map_err(|error| refuse(format!("cannot open it: {error}")))?;
        let meta = file.metadata().map_err(|error| refuse(error.to_string()))?;
        if !meta.is_file() {
            return Err(refuse("is not a regular file".into()));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(refuse(format!(
                    "others may read or write it (mode {mode:o}); credentials go only to a file of its owner's: \
                     `chmod 600` it or choose another --out"
                )));
            }
        }
        Ok(Self { path: path.to_owned(), file })
    }

    /// Appends these lines and waits until they are on disk.
    fn append(&mut self, lines: &[Zeroizing<String>]) -> io::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut text = Zeroizing::new(Vec::new());
        for line in lines {
            text.extend_from_slice(line.as_bytes());
            text.push(b'\n');
        }
        self.file.write_all(&text)?;
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn admitted(lines: &[&str]) -> Vec<Admitted> {
        let mut seen = HashMap::new();
        lines.iter().enumerate().map(|(i, text)| admit(i + 1, ReadLine::Text((*text).to_owned()), &mut seen)).collect()
    }

    fn refusal_of(admitted: &Admitted) -> (Option<&str>, &str) {
        match admitted {
            Admitted::Refused { id, reason } => (id.as_deref(), reason),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn lines_are_parsed_checked_and_ids_claimed_by_the_first() {
        let decided = admitted(&[
            "",
            "   # a comment",
            r#"{"id": "acme", "name": "Acme", "webhook_url": "https://a.example/in", "events": ["a", "a"]}"#,
            r#"{"id": "globex", "events": null, "name": null}"#,
            r#"{"id": "acme"}"#,
            r#"{"id": "bad id"}"#,
            r#"{"id": "typo", "webhook": "https://t.example/"}"#,
            r#"{"id": "x", "#,
            "42",
            r#"["acme", "Acme"]"#,
            r#"{"name": "no id"}"#,
            r#"{"id": "bad-url", "webhook_url": "https://exa mple.com/?token=hush"}"#,
            r#"{"id": "bad-id-first", "events": ["bad type"]}"#,
            r#"{"id": "bad-id-first"}"#,
        ]);
        assert_eq!(decided[0], Admitted::Skip);
        assert_eq!(decided[1], Admitted::Skip);
        let Admitted::Check(acme) = &decided[2] else { panic!("{:?}", decided[2]) };
        assert_eq!(
            (acme.id.as_str(), acme.name.as_deref(), acme.webhook_url.as_deref()),
            ("acme", Some("Acme"), Some("https://a.example/in"))
        );
        assert_eq!(acme.events, ["a", "a"], "normalized later, by the check");
        assert!(matches!(&decided[3], Admitted::Check(c) if c.events.is_empty() && c.name.is_none()));
        assert_eq!(refusal_of(&decided[4]), (Some("acme"), "duplicate id: first given on line 3"));
        let (id, reason) = refusal_of(&decided[5]);
        assert_eq!(id, None);
        assert!(reason.starts_with("invalid id: `bad id`"), "{reason}");
        let (id, reason) = refusal_of(&decided[6]);
        assert_eq!(id, Some("typo"));
        assert!(reason.contains("unknown field `webhook`"), "{reason}");
        assert!(refusal_of(&decided[7]).1.starts_with("not JSON: "));
        for object_expected in &decided[8..=9] {
            assert_eq!(refusal_of(object_expected), (None, "not a customer: expected a JSON object, {\"id\": ...}"));
        }
        assert!(refusal_of(&decided[10]).1.contains("missing field `id`"), "{:?}", decided[10]);
        let (id, reason) = refusal_of(&decided[11]);
        assert_eq!(id, Some("bad-url"));
        assert!(reason.starts_with("invalid webhook_url") && !reason.contains("hush"), "{reason}");
        assert!(refusal_of(&decided[12]).1.starts_with("invalid events"));
        assert_eq!(
            refusal_of(&decided[13]).1,
            "duplicate id: first given on line 13",
            "even when the first is refused"
        );
    }

    #[test]
    fn unreadable_lines_are_refused() {
        let mut seen = HashMap::new();
        let too_long = admit(1, ReadLine::TooLong, &mut seen);
        assert_eq!(refusal_of(&too_long), (None, format!("longer than {MAX_LINE_BYTES} bytes").as_str()));
        assert_eq!(refusal_of(&admit(2, ReadLine::NotUtf8, &mut seen)), (None, "not UTF-8 text"));
    }

    #[test]
    fn lines_are_read_with_a_bound() {
        let long = "x".repeat(MAX_LINE_BYTES + 10);
        let text = format!("first\r\n{long}\nafter\n\u{e9}\nlast");
        let mut bytes = text.into_bytes();
        // Make the fourth line invalid UTF-8.
        let at = bytes.iter().position(|&b| b == 0xc3).expect("the é");
        bytes[at + 1] = 0xff;
        let mut input = Cursor::new(bytes);
        let mut buffer = Vec::new();
        let mut read = Vec::new();
        while let Some(line) = read_line(&mut input, &mut buffer).expect("read") {
            read.push(line);
        }
        assert_eq!(
            read,
            [
                (ReadLine::Text("first".into()), 7),
                (ReadLine::TooLong, MAX_LINE_BYTES as u64 + 11),
                (ReadLine::Text("after".into()), 6),
                (ReadLine::NotUtf8, 3),
                (ReadLine::Text("last".into()), 4),
            ]
        );
        let exact = "y".repeat(MAX_LINE_BYTES);
        let mut input = Cursor::new(format!("{exact}\n"));
        assert_eq!(
            read_line(&mut input, &mut buffer).unwrap(),
            Some((ReadLine::Text(exact), MAX_LINE_BYTES as u64 + 1))
        );
    }

    #[test]
    fn the_report_has_one_line_per_customer_line() {
        let report =
            |id: Option<&str>, outcome: Outcome| Report { line: 7, id: id.map(str::to_owned), outcome }.to_string();
        assert_eq!(report(Some("acme"), Outcome::Created), "line 7: acme: created");
        assert_eq!(report(Some("acme"), Outcome::Exists(vec![])), "line 7: acme: exists");
        assert_eq!(
            report(Some("acme"), Outcome::Exists(vec!["webhook_url", "events"])),
            "line 7: acme: exists (differs: webhook_url, events; left unchanged)"
        );
        assert_eq!(report(Some("bad id"), Outcome::Refused("invalid id".into())), "line 7: -: refused: invalid id");
        assert_eq!(report(None, Outcome::Failed("broker\ngone".into())), "line 7: -: failed: broker gone");
        let long = report(Some("acme"), Outcome::Refused("why ".repeat(100)));
        let reason = long.strip_prefix("line 7: acme: refused: ").expect("prefix");
        assert_eq!(reason.chars().count(), MAX_REASON_CHARS);
        assert!(reason.ends_with('…'));
    }

    #[test]
    fn the_summary_counts_every_outcome() {
        let mut tally = Tally::default();
        for outcome in [Outcome::Created, Outcome::Created, Outcome::Exists(vec![]), Outcome::Refused("r".into())] {
            tally.count(&outcome);
        }
        tally.skipped = 2;
        assert_eq!(tally.lines(), 4);
        assert_eq!(
            tally.summary(Path::new("in.jsonl"), Path::new("out.jsonl")),
            "in.jsonl: 2 created, 1 existed, 1 refused, 2 blank or comment line(s); the created customers' API keys and \
             signing secrets were appended to out.jsonl (shown once: hand each customer its own)"
        );
        tally.created = 0;
        tally.failed = 1;
        assert_eq!(
            tally.summary(Path::new("in.jsonl"), Path::new("out.jsonl")),
            "in.jsonl: 0 created, 1 existed, 1 refused, 1 failed, 2 blank or comment line(s)"
        );
    }

    #[test]
    fn the_webhook_url_is_not_repeated_in_reasons() {
        let url = "https://x.example/in?token=hush";
        assert_eq!(
            redact(&format!("invalid webhook_url: `{url}` is bad"), Some(url)),
            "invalid webhook_url: `<webhook_url>` is bad"
        );
        assert_eq!(redact("invalid id", None), "invalid id");
        let refused = refusal(hookline_core::Error::Invalid { field: "webhook_url", reason: url.into() }, Some(url));
        assert_eq!(refused, Outcome::Refused("invalid webhook_url: <webhook_url>".into()));
        assert!(matches!(refusal(hookline_core::Error::DirectoryStopped, None), Outcome::Failed(_)));
    }

    /// The reason the import reports for `url` under the default (strict) SSRF policy, checked
    /// to fit the report line unclipped.
    async fn refused_reason(url: &str) -> String {
        let parsed = reqwest::Url::parse(url).expect("a URL");
        let error = hookline_core::netguard::NetworkPolicy::default().check_url(&parsed).await.expect_err("refused");
        let Outcome::Refused(reason) = refusal(error, Some(url)) else { panic!("not refused") };
        assert_eq!(clip(&reason), reason, "clipped");
        reason
    }

    #[tokio::test]
    async fn a_refused_host_name_fits_its_report_line_with_how_to_allow_it() {
        let reason = refused_reason("http://localhost:9000/webhook?token=hush").await;
        assert!(reason.contains("HOOKLINE_ALLOW_NETWORKS") && !reason.contains("hush"), "{reason}");
    }

    #[tokio::test]
    async fn a_refused_address_fits_its_report_line_with_how_to_allow_it() {
        let reason = refused_reason("http://127.0.0.1:9000/webhook?token=hush").await;
        let line = Report { line: 7, id: Some("acme".to_owned()), outcome: Outcome::Refused(reason) }.to_string();
        assert_eq!(
            line,
            "line 7: acme: refused: invalid webhook_url: 127.0.0.1 is a loopback address; to allow it, add 127.0.0.0/8 \
             to HOOKLINE_ALLOW_NETWORKS on the publisher, consumer and setup CLI"
        );
    }

    #[cfg(unix)]
    #[test]
    fn credentials_are_appended_to_an_owner_only_file() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("hookline-import-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("credentials.jsonl");
        std::fs::remove_file(&path).ok();

        let mut credentials = Credentials::open(&path).expect("created");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        credentials.append(&[Zeroizing::new("one".into())]).unwrap();
        drop(credentials);
        let mut credentials = Credentials::open(&path).expect("opened again");
        credentials.append(&[Zeroizing::new("two".into()), Zeroizing::new("three".into())]).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\nthree\n", "appended, never truncated");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let error = Credentials::open(&path).expect_err("readable by the group");
        assert!(error.to_string().contains("chmod 600") && error.exit_code() == crate::EXIT_USAGE, "{error}");
        let link = dir.join("link.jsonl");
        std::fs::remove_file(&link).ok();
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(Credentials::open(&link).expect_err("a symlink").to_string().contains("symbolic link"));
        assert!(Credentials::open(&dir).is_err(), "a directory");
        std::fs::remove_dir_all(&dir).ok();
    }
}
