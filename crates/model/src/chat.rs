//! Chat templates: the Jinja template a GGUF file carries
//! (`tokenizer.chat_template`) that turns a conversation into the model's
//! prompt, rendered with `minijinja` set up the way Hugging Face
//! transformers renders them with Python's jinja2:
//!
//! - `trim_blocks` and `lstrip_blocks` on, the final newline dropped, no
//!   HTML escaping, `break`/`continue` in loops;
//! - the variables `messages` (a list of `{role, content}` maps),
//!   `add_generation_prompt`, `bos_token` and `eos_token` (the texts of the
//!   model's BOS and EOS tokens);
//! - `raise_exception(message)`, which ends rendering with
//!   [`ModelError::TemplateRaised`] carrying the message;
//! - `strftime_now(format)`, the current time in UTC (Python's renders
//!   local time) with the common `strftime` directives;
//! - `tojson` as Python's `json.dumps` writes it (`", "` and `": "`
//!   separators, non-ASCII kept, keys in insertion order; the `indent`,
//!   `separators`, `sort_keys` and `ensure_ascii` arguments), where
//!   minijinja's own would write compact, HTML-safe JSON;
//! - Python's string, list and dict methods (`.strip()`, `.split()`,
//!   `.startswith()`, `.items()`, `.get()`, ...) from minijinja-contrib's
//!   `pycompat`.
//!
//! A template using something minijinja does not have (a Python method
//! pycompat lacks, a `{% generation %}` block, an unknown filter or test)
//! fails with [`ModelError::Template`] naming the template line. Rendering
//! is bounded (a fuel limit on executed instructions), since the template
//! comes from the model file.
//!
//! A file without a template gets ChatML ([`ChatTemplate::chatml`],
//! `<|im_start|>role\ncontent<|im_end|>\n`), the format of many
//! instruction-tuned models; [`ChatTemplate::is_fallback`] says so.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use exodus_gguf::{Gguf, Metadata};
use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Value};
use serde::Serialize;

use crate::error::ModelError;

const TEMPLATE_KEY: &str = "tokenizer.chat_template";
const NAME: &str = "chat_template";
/// Instructions one render may execute.
const FUEL: u64 = 10_000_000;

/// The ChatML template used when a file has none.
pub const CHATML_TEMPLATE: &str = "{%- for message in messages %}\
{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}\
{%- endfor %}\
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    /// `system`, `user`, `assistant` (or whatever roles the template knows).
    pub role: String,
    /// The text of the turn.
    pub content: String,
}

impl Message {
    /// A message of `role`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }

    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Message {
        Message::new("system", content)
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Message {
        Message::new("user", content)
    }

    /// An `assistant` message.
    pub fn assistant(content: impl Into<String>) -> Message {
        Message::new("assistant", content)
    }
}

/// A compiled chat template with the model's BOS and EOS texts.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos_token: String,
    eos_token: String,
    fallback: bool,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source", &self.source)
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

/// The error `raise_exception` ends rendering with (found again through
/// the minijinja error's source).
#[derive(Debug)]
struct Raised(String);

impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

fn template_error(e: &Error) -> ModelError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(Raised(message)) = s.downcast_ref::<Raised>() {
            return ModelError::TemplateRaised(message.clone());
        }
        source = s.source();
    }
    let mut message = e.kind().to_string();
    if let Some(detail) = e.detail() {
        let _ = write!(message, ": {detail}");
    }
    if matches!(
        e.kind(),
        ErrorKind::UnknownMethod
            | ErrorKind::UnknownFilter
            | ErrorKind::UnknownFunction
            | ErrorKind::UnknownTest
    ) {
        message.push_str(" (not supported by exodus' template engine)");
    }
    ModelError::Template {
        line: e.line(),
        message,
    }
}

/// The text of token `key`'s id, or "" when the file has none.
fn token_text(meta: &Metadata, key: &str) -> String {
    let (Ok(id), Ok(tokens)) = (
        meta.get_count(key),
        meta.get_slice::<String>("tokenizer.ggml.tokens"),
    ) else {
        return String::new();
    };
    usize::try_from(id)
        .ok()
        .and_then(|i| tokens.get(i))
        .cloned()
        .unwrap_or_default()
}

impl ChatTemplate {
    /// The template of `file` (`tokenizer.chat_template`) with its BOS and
    /// EOS token texts; ChatML when the file has no template (see
    /// [`ChatTemplate::is_fallback`]). A template that does not compile is
    /// [`ModelError::Template`].
    pub fn from_gguf<B: AsRef<[u8]>>(file: &Gguf<B>) -> Result<ChatTemplate, ModelError> {
        ChatTemplate::from_metadata(file.metadata())
    }

    /// [`ChatTemplate::from_gguf`] on metadata alone.
    pub fn from_metadata(meta: &Metadata) -> Result<ChatTemplate, ModelError> {
        let bos = token_text(meta, "tokenizer.ggml.bos_token_id");
        let eos = token_text(meta, "tokenizer.ggml.eos_token_id");
        if !meta.contains(TEMPLATE_KEY) {
            let mut t = ChatTemplate::new(CHATML_TEMPLATE, &bos, &eos)?;
            t.fallback = true;
            return Ok(t);
        }
        ChatTemplate::new(meta.get_str(TEMPLATE_KEY)?, &bos, &eos)
    }

    /// Compiles `source` with the given BOS and EOS texts.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<ChatTemplate, ModelError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_fuel(Some(FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.add_template_owned(NAME, source.to_string())
            .map_err(|e| template_error(&e))?;
        Ok(ChatTemplate {
            env,
            source: source.to_string(),
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
            fallback: false,
        })
    }

    /// ChatML, with no BOS or EOS text.
    pub fn chatml() -> ChatTemplate {
        let mut t = ChatTemplate::new(CHATML_TEMPLATE, "", "")
            .unwrap_or_else(|e| unreachable!("the ChatML template compiles: {e}"));
        t.fallback = true;
        t
    }

    /// The prompt for `messages`; `add_generation_prompt` appends the
    /// opening of the assistant's turn.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, ModelError> {
        let template = self
            .env
            .get_template(NAME)
            .map_err(|e| template_error(&e))?;
        template
            .render(minijinja::context! {
                messages => Value::from_serialize(messages),
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos_token.as_str(),
                eos_token => self.eos_token.as_str(),
                // transformers passes these as None when not given
                tools => Value::from(()),
                documents => Value::from(()),
            })
            .map_err(|e| template_error(&e))
    }

    /// The template's source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The text `bos_token` renders as.
    pub fn bos_token(&self) -> &str {
        &self.bos_token
    }

    /// The text `eos_token` renders as.
    pub fn eos_token(&self) -> &str {
        &self.eos_token
    }

    /// Whether this is the ChatML fallback for a file without a template.
    pub fn is_fallback(&self) -> bool {
        self.fallback
    }
}

fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message.clone()).with_source(Raised(message)))
}

/// `strftime_now(format)`: the current UTC time.
fn strftime_now(format: String) -> Result<String, Error> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Ok(strftime(&format, secs))
}

/// `format` with Python's `strftime` directives filled in for `secs`
/// seconds after the Unix epoch (UTC). Unknown directives stay as written.
pub fn strftime(format: &str, secs: i64) -> String {
    const DAYS: [&str; 7] = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (hour, minute, second) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday
    let weekday = (days + 3).rem_euclid(7) as usize;
    let yday = days - days_from_civil(year, 1, 1) + 1;
    let month_name = MONTHS[(month - 1) as usize];
    let day_name = DAYS[weekday];
    let hour12 = if hour % 12 == 0 { 12 } else { hour % 12 };
    let mut out = String::with_capacity(format.len() + 16);
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(d) = chars.next() else {
            out.push('%');
            break;
        };
        let _ = match d {
            'Y' => write!(out, "{year}"),
            'y' => write!(out, "{:02}", year.rem_euclid(100)),
            'm' => write!(out, "{month:02}"),
            'd' => write!(out, "{day:02}"),
            'e' => write!(out, "{day:2}"),
            'H' => write!(out, "{hour:02}"),
            'I' => write!(out, "{hour12:02}"),
            'M' => write!(out, "{minute:02}"),
            'S' => write!(out, "{second:02}"),
            'p' => write!(out, "{}", if hour < 12 { "AM" } else { "PM" }),
            'b' | 'h' => write!(out, "{}", &month_name[..3]),
            'B' => write!(out, "{month_name}"),
            'a' => write!(out, "{}", &day_name[..3]),
            'A' => write!(out, "{day_name}"),
            'w' => write!(out, "{}", (weekday + 1) % 7),
            'u' => write!(out, "{}", weekday + 1),
            'j' => write!(out, "{yday:03}"),
            'F' => write!(out, "{year}-{month:02}-{day:02}"),
            'T' => write!(out, "{hour:02}:{minute:02}:{second:02}"),
            'D' => write!(out, "{month:02}/{day:02}/{:02}", year.rem_euclid(100)),
            'Z' => write!(out, "UTC"),
            'z' => write!(out, "+0000"),
            '%' => write!(out, "%"),
            other => write!(out, "%{other}"),
        };
    }
    out
}

/// (year, month 1-12, day 1-31) of day `z` after 1970-01-01 (proleptic
/// Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// How `tojson` writes JSON.
struct JsonStyle {
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
    ensure_ascii: bool,
}

/// `tojson`, as Python's `json.dumps(x, ensure_ascii=False)` writes it.
fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<Value> = kwargs.get("indent")?;
    let separators: Option<Value> = kwargs.get("separators")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) => match (v.as_i64(), v.as_str()) {
            (Some(n), _) => Some(" ".repeat(n.clamp(0, 64) as usize)),
            (None, Some(s)) => Some(s.to_string()),
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: indent must be an integer or a string",
                ))
            }
        },
    };
    let (item_sep, key_sep) = match separators {
        Some(v) if !(v.is_none() || v.is_undefined()) => {
            let parts: Vec<String> = v
                .try_iter()?
                .map(|p| p.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .filter(|p: &Vec<String>| p.len() == 2)
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: separators must be two strings",
                    )
                })?;
            (parts[0].clone(), parts[1].clone())
        }
        _ if indent.is_some() => (",".to_string(), ": ".to_string()),
        _ => (", ".to_string(), ": ".to_string()),
    };
    let style = JsonStyle {
        indent,
        item_sep,
        key_sep,
        sort_keys: sort_keys.unwrap_or(false),
        ensure_ascii: ensure_ascii.unwrap_or(false),
    };
    let mut out = String::new();
    write_json(&mut out, &value, &style, 0)?;
    Ok(Value::from(out))
}

fn write_json_str(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ensure_ascii && !c.is_ascii()) => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A float as Python's `repr` writes it (close: the shortest digits that
/// round-trip, `.0` on integral values, exponents past 1e16 and below 1e-4).
fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e16).contains(&abs) {
        let s = format!("{f:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        return format!(
            "{mantissa}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        );
    }
    let s = format!("{f}");
    if s.contains('.') {
        s
    } else {
        format!("{s}.0")
    }
}

fn write_json(out: &mut String, v: &Value, style: &JsonStyle, depth: usize) -> Result<(), Error> {
    if depth > 100 {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "tojson: nesting too deep",
        ));
    }
    let newline = |out: &mut String, level: usize| {
        if let Some(ind) = &style.indent {
            out.push('\n');
            for _ in 0..level {
                out.push_str(ind);
            }
        }
    };
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if v.is_integer() {
                out.push_str(&v.to_string());
            } else {
                let f = f64::try_from(v.clone())?;
                out.push_str(&python_float(f));
            }
        }
        ValueKind::String => {
            write_json_str(out, v.as_str().unwrap_or_default(), style.ensure_ascii)
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter()?.collect();
            if style.sort_keys {
                keys.sort_by_key(|k| k.to_string());
            }
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(&style.item_sep);
                }
                newline(out, depth + 1);
                match k.as_str() {
                    Some(s) => write_json_str(out, s, style.ensure_ascii),
                    None => write_json_str(out, &k.to_string(), style.ensure_ascii),
                }
                out.push_str(&style.key_sep);
                write_json(out, &v.get_item(k)?, style, depth + 1)?;
            }
            newline(out, depth);
            out.push('}');
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&style.item_sep);
                }
                newline(out, depth + 1);
                write_json(out, item, style, depth + 1)?;
            }
            newline(out, depth);
            out.push(']');
        }
        other => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: cannot serialize a value of kind {other}"),
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str, messages: &[Message]) -> Result<String, ModelError> {
        ChatTemplate::new(source, "<s>", "</s>")?.render(messages, true)
    }

    #[test]
    fn chatml_fallback() {
        let t = ChatTemplate::chatml();
        assert!(t.is_fallback());
        let out = t
            .render(&[Message::system("S"), Message::user("Hi")], true)
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let out = t.render(&[Message::user("Hi")], false).unwrap();
        assert_eq!(out, "<|im_start|>user\nHi<|im_end|>\n");
    }

    #[test]
    fn hugging_face_dialect() {
        let m = [Message::user("  a b  ")];
        assert_eq!(
            render(
                "{{ bos_token }}{{ messages[0].content.strip().upper() }}{{ eos_token }}",
                &m
            )
            .unwrap(),
            "<s>A B</s>"
        );
        assert_eq!(
            render("{{ messages | tojson }}", &m).unwrap(),
            r#"[{"role": "user", "content": "  a b  "}]"#
        );
        assert_eq!(
            render(
                "{{ {'b': [1, 2.5, none, true], 'a': 'é<\"'} | tojson(indent=2, sort_keys=true) }}",
                &m
            )
            .unwrap(),
            "{\n  \"a\": \"é<\\\"\",\n  \"b\": [\n    1,\n    2.5,\n    null,\n    true\n  ]\n}"
        );
        assert_eq!(
            render(
                "{{ 'é' | tojson(ensure_ascii=true) }}{{ [1,2] | tojson(separators=[',', ':']) }}",
                &m
            )
            .unwrap(),
            "\"\\u00e9\"[1,2]"
        );
        // break/continue, trim_blocks/lstrip_blocks
        assert_eq!(
            render("{% for i in range(5) %}\n  {% if i == 1 %}{% continue %}{% endif %}\n  {% if i == 3 %}{% break %}{% endif %}\n{{ i }}\n{% endfor %}\n", &m).unwrap(),
            "0\n2\n"
        );
    }

    #[test]
    fn unset_tools_and_documents_are_none() {
        assert_eq!(
            render("{{ tools is defined }} {{ tools is none }} {{ documents is none }} {{ other is defined }}", &[]).unwrap(),
            "True True True False"
        );
    }

    #[test]
    fn shareable_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<ChatTemplate>();
        send_sync::<crate::Tokenizer>();
        send_sync::<crate::StreamDecoder>();
    }

    #[test]
    fn errors_are_typed() {
        let m = [Message::user("x")];
        let err = render("line one\n{{ raise_exception('no system role') }}", &m).unwrap_err();
        assert!(
            matches!(&err, ModelError::TemplateRaised(msg) if msg == "no system role"),
            "{err}"
        );
        let err = render("a\nb\n{{ messages[0].content.zfill(3) }}", &m).unwrap_err();
        assert!(
            matches!(err, ModelError::Template { line: Some(3), .. }),
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with("chat template line 3: unknown method"),
            "{err}"
        );
        let err = render("{% generation %}x{% endgeneration %}", &m).unwrap_err();
        assert!(
            matches!(err, ModelError::Template { line: Some(1), .. }),
            "{err}"
        );
        let err = render("\n\n{{ x | no_such_filter }}", &m).unwrap_err();
        assert!(
            matches!(err, ModelError::Template { line: Some(3), .. }),
            "{err}"
        );
        // an endless template runs out of fuel instead of hanging
        let err = render(
            "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}",
            &m,
        )
        .unwrap_err();
        assert!(matches!(err, ModelError::Template { .. }), "{err}");
    }

    #[test]
    fn strftime_directives() {
        // 2024-02-29 13:05:09 UTC, a Thursday
        let t = 1_709_211_909;
        assert_eq!(strftime("%Y-%m-%d %H:%M:%S", t), "2024-02-29 13:05:09");
        assert_eq!(
            strftime("%d %b %Y, %A %a %B %j %I%p %y %% %q", t),
            "29 Feb 2024, Thursday Thu February 060 01PM 24 % %q"
        );
        assert_eq!(strftime("%F %T %u %w", 0), "1970-01-01 00:00:00 4 4");
        assert_eq!(strftime("%F", -86_400), "1969-12-31");
        let now = render("{{ strftime_now('%Y') }}", &[]).unwrap();
        assert!(now.len() == 4 && now.starts_with('2'), "{now}");
    }

    #[test]
    fn python_floats() {
        assert_eq!(python_float(1.0), "1.0");
        assert_eq!(python_float(2.5), "2.5");
        assert_eq!(python_float(1e-10), "1e-10");
        assert_eq!(python_float(1e16), "1e+16");
        assert_eq!(python_float(0.1), "0.1");
        assert_eq!(python_float(-0.0), "-0.0");
    }
}
