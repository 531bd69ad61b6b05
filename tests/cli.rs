//! The command line as a user meets it: exit codes and one-line errors for bad
//! configuration and unreachable databases, `--print-config`, and `migrate` twice.
#![allow(clippy::unwrap_used)] // tests and benchmarks fail loudly on what they set up

mod common;

use std::process::{Command, Output};

fn metatiled(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_metatiled"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("METATILED_DATABASE_URL")
        .env("RUST_LOG", "info")
        .output()
        .expect("the binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn help_lists_every_subcommand_of_the_contract() {
    let out = metatiled(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["serve", "seed", "expire", "migrate"] {
        assert!(text.contains(cmd), "--help lacks {cmd}:\n{text}");
    }
}

#[test]
fn a_typo_in_the_config_file_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("metatiled.toml");
    std::fs::write(&file, "[cache]\nmemory_byts = 10\n").unwrap();
    let out = metatiled(&["serve", "--config", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("memory_byts"), "{err}");
    assert!(err.contains("line 2"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn a_bad_value_in_the_environment_exits_2_naming_the_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_metatiled"))
        .args(["migrate"])
        .env("METATILED_DATABASE_POOL_SIZE", "many")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("METATILED_DATABASE_POOL_SIZE"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn print_config_shows_the_layered_result_with_secrets_masked() {
    let out = Command::new(env!("CARGO_BIN_EXE_metatiled"))
        .args(["serve", "--print-config", "--cache-dir", "/srv/tiles"])
        .env("METATILED_ADMIN_TOKEN", "s3cret")
        .env("DATABASE_URL", "postgres://u:pw@db.example:5432/osm")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("dir = \"/srv/tiles\""), "{text}");
    assert!(
        text.contains("postgres://u:***@db.example:5432/osm"),
        "{text}"
    );
    assert!(!text.contains("s3cret") && !text.contains(":pw@"), "{text}");
}

#[test]
fn an_unreachable_database_is_one_line_naming_the_host_and_exit_1() {
    let out = metatiled(&[
        "migrate",
        "--database-url",
        "postgres://nobody:x@127.0.0.1:1/nowhere",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let last = err.trim().lines().last().unwrap_or_default();
    assert!(last.contains("127.0.0.1:1"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let garbage = metatiled(&["migrate", "--database-url", "not a url"]);
    assert_eq!(garbage.status.code(), Some(2), "{}", stderr(&garbage));
}

#[test]
fn migrate_twice_applies_once_then_does_nothing() {
    let Some(url) = common::database_url() else {
        eprintln!("skipping: no DATABASE_URL");
        return;
    };
    let first = metatiled(&["migrate", "--database-url", &url]);
    assert!(first.status.success(), "{}", stderr(&first));
    let second = metatiled(&["migrate", "--database-url", &url]);
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(
        stderr(&second).contains("up to date"),
        "second run did something: {}",
        stderr(&second)
    );
}
