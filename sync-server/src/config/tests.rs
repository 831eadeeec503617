//! Configuration tests.

use super::*;
use clap::Parser;
use sync_core::engine::policy::Policy;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(flatten)]
    serve: ServeArgs,
}

#[test]
fn flags_override_the_file_which_overrides_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sync.toml");
    std::fs::write(
        &file,
        r#"
        data = "data"
        listen = "0.0.0.0:9000"
        log_keep = 50
        [policies]
        default = "reject"
        notes = "newest-wins:updated_at"
        "#,
    )
    .unwrap();
    let cli = Cli::parse_from([
        "x",
        "--config",
        file.to_str().unwrap(),
        "--listen",
        "127.0.0.1:1",
        "--policy",
        "tags=first-write-wins",
    ]);
    let c = ServerConfig::resolve(&cli.global, &cli.serve).unwrap();
    assert_eq!(c.listen, "127.0.0.1:1".parse().unwrap());
    assert_eq!(c.data_dir, dir.path().join("data"));
    assert_eq!(c.log_keep, 50);
    assert_eq!(c.max_body_bytes, 8 * 1024 * 1024);
    assert_eq!(c.policies.default, Policy::Abort);
    assert_eq!(c.policies.for_table("tags"), &Policy::Omit);
    assert!(matches!(
        c.policies.for_table("notes"),
        Policy::NewestWins { .. }
    ));
}

#[test]
fn unknown_keys_and_bad_policies_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sync.toml");
    std::fs::write(&file, "listn = \"x\"\n").unwrap();
    let global = GlobalArgs {
        config: Some(file.clone()),
        data: None,
    };
    assert!(matches!(
        ServerConfig::resolve(&global, &ServeArgs::default()),
        Err(ConfigError::Parse { .. })
    ));
    let serve = ServeArgs {
        policies: vec!["notes=sometimes".into()],
        ..ServeArgs::default()
    };
    assert!(ServerConfig::resolve(&GlobalArgs::default(), &serve).is_err());
}
