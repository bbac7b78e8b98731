//! Escaping for the XML the reports write (JUnit and SVG), and, for tests, a strict
//! well-formedness check of what they wrote.

/// Escapes text for XML element content.
///
/// Besides the five markup characters, `\r` becomes a character reference (parsers would
/// otherwise fold it into `\n`) and characters XML 1.0 forbids even when escaped (most C0
/// controls, U+FFFE, U+FFFF) become U+FFFD, so a probe's raw error output cannot make the
/// whole file unreadable.
pub fn escape_text(s: &str) -> String {
    escape(s, false)
}

/// Escapes text for a double- or single-quoted XML attribute value. Like [`escape_text`],
/// and also keeps tabs and newlines, which parsers would otherwise normalise to spaces
/// inside attributes.
pub fn escape_attr(s: &str) -> String {
    escape(s, true)
}

fn escape(s: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\t' if attribute => out.push_str("&#9;"),
            '\n' | '\t' => out.push(c),
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => out.push('\u{fffd}'),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A tiny XML checker: tags balance, attributes are quoted, and every `&` starts a
    /// known entity or a character reference. Also used by the SVG tests.
    pub(crate) fn well_formed(xml: &str) -> Result<(), String> {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = xml;
        let mut roots = 0;
        while let Some(open) = rest.find('<') {
            check_text(&rest[..open])?;
            rest = &rest[open..];
            if let Some(after) = rest.strip_prefix("<?") {
                let end = after.find("?>").ok_or("unterminated <?")?;
                rest = &after[end + 2..];
                continue;
            }
            if let Some(after) = rest.strip_prefix("<!--") {
                let end = after.find("-->").ok_or("unterminated comment")?;
                rest = &after[end + 3..];
                continue;
            }
            let end = tag_end(rest).ok_or("unterminated tag")?;
            let tag = &rest[1..end];
            rest = &rest[end + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                let open = stack.pop().ok_or(format!("stray </{name}>"))?;
                if open != name.trim() {
                    return Err(format!("<{open}> closed by </{name}>"));
                }
                continue;
            }
            let self_closing = tag.ends_with('/');
            let tag = tag.trim_end_matches('/');
            let name_end = tag.find(char::is_whitespace).unwrap_or(tag.len());
            let name = &tag[..name_end];
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_alphanumeric() || ":-_.".contains(c))
            {
                return Err(format!("bad tag name {name:?}"));
            }
            check_attributes(&tag[name_end..])?;
            if stack.is_empty() {
                roots += 1;
            }
            if !self_closing {
                stack.push(name.to_owned());
            }
        }
        check_text(rest)?;
        if !stack.is_empty() {
            return Err(format!("unclosed {stack:?}"));
        }
        if roots != 1 {
            return Err(format!("{roots} root elements"));
        }
        Ok(())
    }

    /// The `>` ending the tag at the start of `s`, skipping quoted attribute values.
    fn tag_end(s: &str) -> Option<usize> {
        let mut quote = None;
        for (i, c) in s.char_indices().skip(1) {
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, '>') => return Some(i),
                _ => {}
            }
        }
        None
    }

    fn check_attributes(mut s: &str) -> Result<(), String> {
        loop {
            s = s.trim_start();
            if s.is_empty() {
                return Ok(());
            }
            let eq = s
                .find('=')
                .ok_or(format!("attribute without value: {s:?}"))?;
            let name = s[..eq].trim();
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(format!("bad attribute name {name:?}"));
            }
            let value = s[eq + 1..].trim_start();
            let quote = value.chars().next().ok_or("missing attribute value")?;
            if quote != '"' && quote != '\'' {
                return Err(format!("unquoted attribute {name}"));
            }
            let close = value[1..].find(quote).ok_or("unterminated attribute")?;
            let inner = &value[1..1 + close];
            if inner.contains('<') {
                return Err(format!("raw < in attribute {name}"));
            }
            check_text(inner)?;
            s = &value[close + 2..];
        }
    }

    fn check_text(s: &str) -> Result<(), String> {
        if s.contains("]]>") {
            return Err("]]> in text".to_owned());
        }
        let mut rest = s;
        while let Some(amp) = rest.find('&') {
            rest = &rest[amp + 1..];
            let semi = rest.find(';').ok_or("& without ;")?;
            let entity = &rest[..semi];
            let known = matches!(entity, "amp" | "lt" | "gt" | "quot" | "apos")
                || entity
                    .strip_prefix('#')
                    .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
            if !known {
                return Err(format!("unknown entity &{entity};"));
            }
            rest = &rest[semi + 1..];
        }
        if s.chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\t'))
        {
            return Err("control character in text".to_owned());
        }
        Ok(())
    }

    /// Undoes [`escape`], to prove nothing was lost.
    fn unescape(s: &str) -> String {
        s.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&#13;", "\r")
            .replace("&#10;", "\n")
            .replace("&#9;", "\t")
            .replace("&amp;", "&")
    }

    #[test]
    fn escape_handles_nasty_strings() {
        assert_eq!(escape_text(""), "");
        assert_eq!(escape_text("plain"), "plain");
        assert_eq!(
            escape_attr(r#"<a href="x">&amp;'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;amp;&apos;&lt;/a&gt;"
        );
        assert_eq!(escape_text("]]><![CDATA["), "]]&gt;&lt;![CDATA[");
        assert_eq!(escape_text("a\r\nb\tc"), "a&#13;\nb\tc");
        assert_eq!(escape_attr("a\r\nb\tc"), "a&#13;&#10;b&#9;c");
        assert_eq!(
            escape_text("nul\0bell\u{7}\u{ffff}"),
            "nul\u{fffd}bell\u{fffd}\u{fffd}"
        );
        assert_eq!(escape_text("ünïcödé ✓ 🔥"), "ünïcödé ✓ 🔥");
        for nasty in [
            "&&&;",
            "&lt;",
            "'\"'\"",
            "<<>>",
            "a\nb\r\tc",
            "x & y < z > 'w' \"v\"",
        ] {
            for escaped in [escape_text(nasty), escape_attr(nasty)] {
                assert!(
                    !escaped.contains('<') && !escaped.contains('"'),
                    "{escaped}"
                );
                check_text(&escaped).unwrap();
                assert_eq!(unescape(&escaped), nasty);
            }
            let doc = format!("<a b=\"{}\">{}</a>", escape_attr(nasty), escape_text(nasty));
            well_formed(&doc).unwrap();
        }
    }

    #[test]
    fn checker_rejects_broken_xml() {
        assert!(well_formed("<a><b></a></b>").is_err());
        assert!(well_formed("<a>").is_err());
        assert!(well_formed("<a>x & y</a>").is_err());
        assert!(well_formed("<a b=\"<\"/>").is_err());
        assert!(well_formed("<a/><b/>").is_err());
        assert!(well_formed("<?xml version=\"1.0\"?><a b='1'><c/>&amp;</a>").is_ok());
    }
}
