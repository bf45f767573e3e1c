//! Starting the binary with a bad configuration fails fast with a message naming what to fix.

use std::process::Command;

fn start_fails(args: &[&str], envs: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_offstage"))
        .current_dir(dir.path())
        .args(args)
        .envs(envs.iter().copied())
        .env_remove("OPENAI_API_KEY")
        .env("OFFSTAGE_DATA_DIR", dir.path().join("data"))
        .output()
        .expect("run offstage");
    assert!(!output.status.success(), "{args:?} must fail");
    assert!(output.stdout.is_empty(), "nothing on stdout");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn bad_configuration_is_reported_clearly() {
    let port = start_fails(&["serve", "--listen", "127.0.0.1:99999"], &[]);
    assert!(port.contains("listen") && port.contains("port"), "{port}");
    let provider = start_fails(&["serve", "--provider", "dalle"], &[]);
    assert!(
        provider.contains("unknown provider `dalle`") && provider.contains("sketch"),
        "{provider}"
    );
    let key = start_fails(&["serve", "--provider", "openai"], &[]);
    assert!(key.contains("OPENAI_API_KEY"), "{key}");
    let file = tempfile::NamedTempFile::new().unwrap();
    let under_file = file.path().join("data");
    let data_dir = start_fails(&["serve", "--data-dir", under_file.to_str().unwrap()], &[]);
    assert!(
        data_dir.contains("data_dir") && data_dir.contains("not a writable directory"),
        "{data_dir}"
    );
    let env = start_fails(&["serve"], &[("OFFSTAGE_JOBS__CONCURRENCY", "many")]);
    assert!(env.to_lowercase().contains("jobs.concurrency") && env.contains("OFFSTAGE_"), "{env}");
    let missing = start_fails(&["serve", "--config", "/nonexistent/offstage.toml"], &[]);
    assert!(missing.contains("does not exist"), "{missing}");
}

#[test]
fn a_taken_port_is_reported() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let message = start_fails(&["serve", "--listen", &addr], &[]);
    assert!(message.contains("cannot listen on") && message.contains(&addr), "{message}");
}
