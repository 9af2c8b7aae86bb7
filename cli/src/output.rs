//! What the tool prints: records as JSON Lines objects (CLI.md's `jsonl` shape), aligned
//! tables for people, progress bars on a terminal only, and the parsing of JSON vectors.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::Duration;

use base64::Engine as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use strata::Record;

use crate::failure::Failure;

pub const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// `"name": "text"` when `bytes` is UTF-8, else `"name_b64": "base64"`.
fn push_bytes_field(line: &mut String, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            let _ = write!(line, "\"{name}\":{}", serde_json::Value::from(text));
        }
        Err(_) => {
            let _ = write!(line, "\"{name}_b64\":\"{}\"", BASE64.encode(bytes));
        }
    }
}

/// `"key": "text"`, or `"key_b64": "..."` for a key that is not UTF-8.
pub fn key_field(key: &[u8]) -> String {
    let mut field = String::new();
    push_bytes_field(&mut field, "key", key);
    field
}

/// A finite f32 as a JSON number: the shortest text that parses back to the same bits
/// (Rust's `Debug` of an `f32`), so the round trip through text is exact. `Debug` rather than
/// `Display`: it keeps the point in `-0.0` (a reader that takes `-0` for the integer 0 loses
/// the sign: Python's `json` does) and uses an exponent for very small and very large
/// values (`1e-45`, not 46 digits). Embeddings and scores are finite, which JSON needs.
pub fn push_f32(line: &mut String, value: f32) {
    let _ = write!(line, "{value:?}");
}

/// The embedding as a JSON array of `push_f32` numbers.
pub fn push_embedding(line: &mut String, embedding: Option<&[f32]>) {
    match embedding {
        None => line.push_str("null"),
        Some(values) => {
            line.push('[');
            for (i, &v) in values.iter().enumerate() {
                if i > 0 {
                    line.push(',');
                }
                push_f32(line, v);
            }
            line.push(']');
        }
    }
}

/// One record as CLI.md's JSON object:
/// `{"key", "content", "embedding", "seq", "expires_at_ms"}` (`key_b64`/`content_b64` for bytes
/// that are not UTF-8).
pub fn record_json(record: &Record) -> String {
    record_json_parts(record.key(), record.content(), record.embedding(), record.seq(), record.expires_at_ms())
}

pub fn record_json_parts(key: &[u8], content: &[u8], embedding: Option<&[f32]>, seq: u64, expires_at_ms: u64) -> String {
    let mut line = String::with_capacity(64 + content.len() + embedding.map_or(0, |e| e.len() * 12));
    line.push('{');
    push_bytes_field(&mut line, "key", key);
    line.push(',');
    push_bytes_field(&mut line, "content", content);
    line.push_str(",\"embedding\":");
    push_embedding(&mut line, embedding);
    let _ = write!(line, ",\"seq\":{seq},\"expires_at_ms\":{expires_at_ms}}}");
    line
}

/// Parses a JSON array of numbers into f32s exactly: each number's text is parsed as an
/// f32 directly (correctly rounded), never through an f64.
pub fn parse_vector(text: &str, what: &str) -> Result<Vec<f32>, Failure> {
    let raw: Vec<Box<serde_json::value::RawValue>> =
        serde_json::from_str(text).map_err(|e| Failure::new(format!("{what} is not a JSON array of numbers: {e}")))?;
    raw.iter()
        .map(|value| {
            let text = value.get().trim();
            let parsed: Option<f32> = text.parse().ok().filter(|_| text.starts_with(|c: char| c == '-' || c.is_ascii_digit()));
            parsed.ok_or_else(|| Failure::new(format!("{what} holds `{text}`, which is not a number")))
        })
        .collect()
}

/// Text for a table cell: UTF-8 shown as it is (control characters escaped), other bytes as
/// `0x` hex; cut to `width` characters with an ellipsis.
pub fn show_bytes(bytes: &[u8], width: usize) -> String {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect::<String>(),
        Err(_) => {
            let mut hex = String::from("0x");
            for b in bytes.iter().take(width) {
                let _ = write!(hex, "{b:02x}");
            }
            hex
        }
    };
    if text.chars().count() > width {
        let cut: String = text.chars().take(width.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// A byte count for people: `512 B`, `1.5 KiB`, `23.4 MiB`.
pub fn show_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A table: a header row and rows of cells, printed with aligned columns. Columns listed
/// in `right` are right-aligned (numbers).
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    right: Vec<usize>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table { header: header.iter().map(|s| s.to_string()).collect(), rows: Vec::new(), right: Vec::new() }
    }

    pub fn right_aligned(mut self, columns: &[usize]) -> Table {
        self.right = columns.to_vec();
        self
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len());
        self.rows.push(cells);
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn render(&self) -> String {
        let mut widths = Vec::new();
        self.render_part(&mut widths, true)
    }

    /// Renders the rows (and the header when `header`), widening `widths` to fit them: a
    /// long listing prints in parts, each as wide as everything before it, in bounded memory.
    pub fn render_part(&self, widths: &mut Vec<usize>, header: bool) -> String {
        let columns = self.header.len();
        widths.resize(columns, 0);
        for (i, width) in widths.iter_mut().enumerate() {
            let cells = self.rows.iter().map(|r| r[i].chars().count());
            *width = cells.chain([self.header[i].chars().count(), *width]).max().unwrap_or(0);
        }
        let mut out = String::new();
        let line = |out: &mut String, cells: &[String]| {
            let mut text = String::new();
            for (i, cell) in cells.iter().enumerate() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                if i > 0 {
                    text.push_str("  ");
                }
                if self.right.contains(&i) {
                    text.push_str(&" ".repeat(pad));
                    text.push_str(cell);
                } else {
                    text.push_str(cell);
                    if i + 1 < columns {
                        text.push_str(&" ".repeat(pad));
                    }
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        if header {
            line(&mut out, &self.header);
            line(&mut out, &widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>());
        }
        for row in &self.rows {
            line(&mut out, row);
        }
        out
    }

    /// Drops the rows (after `render_part`), keeping the header.
    pub fn clear(&mut self) {
        self.rows.clear();
    }
}

/// A progress bar of `total` steps on stderr when stderr is a terminal; hidden otherwise.
pub fn progress(total: u64, message: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{msg:>24} [{bar:40}] {human_pos}/{human_len} eta {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(message.to_string());
    bar
}

/// A spinner for a step of unknown length, on a terminal only.
pub fn spinner(message: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").unwrap_or_else(|_| ProgressStyle::default_spinner()));
    bar.set_message(message.to_string());
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_parse_exactly_and_reject_what_is_not_a_number() {
        let values = [0.1f32, -0.0, 1e-45, 3.4028235e38, f32::MIN_POSITIVE, 0.333_333_34];
        let mut text = String::new();
        push_embedding(&mut text, Some(&values));
        let back = parse_vector(&text, "v").unwrap();
        assert_eq!(back.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), values.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        assert!(parse_vector("[1, \"a\"]", "v").is_err());
        assert!(parse_vector("[1, null]", "v").is_err());
        assert!(parse_vector("{}", "v").is_err());
        assert!(parse_vector("[NaN]", "v").is_err());
    }

    #[test]
    fn vector_text_keeps_the_sign_of_zero_and_stays_short() {
        let mut text = String::new();
        push_embedding(&mut text, Some(&[-0.0, 1e-45, 3.4028235e38, 1.0, 0.1]));
        assert_eq!(text, "[-0.0,1e-45,3.4028235e38,1.0,0.1]");
    }

    #[test]
    fn tables_align_columns() {
        let mut table = Table::new(&["key", "n"]).right_aligned(&[1]);
        table.row(vec!["a".into(), "10".into()]);
        table.row(vec!["long key".into(), "2".into()]);
        assert_eq!(table.render(), "key        n\n--------  --\na         10\nlong key   2\n");
    }
}
