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
fn an_unreachable_database_is_named_without_its_password() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let url = format!("postgres://bob:hunter2@{closed}/offstage");
    let message = start_fails(&["serve", "--database-url", &url], &[("RUST_BACKTRACE", "0")]);
    let shown = format!("postgres://bob:***@{closed}/offstage");
    assert!(message.contains("cannot connect to") && message.contains(&shown), "{message}");
    assert!(!message.contains("hunter2"), "the password stays secret: {message}");
    let scheme = start_fails(&["serve", "--database-url", "mysql://db/offstage"], &[]);
    assert!(scheme.contains("database_url") && scheme.contains("postgres://"), "{scheme}");
}

#[test]
fn a_taken_port_is_reported() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let message = start_fails(&["serve", "--listen", &addr], &[]);
    assert!(message.contains("cannot listen on") && message.contains(&addr), "{message}");
}

/// Runs `offstage tools …` from the repository, so it reads the shipped `tools/`.
fn tools_command(args: &[&str], envs: &[(&str, &str)]) -> (bool, String) {
    let data = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_offstage"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("tools")
        .args(args)
        .envs(envs.iter().copied())
        .env_remove("OPENAI_API_KEY")
        .env("OFFSTAGE_DATA_DIR", data.path())
        .output()
        .expect("run offstage tools");
    let stdout = String::from_utf8(output.stdout).unwrap();
    (output.status.success(), stdout)
}

#[test]
fn inspecting_tools_touches_neither_the_database_nor_the_image_store() {
    // An operator checks a deployment's tools from a laptop: no database, no bucket reachable.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let url = format!("postgres://bob@{closed}/offstage");
    let (ok, table) = tools_command(
        &["check"],
        &[("OFFSTAGE_DATABASE_URL", &url), ("OFFSTAGE_IMAGES__STORE", "s3://nowhere/images")],
    );
    assert!(ok && table.contains("generate_image"), "{table}");
}

#[test]
fn tools_check_prints_tokens_and_fails_over_budget() {
    let (ok, table) = tools_command(&["check"], &[]);
    assert!(ok, "the shipped tools fit the default budgets:\n{table}");
    for tool in ["generate_image", "job_status", "cancel_job", "get_weather", "web_search"] {
        let row = table
            .lines()
            .find(|line| line.starts_with(tool))
            .unwrap_or_else(|| panic!("{tool}: {table}"));
        let tokens: usize = row.split_whitespace().find_map(|cell| cell.parse().ok()).unwrap();
        assert!((20..=120).contains(&tokens), "{row}");
    }
    let (ok, tight) = tools_command(&["check"], &[("OFFSTAGE_TOOLS__BUDGETS__PER_TOOL", "60")]);
    assert!(!ok, "over budget must exit non-zero:\n{tight}");
    assert!(tight.contains("over the per-tool budget of 60"), "{tight}");
}

#[test]
fn tools_export_matches_each_platforms_shape() {
    use offstage::tools::listing::schema::portable::KEYS as ALLOWED_KEYS;
    use serde_json::Value;

    let read = |format: &str| -> Value {
        let (ok, out) = tools_command(&["export", "--format", format], &[]);
        assert!(ok, "{out}");
        serde_json::from_str(&out).unwrap()
    };
    // OpenAI Realtime `session.update` → `session.tools`: flat function tools.
    let openai = read("openai-realtime");
    let openai = openai.as_array().unwrap();
    assert_eq!(openai.len(), 6);
    for tool in openai {
        assert_eq!(tool["type"], "function", "{tool}");
        assert!(tool["name"].is_string() && tool["description"].is_string(), "{tool}");
        assert_eq!(tool["parameters"]["type"], "object", "{tool}");
        assert!(tool.get("function").is_none(), "no Chat Completions nesting: {tool}");
    }
    // Gemini Live `setup.tools`: one entry of functionDeclarations, OpenAPI-subset schemas.
    let gemini = read("gemini-live");
    let declarations = gemini[0]["functionDeclarations"].as_array().unwrap();
    assert_eq!(declarations.len(), 6);
    fn subset_only(schema: &Value, at: &str) {
        let Value::Object(object) = schema else { return };
        for (key, value) in object {
            assert!(
                ALLOWED_KEYS.contains(&key.as_str()),
                "{at}: `{key}` is outside Gemini's subset"
            );
            match key.as_str() {
                "properties" => value
                    .as_object()
                    .unwrap()
                    .iter()
                    .for_each(|(name, s)| subset_only(s, &format!("{at}.{name}"))),
                "items" => subset_only(value, &format!("{at}[]")),
                "type" => assert!(
                    value.as_str().unwrap().chars().all(|c| c.is_ascii_uppercase()),
                    "{at}: {value}"
                ),
                _ => {}
            }
        }
    }
    for declaration in declarations {
        if let Some(parameters) = declaration.get("parameters") {
            assert_eq!(parameters["type"], "OBJECT", "{declaration}");
            subset_only(parameters, declaration["name"].as_str().unwrap());
        }
    }
    // MCP: a `tools/list` result.
    let mcp = read("mcp");
    for tool in mcp["tools"].as_array().unwrap() {
        assert_eq!(tool["inputSchema"]["type"], "object", "{tool}");
        assert!(tool["inputSchema"].get("$schema").is_none(), "{tool}");
    }
    let (ok, _) = tools_command(&["export", "--format", "xml"], &[]);
    assert!(!ok, "an unknown format fails");
}
