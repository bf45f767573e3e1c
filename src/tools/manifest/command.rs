//! The `[command]` backend: starts one local program directly (no shell), each templated
//! argument as exactly one argv entry, the JSON arguments on stdin, a cleared environment, and
//! stops it — with everything it started — on timeout, cancellation or too much output.
//!
//! Exit code 75 (`EX_TEMPFAIL`) means "try again later": it is the one retryable exit.

use std::{
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
};

use serde_json::{Map, Value};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    process::{Child, Command},
    time::Instant,
};

use super::format::{BackendError, CommandSpec, ExecContext, Manifest, pick_result};

/// How much of stderr is kept for the log (its end, where the error usually is).
const STDERR_TAIL_BYTES: usize = 2048;
/// `EX_TEMPFAIL` from sysexits.h.
const EXIT_TEMPORARY_FAILURE: i32 = 75;

/// Runs `spec` with normalised arguments. See [`Manifest::execute`].
pub async fn execute(
    manifest: &Manifest,
    spec: &CommandSpec,
    args: &Map<String, Value>,
    ctx: &ExecContext,
) -> Result<Value, BackendError> {
    let deadline = Instant::now() + manifest.timeout();
    let templates = manifest.templates();
    let (bindings, secrets) = templates
        .request_bindings(args, ctx.secrets.as_ref(), &spec.env)
        .map_err(BackendError::from_template)?;
    let argv = (0..spec.arg_count)
        .map(|index| templates.render(&format!("command.args[{index}]"), &bindings))
        .collect::<Result<Vec<_>, _>>()
        .map_err(BackendError::from_template)?;
    let working_dir = ctx.working_dir.clone().unwrap_or_else(|| manifest.root_dir());
    let stdin = Value::Object(args.clone()).to_string();
    let run = Run {
        manifest,
        spec,
        ctx,
        argv: &argv,
        env: spec
            .env
            .iter()
            .filter_map(|name| Some((name.as_str(), secrets.get(name)?.as_str())))
            .collect(),
        working_dir: &working_dir,
        stdin: &stdin,
        secret_values: secrets.values().cloned().collect(),
    };
    manifest.with_retries(deadline, &ctx.cancel, || run.once(deadline)).await
}

/// Everything one attempt needs.
struct Run<'a> {
    manifest: &'a Manifest,
    spec: &'a CommandSpec,
    ctx: &'a ExecContext,
    argv: &'a [String],
    env: Vec<(&'a str, &'a str)>,
    working_dir: &'a Path,
    stdin: &'a str,
    secret_values: Vec<String>,
}

/// Why an attempt stopped before the program exited on its own.
enum Stop {
    TimedOut,
    Cancelled,
    TooLarge,
    Io(std::io::Error),
}

impl Run<'_> {
    async fn once(&self, deadline: Instant) -> Result<Value, BackendError> {
        let name = self.manifest.name();
        let mut command = Command::new(resolve_program(&self.spec.program, self.working_dir));
        command
            .args(self.argv)
            .current_dir(self.working_dir)
            .env_clear()
            .envs(self.ctx.command_env.iter().map(|(key, value)| (key, value)))
            .envs(self.env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // Its own process group, so a timeout stops whatever the program started as well.
        #[cfg(unix)]
        command.process_group(0);
        let mut child = command.spawn().map_err(|error| {
            tracing::warn!(tool = name, program = self.spec.program, %error, "command did not start");
            BackendError::new("spawn", format!("The {name} program could not be started."))
        })?;
        let outcome = tokio::select! {
            biased;
            () = self.ctx.cancel.cancelled() => Err(Stop::Cancelled),
            () = tokio::time::sleep_until(deadline) => Err(Stop::TimedOut),
            outcome = self.communicate(&mut child) => outcome,
        };
        let (status, stdout, stderr) = match outcome {
            Ok(done) => done,
            Err(stop) => {
                stop_all(&mut child).await;
                return Err(self.stop_error(stop));
            }
        };
        self.log_stderr(&status, &stderr);
        if let Some(failure) = self.exit_error(status) {
            return Err(failure);
        }
        pick_result(&stdout, self.spec.result.as_ref(), &format!("The output of {name}"))
    }

    /// Feeds stdin, reads stdout (within the limit) and the end of stderr, waits for the exit.
    async fn communicate(&self, child: &mut Child) -> Result<(ExitStatus, Vec<u8>, Vec<u8>), Stop> {
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let feed = async {
            if let Some(mut stdin) = stdin {
                // A program that ignores its input closes the pipe early; that is its right.
                let _ = stdin.write_all(self.stdin.as_bytes()).await;
                let _ = stdin.shutdown().await;
            }
            Ok::<(), Stop>(())
        };
        let limit = self.spec.max_output_bytes;
        let read_out = async {
            match stdout {
                Some(stdout) => read_limited(stdout, limit).await,
                None => Ok(Vec::new()),
            }
        };
        let read_err = async {
            Ok::<_, Stop>(match stderr {
                Some(stderr) => read_tail(stderr).await,
                None => Vec::new(),
            })
        };
        let ((), stdout, stderr) = tokio::try_join!(feed, read_out, read_err)?;
        let status = child.wait().await.map_err(Stop::Io)?;
        Ok((status, stdout, stderr))
    }

    fn stop_error(&self, stop: Stop) -> BackendError {
        let name = self.manifest.name();
        match stop {
            Stop::TimedOut => BackendError::retryable(
                "timeout",
                format!(
                    "{name} did not finish within {}, so I stopped it.",
                    humantime::format_duration(self.manifest.timeout())
                ),
            ),
            Stop::Cancelled => BackendError::cancelled(),
            Stop::TooLarge => BackendError::new(
                "too_large",
                format!(
                    "{name} wrote more than {} KiB, so I stopped it.",
                    self.spec.max_output_bytes.div_ceil(1024)
                ),
            ),
            Stop::Io(error) => {
                tracing::warn!(tool = name, %error, "reading the command's output failed");
                BackendError::new("exit_status", format!("{name} could not be read from."))
            }
        }
    }

    fn exit_error(&self, status: ExitStatus) -> Option<BackendError> {
        let name = self.manifest.name();
        if status.success() {
            return None;
        }
        Some(match status.code() {
            Some(EXIT_TEMPORARY_FAILURE) => BackendError::retryable(
                "exit_status",
                format!(
                    "{name} failed for now (exit code {EXIT_TEMPORARY_FAILURE}); try again later."
                ),
            ),
            Some(code) => {
                BackendError::new("exit_status", format!("{name} failed with exit code {code}."))
            }
            None => BackendError::new("exit_status", format!("{name} was stopped by a signal.")),
        })
    }

    fn log_stderr(&self, status: &ExitStatus, stderr: &[u8]) {
        if stderr.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(stderr);
        let text = super::template::redact(text.trim(), &self.secret_values);
        if status.success() {
            tracing::debug!(tool = self.manifest.name(), stderr = %text, "command wrote to stderr");
        } else {
            tracing::warn!(tool = self.manifest.name(), %status, stderr = %text, "command failed");
        }
    }
}

/// A relative path with a slash is taken from the working directory (std leaves relative
/// programs combined with `current_dir` unspecified); a bare name is looked up in PATH.
fn resolve_program(program: &str, working_dir: &Path) -> PathBuf {
    let path = Path::new(program);
    if path.is_relative() && program.contains('/') {
        working_dir.join(path)
    } else {
        path.to_path_buf()
    }
}

/// Reads all of `reader`, failing as soon as it exceeds `limit` bytes.
async fn read_limited(reader: impl AsyncRead + Unpin, limit: u64) -> Result<Vec<u8>, Stop> {
    let mut output = Vec::new();
    // One byte past the limit is enough to know it was exceeded.
    reader.take(limit + 1).read_to_end(&mut output).await.map_err(Stop::Io)?;
    if output.len() as u64 > limit {
        return Err(Stop::TooLarge);
    }
    Ok(output)
}

/// Reads all of `reader`, keeping only the last [`STDERR_TAIL_BYTES`].
async fn read_tail(mut reader: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut tail = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(read) = reader.read(&mut buffer).await {
        if read == 0 {
            break;
        }
        tail.extend_from_slice(&buffer[..read]);
        if tail.len() > STDERR_TAIL_BYTES {
            tail.drain(..tail.len() - STDERR_TAIL_BYTES);
        }
    }
    tail
}

/// Kills the program's process group (without unsafe code: through kill(1)), then the program
/// itself, and reaps it.
async fn stop_all(child: &mut Child) {
    #[cfg(unix)]
    if let Some(id) = child.id() {
        let group = format!("-{id}");
        let killed = Command::new("kill")
            .args(["-s", "KILL", "--", &group])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
        if let Err(error) = killed {
            tracing::debug!(%error, "kill(1) for the process group failed; killing the program only");
        }
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
}

#[cfg(test)]
#[path = "tests/command.rs"]
mod tests;
