//! What a plain `cargo test` does not run. A test here needs a tool that a
//! fresh machine (PostgreSQL's server binaries installed, nothing else)
//! lacks, so it is `#[ignore = "needs TOOL: HOW TO INSTALL IT"]`; CI
//! (`.ci/run`) installs the tools and runs everything with
//! `cargo test -- --include-ignored`.
//!
//! This table of them is what the load test (tests/load.rs, the last test
//! binary `cargo test` runs) prints at the end of a run. The tests below
//! check it against the suite's real `#[ignore]` attributes, as libtest
//! lists them and as the source spells them, so that it cannot drift.

/// A test of the `api` binary that only runs when asked for.
pub struct Ignored {
    /// Its full name, as libtest prints it.
    pub name: &'static str,
    /// Its `#[ignore]` reason, word for word: the tool it needs and the
    /// command that installs it.
    pub reason: &'static str,
}

const MOTO: &str = "needs moto_server: pip install 'moto[server]'";
const CARGO_LAMBDA: &str = "needs cargo-lambda: pip install cargo-lambda";
const PGBOUNCER: &str = "needs pgbouncer: apt-get install pgbouncer";

pub const IGNORED: &[Ignored] = &[
    Ignored {
        name: "aws::kms_ciphertexts_are_decrypted_once_at_start",
        reason: MOTO,
    },
    Ignored {
        name: "aws::secrets_manager_supplies_the_catalog_and_a_rotating_api_password",
        reason: MOTO,
    },
    Ignored {
        name: "aws::a_rotation_of_the_catalog_secret_and_role_password_is_invisible_to_callers",
        reason: MOTO,
    },
    Ignored {
        name: "aws::secrets_that_cannot_be_resolved_are_a_500_and_a_clear_log_line",
        reason: MOTO,
    },
    Ignored {
        name: "lambda_watch::every_sample_event_through_cargo_lambda_watch",
        reason: CARGO_LAMBDA,
    },
    Ignored {
        name: "pgbouncer::function_instances_sharing_one_server_connection_through_pgbouncer_are_all_served",
        reason: PGBOUNCER,
    },
];

/// The closing words of a run: the ignored tests that `selected` (the
/// run's filters) would have picked, by reason, and how to run them; `None`
/// if there are none.
pub fn summary(selected: impl Fn(&str) -> bool) -> Option<String> {
    let tests: Vec<&Ignored> = IGNORED.iter().filter(|t| selected(t.name)).collect();
    if tests.is_empty() {
        return None;
    }
    let mut reasons: Vec<&str> = Vec::new();
    for test in &tests {
        if !reasons.contains(&test.reason) {
            reasons.push(test.reason);
        }
    }
    let mut out = format!(
        "Not run: {} test{} of tests/api, ignored by default because each needs a tool \
         that a fresh machine lacks:\n",
        tests.len(),
        if tests.len() == 1 { "" } else { "s" }
    );
    for reason in &reasons {
        out += &format!("  {reason}\n");
        for test in tests.iter().filter(|t| t.reason == *reason) {
            out += &format!("    {}\n", test.name);
        }
    }
    out += "To run them as well, install the tools and run everything (.ci/run does both):\n";
    for reason in &reasons {
        let (_, install) = reason
            .split_once(": ")
            .expect("a reason names its install command");
        out += &format!("    {install}\n");
    }
    out += "    cargo test -- --include-ignored\n";
    Some(out)
}

// Only test functions here, which a build without libtest's harness (the
// load test's) leaves out: nothing of this module is then unused.
#[cfg(test)]
mod checks {
    #[test]
    fn the_table_names_the_tests_libtest_ignores() {
        use std::collections::BTreeSet;
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--list", "--ignored", "--format", "terse"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let listed: BTreeSet<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|line| line.strip_suffix(": test"))
            .map(str::to_string)
            .collect();
        let names: BTreeSet<String> = super::IGNORED.iter().map(|t| t.name.into()).collect();
        assert_eq!(
            listed, names,
            "tests/api/ignored.rs: IGNORED is not the list of ignored tests"
        );
    }

    /// Every `#[ignore = "..."]` in tests/api, with the name of the test it
    /// marks, must be in the table with the same reason, and the reason
    /// must say what is needed and how to install it.
    #[test]
    fn the_table_gives_each_ignore_attributes_reason() {
        use std::collections::BTreeSet;
        use std::path::Path;
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api");
        let mut found = BTreeSet::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "rs") || path.ends_with("ignored.rs") {
                continue;
            }
            let module = path.file_stem().unwrap().to_string_lossy().into_owned();
            let source = std::fs::read_to_string(&path).unwrap();
            let mut lines = source.lines().map(str::trim);
            while let Some(line) = lines.next() {
                if !line.starts_with("#[ignore") {
                    continue;
                }
                let reason = line
                    .strip_prefix("#[ignore = \"")
                    .and_then(|r| r.strip_suffix("\"]"))
                    .unwrap_or_else(|| {
                        panic!("{module}.rs: `{line}` is not #[ignore = \"needs TOOL: INSTALL\"]")
                    });
                let name = lines
                    .by_ref()
                    .find_map(|l| l.split_once("fn ").map(|(_, rest)| rest))
                    .and_then(|rest| rest.split('(').next())
                    .unwrap_or_else(|| panic!("{module}.rs: no fn after `{line}`"));
                found.insert((format!("{module}::{name}"), reason.to_string()));
            }
        }
        let table: BTreeSet<(String, String)> = super::IGNORED
            .iter()
            .map(|t| (t.name.into(), t.reason.into()))
            .collect();
        assert_eq!(found, table, "tests/api/ignored.rs: IGNORED has drifted");
        for (name, reason) in &found {
            let (need, install) = reason.split_once(": ").unwrap_or_default();
            assert!(
                need.starts_with("needs ") && !install.is_empty(),
                "{name}: the reason {reason:?} is not \"needs TOOL: INSTALL\""
            );
        }
    }

    #[test]
    fn the_summary_names_each_test_its_tool_and_the_command_that_runs_them() {
        use super::{summary, IGNORED};
        let all = summary(|_| true).unwrap();
        for test in IGNORED {
            assert!(
                all.contains(test.name) && all.contains(test.reason),
                "{all}"
            );
        }
        assert!(all.ends_with("cargo test -- --include-ignored\n"), "{all}");
        let one = summary(|name| name.starts_with("lambda_watch::")).unwrap();
        assert!(one.starts_with("Not run: 1 test of"), "{one}");
        assert!(one.contains("pip install cargo-lambda\n"), "{one}");
        assert!(!one.contains("moto"), "{one}");
        assert_eq!(summary(|_| false), None);
    }

    /// Cargo.toml sets `doctest = false` on the lib so that the load test's
    /// summary is the last thing `cargo test` prints (doc-tests would come
    /// after it). That is only right while the lib has no doc tests: a
    /// code block in a doc comment would silently never run.
    #[test]
    fn the_lib_has_no_doc_tests_for_doctest_false_to_skip() {
        use std::path::Path;
        fn visit(dir: &Path, blocks: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    visit(&path, blocks);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let source = std::fs::read_to_string(&path).unwrap();
                    for (n, line) in source.lines().enumerate() {
                        let line = line.trim_start();
                        let doc = line.starts_with("///")
                            || line.starts_with("//!")
                            || line.starts_with("#[doc")
                            || line.starts_with("#![doc");
                        if doc && (line.contains("```") || line.contains("~~~")) {
                            blocks.push(format!("{}:{}", path.display(), n + 1));
                        }
                    }
                }
            }
        }
        let mut blocks = Vec::new();
        visit(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut blocks,
        );
        assert!(
            blocks.is_empty(),
            "code blocks in doc comments, which would be doc tests, but Cargo.toml's \
             [lib] doctest = false skips them: remove that line (the doc-tests then print \
             after the load test's summary of what was not run) {blocks:#?}"
        );
    }
}
