//! The seed's pattern 1, step 2, with `sluice` commands against a running broker, and
//! `sluice up` with a solution file: what a user of the AWS solution types first.
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::support::start_broker;

fn sluice(bootstrap: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env("SLUICE_BOOTSTRAP_SERVER", bootstrap)
        .stdin(Stdio::null())
        .output()
        .expect("the sluice binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn seed_step_2_creates_lists_and_produces_500_of_500() {
    let broker = start_broker();
    let bootstrap = broker.bootstrap().to_string();
    let create = ["topics", "--create", "--partitions", "1", "--topic", "MyTopic"];

    let refused = sluice(&bootstrap, &[&create[..], &["--replication-factor", "2"]].concat());
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stderr));
    let message = text(&refused.stderr);
    assert!(message.contains("INVALID_REPLICATION_FACTOR"), "{message}");
    assert!(message.contains("single node"), "{message}");

    let created = sluice(&bootstrap, &[&create[..], &["--replication-factor", "1"]].concat());
    assert!(created.status.success(), "{}", text(&created.stderr));

    let listed = sluice(&bootstrap, &["topics", "--list"]);
    assert!(text(&listed.stdout).lines().any(|l| l == "MyTopic"), "{}", text(&listed.stdout));

    let produce = ["verifiable-producer", "--topic", "MyTopic", "--throughput", "100"];
    let produced = sluice(&bootstrap, &[&produce[..], &["--max-messages", "500"]].concat());
    assert!(produced.status.success(), "{}", text(&produced.stderr));
    let events = text(&produced.stdout);
    let tool_data = events.lines().find(|l| l.contains("\"tool_data\"")).expect("tool_data event");
    let tool_data: serde_json::Value = serde_json::from_str(tool_data).unwrap();
    assert_eq!(tool_data["sent"], 500, "{tool_data}");
    assert_eq!(tool_data["acked"], 500, "{tool_data}");

    let described = sluice(&bootstrap, &["cluster", "describe"]);
    let out = text(&described.stdout);
    assert!(out.contains(&format!("Bootstrap servers: {bootstrap}")), "{out}");
}

#[test]
fn up_starts_the_broker_with_the_solution_file_topics() {
    let dir = tempfile::tempdir().unwrap();
    let solution = dir.path().join("solution.toml");
    std::fs::write(
        &solution,
        "[broker]\nlisteners = \"PLAINTEXT://127.0.0.1:0\"\n\n\
         [[topic]]\nname = \"orders\"\npartitions = 3\nconfig = { \"retention.ms\" = \"60000\" }\n",
    )
    .unwrap();
    let data_dir = dir.path().join("data");
    let mut up = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("up")
        .arg(&solution)
        .arg("--data-dir")
        .arg(&data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = up.stdout.take().unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut bootstrap = None;
    let mut seen = Vec::new();
    while let Ok(line) = lines_rx.recv_timeout(Duration::from_secs(30)) {
        if let Some(at) = line.find("PLAINTEXT://") {
            bootstrap = Some(
                line[at + "PLAINTEXT://".len()..].split_whitespace().next().unwrap().to_string(),
            );
        }
        let done = line.contains("Ctrl-C");
        seen.push(line);
        if done {
            break;
        }
    }
    let bootstrap = bootstrap.unwrap_or_else(|| panic!("no listener in {seen:?}"));
    assert!(seen.iter().any(|l| l.contains("orders")), "{seen:?}");
    let described = sluice(&bootstrap, &["topics", "--describe", "--topic", "orders"]);
    let out = text(&described.stdout);
    assert!(out.contains("PartitionCount: 3"), "{out}");
    assert!(out.contains("retention.ms=60000"), "{out}");
    // SIGTERM stops it cleanly.
    unsafe { libc::kill(up.id() as i32, libc::SIGTERM) };
    let status = up.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
