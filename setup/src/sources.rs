//! `sources ...`: inbound webhook sources (external senders whose webhooks the publisher
//! receives on `POST /inbound/{id}`, verifies and queues for an internal endpoint). They live in
//! the customers topic as records with [`hookline_core::customer::Customer::inbound`] set, and
//! go through the same [`hookline_core::tenants::Tenants`] as customers; `customers list` does
//! not show them.

use std::io::Write;
use std::sync::Arc;

use hookline_core::customer::{Customer, validate_id};
use serde_json::json;

use crate::broker::bounded;
use crate::customers::{Context, SLACK, connect};
use crate::{Result, SourcesCommand};

/// Runs one `sources` subcommand.
pub async fn run<W: Write + Send>(context: &Context<'_>, command: SourcesCommand, out: &mut W) -> Result<()> {
    // Bad input is reported as such before touching Kafka.
    match &command {
        SourcesCommand::Add(add) => {
            // Every check of the real operation (the secret's format too), before connecting.
            Customer::source(
                &add.id,
                add.scheme,
                &add.endpoint,
                add.secret.as_deref(),
                &context.master_key.require()?,
            )?;
        }
        SourcesCommand::List(_) => {}
        SourcesCommand::Remove(remove) => validate_id(&remove.id)?,
    }
    let tenants = connect(context).await?;
    let timeout = context.timeout + SLACK;
    match command {
        SourcesCommand::Add(add) => {
            let issued = bounded(
                timeout,
                "the source to be added",
                tenants.add_source(&add.id, add.scheme, &add.endpoint, add.secret.as_deref()),
            )
            .await?;
            // A secret the operator gave is not echoed back.
            let generated = add.secret.is_none().then(|| issued.inbound_secret.as_str());
            let view = issued.source.source_view();
            if add.json {
                let mut shown = json!({
                    "id": issued.source.id,
                    "signing_secret": issued.signing_secret.expose(),
                    "source": view,
                });
                if let Some(secret) = generated {
                    shown["secret"] = json!(secret);
                }
                writeln!(out, "{shown}")?;
            } else {
                writeln!(out, "added {} ({}) -> {}", issued.source.id, add.scheme, add.endpoint)?;
                if let Some(secret) = generated {
                    writeln!(out, "secret:         {secret}")?;
                }
                writeln!(out, "signing_secret: {}", issued.signing_secret.expose())?;
                writeln!(
                    out,
                    "(shown once: the sender signs with `secret`; the internal endpoint verifies Hookline's \
                     deliveries with `signing_secret`)"
                )?;
                writeln!(out, "receive at:     POST /inbound/{}", issued.source.id)?;
            }
        }
        SourcesCommand::List(list) => {
            let sources = bounded(timeout, "the customer directory", tenants.sources()).await?;
            if list.json {
                for source in &sources {
                    serde_json::to_writer(&mut *out, &source.source_view())?;
                    writeln!(out)?;
                }
            } else {
                write_table(&sources, out)?;
            }
        }
        SourcesCommand::Remove(remove) => {
            bounded(timeout, "the removal to be acknowledged", tenants.remove_source(&remove.id)).await?;
            writeln!(out, "removed {}", remove.id)?;
        }
    }
    out.flush()?;
    Ok(())
}

fn write_table<W: Write>(sources: &[Arc<Customer>], out: &mut W) -> std::io::Result<()> {
    if sources.is_empty() {
        return writeln!(out, "no sources");
    }
    let rows: Vec<[String; 3]> = sources
        .iter()
        .filter_map(|source| source.source_view())
        .map(|view| [view.id, view.scheme.to_string(), view.endpoint.unwrap_or_else(|| "-".into())])
        .collect();
    let header = ["ID", "SCHEME", "ENDPOINT"].map(str::to_owned);
    let id_width = rows.iter().map(|r| r[0].len()).chain([header[0].len()]).max().unwrap_or_default();
    let scheme_width = rows.iter().map(|r| r[1].len()).chain([header[1].len()]).max().unwrap_or_default();
    for [id, scheme, endpoint] in std::iter::once(header).chain(rows) {
        writeln!(out, "{id:<id_width$}  {scheme:<scheme_width$}  {endpoint}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use hookline_core::customer::SignatureScheme;
    use hookline_core::secrets::MasterKey;

    use super::*;

    #[test]
    fn table_lists_scheme_and_endpoint() {
        let master = MasterKey::generate();
        let sources: Vec<Arc<Customer>> = [
            ("github", SignatureScheme::HubSignature256, "http://10.0.0.5/github"),
            ("a", SignatureScheme::StandardWebhooks, "http://internal/a"),
        ]
        .into_iter()
        .map(|(id, scheme, url)| Arc::new(Customer::source(id, scheme, url, None, &master).unwrap().source))
        .collect();
        let mut out = Vec::new();
        write_table(&sources, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "ID      SCHEME             ENDPOINT");
        assert_eq!(lines[1], "github  hub-signature-256  http://10.0.0.5/github");
        assert_eq!(lines[2], "a       standard-webhooks  http://internal/a");
        let mut empty = Vec::new();
        write_table(&[], &mut empty).unwrap();
        assert_eq!(String::from_utf8(empty).unwrap(), "no sources\n");
    }
}
