//! Command backend tests with real programs: arguments arrive verbatim as single argv entries,
//! stdin carries the JSON arguments, the environment is cleared, and timeouts, cancellation,
//! failures and oversized output stop the program (and what it started) promptly.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use serde_json::json;

use super::*;
use crate::tools::manifest::{
    format::parse,
    test_support::{call, cancel_soon, with_secrets},
};

/// A manifest named `demo` with `params` (TOML) and a `[command]` section.
fn manifest(head: &str, params: &str, command: &str) -> Manifest {
    let text =
        format!("name = \"demo\"\ndescription = \"d\"\n{head}\n{params}\n[command]\n{command}\n");
    parse(Path::new("tools/demo.toml"), &text).unwrap()
}

fn context(secrets: &[(&str, &str)]) -> ExecContext {
    let mut ctx = with_secrets(secrets);
    ctx.command_env = vec![("PATH".to_owned(), "/usr/bin:/bin".to_owned())];
    ctx.working_dir = Some(std::env::temp_dir());
    ctx
}

const TEXT_PARAM: &str = "[params.text]\ntype = \"string\"\nrequired = true";

#[tokio::test]
async fn stdin_carries_the_arguments_as_json() {
    let cat = manifest(
        "",
        "[params.city]\ntype = \"string\"\n[params.days]\ntype = \"integer\"",
        "program = \"/bin/cat\"",
    );
    let result = call(&cat, json!({"city": " Oslo ", "days": 2.0}), &context(&[])).await.unwrap();
    assert_eq!(result, json!({"city": "Oslo", "days": 2}));
}

#[tokio::test]
async fn a_script_reads_json_and_writes_json() {
    let script =
        "import json, sys; a = json.load(sys.stdin); print(json.dumps({'double': a['n'] * 2}))";
    let python = manifest(
        "",
        "[params.n]\ntype = \"integer\"\nrequired = true",
        &format!(
            "program = \"/usr/bin/env\"\nargs = [\"python3\", \"-c\", \"{script}\"]\nresult = \"/double\""
        ),
    );
    assert_eq!(call(&python, json!({"n": 21}), &context(&[])).await.unwrap(), json!(42));
}

#[tokio::test]
async fn shell_metacharacters_arrive_verbatim_as_one_argument() {
    let printf =
        manifest("", TEXT_PARAM, "program = \"/usr/bin/printf\"\nargs = [\"%s|\", \"{{ text }}\"]");
    for text in ["; rm -rf /", "$(id)", "`id` && echo pwned", "a b  c", "*", "'\"quoted\"'"] {
        let result = call(&printf, json!({ "text": text }), &context(&[])).await.unwrap();
        assert_eq!(result, json!(format!("{text}|")), "{text}");
    }
}

#[tokio::test]
async fn the_environment_holds_only_what_is_passed_on() {
    let env = manifest("", "", "program = \"/usr/bin/env\"\nenv = [\"DEMO_KEY\"]");
    let result = call(&env, json!({}), &context(&[("DEMO_KEY", "k-42"), ("OTHER_KEY", "no")]))
        .await
        .unwrap();
    let mut lines: Vec<&str> = result.as_str().unwrap().lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["DEMO_KEY=k-42", "PATH=/usr/bin:/bin"]);

    let error = call(&env, json!({}), &context(&[])).await.unwrap_err();
    assert_eq!(error.code, "missing_secret");
    assert_eq!(error.message, "demo needs the environment variable DEMO_KEY.");
}

#[tokio::test]
async fn a_timeout_kills_the_program_and_what_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let script = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
    let sh = manifest(
        "timeout = \"500ms\"",
        "",
        &format!("program = \"/bin/sh\"\nargs = [\"-c\", \"{script}\"]"),
    );
    let started = Instant::now();
    let error = call(&sh, json!({}), &context(&[])).await.unwrap_err();
    assert_eq!(error.code, "timeout");
    assert_eq!(error.message, "demo did not finish within 500ms, so I stopped it.");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let proc_dir = Path::new("/proc").join(pid.trim());
    // The grandchild got SIGKILL with its group; give the kernel a moment to reap it.
    for _ in 0..50 {
        let zombie_or_gone = std::fs::read_to_string(proc_dir.join("stat"))
            .map(|stat| stat.split_whitespace().nth(2) == Some("Z"))
            .unwrap_or(true);
        if zombie_or_gone {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the background sleep {} outlived the timeout", pid.trim());
}

#[tokio::test]
async fn cancellation_kills_the_program() {
    let sleep = manifest("timeout = \"10s\"", "", "program = \"/bin/sleep\"\nargs = [\"30\"]");
    let ctx = context(&[]);
    cancel_soon(&ctx);
    let started = Instant::now();
    let error = call(&sleep, json!({}), &ctx).await.unwrap_err();
    assert_eq!(error.code, "cancelled");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_non_zero_exit_is_an_error_with_its_code() {
    let sh = manifest("", "", "program = \"/bin/sh\"\nargs = [\"-c\", \"echo oops >&2; exit 3\"]");
    let error = call(&sh, json!({}), &context(&[])).await.unwrap_err();
    assert_eq!(
        error,
        BackendError {
            code: "exit_status",
            message: "demo failed with exit code 3.".to_owned(),
            retryable: false,
            retry_after: None,
        }
    );
}

#[tokio::test]
async fn exit_code_75_is_retried_when_allowed() {
    let dir = tempfile::tempdir().unwrap();
    // Fails for now on the first run, succeeds on the second.
    let script = "if [ -e tried ]; then echo '{\\\"ok\\\": true}'; else touch tried; exit 75; fi";
    let sh = manifest(
        "retries = 1\n[annotations]\nidempotent = true",
        "",
        &format!("program = \"/bin/sh\"\nargs = [\"-c\", \"{script}\"]"),
    );
    let mut ctx = context(&[]);
    ctx.working_dir = Some(dir.path().to_path_buf());
    assert_eq!(call(&sh, json!({}), &ctx).await.unwrap(), json!({"ok": true}));
}

#[tokio::test]
async fn too_much_output_stops_the_program() {
    let yes = manifest("", "", "program = \"/usr/bin/yes\"\nmax_output_bytes = 1000");
    let started = Instant::now();
    let error = call(&yes, json!({}), &context(&[])).await.unwrap_err();
    assert_eq!(error.code, "too_large");
    assert_eq!(error.message, "demo wrote more than 1 KiB, so I stopped it.");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn relative_programs_run_from_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("scripts")).unwrap();
    let script = dir.path().join("scripts/hello.sh");
    std::fs::write(&script, "#!/bin/sh\nprintf '%s' \"hello $1\"\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let hello = manifest("", TEXT_PARAM, "program = \"scripts/hello.sh\"\nargs = [\"{{ text }}\"]");
    let mut ctx = context(&[]);
    ctx.working_dir = Some(dir.path().to_path_buf());
    assert_eq!(call(&hello, json!({"text": "world"}), &ctx).await.unwrap(), json!("hello world"));

    let missing = manifest("", "", "program = \"scripts/missing.sh\"");
    let error = call(&missing, json!({}), &ctx).await.unwrap_err();
    assert_eq!(
        (error.code, error.message.as_str()),
        ("spawn", "The demo program could not be started.")
    );
}

#[tokio::test]
async fn empty_output_is_null() {
    let truth = manifest("", "", "program = \"/bin/true\"");
    assert_eq!(call(&truth, json!({}), &context(&[])).await.unwrap(), Value::Null);
}
