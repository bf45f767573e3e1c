//! `images.store` and `[images.s3]`: what each URL means, what is refused and how, the AWS
//! variables, and secrets kept out of `Debug`.
#![expect(
    clippy::result_large_err,
    reason = "`Jail::expect_with` closures must return figment's own (large) error type"
)]

use figment::Jail;
use object_store::aws::AmazonS3ConfigKey;

use super::*;
use crate::config::{Config, ConfigSources, Overrides};

fn store(value: &str) -> ImagesConfig {
    ImagesConfig { store: Some(value.to_owned()), ..ImagesConfig::default() }
}

fn refusal(config: &ImagesConfig) -> (&'static str, String) {
    match config.validate() {
        Err(ConfigError::Invalid { field, message }) => (field, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Sources as the CLI builds them without flags, the data directory inside the jail.
fn sources(jail: &Jail) -> ConfigSources {
    ConfigSources {
        config_file: None,
        overrides: Overrides {
            data_dir: Some(jail.directory().join("data")),
            ..Overrides::default()
        },
    }
}

#[test]
fn unset_means_the_images_folder_of_the_data_dir() {
    let config = ImagesConfig::default();
    config.validate().unwrap();
    assert!(config.s3_store().unwrap().is_none());
    let data_dir = Path::new("/var/lib/offstage");
    assert_eq!(config.store_directory(data_dir).unwrap(), data_dir.join("images"));
    assert_eq!(store("  ").store_directory(data_dir).unwrap(), data_dir.join("images"));
}

#[test]
fn a_file_url_is_that_directory() {
    let config = store("file:///srv/shared/offstage-images");
    config.validate().unwrap();
    assert!(config.s3_store().unwrap().is_none());
    let dir = config.store_directory(Path::new("/elsewhere")).unwrap();
    assert_eq!(dir, Path::new("/srv/shared/offstage-images"));
}

#[test]
fn an_s3_url_names_the_bucket_and_the_prefix() {
    let (builder, prefix) = store("s3://offstage-images/prod/eu").s3_store().unwrap().unwrap();
    assert_eq!(
        builder.get_config_value(&AmazonS3ConfigKey::Bucket).as_deref(),
        Some("offstage-images")
    );
    assert_eq!(prefix.as_ref(), "prod/eu");
    let (_, prefix) = store("s3://offstage-images").s3_store().unwrap().unwrap();
    assert!(prefix.is_root());
    let (_, prefix) = store("s3://offstage-images/images/").s3_store().unwrap().unwrap();
    assert_eq!(prefix.as_ref(), "images");
}

#[test]
fn unusable_stores_are_refused_with_the_setting_named() {
    for (value, says) in [
        ("gs://bucket/images", "`gs:` is not supported"),
        ("/srv/images", "is not a URL"),
        ("s3:///images", "names no bucket"),
        ("s3:images", "names no bucket"),
        ("s3://bucket:9000/images", "images.s3.endpoint"),
        ("s3://bucket/a//b", "the prefix"),
        ("s3://bucket/images?region=eu", "no query"),
        ("file://server/share", "not a local absolute path"),
    ] {
        let (field, message) = refusal(&store(value));
        assert_eq!(field, "images.store", "{value}");
        assert!(message.contains(says), "{value}: {message}");
    }
}

#[test]
fn credentials_in_the_url_are_refused_without_repeating_them() {
    let (field, message) = refusal(&store("s3://AKIDEXAMPLE:wJalrXUtnFEMI@bucket/images"));
    assert_eq!(field, "images.store");
    assert!(message.contains("AWS_ACCESS_KEY_ID"), "{message}");
    assert!(!message.contains("wJalrXUtnFEMI") && !message.contains("AKIDEXAMPLE"), "{message}");
}

#[test]
fn s3_options_are_checked_when_the_store_is_s3() {
    let mut config = store("s3://bucket/images");
    config.s3.insert("endpiont".to_owned(), "http://127.0.0.1:9000".to_owned());
    let (field, message) = refusal(&config);
    assert_eq!(field, "images.s3");
    assert!(message.contains("unknown option `endpiont`"), "{message}");
    let mut config = store("s3://bucket/images");
    config.s3.insert("allow_http".to_owned(), "sometimes".to_owned());
    assert_eq!(refusal(&config).0, "images.s3");
    let mut config = store("s3://bucket/images");
    config.s3.insert("access_key_id".to_owned(), "AKIDEXAMPLE".to_owned());
    let (field, message) = refusal(&config);
    assert_eq!(field, "images.s3");
    assert!(!message.contains("AKIDEXAMPLE"), "{message}");
    // A directory store ignores them.
    config.store = None;
    config.validate().unwrap();
}

#[test]
fn the_aws_variables_fill_in_and_settings_win() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "offstage.toml",
            "[images]\nstore = \"s3://shared-images/offstage\"\n\n[images.s3]\n\
             endpoint = \"http://127.0.0.1:9000\"\nallow_http = true\n",
        )?;
        // Only what the test sets: a developer's own AWS or OFFSTAGE variables stay out.
        jail.clear_env();
        jail.set_env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE");
        jail.set_env("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI");
        jail.set_env("AWS_REGION", "eu-west-1");
        jail.set_env("AWS_ENDPOINT_URL", "https://s3.eu-west-1.amazonaws.com");
        jail.set_env("AWS_NOT_AN_S3_OPTION", "ignored");
        jail.set_env("OFFSTAGE_IMAGES__S3__VIRTUAL_HOSTED_STYLE_REQUEST", "false");
        let config = Config::load(&sources(jail)).unwrap();
        let images = &config.images;
        assert!(!images.aws_environment.contains_key("aws_not_an_s3_option"));
        let (builder, prefix) = images.s3_store().unwrap().unwrap();
        assert_eq!(prefix.as_ref(), "offstage");
        let value = |key| builder.get_config_value(&key);
        assert_eq!(value(AmazonS3ConfigKey::AccessKeyId).as_deref(), Some("AKIDEXAMPLE"));
        assert_eq!(value(AmazonS3ConfigKey::Region).as_deref(), Some("eu-west-1"));
        assert_eq!(value(AmazonS3ConfigKey::Endpoint).as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(value(AmazonS3ConfigKey::VirtualHostedStyleRequest).as_deref(), Some("false"));
        let printed = format!("{config:?}");
        assert!(!printed.contains("wJalrXUtnFEMI"), "Debug shows a secret: {printed}");
        assert!(!printed.contains("AKIDEXAMPLE"), "Debug shows a key id: {printed}");
        assert!(printed.contains("eu-west-1") && printed.contains("<redacted>"), "{printed}");
        Ok(())
    });
}

#[test]
fn the_store_can_be_set_from_the_environment() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.set_env("OFFSTAGE_IMAGES__STORE", "file:///srv/shared/images");
        let images = Config::load(&sources(jail)).unwrap().images;
        let dir = images.store_directory(Path::new("/data")).unwrap();
        assert_eq!(dir, Path::new("/srv/shared/images"));
        jail.set_env("OFFSTAGE_IMAGES__STORE", "ftp://files/images");
        match Config::load(&sources(jail)) {
            Err(ConfigError::Invalid { field: "images.store", .. }) => {}
            other => panic!("expected images.store to be refused: {other:?}"),
        }
        Ok(())
    });
}
