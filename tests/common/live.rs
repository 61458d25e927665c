//! A running `rulewatch replay -`, fed through a pipe that stays open until it is finished or
//! dropped: for tests that change things (rules, files) while the engine runs.

use super::{Alert, eventually, http_addr, parse_alerts};
use std::io::Write;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

pub(crate) struct Live {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: tempfile::NamedTempFile,
    stderr: tempfile::NamedTempFile,
    /// The HTTP endpoint, when started with it.
    pub addr: Option<String>,
}

impl Live {
    /// Starts `replay -` with `--format jsonl`, the rules folder `rules` (the built-in rule if
    /// none; waits until it is watched), and with `http` its endpoint on a free port.
    pub(crate) fn start(rules: Option<&Path>, http: bool) -> Live {
        Self::start_with(rules, http, &[])
    }

    /// [`Live::start`] with more arguments (`--config FILE`, say).
    pub(crate) fn start_with(rules: Option<&Path>, http: bool, more: &[&str]) -> Live {
        let stdout = tempfile::NamedTempFile::new().unwrap();
        let stderr = tempfile::NamedTempFile::new().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rulewatch"));
        cmd.args(["replay", "-", "--format", "jsonl"]);
        if let Some(dir) = rules {
            cmd.arg("--rules").arg(dir);
        }
        if http {
            cmd.args(["--http-listen", "127.0.0.1:0"]);
        }
        cmd.args(more);
        let mut child = cmd
            .env("RUST_LOG", "info,rulewatch=debug")
            // Two workers on any machine: rule changes must land between the same batches.
            .env("RULEWATCH_WORKERS", "2")
            .stdin(Stdio::piped())
            .stdout(stdout.reopen().unwrap())
            .stderr(stderr.reopen().unwrap())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let mut live = Live {
            child,
            stdin,
            stdout,
            stderr,
            addr: None,
        };
        if rules.is_some() {
            live.wait_log("watching", 1);
        }
        if http {
            live.addr = Some(http_addr(|| live.log()));
        }
        live
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap()
    }

    /// Waits until `needle` appears `times` times in the log (30 s at most).
    pub(crate) fn wait_log(&self, needle: &str, times: usize) {
        let missing = || {
            let log = self.log();
            format!("`{needle}` did not appear {times} time(s) in the log:\n{log}")
        };
        eventually(Duration::from_secs(30), missing, || {
            (self.log().matches(needle).count() >= times).then_some(())
        });
    }

    /// Writes raw bytes to the engine's input.
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    /// Writes lines to the engine's input.
    pub(crate) fn send(&mut self, lines: &[String]) {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        self.feed(text.as_bytes());
    }

    /// Sends `lines` and waits until the pipeline has processed them, so that a file change
    /// made next cannot take effect before them.
    pub(crate) fn send_processed(&mut self, lines: &[String]) {
        let before = self.log().matches("processed a batch").count();
        self.send(lines);
        self.wait_log("processed a batch", before + 1);
    }

    /// Reads the log when called, without holding on to the engine (for a message while
    /// the engine itself is borrowed).
    pub(crate) fn log_reader(&self) -> impl Fn() -> String + use<> {
        let path = self.stderr.path().to_owned();
        move || std::fs::read_to_string(&path).unwrap()
    }

    /// Panics with the log if the engine has exited.
    pub(crate) fn assert_running(&mut self) {
        if let Some(exit) = self.child.try_wait().unwrap() {
            panic!("rulewatch exited ({exit}):\n{}", self.log());
        }
    }

    /// The alerts printed so far.
    pub(crate) fn alerts_so_far(&self) -> Vec<Alert> {
        parse_alerts(&std::fs::read_to_string(self.stdout.path()).unwrap())
    }

    /// Ends the input and expects a clean exit; returns the alerts and the log.
    pub(crate) fn finish(mut self) -> (Vec<Alert>, String) {
        drop(self.stdin.take());
        assert!(self.child.wait().unwrap().success(), "{}", self.log());
        (self.alerts_so_far(), self.log())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
