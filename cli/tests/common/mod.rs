//! Running the built `strata` binary as a user would, and checking what it printed.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// The outcome of one `strata ...` run.
pub struct Run {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    pub fn stdout_text(&self) -> String {
        String::from_utf8(self.stdout.clone()).expect("stdout is UTF-8")
    }

    /// Exit 0; returns stdout as text.
    pub fn ok(&self) -> String {
        assert_eq!(self.code, 0, "expected success, stderr: {}", self.stderr);
        self.stdout_text()
    }

    /// Exit 1 with exactly one line on stderr, `strata: error: ...` containing `needle`;
    /// nothing on stdout, no panic, no backtrace.
    pub fn fails_with(&self, needle: &str) {
        assert_eq!(self.code, 1, "expected exit 1, stderr: {}", self.stderr);
        assert!(self.stdout.is_empty(), "stdout should be empty: {:?}", self.stdout_text());
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line on stderr: {:?}", self.stderr);
        assert!(lines[0].starts_with("strata: error: "), "{:?}", lines[0]);
        assert!(lines[0].contains(needle), "{:?} should contain {needle:?}", lines[0]);
        assert!(!self.stderr.contains("panicked") && !self.stderr.contains("RUST_BACKTRACE"), "{}", self.stderr);
    }

    /// Exit 2 (bad usage), with clap's message and its pointer to `--help` on stderr.
    pub fn usage_error(&self) {
        assert_eq!(self.code, 2, "expected exit 2, stderr: {}", self.stderr);
        assert!(self.stdout.is_empty());
        assert!(self.stderr.contains("Usage: strata") || self.stderr.contains("try '--help'"), "{}", self.stderr);
    }
}

pub fn strata<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let output: Output = Command::new(env!("CARGO_BIN_EXE_strata")).args(args).output().expect("run strata");
    Run {
        code: output.status.code().expect("exit code, not a signal"),
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

pub fn path_arg(path: &Path) -> String {
    path.to_str().expect("UTF-8 temp path").to_string()
}

/// Parses every stdout line as JSON.
pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}"))).collect()
}

/// The f32 bits of a JSON line's `embedding`, parsed exactly from each number's text (not
/// through an f64); `None` for `null`.
pub fn line_embedding(line: &str) -> Option<Vec<u32>> {
    #[derive(serde::Deserialize)]
    struct Line {
        embedding: Option<Box<serde_json::value::RawValue>>,
    }
    let line: Line = serde_json::from_str(line).expect("JSON line");
    let raw = line.embedding?;
    let text = raw.get().trim();
    if text == "null" {
        return None;
    }
    let inner = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')).expect("an array");
    Some(inner.split(',').filter(|t| !t.trim().is_empty()).map(|t| t.trim().parse::<f32>().expect("a number").to_bits()).collect())
}

pub fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}
