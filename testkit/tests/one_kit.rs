//! Every suite finds its backends through this crate: one PostgreSQL
//! variable, one CI rule.

use std::path::Path;
use std::process::Command;

use sea_orm::{ConnectionTrait, Statement};

/// Run as a child of `the_postgres_variable_moves_every_database`: the
/// database [`cloudsec_testkit::TestDatabase`] creates must come from the
/// server and database that `CLOUDSEC_TEST_POSTGRES_URL` names.
#[tokio::test]
async fn child_reports_its_admin_database() {
    let Ok(expected) = std::env::var("TESTKIT_EXPECT_ADMIN_DB") else {
        return;
    };
    let admin = cloudsec_testkit::postgres_admin()
        .await
        .expect("the second database is reachable");
    let row = admin
        .query_one_raw(Statement::from_string(
            admin.get_database_backend(),
            "SELECT current_database()",
        ))
        .await
        .expect("query")
        .expect("one row");
    let current: String = row.try_get_by_index(0).expect("name");
    assert_eq!(current, expected);
    cloudsec_testkit::with_postgres("testkit_child", |url| async move {
        assert!(url.contains("/testkit_child_"), "{url}");
        println!("CHILD-OK {current}");
    })
    .await;
}

#[tokio::test]
async fn the_postgres_variable_moves_every_database() {
    let Some(second) = cloudsec_testkit::TestDatabase::create("testkit_second").await else {
        return;
    };
    let output = Command::new(std::env::current_exe().expect("test binary"))
        .args(["child_reports_its_admin_database", "--exact", "--nocapture"])
        .env("CLOUDSEC_TEST_POSTGRES_URL", second.url())
        .env("TESTKIT_EXPECT_ADMIN_DB", second.name())
        .output()
        .expect("run the child");
    let name = second.name().to_owned();
    second.drop().await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains(&format!("CHILD-OK {name}")),
        "child: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// No suite reads a PostgreSQL variable of its own or decides for itself
/// what CI means: those are this crate's job.
#[test]
fn suites_use_the_kit() {
    let root = cloudsec_testkit::workspace_root();
    let mut offenders = Vec::new();
    visit(&root, &mut |path, text| {
        if path.starts_with(root.join("testkit")) {
            return;
        }
        for needle in [
            "AUTH_TEST_POSTGRES_URL",
            "DOCUMENTS_TEST_POSTGRES_URL",
            "var(\"CI\")",
            "fn start_moto",
        ] {
            if text.contains(needle) {
                offenders.push(format!("{}: {needle}", path.display()));
            }
        }
    });
    assert!(offenders.is_empty(), "{offenders:#?}");
}

fn visit(dir: &Path, check: &mut dyn FnMut(&Path, &str)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "target" || name == "node_modules" {
            continue;
        }
        if path.is_dir() {
            visit(&path, check);
        } else if name.ends_with(".rs")
            && let Ok(text) = std::fs::read_to_string(&path)
        {
            check(&path, &text);
        }
    }
}
