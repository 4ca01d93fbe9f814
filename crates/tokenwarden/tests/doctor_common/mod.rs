//! Shared by the doctor tests: run `tokenwarden doctor --json` on a config written to a temp dir.
#![allow(dead_code)]

use serde_json::Value;
use std::path::PathBuf;

/// What one `doctor --json` run gave.
pub struct Diagnosis {
    pub code: Option<i32>,
    pub json: Value,
    pub stdout: String,
    pub stderr: String,
}

impl Diagnosis {
    /// The step with this id (the first one, or the first for `profile`).
    pub fn step(&self, id: &str) -> &Value {
        self.json["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("no step {id} in {}", self.stdout))
    }

    /// `(status, cause)` of the step.
    pub fn outcome(&self, id: &str) -> (String, String) {
        let s = self.step(id);
        (
            s["status"].as_str().unwrap_or_default().to_owned(),
            s["cause"].as_str().unwrap_or_default().to_owned(),
        )
    }

    /// Asserts that the step failed with `cause`.
    pub fn assert_fails(&self, id: &str, cause: &str) {
        assert_eq!(
            self.outcome(id),
            ("fail".to_owned(), cause.to_owned()),
            "step {id}:\n{}",
            self.stdout
        );
    }

    /// Asserts that the step's texts mention `needle`.
    pub fn assert_says(&self, id: &str, needle: &str) {
        let text = self.text_of(id);
        assert!(
            text.contains(needle),
            "step {id} does not mention {needle:?}:\n{text}"
        );
    }

    /// Every text of the step (summary, details, fixes), joined.
    pub fn text_of(&self, id: &str) -> String {
        let s = self.step(id);
        let mut out = s["summary"].as_str().unwrap_or_default().to_owned();
        for k in ["details", "fix"] {
            for line in s[k].as_array().into_iter().flatten() {
                out.push('\n');
                out.push_str(line.as_str().unwrap_or_default());
            }
        }
        out
    }
}

/// A temp dir holding config files.
pub struct Files {
    pub dir: tempfile::TempDir,
}

impl Files {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).expect("write config");
        p
    }
}

/// Runs `tokenwarden doctor <args> --json` with `env` added to the inherited environment.
pub async fn doctor(args: &[&str], env: &[(&str, &str)]) -> Diagnosis {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokenwarden"));
    cmd.arg("doctor").args(args).arg("--json");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.expect("run tokenwarden doctor");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    Diagnosis {
        code: out.status.code(),
        json,
        stdout,
        stderr,
    }
}

/// A profile section for a client_secret_basic client whose secret is in env `TW_DOCTOR_SECRET`.
pub fn profile_toml(name: &str, issuer: &str, client_id: &str, extra: &str) -> String {
    format!(
        r#"[profiles.{name}]
issuer = "{issuer}"
client_id = "{client_id}"
client_secret = {{ env = "TW_DOCTOR_SECRET" }}
{extra}
"#
    )
}
