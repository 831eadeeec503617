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
        encryption_key_file: None,
        store: None,
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

#[test]
fn jwt_settings_come_from_flags_and_the_jwt_table_and_need_audience_and_issuer() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "s".repeat(40) + "\n").unwrap();
    let file = dir.path().join("sync.toml");
    std::fs::write(
        &file,
        "[jwt]\nsecret_file = \"secret\"\naudience = \"app\"\nissuer = \"https://id/\"\n",
    )
    .unwrap();
    let path = file.display().to_string();
    let cli = Cli::parse_from(["t", "--config", &path, "--jwt-leeway-secs", "5"]);
    let jwt = ServerConfig::resolve(&cli.global, &cli.serve)
        .unwrap()
        .jwt
        .expect("enabled by the secret file");
    assert_eq!(jwt.secret, JwtSecret::Bytes("s".repeat(40).into_bytes()));
    assert_eq!(
        (jwt.audience.as_str(), jwt.issuer.as_str()),
        ("app", "https://id/")
    );
    assert_eq!(jwt.leeway, std::time::Duration::from_secs(5));
    assert_eq!(
        (jwt.grants_claim.as_str(), jwt.device_claim.as_str()),
        ("sync", "device")
    );

    // No audience: refused, not silently accepting any.
    std::fs::write(&file, "[jwt]\nsecret_file = \"secret\"\nissuer = \"i\"\n").unwrap();
    let cli = Cli::parse_from(["t", "--config", &path]);
    let err = ServerConfig::resolve(&cli.global, &cli.serve).unwrap_err();
    assert!(err.to_string().contains("--jwt-audience"), "{err}");
    // A short secret is refused.
    std::fs::write(dir.path().join("secret"), "short").unwrap();
    std::fs::write(
        &file,
        "[jwt]\nsecret_file = \"secret\"\naudience = \"a\"\nissuer = \"i\"\n",
    )
    .unwrap();
    let cli = Cli::parse_from(["t", "--config", &path]);
    assert!(ServerConfig::resolve(&cli.global, &cli.serve).is_err());
}
