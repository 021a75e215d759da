//! The command line outside `decode` and `fence`: a bad configuration stops `serve` with the key
//! at fault, `token create` prints the secret as the last word, `migrate` creates the schema
//! (on SQLite, and on PostgreSQL when `EWALL_TEST_PG_URL` is set).

mod common;

use std::process::Command;

use common::pg::TestDatabase;

fn ewall(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ewall"));
    command.args(args).env("RUST_LOG", "off");
    for (k, v) in envs {
        command.env(k, v);
    }
    command.output().unwrap()
}

#[test]
fn a_bad_config_names_the_key_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ewall.toml");
    std::fs::write(&path, "[listeners.gt06]\nlisten = \"0.0.0.0:99999\"\n").unwrap();
    let out = ewall(&["serve", "--config", path.to_str().unwrap()], &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("listeners.gt06.listen"), "{stderr}");

    std::fs::write(&path, "[levels.normal]\nconfirm_fixes = 0\n").unwrap();
    let out = ewall(&["serve", "--config", path.to_str().unwrap()], &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("levels.normal.confirm_fixes"), "{stderr}");

    let out = ewall(&["serve"], &[("EWALL_HTTP__LISTN", "127.0.0.1:0")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("listn"), "{stderr}");

    let out = ewall(&["serve", "--config", "/nonexistent/ewall.toml"], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/ewall.toml"));
}

#[test]
fn token_create_prints_the_secret_last_and_migrate_reports() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let env = [("EWALL_DATA_DIR", data)];
    let out = ewall(&["migrate"], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("ewall.db").exists());

    let out = ewall(
        &[
            "token",
            "create",
            "--role",
            "operator",
            "--label",
            "night shift",
        ],
        &env,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let secret = stdout.split_whitespace().last().unwrap();
    assert!(
        secret.starts_with("ewall_") && secret.len() > 30,
        "{stdout}"
    );

    let out = ewall(&["token", "create", "--role", "superuser"], &env);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("superuser"));
}

#[test]
fn tokens_are_listed_and_revoked_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let env = [("EWALL_DATA_DIR", data)];
    let out = ewall(
        &[
            "token",
            "create",
            "--role",
            "integration",
            "--label",
            "police feed",
            "--expires-in",
            "30d",
        ],
        &env,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let secret = stdout.split_whitespace().last().unwrap().to_owned();

    let out = ewall(&["token", "list"], &env);
    assert!(out.status.success());
    let listed = String::from_utf8(out.stdout).unwrap();
    let tokens: Vec<serde_json::Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(tokens.len(), 1, "{listed}");
    assert_eq!(tokens[0]["role"], "integration");
    assert_eq!(tokens[0]["label"], "police feed");
    assert!(tokens[0]["expires_at"].is_string(), "{listed}");
    assert!(tokens[0]["revoked_at"].is_null(), "{listed}");
    assert!(!listed.contains(&secret), "the secret is never shown again");
    let id = tokens[0]["id"].as_str().unwrap().to_owned();

    let out = ewall(&["token", "revoke", &id], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ewall(&["token", "list"], &env);
    let listed = String::from_utf8(out.stdout).unwrap();
    let token: serde_json::Value = serde_json::from_str(listed.lines().next().unwrap()).unwrap();
    assert!(token["revoked_at"].is_string(), "{listed}");

    let out = ewall(
        &["token", "revoke", "0190a0b0-0000-7000-8000-000000000000"],
        &env,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    let out = ewall(&["token", "revoke", "not-an-id"], &env);
    assert!(!out.status.success());
    let out = ewall(
        &["token", "create", "--role", "admin", "--expires-in", "soon"],
        &env,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("soon"));
}

#[tokio::test]
async fn migrate_on_postgres_creates_the_schema_once_and_hides_the_password() {
    let Some(database) = TestDatabase::create("migrate on PostgreSQL").await else {
        return;
    };
    let env = [("EWALL_STORE__URL", database.url.as_str())];
    for _ in 0..2 {
        let out = ewall(&["migrate"], &env);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = ewall(&["token", "create", "--role", "admin"], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = ewall::store::open(&database.url).await.unwrap();
    assert_eq!(store.token_count().await.unwrap(), 1);

    // A server that refuses: the message names the store without its password, exit non-zero.
    let out = ewall(
        &["migrate"],
        &[
            (
                "EWALL_STORE__URL",
                "postgres://ewall:hunter2@127.0.0.1:9/ewall",
            ),
            ("EWALL_STORE__ACQUIRE_TIMEOUT", "1s"),
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("postgres://ewall:***@127.0.0.1:9/ewall"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}
