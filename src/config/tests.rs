//! Tests of configuration loading: defaults, the file < environment < flags layering, value
//! parsing (listen addresses, durations, tokens), provider resolution and every validation error.
//!
//! Everything that reads the environment or the working directory runs inside a
//! `figment::Jail`, which serialises those process-wide changes and undoes them afterwards.
#![expect(
    clippy::result_large_err,
    reason = "`Jail::expect_with` closures must return figment's own (large) error type"
)]

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use figment::Jail;

use super::*;
use crate::settings::Secret;

mod images;

/// Jail keeps the surrounding environment; a developer's own `OPENAI_API_KEY`, any provider's
/// key (every variable the registry reads) or `OFFSTAGE_*` would change what these tests see,
/// so such variables are removed for the jail's lifetime.
fn hermetic(jail: &mut Jail) {
    let ours = |key: &str| {
        key.starts_with("OFFSTAGE_")
            || key.starts_with("OPENAI_")
            || ProvidersConfig::env().any(|(_, var)| var.name == key)
    };
    if !std::env::vars_os().any(|(key, _)| key.to_str().is_some_and(ours)) {
        return;
    }
    let keep: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(key, value)| Some((key.into_string().ok()?, value.into_string().ok()?)))
        .filter(|(key, _)| !ours(key))
        .collect();
    jail.clear_env();
    for (key, value) in keep {
        jail.set_env(key, value);
    }
}

/// Sources as the CLI builds them without flags, except that the data directory is inside the
/// jail so that no test writes to the real home directory.
fn sources(jail: &Jail) -> ConfigSources {
    ConfigSources {
        config_file: None,
        overrides: Overrides {
            data_dir: Some(jail.directory().join("data")),
            ..Overrides::default()
        },
    }
}

fn load(jail: &Jail) -> Result<Config, ConfigError> {
    Config::load(&sources(jail))
}

fn addr(value: &str) -> SocketAddr {
    value.parse().expect("a valid socket address")
}

#[test]
fn defaults_load_with_the_sketch_provider_and_create_the_data_dir() {
    Jail::expect_with(|jail| {
        hermetic(jail);
        let data_dir = jail.directory().join("not").join("there").join("yet");
        let sources = ConfigSources {
            config_file: None,
            overrides: Overrides { data_dir: Some(data_dir.clone()), ..Overrides::default() },
        };
        let config = Config::load(&sources).expect("defaults are valid");

        assert_eq!(config.listen, addr("127.0.0.1:8787"));
        assert_eq!(config.provider, "sketch", "no OPENAI_API_KEY means sketch");
        assert_eq!(config.data_dir, data_dir);
        assert!(data_dir.is_dir(), "the data directory is created");
        // The write probe cleans up after itself.
        assert_eq!(std::fs::read_dir(&data_dir).unwrap().count(), 0);
        assert_eq!(config.database, Database::Sqlite(data_dir.join("offstage.db")));
        assert_eq!(config.public_url, None);
        assert_eq!(config.jobs, JobsConfig::default());
        assert_eq!(config.providers, ProvidersConfig::default());
        assert_eq!(config.log, DEFAULT_LOG);
        assert!(config.security.tokens.is_empty());
        assert_eq!(config.security.allowed_hosts, raw::default_allowed_hosts());
        assert_eq!(config.security.allowed_origins, raw::default_allowed_origins());
        assert_eq!(config.security.max_body_bytes, 1024 * 1024);
        Ok(())
    });
}

#[test]
fn without_a_data_dir_setting_the_platform_data_dir_is_used() {
    Jail::expect_with(|jail| {
        hermetic(jail);
        let home = jail.directory().join("home");
        let xdg = jail.directory().join("xdg-data");
        jail.set_env("HOME", home.display());
        jail.set_env("XDG_DATA_HOME", xdg.display());
        let config = Config::load(&ConfigSources::default()).expect("loads");
        assert_eq!(config.data_dir, xdg.join("offstage"));
        assert!(config.data_dir.is_dir());
        Ok(())
    });
}

#[test]
fn file_is_overridden_by_env_which_is_overridden_by_flags() {
    Jail::expect_with(|jail| {
        hermetic(jail);
        jail.create_file("offstage.toml", "listen = \"127.0.0.1:1111\"\nlog = \"debug\"\n")?;
        assert_eq!(load(jail).unwrap().listen, addr("127.0.0.1:1111"), "file over defaults");

        jail.set_env("OFFSTAGE_LISTEN", "127.0.0.1:2222");
        let config = load(jail).unwrap();
        assert_eq!(config.listen, addr("127.0.0.1:2222"), "env over file");
        assert_eq!(config.log, "debug", "the file still supplies what env does not set");

        let mut flagged = sources(jail);
        flagged.overrides.listen = Some("127.0.0.1:3333".to_owned());
        flagged.overrides.log = Some("warn".to_owned());
        let config = Config::load(&flagged).unwrap();
        assert_eq!(config.listen, addr("127.0.0.1:3333"), "flags over env");
        assert_eq!(config.log, "warn", "flags over file");
        Ok(())
    });
}

#[test]
fn an_explicit_config_file_replaces_the_default_one() {
    Jail::expect_with(|jail| {
        hermetic(jail);
        jail.create_file("offstage.toml", "listen = \"127.0.0.1:1111\"\nlog = \"debug\"\n")?;
        jail.create_file("custom.toml", "listen = \"127.0.0.1:4444\"\n")?;
        let mut sources = sources(jail);
        sources.config_file = Some(jail.directory().join("custom.toml"));
        let config = Config::load(&sources).unwrap();
        assert_eq!(config.listen, addr("127.0.0.1:4444"));
        assert_eq!(config.log, DEFAULT_LOG, "./offstage.toml is not read when --config is given");
        Ok(())
    });
}

#[test]
fn nested_env_keys_durations_and_per_tool_lanes() {
    Jail::expect_with(|jail| {
        hermetic(jail);
        jail.create_file(
            "offstage.toml",
            r#"
            [jobs]
            concurrency = 3
            queue = 5

            [jobs.tools.generate_image]
            concurrency = 2
            "#,
        )?;
        jail.set_env("OFFSTAGE_JOBS__CONCURRENCY", "7");
        jail.set_env("OFFSTAGE_JOBS__RETENTION", "48h");
        jail.set_env("OFFSTAGE_JOBS__TIMEOUT", "2m 30s");
        jail.set_env("OFFSTAGE_JOBS__RESUME_INTERRUPTED", "false");
        jail.set_env("OFFSTAGE_PROVIDERS__SKETCH__LATENCY", "250ms");
        let config = load(jail).unwrap();

        assert_eq!(config.jobs.concurrency, 7, "env overrides the file's [jobs] table");
        assert_eq!(
            config.jobs.lane("generate_image", None),
            (2, 5),
            "the tool's own concurrency wins"
        );
        assert_eq!(config.jobs.lane("other_tool", None), (7, 5), "other tools get the defaults");
        assert_eq!(config.jobs.lane("generate_image", Some(9)), (2, 5), "the operator wins");
        assert_eq!(config.jobs.lane("other_tool", Some(3)), (3, 5), "then what the tool declares");
        assert_eq!(config.jobs.retention, Duration::from_secs(48 * 3600));
        assert_eq!(config.jobs.timeout, Duration::from_secs(150));
        assert!(!config.jobs.resume_interrupted);
        assert_eq!(config.providers.sketch.latency, Duration::from_millis(250));
        Ok(())
    });
}

#[test]
fn tokens_from_env_are_split_trimmed_and_kept_as_strings() {
    Jail::expect_with(|jail| {
        hermetic(jail);
        jail.create_file("offstage.toml", "tokens = [\"from-file\"]\n")?;
        assert_eq!(load(jail).unwrap().security.tokens, ["from-file"]);

        jail.set_env("OFFSTAGE_TOKENS", "a, b,,c");
        assert_eq!(load(jail).unwrap().security.tokens, ["a", "b", "c"], "env replaces the file");

        // figment would read this as an integer and fail on `Vec<String>`; it must stay text.
        jail.set_env("OFFSTAGE_TOKENS", "12345");
        assert_eq!(load(jail).unwrap().security.tokens, ["12345"]);
        Ok(())
    });
}

#[test]
fn an_openai_key_selects_openai_and_is_never_printed() {
    Jail::expect_with(|jail| {
        hermetic(jail);
        let secret = "sk-test-5f2b9c0e-very-secret";
        jail.set_env("OPENAI_API_KEY", secret);
        jail.set_env("OPENAI_BASE_URL", "https://proxy.example/v1/");
        let config = load(jail).unwrap();

        assert_eq!(config.provider, "openai", "auto picks openai when keyed");
        assert_eq!(config.providers.openai.api_key.as_ref().map(Secret::expose), Some(secret));
        assert_eq!(config.providers.openai.base_url, "https://proxy.example", "`/v1` is ours");
        let printed = format!("{config:?}");
        assert!(!printed.contains(secret), "the key leaked into Debug output: {printed}");
        assert!(printed.contains("<redacted>"), "Debug still says a key is set: {printed}");
        assert!(!format!("{:?}", RawConfig::gather(&sources(jail)).unwrap()).contains(secret));

        // An explicit choice beats auto, key or not.
        jail.set_env("OFFSTAGE_PROVIDER", "sketch");
        assert_eq!(load(jail).unwrap().provider, "sketch");
        Ok(())
    });
}

#[test]
fn openai_variables_sit_between_the_file_and_offstage_variables() {
    // docs/operations.md, "Configuration": defaults < file < OPENAI_API_KEY / OPENAI_BASE_URL < OFFSTAGE_* < flags.
    Jail::expect_with(|jail| {
        hermetic(jail);
        jail.create_file(
            "offstage.toml",
            "[providers.openai]\napi_key = \"sk-file\"\nbase_url = \"https://file.example\"\n",
        )?;
        jail.set_env("OPENAI_API_KEY", "sk-openai-var");
        jail.set_env("OPENAI_BASE_URL", "https://openai-var.example");
        let openai = load(jail).unwrap().providers.openai;
        assert_eq!(
            openai.api_key.as_ref().map(Secret::expose),
            Some("sk-openai-var"),
            "OPENAI_* over the file"
        );
        assert_eq!(openai.base_url, "https://openai-var.example");

        jail.set_env("OFFSTAGE_PROVIDERS__OPENAI__API_KEY", "sk-offstage-var");
        jail.set_env("OFFSTAGE_PROVIDERS__OPENAI__BASE_URL", "https://offstage-var.example");
        let openai = load(jail).unwrap().providers.openai;
        assert_eq!(
            openai.api_key.as_ref().map(Secret::expose),
            Some("sk-offstage-var"),
            "OFFSTAGE_* over OPENAI_*"
        );
        assert_eq!(openai.base_url, "https://offstage-var.example");
        Ok(())
    });
}

#[test]
fn a_listen_flag_beats_a_bare_port_from_env() {
    // `OFFSTAGE_LISTEN` is read raw (not through figment's `Env`); it must still rank below
    // the flags.
    Jail::expect_with(|jail| {
        hermetic(jail);
        jail.set_env("OFFSTAGE_LISTEN", "9002");
        let mut flagged = sources(jail);
        flagged.overrides.listen = Some("9003".to_owned());
        assert_eq!(Config::load(&flagged).unwrap().listen, addr("127.0.0.1:9003"));
        Ok(())
    });
}

#[test]
fn choosing_openai_without_a_key_is_refused() {
    Jail::expect_with(|jail| {
        hermetic(jail);
        jail.create_file("offstage.toml", "provider = \"openai\"\n")?;
        assert!(matches!(load(jail), Err(ConfigError::Provider(SetupError::MissingKey { .. }))));
        // A blank key is no key.
        jail.set_env("OPENAI_API_KEY", "  ");
        let error = load(jail).unwrap_err();
        assert!(matches!(
            error,
            ConfigError::Provider(SetupError::MissingKey { provider: "openai", .. })
        ));
        assert!(error.to_string().contains("OPENAI_API_KEY"), "{error}");
        Ok(())
    });
}

#[test]
fn gemini_reads_its_key_from_gemini_then_google_variables() {
    Jail::expect_with(|jail| {
        hermetic(jail);
        let secret = "AIza-test-7d1e4b2a-very-secret";
        jail.set_env("OFFSTAGE_PROVIDER", "gemini");
        jail.set_env("GOOGLE_API_KEY", "AIza-google-fallback");
        let config = load(jail).unwrap();
        assert_eq!(config.provider, "gemini");
        assert_eq!(
            config.providers.gemini.api_key.as_ref().map(Secret::expose),
            Some("AIza-google-fallback")
        );

        jail.set_env("GEMINI_API_KEY", secret);
        let config = load(jail).unwrap();
        assert_eq!(
            config.providers.gemini.api_key.as_ref().map(Secret::expose),
            Some(secret),
            "GEMINI_ first"
        );
        assert_eq!(config.providers.gemini.model, "gemini-2.5-flash-image");
        assert_eq!(config.providers.gemini.base_url, "https://generativelanguage.googleapis.com");
        let printed = format!("{config:?}");
        assert!(!printed.contains(secret), "the key leaked into Debug output: {printed}");
        Ok(())
    });
}

#[test]
fn auto_never_picks_gemini() {
    Jail::expect_with(|jail| {
        hermetic(jail);
        jail.set_env("GEMINI_API_KEY", "AIza-test-key");
        assert_eq!(load(jail).unwrap().provider, "sketch");
        Ok(())
    });
}

#[test]
fn choosing_gemini_without_a_key_names_the_variable() {
    Jail::expect_with(|jail| {
        hermetic(jail);
        jail.create_file("offstage.toml", "provider = \"gemini\"\n")?;
        let error = load(jail).unwrap_err();
        assert!(matches!(
            error,
            ConfigError::Provider(SetupError::MissingKey { provider: "gemini", .. })
        ));
        assert!(error.to_string().contains("GEMINI_API_KEY"), "{error}");
        // A blank key in the file is no key either.
        jail.create_file(
            "offstage.toml",
            "provider = \"gemini\"\n[providers.gemini]\napi_key = \" \"\n",
        )?;
        assert!(matches!(load(jail), Err(ConfigError::Provider(SetupError::MissingKey { .. }))));
        Ok(())
    });
}

#[test]
fn stability_reads_its_key_from_its_variable_and_hides_it() {
    Jail::expect_with(|jail| {
        hermetic(jail);
        let secret = "sk-stability-test-3f9a1c-very-secret";
        jail.set_env("OFFSTAGE_PROVIDER", "stability");
        jail.set_env("STABILITY_API_KEY", secret);
        let config = load(jail).unwrap();
        assert_eq!(config.provider, "stability");
        assert_eq!(config.providers.stability.api_key.as_ref().map(Secret::expose), Some(secret));
        assert_eq!(config.providers.stability.model, "core");
        assert_eq!(config.providers.stability.base_url, "https://api.stability.ai");
        let printed = format!("{config:?}");
        assert!(!printed.contains(secret), "the key leaked into Debug output: {printed}");
        Ok(())
    });
}

#[test]
fn choosing_stability_without_a_key_names_the_variable() {
    Jail::expect_with(|jail| {
        hermetic(jail);
        jail.create_file("offstage.toml", "provider = \"stability\"\n")?;
        let error = load(jail).unwrap_err();
        assert!(matches!(
            error,
            ConfigError::Provider(SetupError::MissingKey { provider: "stability", .. })
        ));
        assert!(error.to_string().contains("STABILITY_API_KEY"), "{error}");
        // `auto` never picks it, key or not.
        jail.create_file("offstage.toml", "")?;
        jail.set_env("STABILITY_API_KEY", "sk-test");
        assert_eq!(load(jail).unwrap().provider, "sketch");
        Ok(())
    });
}

#[test]
fn replicate_reads_its_token_from_its_variable_and_hides_it() {
    Jail::expect_with(|jail| {
        hermetic(jail);
        let secret = "r8_replicate-test-7c2e9b-very-secret";
        jail.set_env("OFFSTAGE_PROVIDER", "replicate");
        jail.set_env("REPLICATE_API_TOKEN", secret);
        let config = load(jail).unwrap();
        assert_eq!(config.provider, "replicate");
        let replicate = &config.providers.replicate;
        assert_eq!(replicate.api_key.as_ref().map(Secret::expose), Some(secret));
        assert_eq!(replicate.model, "black-forest-labs/flux-schnell");
        assert_eq!(replicate.base_url, "https://api.replicate.com");
        assert_eq!(replicate.poll_interval, Duration::from_millis(500));
        let printed = format!("{config:?}");
        assert!(!printed.contains(secret), "the key leaked into Debug output: {printed}");
        Ok(())
    });
}

#[test]
fn choosing_replicate_without_a_token_names_the_variable() {
    Jail::expect_with(|jail| {
        hermetic(jail);
        jail.create_file("offstage.toml", "provider = \"replicate\"\n")?;
        let error = load(jail).unwrap_err();
        assert!(matches!(
            error,
            ConfigError::Provider(SetupError::MissingKey { provider: "replicate", .. })
        ));
        assert!(error.to_string().contains("REPLICATE_API_TOKEN"), "{error}");
        // `auto` never picks it, token or not.
        jail.create_file("offstage.toml", "")?;
        jail.set_env("REPLICATE_API_TOKEN", "r8_test");
        assert_eq!(load(jail).unwrap().provider, "sketch");
        Ok(())
    });
}

#[test]
fn replicate_settings_are_checked() {
    Jail::expect_with(|jail| {
        hermetic(jail);
        for (setting, field) in [
            ("base_url = \"api.replicate.com\"", "providers.replicate.base_url"),
            ("base_url = \"ftp://api.replicate.com\"", "providers.replicate.base_url"),
            ("poll_interval = \"10ms\"", "providers.replicate.poll_interval"),
            ("deadline = \"500ms\"", "providers.replicate.deadline"),
        ] {
            jail.create_file("offstage.toml", &format!("[providers.replicate]\n{setting}\n"))?;
            let error = load(jail).unwrap_err();
            assert!(error.to_string().contains(field), "{setting}: {error}");
        }
        jail.create_file(
            "offstage.toml",
            "[providers.replicate]\nmodel = \"owner/name:abc123\"\npoll_interval = \"1s\"\n",
        )?;
        let config = load(jail).unwrap();
        assert_eq!(config.providers.replicate.model, "owner/name:abc123");
        assert_eq!(config.providers.replicate.poll_interval, Duration::from_secs(1));
        Ok(())
    });
}

#[test]
fn a_bad_gemini_base_url_is_refused() {
    Jail::expect_with(|jail| {
        hermetic(jail);
        jail.create_file("offstage.toml", "[providers.gemini]\nbase_url = \"googleapis\"\n")?;
        let error = load(jail).unwrap_err();
        assert!(error.to_string().contains("providers.gemini.base_url"), "{error}");
        Ok(())
    });
}

#[test]
fn an_unknown_provider_is_named_with_the_valid_choices() {
    Jail::expect_with(|jail| {
        hermetic(jail);
        jail.set_env("OFFSTAGE_PROVIDER", "dall-e");
        let error = load(jail).unwrap_err();
        assert!(matches!(&error, ConfigError::UnknownProvider { name, .. } if name == "dall-e"));
        let message = error.to_string();
        assert!(message.contains("`dall-e`"), "{message}");
        assert!(
            message.contains("auto, sketch, openai, gemini, stability, replicate"),
            "{message}"
        );

        // Names are case-insensitive, so this is not an error.
        let mut flagged = sources(jail);
        flagged.overrides.provider = Some("SKETCH".to_owned());
        assert_eq!(Config::load(&flagged).unwrap().provider, "sketch");
        Ok(())
    });
}

#[test]
fn listen_accepts_addresses_bare_ports_and_localhost() {
    for (value, expected) in [
        ("127.0.0.1:8080", "127.0.0.1:8080"),
        ("0.0.0.0:80", "0.0.0.0:80"),
        ("[::1]:8787", "[::1]:8787"),
        ("9000", "127.0.0.1:9000"),
        (" 9000 ", "127.0.0.1:9000"),
        ("localhost:8080", "127.0.0.1:8080"),
    ] {
        assert_eq!(parse_listen(value).unwrap(), addr(expected), "{value:?}");
    }
}

#[test]
fn bad_listen_values_are_refused_with_the_reason() {
    Jail::expect_with(|jail| {
        hermetic(jail);
        for (value, hint) in [
            ("127.0.0.1:99999", "port"),
            ("127.0.0.1:http", "port"),
            ("nonsense", "invalid socket address"),
            ("", "invalid socket address"),
        ] {
            let mut flagged = sources(jail);
            flagged.overrides.listen = Some(value.to_owned());
            let error = Config::load(&flagged).unwrap_err();
            assert!(
                matches!(&error, ConfigError::BadListen { value: v, .. } if v == value),
                "{value:?}: {error:?}"
            );
            let message = error.to_string();
            assert!(message.starts_with("listen:"), "{message}");
            assert!(message.contains(hint), "{value:?}: {message}");
        }
        Ok(())
    });
}

#[test]
fn a_bare_port_works_from_every_source() {
    // docs/operations.md: "a bare port means 127.0.0.1" for the `listen` setting, wherever it is set.
    Jail::expect_with(|jail| {
        hermetic(jail);
        let mut flagged = sources(jail);
        flagged.overrides.listen = Some("9000".to_owned());
        assert_eq!(Config::load(&flagged).unwrap().listen, addr("127.0.0.1:9000"), "flag");

        jail.create_file("offstage.toml", "listen = \"9001\"\n")?;
        assert_eq!(load(jail).unwrap().listen, addr("127.0.0.1:9001"), "file");

        // figment reads an all-digit variable as an integer, which `listen` must still accept.
        jail.set_env("OFFSTAGE_LISTEN", "9002");
        assert_eq!(load(jail).unwrap().listen, addr("127.0.0.1:9002"), "env");
        Ok(())
    });
}

#[test]
fn a_data_dir_that_cannot_be_created_is_refused() {
    Jail::expect_with(|jail| {
        hermetic(jail);
        // A path through a regular file cannot become a directory, even for root.
        jail.create_file("blocker", "not a directory")?;
        let data_dir: PathBuf = jail.directory().join("blocker").join("data");
        let mut flagged = sources(jail);
        flagged.overrides.data_dir = Some(data_dir.clone());
        let error = Config::load(&flagged).unwrap_err();
        assert!(
            matches!(&error, ConfigError::DataDir { path, .. } if *path == data_dir),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(message.starts_with("data_dir:"), "{message}");
        assert!(message.contains(&data_dir.display().to_string()), "{message}");
        Ok(())
    });
}

#[test]
fn unknown_keys_in_the_file_are_named() {
    Jail::expect_with(|jail| {
        hermetic(jail);
        jail.create_file("offstage.toml", "lisen = \"127.0.0.1:1\"\n")?;
        let error = load(jail).unwrap_err();
        assert!(matches!(error, ConfigError::Source(_)), "{error:?}");
        assert!(error.to_string().contains("lisen"), "{error}");

        jail.create_file("offstage.toml", "[jobs]\nconcurrence = 3\n")?;
        let error = load(jail).unwrap_err();
        assert!(error.to_string().contains("concurrence"), "{error}");
        Ok(())
    });
}

#[test]
fn a_missing_config_file_is_an_error() {
    Jail::expect_with(|jail| {
        hermetic(jail);
        let missing = jail.directory().join("nope.toml");
        let mut sources = sources(jail);
        sources.config_file = Some(missing.clone());
        let error = Config::load(&sources).unwrap_err();
        assert!(matches!(&error, ConfigError::MissingFile(path) if *path == missing), "{error:?}");
        assert!(error.to_string().contains("nope.toml"), "{error}");
        Ok(())
    });
}

#[test]
fn out_of_range_settings_name_their_field() {
    Jail::expect_with(|jail| {
        hermetic(jail);
        for (file, field) in [
            ("[jobs]\nconcurrency = 0", "jobs.concurrency"),
            ("[jobs.tools.generate_image]\nconcurrency = 0", "jobs.concurrency"),
            ("[jobs]\nmax_attempts = 0", "jobs.max_attempts"),
            ("[jobs]\ntimeout = \"0s\"", "jobs.timeout"),
            ("[jobs]\nlease = \"500ms\"", "jobs.lease"),
            ("[jobs]\nretention = \"0s\"", "jobs.retention"),
            ("max_body_bytes = 100", "max_body_bytes"),
            ("[images]\nqueue = 0", "images.queue"),
            ("[images]\nquality = 0", "images.quality"),
            ("[images]\nquality = 101", "images.quality"),
            ("[images]\nmax_pixels = 100", "images.max_pixels"),
            ("[images]\nmax_bytes = 10", "images.max_bytes"),
        ] {
            jail.create_file("offstage.toml", file)?;
            let error = load(jail).unwrap_err();
            assert!(
                matches!(&error, ConfigError::Invalid { field: f, .. } if *f == field),
                "{file:?}: {error:?}"
            );
            assert!(error.to_string().starts_with(&format!("{field}: ")), "{error}");
        }
        // Zero concurrency from the environment is caught the same way.
        jail.create_file("offstage.toml", "")?;
        jail.set_env("OFFSTAGE_JOBS__CONCURRENCY", "0");
        let error = load(jail).unwrap_err();
        assert_eq!(error.to_string(), "jobs.concurrency: must be at least 1");
        Ok(())
    });
}

#[test]
fn partial_images_default_by_model_and_can_be_set() {
    Jail::expect_with(|jail| {
        hermetic(jail);
        assert_eq!(load(jail).unwrap().providers.openai.partial_images(), 2, "gpt-image streams");
        jail.create_file("offstage.toml", "[providers.openai]\nmodel = \"dall-e-3\"\n")?;
        assert_eq!(load(jail).unwrap().providers.openai.partial_images(), 0, "dall-e cannot");
        jail.create_file("offstage.toml", "[providers.openai]\npartial_images = 0\n")?;
        assert_eq!(load(jail).unwrap().providers.openai.partial_images(), 0);
        jail.set_env("OFFSTAGE_PROVIDERS__OPENAI__PARTIAL_IMAGES", "3");
        assert_eq!(load(jail).unwrap().providers.openai.partial_images(), 3);
        Ok(())
    });
}

#[test]
fn urls_must_be_absolute_http() {
    Jail::expect_with(|jail| {
        hermetic(jail);
        jail.create_file("offstage.toml", "public_url = \"ftp://files.example\"\n")?;
        assert!(
            matches!(load(jail), Err(ConfigError::BadPublicUrl(url)) if url == "ftp://files.example")
        );

        jail.create_file("offstage.toml", "[providers.openai]\nbase_url = \"api.openai.com\"\n")?;
        let error = load(jail).unwrap_err();
        assert!(
            matches!(&error, ConfigError::Provider(SetupError::Invalid { provider: "openai", field: "base_url", message }) if message.contains("`api.openai.com`")),
            "{error:?}"
        );

        jail.create_file("offstage.toml", "public_url = \"https://offstage.example/base\"\n")?;
        let config = load(jail).unwrap();
        assert_eq!(config.public_url.unwrap().as_str(), "https://offstage.example/base");
        Ok(())
    });
}

#[test]
fn push_settings_are_read_and_webhooks_validated() {
    Jail::expect_with(|jail| {
        hermetic(jail);
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        jail.create_file(
            "offstage.toml",
            &format!(
                "tokens = [\"alpha\"]\n[push]\ndelivery = \"silent\"\ndedupe_window = \"90s\"\n\
                 [push.tools]\ngenerate_image = \"interrupt\"\n\
                 [[push.webhooks]]\nurl = \"https://hooks.example/in\"\nsecret = \"{secret}\"\n\
                 token = \"alpha\"\n"
            ),
        )?;
        let config = load(jail).unwrap();
        assert_eq!(config.push.delivery, DeliveryHint::Silent);
        assert_eq!(config.push.delivery_for("generate_image"), DeliveryHint::Interrupt);
        assert_eq!(config.push.delivery_for("other"), DeliveryHint::Silent);
        assert_eq!(config.push.dedupe_window, Duration::from_secs(90));
        assert_eq!(config.push.webhooks[0].key().unwrap().len(), 24);
        // The secret never reaches a log line through Debug.
        assert!(!format!("{config:?}").contains("MfKQ9r8"), "secret printed");

        let refused = |webhook: &str, tokens: &str| {
            format!("tokens = [{tokens}]\n[[push.webhooks]]\n{webhook}\n")
        };
        for (file, needle) in [
            (
                refused(
                    &format!(
                        "url = \"http://127.0.0.1:9/in\"\nsecret = \"{secret}\"\ntoken = \"alpha\""
                    ),
                    "\"alpha\"",
                ),
                "private or loopback",
            ),
            (
                refused(
                    &format!("url = \"http://[::1]/in\"\nsecret = \"{secret}\"\ntoken = \"alpha\""),
                    "\"alpha\"",
                ),
                "private or loopback",
            ),
            (
                refused(
                    &format!(
                        "url = \"http://10.0.0.8/in\"\nsecret = \"{secret}\"\ntoken = \"alpha\""
                    ),
                    "\"alpha\"",
                ),
                "allow_private_webhooks",
            ),
            (
                refused(
                    &format!("url = \"hooks.example\"\nsecret = \"{secret}\"\ntoken = \"alpha\""),
                    "\"alpha\"",
                ),
                "absolute http(s) URL",
            ),
            (
                refused(
                    "url = \"https://hooks.example\"\nsecret = \"hunter2\"\ntoken = \"alpha\"",
                    "\"alpha\"",
                ),
                "whsec_",
            ),
            (
                refused(
                    &format!(
                        "url = \"https://hooks.example\"\nsecret = \"{secret}\"\ntoken = \"gamma\""
                    ),
                    "\"alpha\"",
                ),
                "not one of `tokens`",
            ),
            (
                refused(
                    &format!("url = \"https://hooks.example\"\nsecret = \"{secret}\""),
                    "\"alpha\"",
                ),
                "name the token",
            ),
        ] {
            jail.create_file("offstage.toml", &file)?;
            let error = load(jail).unwrap_err();
            assert!(
                matches!(&error, ConfigError::Invalid { field: "push.webhooks", .. }),
                "{file}: {error:?}"
            );
            assert!(error.to_string().contains(needle), "{file}: {error}");
        }
        // The operator may allow private targets (a webhook receiver on the same host).
        jail.create_file(
            "offstage.toml",
            &format!(
                "[push]\nallow_private_webhooks = true\n[[push.webhooks]]\n\
                 url = \"http://127.0.0.1:9/in\"\nsecret = \"{secret}\"\n"
            ),
        )?;
        assert!(load(jail).is_ok());
        Ok(())
    });
}

#[test]
fn fallback_and_routing_resolve_into_an_ordered_route() {
    Jail::expect_with(|jail| {
        hermetic(jail);
        jail.create_file(
            "offstage.toml",
            r#"
            provider = "gemini"
            fallback = ["openai", "sketch"]
            [jobs]
            max_attempts = 4
            [routing.gemini]
            timeout = "45s"
            concurrency = 2
            attempts = 1
            "#,
        )?;
        jail.set_env("GEMINI_API_KEY", "AIza-test-key");
        jail.set_env("OPENAI_API_KEY", "sk-test-key");
        let route = load(jail).unwrap().route();
        let order: Vec<_> = route.iter().map(|step| step.provider).collect();
        assert_eq!(order, ["gemini", "openai", "sketch"]);
        assert_eq!(route[0].timeout, Some(Duration::from_secs(45)));
        assert_eq!((route[0].concurrency, route[0].attempts), (Some(2), 1));
        assert_eq!((route[1].timeout, route[1].concurrency, route[1].attempts), (None, None, 4));

        jail.set_env("OFFSTAGE_FALLBACK", "sketch");
        let order: Vec<_> = load(jail).unwrap().route().iter().map(|s| s.provider).collect();
        assert_eq!(order, ["gemini", "sketch"], "env list wins");
        Ok(())
    });
}

#[test]
fn bad_fallbacks_and_routing_are_refused_with_the_reason() {
    let cases = [
        ("fallback = [\"sketch\", \"sketch\"]", "listed twice"),
        ("fallback = [\"auto\"]", "`auto` can only be the provider"),
        ("fallback = [\"dalle\"]", "unknown provider `dalle`"),
        ("fallback = [\"openai\"]", "OPENAI_API_KEY"),
        ("[routing.midjourney]\nattempts = 1", "names no provider"),
        ("[routing.sketch]\nattempts = 0", "routing.sketch.attempts"),
        ("[routing.sketch]\nconcurrency = 0", "routing.sketch.concurrency"),
        ("[routing.sketch]\ntimeout = \"0s\"", "routing.sketch.timeout"),
    ];
    for (file, expected) in cases {
        Jail::expect_with(|jail| {
            hermetic(jail);
            jail.create_file("offstage.toml", &format!("provider = \"sketch\"\n{file}"))?;
            let error = load(jail).unwrap_err().to_string();
            assert!(error.contains(expected), "`{file}`: `{error}` should say `{expected}`");
            Ok(())
        });
    }
}

#[test]
fn comfyui_needs_no_key_and_hides_the_proxy_key() {
    Jail::expect_with(|jail| {
        hermetic(jail);
        jail.set_env("OFFSTAGE_PROVIDER", "comfyui");
        let config = load(jail).unwrap();
        assert_eq!(config.provider, "comfyui");
        assert_eq!(config.providers.comfyui.base_url, "http://127.0.0.1:8188");
        assert_eq!(config.providers.comfyui.workflow, None);
        assert_eq!(config.providers.comfyui.api_key, None);
        let secret = "comfy-proxy-test-7d41e9-very-secret";
        jail.set_env("COMFYUI_API_KEY", secret);
        let config = load(jail).unwrap();
        assert_eq!(config.providers.comfyui.api_key.as_ref().map(Secret::expose), Some(secret));
        let printed = format!("{config:?}");
        assert!(!printed.contains(secret), "the key leaked into Debug output: {printed}");
        // `auto` never picks it.
        jail.set_env("OFFSTAGE_PROVIDER", "auto");
        assert_eq!(load(jail).unwrap().provider, "sketch");
        Ok(())
    });
}

#[test]
fn a_comfyui_workflow_must_exist_parse_and_hold_the_prompt_placeholder() {
    Jail::expect_with(|jail| {
        hermetic(jail);
        let config_with = |jail: &mut Jail, file: &str| {
            jail.create_file(
                "offstage.toml",
                &format!("provider = \"comfyui\"\n[providers.comfyui]\nworkflow = \"{file}\"\n"),
            )
        };
        let refused = |jail: &Jail| {
            let error = load(jail).unwrap_err();
            assert!(
                matches!(
                    error,
                    ConfigError::Provider(SetupError::Invalid {
                        provider: "comfyui",
                        field: "workflow",
                        ..
                    })
                ),
                "{error:?}"
            );
            error.to_string()
        };
        config_with(jail, "missing.json")?;
        let message = refused(jail);
        assert!(message.contains("missing.json"), "{message}");

        jail.create_file("broken.json", "{\"3\": {\"class_type\": ")?;
        config_with(jail, "broken.json")?;
        assert!(refused(jail).contains("not JSON"));

        jail.create_file("ui.json", r#"{"nodes": [], "links": [], "version": 0.4}"#)?;
        config_with(jail, "ui.json")?;
        assert!(refused(jail).contains("Export (API)"));

        let no_placeholder =
            r#"{"6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat"}}}"#;
        jail.create_file("fixed.json", no_placeholder)?;
        config_with(jail, "fixed.json")?;
        assert!(refused(jail).contains("{{prompt}}"));

        let good = r#"{"6": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{prompt}}"}}}"#;
        jail.create_file("good.json", good)?;
        config_with(jail, "good.json")?;
        let config = load(jail).unwrap();
        assert_eq!(config.providers.comfyui.workflow, Some(PathBuf::from("good.json")));
        Ok(())
    });
}

#[test]
fn a_bad_comfyui_base_url_is_refused() {
    Jail::expect_with(|jail| {
        hermetic(jail);
        jail.create_file("offstage.toml", "[providers.comfyui]\nbase_url = \"localhost:8188\"\n")?;
        let error = load(jail).unwrap_err();
        assert!(error.to_string().contains("providers.comfyui.base_url"), "{error}");
        Ok(())
    });
}

#[test]
fn image_settings_load_from_the_file_and_the_environment() {
    Jail::expect_with(|jail| {
        hermetic(jail);
        jail.create_file(
            "offstage.toml",
            "[images]\nworkers = 3\nprerender = [\"w=256&format=jpeg\"]\n",
        )?;
        jail.set_env("OFFSTAGE_IMAGES__QUALITY", "65");
        let images = load(jail).unwrap().images;
        assert_eq!(images.worker_count(), 3);
        assert_eq!(images.quality, 65);
        assert_eq!(images.prerender, ["w=256&format=jpeg"]);
        Ok(())
    });
}

#[test]
fn oauth_and_limits_are_read_with_defaults_and_checked() {
    Jail::expect_with(|jail| {
        hermetic(jail);
        jail.create_file(
            "offstage.toml",
            r#"
            public_url = "https://offstage.example.com"

            [oauth]
            issuer = "https://auth.example.com"

            [limits]
            sessions_per_token = 50
            header_timeout = "10s"
            "#,
        )?;
        let config = load(jail).unwrap();
        let oauth = config.security.oauth.expect("oauth is on with an issuer");
        assert_eq!(oauth.audience, "https://offstage.example.com/mcp", "public_url/mcp");
        assert_eq!(
            (oauth.tools_scope.as_str(), oauth.operator_scope.as_str()),
            ("offstage:tools", "offstage:operator")
        );
        assert_eq!(config.limits.sessions_per_token, 50);
        assert_eq!(config.limits.header_timeout, Duration::from_secs(10));
        assert_eq!(config.limits.sessions, 10_000, "the rest keep their defaults");
        assert_eq!(config.limits.connection_cap(1024), 768);
        assert_eq!(LimitsConfig { max_connections: 5, ..config.limits }.connection_cap(1024), 5);
        Ok(())
    });
    for (setting, field) in [
        ("[oauth]\nissuer = \"http://auth.example.com\"\naudience = \"x\"", "oauth.issuer"),
        ("[oauth]\nissuer = \"https://auth.example.com\"", "oauth.audience"),
        ("[oauth]\naudience = \"x\"", "oauth.issuer"),
        ("[limits]\nidle_timeout = \"20s\"", "limits.idle_timeout"),
        ("[limits]\nsessions = 0", "limits.sessions"),
        ("[tools]\nreply_within = \"5m\"", "tools.reply_within"),
    ] {
        Jail::expect_with(|jail| {
            hermetic(jail);
            jail.create_file("offstage.toml", setting)?;
            let error = load(jail).unwrap_err();
            assert!(
                matches!(&error, ConfigError::Invalid { field: named, .. } if *named == field),
                "{setting}: {error}"
            );
            Ok(())
        });
    }
}

#[test]
fn the_test_harness_variables_are_not_settings() {
    Jail::expect_with(|jail| {
        hermetic(jail);
        jail.set_env("OFFSTAGE_TEST_MOTO", "/opt/moto/bin/moto_server");
        jail.set_env("OFFSTAGE_TEST_REQUIRE_ALL", "1");
        load(jail).unwrap();
        Ok(())
    });
}

#[test]
fn the_database_is_sqlite_in_the_data_dir_unless_a_postgres_url_is_given() {
    Jail::expect_with(|jail| {
        hermetic(jail);
        let config = load(jail).expect("defaults are valid");
        assert_eq!(config.database, Database::Sqlite(jail.directory().join("data/offstage.db")));

        jail.set_env("OFFSTAGE_DATABASE_URL", "postgres://offstage:hunter2@db:5432/offstage");
        let config = load(jail).expect("a PostgreSQL URL is valid");
        let Database::Postgres(url) = &config.database else { panic!("{:?}", config.database) };
        assert_eq!(url.host_str(), Some("db"));
        let shown = format!("{:?}", config.database);
        assert!(!shown.contains("hunter2") && shown.contains("db:5432"), "{shown}");

        // The flag wins over the environment.
        let mut flagged = sources(jail);
        flagged.overrides.database_url = Some("postgresql://other/offstage".to_owned());
        let config = Config::load(&flagged).expect("the flag is valid");
        assert!(
            matches!(&config.database, Database::Postgres(url) if url.host_str() == Some("other"))
        );

        for (bad, says) in
            [("mysql://db/offstage", "`mysql:` is not supported"), ("db/offstage", "not a URL")]
        {
            jail.set_env("OFFSTAGE_DATABASE_URL", bad);
            match load(jail) {
                Err(ConfigError::Invalid { field: "database_url", message }) => {
                    assert!(message.contains(says), "{bad}: {message}");
                }
                other => panic!("{bad} must be refused: {other:?}"),
            }
        }
        Ok(())
    });
}

#[test]
fn openai_partial_images_are_checked_by_the_provider() {
    Jail::expect_with(|jail| {
        hermetic(jail);
        for file in [
            "[providers.openai]\npartial_images = 4",
            "[providers.openai]\nmodel = \"dall-e-3\"\npartial_images = 1",
        ] {
            jail.create_file("offstage.toml", file)?;
            let error = load(jail).unwrap_err();
            assert!(
                matches!(
                    &error,
                    ConfigError::Provider(SetupError::Invalid {
                        provider: "openai",
                        field: "partial_images",
                        ..
                    })
                ),
                "{file:?}: {error:?}"
            );
            let message = error.to_string();
            assert!(message.starts_with("providers.openai.partial_images: "), "{message}");
        }
        Ok(())
    });
}
