//! `images.store` and `[images.s3]`: what each URL means, what is refused and how, the AWS
//! variables, and secrets kept out of `Debug`.

use object_store::aws::AmazonS3ConfigKey;

use super::*;

fn store(value: &str) -> ImagesConfig {
    ImagesConfig { store: Some(value.to_owned()), ..ImagesConfig::default() }
}

fn refusal(config: &ImagesConfig) -> (&'static str, String) {
    match config.validate() {
        Err(Invalid { field, message }) => (field, message),
        other => panic!("expected a refusal, got {other:?}"),
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
