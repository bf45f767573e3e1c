//! `[images]` as configuration loads it: the AWS variables read with the rest of the
//! environment, and `images.store` from the environment.

use std::path::Path;

use figment::Jail;
use object_store::aws::AmazonS3ConfigKey;

use super::sources;
use crate::config::{Config, ConfigError};

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
