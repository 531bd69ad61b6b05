//! The README's admin examples run as written: every `curl` line of the "Admin HTTP"
//! block is sent (with `localhost:8081` pointed at the test app's admin listener) from
//! the repository root, so the files they post exist, and each must get a 2xx.
#![allow(clippy::unwrap_used)] // tests and benchmarks fail loudly on what they set up

mod common;
mod support;

use std::process::Command;

/// The shell lines of the first ```sh block after `heading`, continuation lines joined,
/// comments dropped.
fn example_lines(readme: &str, heading: &str) -> Vec<String> {
    let after = readme
        .split_once(heading)
        .unwrap_or_else(|| panic!("README has no {heading:?}"))
        .1;
    let block = after
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .map(|(block, _)| block)
        .expect("a ```sh block");
    let mut lines = Vec::new();
    let mut current = String::new();
    for line in block.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                lines.push(std::mem::take(&mut current));
            }
        }
    }
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_admin_examples_of_the_readme_run_as_written() {
    let Some(app) = support::spawn_app().await else {
        return;
    };
    let root = common::repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let lines = example_lines(&readme, "## Admin HTTP");
    assert!(lines.len() >= 6, "{lines:?}");
    let admin = app.admin_addr.to_string();
    for line in lines {
        let command = line.replace("localhost:8081", &admin);
        // Each curl fails on a status >= 400 and prints the body.
        let script = format!(
            "curl() {{ command curl -sS --fail-with-body \"$@\"; echo; }}\nset -e\n{command}"
        );
        let out = tokio::task::spawn_blocking({
            let root = root.clone();
            move || {
                Command::new("bash")
                    .arg("-c")
                    .arg(script)
                    .current_dir(root)
                    .output()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "README example failed: {line}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    app.stop().await;
}

#[test]
fn the_example_block_is_read_line_by_line() {
    let readme = "## Admin HTTP\ntext\n```sh\n# c\ncurl a \\\n  b\ncurl c\n```\n";
    assert_eq!(
        example_lines(readme, "## Admin HTTP"),
        ["curl a b", "curl c"]
    );
}
