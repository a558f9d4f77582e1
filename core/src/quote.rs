//! How input appears in messages (errors answered to callers, CLI reports, logs): clipped, so
//! that a 1 MB field does not come back as a 1 MB error, and URLs without the parts that may
//! carry a credential (user info, query, fragment).
//!
//! Every message that quotes what a caller or an operator typed goes through here.

use std::fmt::Write as _;

/// Characters of an input a message quotes at most.
pub const MAX_QUOTED_CHARS: usize = 64;

/// Characters of a whole error message answered to a caller at most (a last line of defence:
/// messages built elsewhere, such as a JSON parser's, may quote input too).
pub const MAX_MESSAGE_CHARS: usize = 1024;

/// `text` clipped to [`MAX_QUOTED_CHARS`] characters, control characters escaped; a clipped
/// text ends with `…` and says how long the whole was.
pub fn clip(text: &str) -> String {
    clip_to(text, MAX_QUOTED_CHARS)
}

/// [`clip`] to `max` characters.
pub fn clip_to(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max * 2));
    for (count, c) in text.chars().enumerate() {
        if count == max {
            let _ = write!(out, "… ({} bytes in all)", text.len());
            return out;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A URL as a message may show it: scheme, host, port and path, without user info, query or
/// fragment (where tokens travel), clipped. Text that is not a URL is shown without anything
/// up to an `@` and from a `?` or `#` on.
pub fn url(raw: &str) -> String {
    let shown = match url::Url::parse(raw) {
        // `host:port` parses as a scheme and a path: shown as text.
        Ok(parsed) if !parsed.cannot_be_a_base() => {
            let mut shown = format!("{}://", parsed.scheme());
            if !parsed.username().is_empty() || parsed.password().is_some() {
                shown.push_str("…@");
            }
            if let Some(host) = parsed.host_str() {
                shown.push_str(host);
            }
            if let Some(port) = parsed.port() {
                let _ = write!(shown, ":{port}");
            }
            // The parser adds a root path the text may not have had (`http://h:1` → `/`).
            if parsed.path() != "/" {
                shown.push_str(parsed.path());
            }
            if parsed.query().is_some() {
                shown.push_str("?…");
            }
            if parsed.fragment().is_some() {
                shown.push_str("#…");
            }
            shown
        }
        _ => {
            let before_query = raw.split(['?', '#']).next().unwrap_or_default();
            match before_query.rsplit_once('@') {
                Some((_, rest)) => format!("…@{rest}"),
                None => before_query.to_owned(),
            }
        }
    };
    clip_to(&shown, 2 * MAX_QUOTED_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_long_input_and_escapes_controls() {
        assert_eq!(clip("short"), "short");
        let long = "x".repeat(1_000_000);
        let shown = clip(&long);
        assert!(shown.starts_with(&"x".repeat(MAX_QUOTED_CHARS)), "{shown}");
        assert!(shown.ends_with("… (1000000 bytes in all)"), "{shown}");
        assert!(shown.len() < 100);
        assert_eq!(clip("a\nb\u{1b}"), "a\\nb\\u{1b}");
        assert_eq!(clip(&"é".repeat(70)).chars().filter(|c| *c == 'é').count(), MAX_QUOTED_CHARS);
    }

    #[test]
    fn urls_lose_credentials_queries_and_fragments() {
        for (raw, shown) in [
            ("https://hooks.example.com/in", "https://hooks.example.com/in"),
            ("https://user:s3cret@hooks.example.com:8443/in?token=abc#frag", "https://…@hooks.example.com:8443/in?…#…"),
            ("ftp://s3cret@example.com/", "ftp://…@example.com"),
            ("http://127.0.0.1:1", "http://127.0.0.1:1"),
            ("https://s3cret@exa mple.com/?token=abc", "…@exa mple.com/"),
            ("not a url ?token=abc", "not a url "),
            ("registry:8081", "registry:8081"),
            ("https://key:secret@registry.example/api", "https://…@registry.example/api"),
        ] {
            assert_eq!(url(raw), shown, "{raw}");
        }
        let long = format!("https://example.com/{}", "p".repeat(10_000));
        assert!(url(&long).len() < 200);
    }
}
